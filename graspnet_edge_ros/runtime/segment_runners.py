"""Segment runners for ``SplitGraspNet``: one callable per segment, from a backend or from torch."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from graspnet_edge_ros.errors import InputError, ModelError, ModelFormatError
from graspnet_edge_ros.export.names import SEGMENT_INPUT, SEGMENT_OUTPUT
from graspnet_edge_ros.runtime.manifest import SplitManifest, geometry_steps


def backend_runners(manifest: SplitManifest, backend: str, **backend_options) -> dict:
    """Load every segment file of ``manifest`` with ``backend`` (onnxruntime, hobot_dnn)."""
    from graspnet_edge_ros.backends.registry import select_backend

    if backend == "onnxruntime":
        # Geometry kernels run between segment calls: idle ORT threads must not spin on the cores.
        backend_options = {"allow_spinning": False, **backend_options}
    runners = {}
    for entry in manifest.segments:
        engine = select_backend(manifest.segment_path(entry.name, backend), prefer=backend, **backend_options)
        _check_segment_file(entry, engine)
        runners[entry.name] = _BackendSegment(engine, entry.name)
    return runners


def _check_segment_file(entry, engine) -> None:
    """ModelFormatError when a segment file does not take/give what the manifest says.

    Sizes are compared as element counts: a compiled .bin may store another layout (NHWC).
    """
    for side, declared, specs in (("input", entry.input_shape, engine.inputs),
                                  ("output", entry.output_shape, engine.outputs)):
        if len(specs) != 1:
            raise ModelFormatError(f"segment {entry.name!r} ({engine.model_path}): expected one {side}, "
                                   f"the file has {len(specs)}")
        shape = specs[0].shape
        if all(isinstance(d, int) for d in shape) and int(np.prod(shape)) != int(np.prod(declared)):
            raise ModelFormatError(f"segment {entry.name!r} ({engine.model_path}): {side} shape {list(shape)} "
                                   f"does not match the manifest's {list(declared)}: manifest and segment "
                                   "files come from different exports")


class _BackendSegment:
    def __init__(self, engine, name: str = ""):
        self.engine = engine
        self.name = name

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        try:
            return self.engine.run({SEGMENT_INPUT: tensor})[SEGMENT_OUTPUT]
        except InputError as exc:
            # The split runtime built this tensor from the manifest: a mismatch is the model's fault.
            raise ModelError(f"segment {self.name!r} refused its input: {exc}") from exc


class _TorchSegment:
    def __init__(self, module):
        self.module = module

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(tensor)).numpy()


def torch_runners(checkpoint, head_chunk_seeds: int | None = None):
    """(manifest, runners) running the checkpoint's own modules in torch (the reference)."""
    from graspnet_edge_ros.model.checkpoint import load_graspnet
    from graspnet_edge_ros.model.segments import DEFAULT_HEAD_CHUNK_SEEDS, segment_modules

    model = checkpoint if not isinstance(checkpoint, (str, Path)) else load_graspnet(checkpoint)
    manifest = manifest_for_model(model, Path("."), head_chunk_seeds or DEFAULT_HEAD_CHUNK_SEEDS, files={})
    return manifest, {name: _TorchSegment(module) for name, module in segment_modules(model).items()}


def manifest_for_model(model, directory: Path, head_chunk_seeds: int, files: dict[str, dict[str, str]],
                       source: dict | None = None, layout: str = "grouped",
                       first_layers: str = "") -> SplitManifest:
    """The manifest describing ``model``'s segments; ``files`` maps segment -> {backend: file}."""
    from graspnet_edge_ros.model.segments import segment_specs
    from graspnet_edge_ros.runtime.manifest import SegmentEntry

    cfg = model.config
    entries = tuple(SegmentEntry(spec.name, dict(files.get(spec.name, {})), spec.input_shape, spec.output_shape,
                                 spec.description)
                    for spec in segment_specs(cfg, head_chunk_seeds, layout))
    manifest = SplitManifest(directory=Path(directory), segments=entries, model=cfg,
                             head_chunk_seeds=head_chunk_seeds, source=source or {}, layout=layout,
                             first_layers=first_layers)
    return dataclasses.replace(manifest, steps=geometry_steps(manifest))
