"""One callable for every GraspNet artefact: points (N, 3) -> raw outputs (official names, batch 1).

Artefacts: a checkpoint (torch reference), a single ONNX file (any backend that loads .onnx), or a
split directory with ``manifest.json`` (native geometry + segments through onnxruntime, hobot_dnn
or torch).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from graspnet_edge_ros.errors import InputError, ModelFormatError
from graspnet_edge_ros.formats import get_format, is_auto_backend, split_backends, thread_options  # noqa: F401
from graspnet_edge_ros.contract import MANIFEST_NAME, SINGLE_FILE_INPUT, SINGLE_FILE_OUTPUTS


class GraspNetRunner:
    """Runs GraspNet on exact input points. Build with ``load_graspnet_runner``.

    Attributes:
        kind: "split", "single" or "torch".
        backend_name: the runtime that runs the learned parts.
        num_points: the fixed point count the artefact needs, or None when any N works.
        model_id: human-readable id (file name + short hash) published with every result.
        model_type: "graspnet" (GraspModelRunner interface).
    """

    model_type = "graspnet"

    def __init__(self, kind: str, backend_name: str, call, num_points: int | None, model_id: str,
                 timings_source=None):
        self.kind, self.backend_name, self.num_points, self.model_id = kind, backend_name, num_points, model_id
        self._call = call
        self._timings_source = timings_source

    def __call__(self, points: np.ndarray, skip_background_seeds: bool = True,
                 seed_gate=None) -> dict[str, np.ndarray]:
        """Args: points (N, 3) float32 camera frame, metres. Returns official raw outputs, batch 1.

        ``seed_gate`` (``candidates.SeedGate``): the split runtime computes the grasp head only of
        the seeds it passes; single files and the torch reference compute every head (ignored).
        """
        points = np.ascontiguousarray(points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 3:
            raise InputError(f"points must be (N, 3), got {points.shape}")
        if self.num_points is not None and len(points) != self.num_points:
            raise InputError(f"this model takes exactly {self.num_points} points, got {len(points)} "
                             f"(re-export with --num-points {len(points)} or sample to {self.num_points})")
        return self._call(points, skip_background_seeds, seed_gate)

    @property
    def last_timings_ms(self) -> dict[str, float]:
        """Per-stage times of the last call (split runtime only; empty otherwise)."""
        return dict(self._timings_source.last_timings_ms) if self._timings_source is not None else {}


def _model_id(path: Path) -> str:
    from graspnet_edge_ros.digest import file_digest

    target = path / MANIFEST_NAME if path.is_dir() else path
    return f"graspnet:{path.name}@{file_digest(target, 8)}"


def load_graspnet_runner(model_path, backend: str | None = None, **backend_options) -> GraspNetRunner:
    """Load ``model_path`` (checkpoint, .onnx file, or split directory) with ``backend``.

    Args:
        backend: for a split directory, the runtime of its segments (default onnxruntime); for a
            single file, the backend name (default: chosen by suffix); "torch" for checkpoints.
        **backend_options: passed to the backend constructor (e.g. intra_op_threads).
    """
    from graspnet_edge_ros.backends.registry import select_backend

    # "auto" / "": chosen below from the file; aliases become the table's name.
    backend = None if is_auto_backend(backend) else get_format(backend).name
    path = Path(model_path)
    if not path.exists():
        raise ModelFormatError(f"model not found: {path}")
    if path.is_dir() and not (path / MANIFEST_NAME).is_file():
        raise ModelFormatError(f"{path} is a directory without {MANIFEST_NAME}: not a split GraspNet export "
                               f"(create one with `graspnet-edge export --split --output {path}`)")
    model_id = _model_id(path)
    if path.is_dir():
        from graspnet_edge_ros.runtime.split import SplitGraspNet

        runs_split = split_backends()
        if backend is not None and backend not in runs_split:
            raise ModelFormatError(f"a split directory runs with {' or '.join(runs_split)}; "
                                   f"for {backend} pass the checkpoint")
        backend = backend or runs_split[0]
        net = SplitGraspNet.from_directory(path, backend=backend, **backend_options)
        return GraspNetRunner("split", backend, net, None, model_id, timings_source=net)

    engine = select_backend(path, prefer=backend, model_type="graspnet", **backend_options)
    _check_single_file_contract(engine)
    declared_points = engine.inputs[0].shape[1]

    def call(points: np.ndarray, _skip_background_seeds: bool, _seed_gate) -> dict[str, np.ndarray]:
        outputs = engine.run({SINGLE_FILE_INPUT: points[None]})
        outputs["point_clouds"] = points[None]
        return outputs

    kind = "torch" if engine.name == "torch" else "single"
    return GraspNetRunner(kind, engine.name, call, declared_points, model_id)


def _check_single_file_contract(engine) -> None:
    names_in = [spec.name for spec in engine.inputs]
    names_out = {spec.name for spec in engine.outputs}
    missing = [name for name in SINGLE_FILE_OUTPUTS if name not in names_out]
    if names_in != [SINGLE_FILE_INPUT] or missing:
        raise ModelFormatError(
            f"{engine.model_path.name} is not a GraspNet export: inputs {names_in} (expected "
            f"['{SINGLE_FILE_INPUT}']), missing outputs {missing}")
    shape = engine.inputs[0].shape
    if len(shape) != 3 or shape[2] != 3:
        raise ModelFormatError(f"{engine.model_path.name}: input shape {shape}, expected (1, N, 3)")
