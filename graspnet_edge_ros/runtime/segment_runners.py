"""Segment runners for ``SplitGraspNet``: one callable per segment file, run by a backend.

The torch reference runners (the checkpoint's own modules) are ``model.segments.torch_segment_runners``.
"""
from __future__ import annotations

import numpy as np

from graspnet_edge_ros.contract import (BACKBONE_SEGMENTS, HEAD_LAYOUTS, MANIFEST_NAME, SEGMENT_INPUT, SEGMENT_OUTPUT,
                                        SplitManifest)
from graspnet_edge_ros.errors import InputError, ModelError, ModelFormatError


def backend_runners(manifest: SplitManifest, backend: str, head_layout: str | None = None,
                    **backend_options) -> dict:
    """Load the segments ``backend`` (onnxruntime, hobot_dnn) runs: the backbone and one grasp-head layout.

    Args:
        head_layout: a key of ``HEAD_LAYOUTS``; default ``manifest.head_layout_for(backend)``.
    """
    from graspnet_edge_ros.backends.registry import select_backend

    layout = head_layout or manifest.head_layout_for(backend)
    if layout not in manifest.head_layouts:
        raise ModelFormatError(f"{manifest.directory / MANIFEST_NAME} has no '{layout}' grasp head "
                               f"(has: {manifest.head_layouts})")
    wanted = set(BACKBONE_SEGMENTS) | set(HEAD_LAYOUTS[layout])

    if backend == "onnxruntime":
        # Geometry kernels run between segment calls: idle ORT threads must not spin on the cores.
        backend_options = {"allow_spinning": False, **backend_options}
    runners = {}
    for entry in (e for e in manifest.segments if e.name in wanted):
        engine = select_backend(manifest.segment_path(entry.name, backend), prefer=backend, **backend_options)
        _check_segment_file(entry, engine, exact=backend == "onnxruntime")
        runners[entry.name] = _BackendSegment(engine, entry.name)
    return runners


def _check_segment_file(entry, engine, exact: bool = False) -> None:
    """ModelFormatError when a segment file does not take/give what the manifest says.

    ``exact``: compare shapes (ONNX files; crop_mlp's two output layouts have the same size);
    otherwise element counts: a compiled .bin may store another layout (NHWC).
    """
    for side, declared, specs in (("input", entry.input_shape, engine.inputs),
                                  ("output", entry.output_shape, engine.outputs)):
        if len(specs) != 1:
            raise ModelFormatError(f"segment {entry.name!r} ({engine.model_path}): expected one {side}, "
                                   f"the file has {len(specs)}")
        shape = specs[0].shape
        if all(isinstance(d, int) for d in shape) and (
                tuple(shape) != tuple(declared) if exact else int(np.prod(shape)) != int(np.prod(declared))):
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
