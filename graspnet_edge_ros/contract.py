"""The contract between the exporters and the runtimes: tensor names, specs and the split manifest.

Torch-free and dependency-free (errors and the GraspNet constants only), so the robot runtime, the
backends and the exporters all import it and none of them imports another for it: the exporter
writes files that satisfy this module; the runtime reads files against it.

* single ONNX file: input ``SINGLE_FILE_INPUT`` (1, N, 3), outputs ``SINGLE_FILE_OUTPUTS``;
* split export: each segment has one input ``SEGMENT_INPUT`` and one output ``SEGMENT_OUTPUT``, and
  ``manifest.json`` (``SplitManifest``) lists the segment files, shapes, constants and geometry steps
  (a "factored" backbone layout adds the folded first SA2..SA4 layers, ``FIRST_LAYERS_FILE``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.model.config import GraspNetConfig


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and numpy dtype name (e.g. "float32") of one model input or output.

    A ``None`` dimension is dynamic (any size is accepted).
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def type_text(self) -> str:
        """E.g. "float32[1,20000,3]"; "?" marks a dynamic dimension."""
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"

    def describe(self) -> str:
        return f"{self.name}: {self.type_text()}"


# -- tensor names ----------------------------------------------------------------------------------
# Every split segment has one input and one output tensor with these names.
SEGMENT_INPUT = "input"
SEGMENT_OUTPUT = "output"

SINGLE_FILE_INPUT = "point_clouds"
# What pred_decode reads, plus the view diagnostics (official end_points names, batch 1).
SINGLE_FILE_OUTPUTS = ("objectness_score", "view_score", "fp2_xyz", "grasp_top_view_inds",
                       "grasp_top_view_xyz", "grasp_top_view_rot", "grasp_score_pred",
                       "grasp_angle_cls_pred", "grasp_width_pred", "grasp_tolerance_pred")


def single_file_output_specs(config, num_seed: int) -> list[TensorSpec]:
    """Specs of SINGLE_FILE_OUTPUTS for a GraspNetConfig-like ``config``."""
    a, d, v, s = config.num_angle, config.num_depth, config.num_view, num_seed
    shapes = {
        "objectness_score": ((1, 2, s), "float32"),
        "view_score": ((1, s, v), "float32"),
        "fp2_xyz": ((1, s, 3), "float32"),
        "grasp_top_view_inds": ((1, s), "int64"),
        "grasp_top_view_xyz": ((1, s, 3), "float32"),
        "grasp_top_view_rot": ((1, s, 3, 3), "float32"),
        "grasp_score_pred": ((1, a, s, d), "float32"),
        "grasp_angle_cls_pred": ((1, a, s, d), "float32"),
        "grasp_width_pred": ((1, a, s, d), "float32"),
        "grasp_tolerance_pred": ((1, a, s, d), "float32"),
    }
    return [TensorSpec(name, *shapes[name]) for name in SINGLE_FILE_OUTPUTS]


# -- manifest.json of a split export ------------------------------------------------------------
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "graspnet_edge_split"
MANIFEST_VERSION = 1
CROP_FEATURES = 256  # CloudCrop MLP output channels (official SharedMLP [3, 64, 128, 256])
SA1_FEATURES = 128   # SA1 output channels (official mlp [0, 64, 64, 128])
FACTORED_CHANNELS = 128  # first-layer channels of SA2..SA4 (official mlps [.., 128, 128, 256]): factored inputs
# SA1 groups per sa1 call in the CPU export. SA2 reads only ~38 % of SA1's 2048 groups (its ball
# query keeps the first 32 in FPS order), so the runtime runs SA1 on those only, in calls of this
# many groups; None = all groups in one call (the X5 kit's calibrated segment, the torch reference).
DEFAULT_SA1_CHUNK_GROUPS = 128
# Centres per sa2/sa3/sa4 call in the factored layout (the CPU export): SA2's 1024 centres in one
# call need 50 MB of ONNX Runtime activations, first touched (page faults) in the first two runs of
# a process (measured: 43 ms for each of the first two sa2 runs, 20 ms warm); in calls of 256 the
# arena reuses a quarter of that. None = all centres in one call.
DEFAULT_SA_CHUNK_CENTRES = 256
# What the split runtime calls, in order (runtime/split.py), before the grasp head.
BACKBONE_SEGMENTS = ("sa1", "sa2", "sa3", "sa4", "fp1", "fp2_approach")
# The grasp head's two layouts (runtime/split.py): a manifest lists the segments of one or both.
# per_depth: CloudCrop MLP on each (seed, depth)'s 64 cylinder samples + max + heads in one segment
#   (what the X5 BPU runs, calibrated and checked there);
# shared_points: the crop MLP once per distinct (seed, point) of the 4 nested cylinders, max-pooled
#   per depth in a numba kernel, then OperationNet + ToleranceNet (same outputs, ~2.5x less work).
HEAD_LAYOUTS = {"per_depth": ("grasp_head",), "shared_points": ("crop_mlp", "grasp_head_post")}
# Layouts each backend may run, best first; the first one whose files the manifest has is used.
HEAD_LAYOUT_PREFERENCE = {"hobot_dnn": ("per_depth",)}
DEFAULT_HEAD_LAYOUT_PREFERENCE = ("shared_points", "per_depth")
# The backbone's layouts (manifest key ``layout``, independent of the head layouts; model/segments.py):
# "grouped" SA segments run their whole MLP (the X5 kit; every manifest written before layouts
# existed); "factored" SA2..SA4 segments start after their first layer, which the runtime applies
# from the folded weights in FIRST_LAYERS_FILE.
SPLIT_LAYOUTS = ("grouped", "factored")
FACTORED_SA = ("sa2", "sa3", "sa4")
FIRST_LAYERS_FILE = "first_layers.npz"


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
    # "float32", or "int8" for a statically quantised model (quantize.py), which then says in
    # ``quantization`` how and on what it was calibrated. The segments' inputs/outputs stay float32.
    precision: str = "float32"
    quantization: dict = field(default_factory=dict)
    # Backbone layout (SPLIT_LAYOUTS): "grouped" or "factored"; a factored directory also holds the
    # folded first SA2..SA4 layers in the file ``first_layers``.
    layout: str = "grouped"
    first_layers: str = ""

    @property
    def segment_names(self) -> list[str]:
        return [s.name for s in self.segments]

    @property
    def head_layouts(self) -> list[str]:
        """Grasp-head layouts (HEAD_LAYOUTS) whose segments this manifest lists."""
        names = set(self.segment_names)
        return [layout for layout, segments in HEAD_LAYOUTS.items() if names.issuperset(segments)]

    def head_layout_for(self, backend: str) -> str:
        """The grasp-head layout ``backend`` runs: its first preferred layout with files for it."""
        preference = HEAD_LAYOUT_PREFERENCE.get(backend, DEFAULT_HEAD_LAYOUT_PREFERENCE)
        for layout in preference:
            if layout in self.head_layouts and all(backend in self.segment(name).files
                                                   for name in HEAD_LAYOUTS[layout]):
                return layout
        raise ModelFormatError(
            f"{self.directory / MANIFEST_NAME} has no grasp head that '{backend}' runs: it needs the segments "
            f"of one of {[list(HEAD_LAYOUTS[layout]) for layout in preference]} with a file for '{backend}' "
            f"(for hobot_dnn, convert the ONNX segments first; see README, 'RDK X5')")

    @property
    def crop_chunk_points(self) -> int:
        """Crop points per ``crop_mlp`` call (its input width), 0 without the shared_points layout."""
        names = self.segment_names
        return self.segment("crop_mlp").input_shape[2] if "crop_mlp" in names else 0

    @property
    def crop_features_points_major(self) -> bool:
        """crop_mlp gives (1, P, 1, C) (exports since 2026-12-07) rather than (1, C, P, 1) (earlier ones)."""
        chunk = self.crop_chunk_points
        return bool(chunk) and tuple(self.segment("crop_mlp").output_shape) == (1, chunk, 1, CROP_FEATURES)

    def sa_chunk_centres(self, name: str) -> int:
        """Centres per call of SA segment ``name`` (its output height)."""
        return self.segment(name).output_shape[2]

    @property
    def sa_channels_last(self) -> bool:
        """Factored SA segments take (1, S, K, 128) (exports since 2026-12-08) rather than (1, 128, S, K).

        Read off sa2's input shape; ModelFormatError when both layouts give that shape (S = K = 128).
        """
        if self.layout != "factored":
            return False
        height, nsample = self.sa_chunk_centres("sa2"), self.model.sa_layers[1][2]
        if height == nsample == FACTORED_CHANNELS:
            raise ModelFormatError(f"{self.directory / MANIFEST_NAME}: sa2 takes {height} centres of {nsample} "
                                   f"samples of {FACTORED_CHANNELS} channels: channels first or last cannot be told "
                                   "apart; export with another sa_chunk_centres")
        return tuple(self.segment("sa2").input_shape) == (1, height, nsample, FACTORED_CHANNELS)

    @property
    def sa1_chunk_groups(self) -> int:
        """SA1 groups per ``sa1`` call (its input height); fewer than SA1's centres: run only those SA2 reads."""
        return self.segment("sa1").input_shape[2]

    def segment(self, name: str) -> SegmentEntry:
        for entry in self.segments:
            if entry.name == name:
                return entry
        raise ModelFormatError(f"no segment {name!r} in {self.directory / MANIFEST_NAME} "
                               f"(has: {self.segment_names})")

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
        previous = dict(zip(FACTORED_SA, ("sa1",) + tuple(FACTORED_SA)))  # the segment whose features it reads
        for name, (weight_xyz, weight_features, bias) in weights.items():
            channels = self.segment(name).input_shape[3 if self.sa_channels_last else 1]
            features = self.segment(previous[name]).output_shape[1]
            if weight_xyz.shape != (channels, 3) or bias.shape != (channels,) \
                    or weight_features.shape != (channels, features):
                raise ModelFormatError(f"{path}: {name} first-layer weights {weight_xyz.shape}, "
                                       f"{weight_features.shape}, {bias.shape} do not fit its segment input "
                                       f"of {channels} channels from {features} {previous[name]} features")
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
            "head_layouts": self.head_layouts,
            "segments": [
                {"name": s.name, "files": s.files, "description": s.description,
                 "input": {"name": "input", "shape": list(s.input_shape), "dtype": "float32"},
                 "output": {"name": "output", "shape": list(s.output_shape), "dtype": "float32"}}
                for s in self.segments
            ],
            "steps": list(self.steps),
            **({"build_hints": dict(self.build_hints)} if self.build_hints else {}),
            **({"precision": self.precision, "quantization": dict(self.quantization)}
               if self.precision != "float32" else {}),
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
                           precision=str(data.get("precision", "float32")),
                           quantization=dict(data.get("quantization", {})),
                           layout=str(data.get("layout", "grouped")), first_layers=str(data.get("first_layers", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFormatError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from exc
        problems = manifest.problems()
        declared = data.get("head_layouts")
        if declared is not None and sorted(map(str, declared)) != sorted(manifest.head_layouts):
            problems.append(f"head_layouts says {declared}, the segments give {manifest.head_layouts}")
        if problems:
            raise ModelFormatError(f"{path}: invalid manifest: {'; '.join(problems)}")
        return manifest

    def problems(self) -> list[str]:
        """What makes this manifest unusable by the split runtime (empty when it is fine)."""
        m, problems = self.model, []
        names = self.segment_names
        missing = [name for name in BACKBONE_SEGMENTS if name not in names]
        if missing:
            problems.append(f"segments {missing} are missing")
        if not self.head_layouts:
            problems.append(f"no grasp head: segments {' or '.join(str(list(s)) for s in HEAD_LAYOUTS.values())} "
                            "are missing")
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
            if len(entry.input_shape) != 4 or len(entry.output_shape) != 4:
                problems.append(f"segment {entry.name!r} must take and give 4-D tensors, got "
                                f"{list(entry.input_shape)} -> {list(entry.output_shape)}")
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
        groups = self.sa1_chunk_groups
        expected = {
            ("sa1", "input"): (1, 3, min(groups, n1), k1),
            ("sa1", "output"): (1, SA1_FEATURES, min(groups, n1), 1),
            ("fp2_approach", "output"): (1, 2 + m.num_view, n2, 1),
        }
        problems = []
        for name, (centres, _, nsample) in zip(("sa2", "sa3", "sa4"), m.sa_layers[1:]):
            height = self.sa_chunk_centres(name)
            if not 1 <= height <= centres:
                problems.append(f"segment {name!r} takes {height} centres per call, SA has {centres}")
            expected[(name, "output")] = (1, 256, height, 1)
            if self.layout == "factored":
                expected[(name, "input")] = ((1, height, nsample, FACTORED_CHANNELS) if self.sa_channels_last
                                             else (1, FACTORED_CHANNELS, height, nsample))
            elif height != centres:
                problems.append(f"segment {name!r} of the grouped layout takes {height} centres per call, "
                                f"it needs all {centres}")
        if "per_depth" in self.head_layouts:
            expected[("grasp_head", "input")] = (1, 3, rows, m.crop_nsample)
            expected[("grasp_head", "output")] = (1, 4 * m.num_angle, rows, 1)
        if "shared_points" in self.head_layouts:
            chunk = self.crop_chunk_points
            expected[("crop_mlp", "input")] = (1, 3, chunk, 1)
            expected[("crop_mlp", "output")] = ((1, chunk, 1, CROP_FEATURES) if self.crop_features_points_major
                                                else (1, CROP_FEATURES, chunk, 1))
            expected[("grasp_head_post", "input")] = (1, CROP_FEATURES, rows, 1)
            expected[("grasp_head_post", "output")] = (1, 4 * m.num_angle, rows, 1)
            if chunk <= m.num_depth * m.crop_nsample:  # whole seeds per call plus one padding column
                problems.append(f"segment 'crop_mlp' takes {chunk} points per call, it needs more than one "
                                f"seed's {m.num_depth} x {m.crop_nsample} crop samples")
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


def _centre_calls(manifest: SplitManifest, name: str, centres: int) -> dict:
    height = manifest.sa_chunk_centres(name)
    if height >= centres:
        return {}
    return {"centres": f"{height} per call, in FPS order, the last call padded with its last centre"}


def _input_layout(manifest: SplitManifest) -> dict:
    if manifest.layout != "factored":
        return {}
    layout = "channels last (1, S, K, C)" if manifest.sa_channels_last else "channels first (1, C, S, K)"
    return {"input_layout": layout}


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
         "features": None, "to_segment": "sa1",
         **({"centres": f"only the SA1 centres SA2's ball query (radius {r2}, nsample {k2}) reads, in sorted "
                        f"order, {manifest.sa1_chunk_groups} per call, the last call padded with its last centre"}
            if manifest.sa1_chunk_groups < n1 else {})},
        {"op": "ball_query_group", "radius": r2, "nsample": k2, "normalize_xyz": True,
         "concat": "[xyz, sa1 features]", **first_layer, **_centre_calls(manifest, "sa2", n2),
         **_input_layout(manifest), "to_segment": "sa2"},
        {"op": "ball_query_group", "radius": r3, "nsample": k3, "normalize_xyz": True,
         "concat": "[xyz, sa2 features]", **first_layer, **_centre_calls(manifest, "sa3", n3),
         **_input_layout(manifest), "to_segment": "sa3"},
        {"op": "ball_query_group", "radius": r4, "nsample": k4, "normalize_xyz": True,
         "concat": "[xyz, sa3 features]", **first_layer, **_centre_calls(manifest, "sa4", n4),
         **_input_layout(manifest), "to_segment": "sa4"},
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
         "seeds": "object seeds only, padded to head_chunk_seeds",
         "to_segment": "grasp_head (per_depth layout) or crop_mlp (shared_points layout)"},
        {"op": "crop_union_pool", "layout": "shared_points",
         "crop_mlp": "local xyz of each seed's distinct cylinder points (union over depths), whole seeds "
                     "per call, zero-padded; its output is points-major (1, P, 1, C) (channels-major (1, C, P, 1) in "
                     "exports before 2026-12-07)", "pool": "per (seed, depth): max of crop_mlp features over its "
                     "members (padding repeats a member, so the max is the official one)",
         "rows": "seed*num_depth + depth", "to_segment": "grasp_head_post"},
        {"op": "decode", "head_channels": "0:12 score, 12:24 angle logits, 24:36 width, 36:48 tolerance"},
    )
