"""``manifest.json`` of a split export: segment files and shapes, GraspNet constants, geometry steps."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.model.config import GraspNetConfig

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "graspnet_edge_split"
MANIFEST_VERSION = 1


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

    def to_json(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "model": self.model.to_json(),
            "head_chunk_seeds": self.head_chunk_seeds,
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
            if data.get("format") != MANIFEST_FORMAT:
                raise ModelFormatError(f"{path}: format is {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
            segments = tuple(
                SegmentEntry(s["name"], dict(s["files"]), tuple(s["input"]["shape"]), tuple(s["output"]["shape"]),
                             s.get("description", ""))
                for s in data["segments"])
            return cls(directory=path.parent, segments=segments, model=GraspNetConfig.from_json(data["model"]),
                       head_chunk_seeds=int(data["head_chunk_seeds"]), source=dict(data.get("source", {})),
                       steps=tuple(data.get("steps", ())), build_hints=dict(data.get("build_hints", {})))
        except ModelFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from exc


def geometry_steps(manifest: SplitManifest) -> tuple[dict, ...]:
    """Machine-readable description of what runs between segments (for ports to other runtimes)."""
    cfg = manifest.model
    (n1, r1, k1), (n2, r2, k2), (n3, r3, k3), (n4, r4, k4) = cfg.sa_layers
    return (
        {"op": "furthest_point_sample", "input": "points (N,3)", "npoint": n1, "start_index": 0,
         "skip_if_norm2_le": 1e-3, "note": f"SA2..SA4 centres are the first {n2}/{n3}/{n4} FPS picks"},
        {"op": "ball_query_group", "radius": r1, "nsample": k1, "strict_less": True, "normalize_xyz": True,
         "features": None, "to_segment": "sa1"},
        {"op": "ball_query_group", "radius": r2, "nsample": k2, "normalize_xyz": True,
         "concat": "[xyz, sa1 features]", "to_segment": "sa2"},
        {"op": "ball_query_group", "radius": r3, "nsample": k3, "normalize_xyz": True,
         "concat": "[xyz, sa2 features]", "to_segment": "sa3"},
        {"op": "ball_query_group", "radius": r4, "nsample": k4, "normalize_xyz": True,
         "concat": "[xyz, sa3 features]", "to_segment": "sa4"},
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
