"""``manifest.json`` of a split export: segment files and shapes, GraspNet constants, geometry steps."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.export.names import FACTORED_SA, SPLIT_LAYOUTS
from graspnet_edge_ros.model.config import GraspNetConfig

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "graspnet_edge_split"
MANIFEST_VERSION = 1
# What the split runtime calls, in order (runtime/split.py).
REQUIRED_SEGMENTS = ("sa1", "sa2", "sa3", "sa4", "fp1", "fp2_approach", "grasp_head")


@dataclass(frozen=True)
class SegmentEntry:
    name: str
    files: dict[str, str]                 # backend name -> file name inside the directory
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    description: str = ""


@dataclass(frozen=True)
class SplitManifest:
    directory: Path
    segments: tuple[SegmentEntry, ...]
    model: GraspNetConfig
    head_chunk_seeds: int = 64
    source: dict = field(default_factory=dict)
    steps: tuple[dict, ...] = ()
    # backend -> how to produce its segment files when they are listed but not there yet
    # (e.g. the X5 .bin files before the conversion script ran).
    build_hints: dict = field(default_factory=dict)
    # "grouped" (every manifest written before layouts existed) or "factored" (model/segments.py);
    # a factored directory also holds the folded first SA2..SA4 layers in ``first_layers``.
    layout: str = "grouped"
    first_layers: str = ""

    @property
    def segment_names(self) -> list[str]:
        return [s.name for s in self.segments]

    def segment(self, name: str) -> SegmentEntry:
        for entry in self.segments:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def segment_path(self, name: str, backend: str) -> Path:
        entry = self.segment(name)
        if backend not in entry.files:
            raise ModelFormatError(
                f"segment '{name}' has no file for backend '{backend}' in {self.directory / MANIFEST_NAME} "
                f"(has: {sorted(entry.files)}); for hobot_dnn, convert the ONNX segments first "
                f"(see README, 'RDK X5')")
        path = self.directory / entry.files[backend]
        if backend in self.build_hints and not path.exists():
            raise ModelFormatError(f"segment '{name}': {path} not found for backend '{backend}'; "
                                   f"{self.build_hints[backend]}")
        return path

    def load_first_layers(self) -> dict:
        """{sa: (weight_xyz (C,3), weight_features (C,C_in), bias (C,))} of a "factored" export."""
        import numpy as np

        path = self.directory / self.first_layers
        try:
            with np.load(path) as data:
                weights = {name: tuple(np.ascontiguousarray(data[f"{name}.{part}"], dtype=np.float32)
                                       for part in ("weight_xyz", "weight_features", "bias"))
                           for name in FACTORED_SA}
        except (OSError, KeyError, ValueError) as exc:
            raise ModelFormatError(f"{path}: unreadable first-layer weights ({type(exc).__name__}: {exc})") from exc
        for name, (weight_xyz, weight_features, bias) in weights.items():
            channels = self.segment(name).input_shape[1]
            if weight_xyz.shape != (channels, 3) or bias.shape != (channels,) or weight_features.ndim != 2 \
                    or weight_features.shape[0] != channels:
                raise ModelFormatError(f"{path}: {name} first-layer weights {weight_xyz.shape}, "
                                       f"{weight_features.shape}, {bias.shape} do not fit its segment input "
                                       f"of {channels} channels")
        return weights

    def to_json(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "model": self.model.to_json(),
            "head_chunk_seeds": self.head_chunk_seeds,
            "layout": self.layout,
            **({"first_layers": self.first_layers} if self.first_layers else {}),
            "source": self.source,
            "segments": [
                {"name": s.name, "files": s.files, "description": s.description,
                 "input": {"name": "input", "shape": list(s.input_shape), "dtype": "float32"},
                 "output": {"name": "output", "shape": list(s.output_shape), "dtype": "float32"}}
                for s in self.segments
            ],
            "steps": list(self.steps),
            **({"build_hints": dict(self.build_hints)} if self.build_hints else {}),
        }

    def save(self) -> Path:
        path = self.directory / MANIFEST_NAME
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory) -> "SplitManifest":
        directory = Path(directory)
        path = directory / MANIFEST_NAME if directory.is_dir() else directory
        if not path.is_file():
            raise ModelFormatError(f"no {MANIFEST_NAME} in {directory}: not a split GraspNet export")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: unreadable manifest ({type(exc).__name__}: {exc})") from exc
        if not isinstance(data, dict):
            raise ModelFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != MANIFEST_FORMAT:
            raise ModelFormatError(f"{path}: format is {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        try:
            segments = tuple(
                SegmentEntry(str(s["name"]), {str(k): str(v) for k, v in dict(s["files"]).items()},
                             _shape(s["input"]["shape"]), _shape(s["output"]["shape"]), str(s.get("description", "")))
                for s in data["segments"])
            manifest = cls(directory=path.parent, segments=segments, model=GraspNetConfig.from_json(data["model"]),
                           head_chunk_seeds=int(data["head_chunk_seeds"]), source=dict(data.get("source", {})),
                           steps=tuple(data.get("steps", ())), build_hints=dict(data.get("build_hints", {})),
                           layout=str(data.get("layout", "grouped")), first_layers=str(data.get("first_layers", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFormatError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from exc
        problems = manifest.problems()
        if problems:
            raise ModelFormatError(f"{path}: invalid manifest: {'; '.join(problems)}")
        return manifest

    def problems(self) -> list[str]:
        """What makes this manifest unusable by the split runtime (empty when it is fine)."""
        m, problems = self.model, []
        names = self.segment_names
        missing = [name for name in REQUIRED_SEGMENTS if name not in names]
        if missing:
            problems.append(f"segments {missing} are missing")
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            problems.append(f"segments {duplicated} are listed twice")
        for name, value in (("head_chunk_seeds", self.head_chunk_seeds), ("num_view", m.num_view),
                            ("num_angle", m.num_angle), ("num_depth", m.num_depth),
                            ("crop_nsample", m.crop_nsample)):
            if value < 1:
                problems.append(f"{name} must be >= 1, got {value}")
        if len(m.sa_layers) != 4:
            problems.append(f"sa_layers must hold 4 layers, got {len(m.sa_layers)}")
        for index, (npoint, radius, nsample) in enumerate(m.sa_layers, 1):
            if npoint < 1 or nsample < 1 or not radius > 0:
                problems.append(f"sa_layers[{index}] needs npoint, nsample >= 1 and radius > 0, "
                                f"got {(npoint, radius, nsample)}")
        if len(m.sa_layers) == 4 and any(m.sa_layers[i][0] < m.sa_layers[i + 1][0] for i in range(3)):
            problems.append("sa_layers npoint must not grow from SA1 to SA4")
        if len(m.hmax_list) != m.num_depth:
            problems.append(f"hmax_list has {len(m.hmax_list)} entries, num_depth is {m.num_depth}")
        if not m.cylinder_radius > 0:
            problems.append(f"cylinder_radius must be > 0, got {m.cylinder_radius}")
        for entry in self.segments:
            if not entry.files:
                problems.append(f"segment {entry.name!r} lists no file")
        if self.layout not in SPLIT_LAYOUTS:
            problems.append(f"layout {self.layout!r} is not one of {list(SPLIT_LAYOUTS)}")
        elif self.layout == "factored" and not self.first_layers:
            problems.append("layout 'factored' needs a 'first_layers' weights file")
        if not problems:
            problems += self._shape_problems()
        return problems

    def _shape_problems(self) -> list[str]:
        """Segment shapes that contradict the model constants (same layout as model/segments.py)."""
        m = self.model
        (n1, _, k1), (n2, _, _) = m.sa_layers[:2]
        rows = self.head_chunk_seeds * m.num_depth
        expected = {
            ("sa1", "input"): (1, 3, n1, k1),
            ("fp2_approach", "output"): (1, 2 + m.num_view, n2, 1),
            ("grasp_head", "input"): (1, 3, rows, m.crop_nsample),
            ("grasp_head", "output"): (1, 4 * m.num_angle, rows, 1),
        }
        problems = []
        for (name, side), shape in expected.items():
            entry = self.segment(name)
            actual = entry.input_shape if side == "input" else entry.output_shape
            if tuple(actual) != shape:
                problems.append(f"segment {name!r} {side} shape {list(actual)} does not match the model "
                                f"constants (expected {list(shape)})")
        return problems


def _shape(values) -> tuple[int, ...]:
    shape = tuple(int(v) for v in values)
    if not shape or any(v < 1 for v in shape):
        raise ModelFormatError(f"a shape needs positive sizes, got {list(values)}")
    return shape

def geometry_steps(manifest: SplitManifest) -> tuple[dict, ...]:
    """Machine-readable description of what runs between segments (for ports to other runtimes)."""
    cfg = manifest.model
    (n1, r1, k1), (n2, r2, k2), (n3, r3, k3), (n4, r4, k4) = cfg.sa_layers
    if manifest.layout == "factored":
        first_layer = {"first_layer": f"relu(weight_xyz . xyz_norm + projected[:, j] + bias), projected = "
                                      f"weight_features . features per source point ({manifest.first_layers})"}
    else:
        first_layer = {}
    return (
        {"op": "furthest_point_sample", "input": "points (N,3)", "npoint": n1, "start_index": 0,
         "skip_if_norm2_le": 1e-3, "note": f"SA2..SA4 centres are the first {n2}/{n3}/{n4} FPS picks"},
        {"op": "ball_query_group", "radius": r1, "nsample": k1, "strict_less": True, "normalize_xyz": True,
         "features": None, "to_segment": "sa1"},
        {"op": "ball_query_group", "radius": r2, "nsample": k2, "normalize_xyz": True,
         "concat": "[xyz, sa1 features]", **first_layer, "to_segment": "sa2"},
        {"op": "ball_query_group", "radius": r3, "nsample": k3, "normalize_xyz": True,
         "concat": "[xyz, sa2 features]", **first_layer, "to_segment": "sa3"},
        {"op": "ball_query_group", "radius": r4, "nsample": k4, "normalize_xyz": True,
         "concat": "[xyz, sa3 features]", **first_layer, "to_segment": "sa4"},
        {"op": "three_nn_interpolate", "unknown": "sa3 centres", "known": "sa4 centres",
         "weights": "1/(euclidean+1e-8) normalised", "concat": "[interpolated, sa3 features]",
         "to_segment": "fp1"},
        {"op": "three_nn_interpolate", "unknown": "sa2 centres", "known": "sa3 centres",
         "concat": "[interpolated, sa2 features]", "to_segment": "fp2_approach"},
        {"op": "approach_decode", "objectness": "channels 0:2 (object if ch1 > ch0)",
         "views": f"channels 2:{2 + cfg.num_view}, argmax -> Fibonacci view v; R = f(-v, 0)"},
        {"op": "cylinder_query_group", "radius": cfg.cylinder_radius, "hmin": cfg.hmin,
         "hmax_list": list(cfg.hmax_list), "nsample": cfg.crop_nsample,
         "local": "(p - seed) @ R, no normalisation", "rows": "seed*num_depth + depth",
         "seeds": "object seeds only, padded to head_chunk_seeds", "to_segment": "grasp_head"},
        {"op": "decode", "head_channels": "0:12 score, 12:24 angle logits, 24:36 width, 36:48 tolerance"},
    )
