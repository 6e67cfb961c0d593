"""ONNX export of the planar networks: static shapes, opset 11 by default, checked in onnxruntime.

Opset 11 is the first whose Resize has ``coordinate_transformation_mode=align_corners``, so
AFFGA-Net's bilinear align-corners upsampling exports exactly (the TensorRT 7 deployment had to
swap it for nearest-neighbour under opset 10, which changes the outputs); lower opsets are refused.
The file carries ``metadata_props`` (``graspnet_edge.model_type``, input size/channels, output
layout, width scale) so a runner can tell the model from the file alone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from graspnet_edge_ros import __version__
from graspnet_edge_ros.errors import ConfigError, ExportError, ModelFormatError
from graspnet_edge_ros.export.onnx_export import BPU_MAX_IR_VERSION, _export, _stamp
from graspnet_edge_ros.planar.affga import (AFFGA_SIZE_MULTIPLE, AFFGA_WIDTH_SCALE_PX, AFFGANet, AFFGAWithArgmax,
                                            load_affga)
from graspnet_edge_ros.planar.formats import (AFFGA_ARGMAX_OUTPUTS, AFFGA_OUTPUTS, DEFAULT_INPUT_SIZES,
                                              GRCONVNET_OUTPUTS, META_PREFIX, detect_planar_model_type,
                                              read_onnx_signature)
from graspnet_edge_ros.planar.grconvnet import GRConvNet3, inference_copy, load_grconvnet

PLANAR_OPSET = 11
MIN_PLANAR_OPSET = 11
INPUT_NAME = "input"
GRCONVNET_WIDTH_SCALE = 150.0      # what the original post_process multiplies by (see README caveat)
ANGLE_OUTPUTS = ("argmax", "logits")
_SIZE_MULTIPLE = {"grconvnet": 4, "affga": AFFGA_SIZE_MULTIPLE}
_CHANNEL_ORDER = {("grconvnet", 1): "depth", ("grconvnet", 3): "R,G,B", ("grconvnet", 4): "depth,R,G,B",
                  ("affga", 3): "B,G,R"}


def load_planar_model(path: str | Path, model_type: str | None = None) -> tuple[str, nn.Module]:
    """(model type, eval-mode module) of a planar checkpoint; the type is detected when not given."""
    detected = detect_planar_model_type(path)
    model_type = model_type or detected
    if model_type is None:
        raise ModelFormatError(f"{path}: not a GR-ConvNet or AFFGA-Net checkpoint (pass the model type if it is)")
    if detected is not None and detected != model_type:
        raise ModelFormatError(f"{path} holds a {detected} model, not {model_type}")
    if model_type == "grconvnet":
        return model_type, load_grconvnet(path)
    if model_type == "affga":
        return model_type, load_affga(path)
    raise ConfigError(f"unknown planar model type {model_type!r} (valid: grconvnet, affga)")


def inference_module(model_type: str, model: nn.Module,
                     angle_output: str = "argmax") -> tuple[nn.Module, tuple[str, ...]]:
    """The module to run or export and its output names (AFFGA: argmax in graph unless "logits")."""
    if model_type == "grconvnet":
        return inference_copy(model), GRCONVNET_OUTPUTS
    if angle_output not in ANGLE_OUTPUTS:
        raise ConfigError(f"angle_output must be one of {ANGLE_OUTPUTS}, got {angle_output!r}")
    if angle_output == "argmax":
        return AFFGAWithArgmax(model).eval(), AFFGA_ARGMAX_OUTPUTS
    return model.eval(), AFFGA_OUTPUTS


def model_input_channels(model: nn.Module) -> int:
    return int(model.input_channels)


def check_input_size(model_type: str, input_size: int) -> int:
    multiple = _SIZE_MULTIPLE[model_type]
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < multiple \
            or input_size % multiple:
        raise ConfigError(f"{model_type} input size must be a positive multiple of {multiple}, got {input_size!r}")
    return int(input_size)


def export_planar_onnx(model: GRConvNet3 | AFFGANet, model_type: str, output: str | Path, *,
                       input_size: int | None = None, opset: int = PLANAR_OPSET, angle_output: str = "argmax",
                       source: dict | None = None, verify: bool = True) -> Path:
    """Write ``model`` as a static-shape ONNX file: input ``input`` (1, C, S, S) float32.

    Args:
        input_size: S (default 224 GR-ConvNet, 320 AFFGA-Net); multiple of 4 / 16.
        opset: >= 11 (11 suits Horizon hb_mapper and TensorRT; IR version is then capped at 7).
        angle_output: AFFGA only: "argmax" (angle_bin int64 map) or "logits" (K-channel angle).
        verify: run the file in onnxruntime on a fixed random input and compare with PyTorch.

    Raises:
        ConfigError: bad size/opset/option. ExportError: export failed or outputs disagree.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_PLANAR_OPSET:
        raise ConfigError(f"planar export needs opset >= {MIN_PLANAR_OPSET} (bilinear align-corners Resize), "
                          f"got {opset!r}")
    size = check_input_size(model_type, input_size or DEFAULT_INPUT_SIZES[model_type])
    module, output_names = inference_module(model_type, model, angle_output)
    channels = model_input_channels(model)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    example = np.random.default_rng(0).uniform(-0.5, 0.5, (1, channels, size, size)).astype(np.float32)
    example = torch.from_numpy(example)
    try:
        _export(module, example, output, INPUT_NAME, list(output_names), opset)
    except Exception as exc:
        raise ExportError(f"{model_type} export failed: {type(exc).__name__}: {exc}") from exc
    _stamp(output, {**planar_metadata(model_type, model, size, output_names),
                    "graspnet_edge_version": __version__, **(source or {})},
           ir_version=BPU_MAX_IR_VERSION if opset <= 12 else None)
    _check_static(output)
    if verify:
        compare_with_onnxruntime(module, output, example, raise_on_mismatch=True)
    return output


