"""Segment runners for ``SplitGraspNet``: one callable per segment, from a backend or from torch."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

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
        runners[entry.name] = _BackendSegment(engine)
    return runners


class _BackendSegment:
    def __init__(self, engine):
        self.engine = engine

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        return self.engine.run({SEGMENT_INPUT: tensor})[SEGMENT_OUTPUT]


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
                       source: dict | None = None) -> SplitManifest:
    """The manifest describing ``model``'s segments; ``files`` maps segment -> {backend: file}."""
    from graspnet_edge_ros.model.segments import segment_specs
    from graspnet_edge_ros.runtime.manifest import SegmentEntry

    cfg = model.config
    entries = tuple(SegmentEntry(spec.name, dict(files.get(spec.name, {})), spec.input_shape, spec.output_shape,
                                 spec.description)
                    for spec in segment_specs(cfg, head_chunk_seeds))
    manifest = SplitManifest(directory=Path(directory), segments=entries, model=cfg,
                             head_chunk_seeds=head_chunk_seeds, source=source or {})
    return dataclasses.replace(manifest, steps=geometry_steps(manifest))
