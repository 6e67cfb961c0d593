"""Export GraspNet to ONNX: one whole-network file, or BPU-friendly segments plus a manifest.

Both exports use the TorchScript-based exporter (``dynamo=False``): FPS is a scripted loop, which
becomes one ONNX ``Loop`` node instead of 2048 unrolled iterations (seconds instead of a minute to
export and load). Shapes are static.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graspnet_edge_ros import __version__
from graspnet_edge_ros.errors import ExportError
from graspnet_edge_ros.contract import (DEFAULT_SA1_CHUNK_GROUPS, DEFAULT_SA_CHUNK_CENTRES, FIRST_LAYERS_FILE,
                                        HEAD_LAYOUTS, SINGLE_FILE_INPUT, SINGLE_FILE_OUTPUTS, SPLIT_LAYOUTS,
                                        SplitManifest)
from graspnet_edge_ros.model.graspnet import GraspNet
from graspnet_edge_ros.model.segments import (DEFAULT_CROP_CHUNK_POINTS, INPUT_NAME, OUTPUT_NAME, first_layer_weights,
                                              manifest_for_model, segment_modules, segment_specs)

# What the X5 BPU runs natively (edge_deploy.md §0/§2.5); anything else in a segment is an error.
BPU_SEGMENT_OPS = frozenset({"Conv", "Relu", "MaxPool", "ReduceMax", "Concat", "Reshape", "Flatten", "Transpose",
                             "Squeeze", "Unsqueeze", "BatchNormalization", "Identity"})
BPU_OPSET = 11
BPU_MAX_IR_VERSION = 7


class _WholeNetwork(nn.Module):
    def __init__(self, model: GraspNet):
        super().__init__()
        self.model = model

    def forward(self, point_clouds: torch.Tensor):
        end_points = self.model(point_clouds)
        return tuple(end_points[name] for name in SINGLE_FILE_OUTPUTS)


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str,
            output_names: list[str], opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[input_name], output_names=output_names, do_constant_folding=True,
                          training=torch.onnx.TrainingMode.EVAL)


def _stamp(path: Path, metadata: dict[str, str], ir_version: int | None = None) -> None:
    import onnx

    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    if ir_version is not None:
        model.ir_version = min(model.ir_version, ir_version)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_single_file(model: GraspNet, output: str | Path, num_points: int = 20000, opset: int = 17,
                       source: dict | None = None) -> Path:
    """Whole network: ``point_clouds`` (1, num_points, 3) -> the raw outputs in SINGLE_FILE_OUTPUTS."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    example = torch.from_numpy(rng.uniform(-0.3, 0.3, (1, num_points, 3)).astype(np.float32) + [0, 0, 0.6])
    example = example.float()
    start = time.perf_counter()
    try:
        _export(_WholeNetwork(model), example, output, SINGLE_FILE_INPUT, list(SINGLE_FILE_OUTPUTS), opset)
    except Exception as exc:
        raise ExportError(f"single-file export failed: {type(exc).__name__}: {exc}") from exc
    _stamp(output, {"graspnet_edge_version": __version__, "num_points": num_points,
                    "export_seconds": f"{time.perf_counter() - start:.1f}", **(source or {})})
    return output


def export_split(model: GraspNet, directory: str | Path, head_chunk_seeds: int = 64,
                 source: dict | None = None, head_layouts: tuple[str, ...] = tuple(HEAD_LAYOUTS),
                 crop_chunk_points: int = DEFAULT_CROP_CHUNK_POINTS, layout: str = "factored",
                 sa1_chunk_groups: int | None = DEFAULT_SA1_CHUNK_GROUPS,
                 sa_chunk_centres: int | None = DEFAULT_SA_CHUNK_CENTRES,
                 sa_channels_last: bool = True) -> SplitManifest:
    """Each learned segment as an opset-11, IR<=7, fixed-shape 4-D ONNX file, plus manifest.json.

    Two independent choices (see model/segments.py and README, "Split layouts"):
    ``layout``: the backbone's, "factored" (default, fastest on a CPU; the first SA2..SA4 layers go
    to FIRST_LAYERS_FILE) or "grouped" (every SA segment runs its whole MLP; the X5 kit's layout).
    ``head_layouts``: the grasp-head layouts to write (``contract.HEAD_LAYOUTS``); by default both,
    so one directory runs fastest on the CPU and as the X5 BPU runs it.
    ``sa1_chunk_groups``: SA1 groups per sa1 call (the runtime runs only the groups SA2 reads);
    None: all SA1 groups in one call, SA1's whole output computed.
    ``sa_chunk_centres``: centres per sa2/sa3/sa4 call of the factored layout (the grouped one keeps
    whole SA segments); None: all centres in one call. ``sa_channels_last``: those segments take
    (1, S, K, 128); False writes the (1, 128, S, K) input of exports before 2026-12-08 (the runtime
    reads both).
    """
    if layout not in SPLIT_LAYOUTS:
        raise ExportError(f"layout must be one of {list(SPLIT_LAYOUTS)}, got {layout!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    modules = segment_modules(model, layout, sa_channels_last)
    files = {}
    first_layers = ""
    if layout == "factored":
        first_layers = FIRST_LAYERS_FILE
        np.savez(directory / first_layers, **first_layer_weights(model))
    sa_chunk_centres = sa_chunk_centres if layout == "factored" else None
    for spec in segment_specs(model.config, head_chunk_seeds, head_layouts, crop_chunk_points, layout,
                              sa1_chunk_groups, sa_chunk_centres, sa_channels_last):
        path = directory / f"{spec.name}.onnx"
        example = torch.zeros(spec.input_shape, dtype=torch.float32)
        try:
            _export(modules[spec.name], example, path, INPUT_NAME, [OUTPUT_NAME], BPU_OPSET)
        except Exception as exc:
            raise ExportError(f"segment '{spec.name}' export failed: {type(exc).__name__}: {exc}") from exc
        _stamp(path, {"graspnet_edge_version": __version__, "segment": spec.name, **(source or {})},
               ir_version=BPU_MAX_IR_VERSION)
        check_segment(path, spec.input_shape, spec.output_shape)
        files[spec.name] = {"onnxruntime": path.name}
    manifest = manifest_for_model(model, directory, head_chunk_seeds, files, source, head_layouts, crop_chunk_points,
                                  layout, first_layers, sa1_chunk_groups, sa_chunk_centres, sa_channels_last)
    manifest.save()
    return manifest


def check_segment(path: Path, input_shape, output_shape) -> None:
    """Raise ExportError unless the segment fits the X5 BPU constraints of edge_deploy.md."""
    import onnx

    model = onnx.load(str(path))
    problems = []
    ops = {node.op_type for node in model.graph.node}
    if ops - BPU_SEGMENT_OPS:
        problems.append(f"ops outside the BPU set: {sorted(ops - BPU_SEGMENT_OPS)}")
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset != BPU_OPSET:
        problems.append(f"opset {opset} != {BPU_OPSET}")
    if model.ir_version > BPU_MAX_IR_VERSION:
        problems.append(f"IR version {model.ir_version} > {BPU_MAX_IR_VERSION}")
    for values, expected in ((model.graph.input, input_shape), (model.graph.output, output_shape)):
        for value in values:
            tensor = value.type.tensor_type
            dims = tuple(d.dim_value for d in tensor.shape.dim)
            if tensor.elem_type != onnx.TensorProto.FLOAT:
                problems.append(f"{value.name} is not float32")
            if dims != tuple(expected):
                problems.append(f"{value.name} shape {dims} != {tuple(expected)}")
    if problems:
        raise ExportError(f"{path.name}: " + "; ".join(problems))