def planar_metadata(model_type: str, model: nn.Module, input_size: int,
                    output_names: tuple[str, ...]) -> dict[str, str]:
    channels = model_input_channels(model)
    meta = {"model_type": model_type, "input_size": input_size, "input_channels": channels,
            "channel_order": _CHANNEL_ORDER.get((model_type, channels), "unknown"),
            "outputs": ",".join(output_names)}
    if model_type == "grconvnet":
        meta.update(width_scale=GRCONVNET_WIDTH_SCALE, channel_size=model.channel_size,
                    normalisation="depth: metres minus mean, clip +-1; rgb: /255 minus scalar mean")
    else:
        meta.update(width_scale=AFFGA_WIDTH_SCALE_PX, angle_bins=model.angle_bins, angle_range="0,2pi",
                    normalisation="bgr: /255 minus scalar mean")
    return {META_PREFIX + key: str(value) for key, value in meta.items()}


def _check_static(path: Path) -> None:
    signature = read_onnx_signature(path)
    dynamic = [name for name, shape in signature.inputs + signature.outputs if not shape or None in shape]
    if dynamic:
        raise ExportError(f"{path.name}: dynamic dimensions on {dynamic}; planar exports must be static")


def compare_with_onnxruntime(module: nn.Module, path: str | Path, example: torch.Tensor,
                             raise_on_mismatch: bool = False) -> dict[str, float]:
    """{output: max abs difference} between PyTorch and onnxruntime on ``example`` (integer outputs:
    the fraction of differing pixels). With ``raise_on_mismatch``, ExportError when a float output
    differs by more than 1e-4 x max(1, |output|) or more than 0.1 % of an integer map differs."""
    from graspnet_edge_ros.backends.onnxruntime_backend import OnnxRuntimeBackend

    with torch.inference_mode():
        reference = [t.numpy() for t in module(example)]
    engine = OnnxRuntimeBackend(path)
    produced = engine.run({INPUT_NAME: example.numpy()})
    report, problems = {}, []
    for spec, expected in zip(engine.outputs, reference):
        actual = produced[spec.name]
        if actual.shape != expected.shape:
            problems.append(f"{spec.name}: shape {actual.shape} vs torch {expected.shape}")
            continue
        if np.issubdtype(expected.dtype, np.integer):
            report[spec.name] = float(np.mean(actual != expected))
            if report[spec.name] > 1e-3:
                problems.append(f"{spec.name}: {report[spec.name]:.2%} of pixels differ")
        else:
            report[spec.name] = float(np.max(np.abs(actual.astype(np.float64) - expected)))
            tolerance = 1e-4 * max(1.0, float(np.max(np.abs(expected))))
            if report[spec.name] > tolerance:
                problems.append(f"{spec.name}: max abs difference {report[spec.name]:.3g} > {tolerance:.3g}")
    if problems and raise_on_mismatch:
        raise ExportError(f"{Path(path).name} does not reproduce PyTorch: " + "; ".join(problems))
    return report
