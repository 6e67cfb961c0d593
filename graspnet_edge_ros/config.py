"""Detector configuration: small frozen dataclasses, one per stage, and the one strict way values get in.

``DetectorConfig`` groups the parameters by the stage that reads them (``config.camera``,
``config.decode``, ``config.collision``, ...); each stage is handed its own group. Every field of
every group is one ROS parameter of the same name (names are unique across groups, units are in
the names), so the node declares its parameters from these tables and the flat view
(``DetectorConfig.from_flat``, ``replace``, ``flat``) maps 1:1 onto them.

Values from YAML files, the command line and ROS parameters all pass through
``coerce_parameter`` (ROS typing: a bool is only true/false, never a string or a number; an
integer is accepted for a float; strings are not numbers), then ``validate`` (ranges and the
rules between parameters). A refusal is a ConfigError with the same one-line message on every
path, e.g. ``nms_enabled must be true or false, got the string 'flase'``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from dataclasses import dataclass, field, fields

from graspnet_edge_ros import NODE_NAME
from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.grasps import MAX_OBJECT_ID

POSE_CONVENTIONS = ("z_approach_x_closing", "x_approach_y_closing")
TWIN_POLICIES = ("keep", "closest_to_reference")
TABLE_PLANE_MODES = ("none", "fit", "given")
WORKSPACE_MODES = ("auto", "plane", "off")
MODEL_TYPES = ("auto", "graspnet", "grconvnet", "affga")

# Upper bounds keep one frame's cost finite (3 M points took 14 s and 1.2 GB per frame).
MAX_NUM_POINTS = 100_000

# Renamed parameters: old name -> new name. The old names still work for one release (YAML, CLI,
# node start) with a one-line warning; giving both is refused.
DEPRECATED_PARAMETERS = {
    # "grasp_max_width_m" sat next to gripper_max_width_m with the opposite effect: the decoder
    # clamps widths to it, while the gripper width filter rejects wider grasps.
    "grasp_max_width_m": "decode_width_clamp_m",
}


def _f(default, description: str, *, bounds: tuple[float, float] | None = None,
       element_bounds: tuple[float, float] | None = None, restart: bool = False, int_array: bool = False):
    """A parameter field. ``bounds``: accepted [low, high] (inclusive), also declared as the ROS
    range; ``element_bounds``: the same for every element of an array; ``restart``: needs a new
    model (the node refuses runtime changes)."""
    metadata = {"description": description, "bounds": bounds, "element_bounds": element_bounds,
                "restart": restart, "int_array": int_array}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ModelConfig:
    """The model and its runtime (restart required)."""

    model_path: str = _f("", "GraspNet artefact (checkpoint, single .onnx, split directory) or planar model "
                             "(.pt/.onnx)", restart=True)
    model_type: str = _f("auto", "auto | graspnet | grconvnet | affga; auto = detected from the model file",
                         restart=True)
    backend: str = _f("auto", "runtime: auto (from the model file: .pth/.pt torch, .onnx onnxruntime, .bin/.hbm "
                              "hobot_dnn, split directory onnxruntime or hobot_dnn) | onnxruntime | hobot_dnn | torch",
                      restart=True)
    num_threads: int = _f(0, "intra-op threads of the backend (0 = runtime default)", bounds=(0, 256), restart=True)
    onnx_providers: str = _f("cpu", "onnxruntime execution providers in order of preference, comma-separated: "
                                    "cpu | cuda | tensorrt | openvino; one not installed falls back to CPU "
                                    "with one warning", restart=True)


@dataclass(frozen=True)
class CameraConfig:
    """Depth -> points: depth range, workspace (mask, box, or the automatic crop above the
    support plane) and the sampling of the model's input."""

    num_points: int = _f(20000, "points sampled from the workspace as model input", bounds=(1, MAX_NUM_POINTS))
    depth_scale: float = _f(0.001, "metres per unit of 16UC1 depth", bounds=(1e-6, 1.0))
    min_depth_m: float = _f(0.0, "ignore depth at or below this distance", bounds=(0.0, 20.0))
    max_depth_m: float = _f(3.0, "ignore depth beyond this distance", bounds=(0.0, 20.0))
    workspace_mask_path: str = _f("", "optional PNG mask (non-zero = workspace), same size as the depth image")
    workspace_min_xyz: tuple = _f((), "optional workspace box corner [x, y, z] in the camera frame, m",
                                  element_bounds=(-20.0, 20.0))
    workspace_max_xyz: tuple = _f((), "optional workspace box corner [x, y, z] in the camera frame, m",
                                  element_bounds=(-20.0, 20.0))
    sampling_seed: int = _f(-1, "seed of the point sampling (-1 = random, like the official demo)",
                            bounds=(-1, 2**31 - 1))
    workspace_mode: str = _f("auto", "auto: crop to the space above the support plane when no mask or box "
                                     "is given | plane: always (combined with mask/box) | off")
    workspace_max_height_m: float = _f(0.35, "auto workspace: keep points up to this height above the plane",
                                       bounds=(-5.0, 5.0))
    workspace_min_height_m: float = _f(-0.02, "auto workspace: keep points down to this height (the table "
                                              "surface itself stays in the cloud)", bounds=(-5.0, 5.0))
    workspace_extent_margin_m: float = _f(0.05, "auto workspace: margin around the plane's observed extent",
                                          bounds=(0.0, 5.0))


@dataclass(frozen=True)
class GraspDecodeConfig:
    """GraspNet's decoder (official constants; GraspNet-Edge retrained weights use 0.067 / 0.045)."""

    decode_width_clamp_m: float = _f(0.1, "the decoder clamps every decoded width to this (GRASP_MAX_WIDTH); "
                                          "formerly grasp_max_width_m", bounds=(1e-4, 1.0))
    grasp_max_tolerance_m: float = _f(0.05, "decoder tolerance normaliser (GRASP_MAX_TOLERANCE)",
                                      bounds=(1e-4, 1.0))


@dataclass(frozen=True)
class PlanarConfig:
    """Planar networks (GR-ConvNet, SGDN/AFFGA): decode and lifting to 6-DoF."""

    planar_num_grasps: int = _f(10, "planar grasps decoded per frame (strongest quality-map peaks)",
                                bounds=(1, 1000))
    planar_min_quality: float = _f(-1.0, "quality-map peak threshold; < 0 = the network's own (GR-ConvNet 0.2, "
                                         "AFFGA 0.5)", bounds=(-1.0, 1.0))
    planar_width_scale: float = _f(150.0, "GR-ConvNet width map to pixels (150 as the repo; 112 = label scale)",
                                   bounds=(1e-3, 10_000.0))
    planar_depth_window_px: int = _f(9, "odd window around the grasp pixel for the robust grasp depth",
                                     bounds=(1, 101))
    planar_insertion_depth_m: float = _f(0.01, "planar grasps: fingertips reach this far beyond the surface",
                                         bounds=(0.0, 0.5))


@dataclass(frozen=True)
class CollisionConfig:
    """The model-free collision check (graspnetAPI's finger model)."""

    collision_thresh: float = _f(0.01, "model-free collision IoU threshold (<= 0 disables the check)",
                                 bounds=(-1.0, 1.0))
    collision_voxel_size_m: float = _f(0.01, "voxel size of the scene cloud for the collision check",
                                       bounds=(0.001, 0.5))
    collision_approach_dist_m: float = _f(0.05, "approach corridor length checked behind the palm",
                                          bounds=(0.0, 1.0))
    finger_width_m: float = _f(0.01, "finger thickness used by the collision check", bounds=(1e-4, 0.5))
    finger_length_m: float = _f(0.06, "finger length used by the collision check", bounds=(1e-4, 0.5))


@dataclass(frozen=True)
class NmsConfig:
    """Grasp non-maximum suppression."""

    nms_enabled: bool = _f(True, "remove near-duplicate grasps")
    nms_translation_m: float = _f(0.03, "NMS translation threshold", bounds=(0.0, 1.0))
    nms_rotation_deg: float = _f(30.0, "NMS rotation threshold", bounds=(0.0, 180.0))

    @property
    def nms_rotation_rad(self) -> float:
        return math.radians(self.nms_rotation_deg)


@dataclass(frozen=True)
class FilterConfig:
    """Score, approach cone and table-height filters, and how many grasps are published."""

    min_score: float = _f(0.0, "reject grasps scoring below this", bounds=(-1000.0, 1000.0))
    max_grasps: int = _f(50, "publish at most this many grasps (best first)", bounds=(1, 10_000))
    approach_direction: tuple = _f((0.0, 0.0, 1.0), "cone axis for the approach filter (camera frame)",
                                   element_bounds=(-1e3, 1e3))
    approach_max_angle_deg: float = _f(180.0, "max angle between approach and approach_direction (180 = off)",
                                       bounds=(1e-3, 180.0))
    min_table_height_m: float = _f(0.0, "fingertips must stay at least this high above the table",
                                   bounds=(-1.0, 1.0))


@dataclass(frozen=True)
class SupportPlaneConfig:
    """The table under the objects: fitted per frame, given, or none."""

    table_plane_mode: str = _f("fit", "support plane: none | fit (robust fit per frame, last good plane kept) | "
                                      "given")
    table_plane: tuple = _f((0.0, 0.0, -1.0, 1.0), "given plane [nx, ny, nz, d] with n.p + d = height above it",
                            element_bounds=(-1e3, 1e3))
    table_plane_frame: str = _f("", "TF frame table_plane is expressed in (node only; empty = camera frame), "
                                    "e.g. base_link with [0, 0, 1, 0] for z = 0 of the robot base; in fit "
                                    "mode its z axis is the 'up' the fitted plane must face")


@dataclass(frozen=True)
class GripperConfig:
    """Your robot's hand: the width limits (reject, never clamp) and the solids the executability
    filter keeps above the support plane."""

    gripper_max_width_m: float = _f(0.1, "reject grasps wider than this minus the margin (not clamped)",
                                    bounds=(0.0, 1.0))
    gripper_min_width_m: float = _f(0.0, "reject grasps narrower than this", bounds=(0.0, 1.0))
    width_margin_m: float = _f(0.0, "safety margin subtracted from gripper_max_width_m", bounds=(-1.0, 1.0))
    executability_filter: bool = _f(True, "reject grasps whose fingers, palm or wrist go below the support "
                                          "plane or that approach from below it")
    gripper_finger_length_m: float = _f(0.05, "finger length along the approach, palm to fingertip",
                                        bounds=(0.0, 1.0))
    gripper_finger_width_m: float = _f(0.02, "finger size along the closing axis (outside the jaw opening)",
                                       bounds=(0.0, 1.0))
    gripper_finger_thickness_m: float = _f(0.02, "finger size along the grasp's height axis", bounds=(0.0, 1.0))
    gripper_palm_depth_m: float = _f(0.06, "palm (hand body) size along the approach, behind the fingers",
                                     bounds=(0.0, 1.0))
    gripper_palm_width_m: float = _f(0.2, "palm size along the closing axis (Panda hand: 0.2)", bounds=(0.0, 1.0))
    gripper_palm_thickness_m: float = _f(0.06, "palm size along the grasp's height axis", bounds=(0.0, 1.0))
    gripper_wrist_length_m: float = _f(0.1, "wrist/flange corridor behind the palm, along -approach",
                                       bounds=(0.0, 1.0))
    gripper_wrist_radius_m: float = _f(0.045, "radius of the wrist/flange corridor", bounds=(0.0, 1.0))
    gripper_table_tolerance_m: float = _f(0.01, "fingers may reach this far below the support plane (contact)",
                                          bounds=(0.0, 1.0))


@dataclass(frozen=True)
class TargetingConfig:
    """Grasps on chosen objects of an instance-label image."""

    target_object_ids: tuple = _f((), "keep only grasps on these instance labels, each 1..2^24 "
                                      "(empty = all objects)",
                                  # labels beyond 2^24 are not exact in the float32 grasp rows
                                  element_bounds=(1, MAX_OBJECT_ID), int_array=True)
    target_sampling_fraction: float = _f(0.0, "share of the model's input points drawn from the target "
                                              "objects when targeting, each target point at most once "
                                              "(0 = uniform sampling)", bounds=(0.0, 1.0))
    target_context_m: float = _f(0.1, "when targeting, the model's input is the targets' bounding box grown by "
                                      "this margin (0 = the whole scene); collisions always use the whole scene",
                                 bounds=(0.0, 5.0))


@dataclass(frozen=True)
class PoseConfig:
    """The published TCP poses."""

    pose_convention: str = _f("z_approach_x_closing", "TCP axes of the published pose")
    tcp_offset_m: float = _f(0.0, "shift of the published pose along the approach (+ = deeper)",
                             bounds=(-1.0, 1.0))
    pre_grasp_distance_m: float = _f(0.1, "pre-grasp pose backs off this far along -approach", bounds=(0.0, 2.0))
    twin_policy: str = _f("keep", "keep | closest_to_reference: choose between a grasp and its 180 deg twin")


@dataclass(frozen=True)
class DetectorConfig:
    """The whole detector configuration, one group per stage (see the module docstring).

    Examples:
        >>> config = DetectorConfig.from_flat(model_path="graspnet_split/", max_grasps=10)  # doctest: +SKIP
        >>> config.filters.max_grasps, config.replace(nms_enabled=False).nms.nms_enabled  # doctest: +SKIP
        (10, False)
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    decode: GraspDecodeConfig = field(default_factory=GraspDecodeConfig)
    planar: PlanarConfig = field(default_factory=PlanarConfig)
    collision: CollisionConfig = field(default_factory=CollisionConfig)
    nms: NmsConfig = field(default_factory=NmsConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    support_plane: SupportPlaneConfig = field(default_factory=SupportPlaneConfig)
    gripper: GripperConfig = field(default_factory=GripperConfig)
    targeting: TargetingConfig = field(default_factory=TargetingConfig)
    poses: PoseConfig = field(default_factory=PoseConfig)

    def __post_init__(self):
        validate(self)

    @classmethod
    def from_flat(cls, **values) -> "DetectorConfig":
        """A configuration from flat parameter names (the ROS names), e.g. ``from_flat(num_points=8000)``."""
        return from_mapping(values)

    def replace(self, **changes) -> "DetectorConfig":
        """A copy with flat parameter changes (``replace(nms_enabled=False)``), checked like a YAML file."""
        return from_mapping(changes, self)

    def flat(self) -> dict:
        """{parameter name: value} of every parameter, in declaration order."""
        return {name: getattr(getattr(self, spec.group), name) for name, spec in PARAMETERS.items()}

    def value(self, name: str):
        """The value of parameter ``name`` (its flat ROS name)."""
        return getattr(getattr(self, PARAMETERS[name].group), name)

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: point old flat reads (config.max_grasps) to their group.
        spec = PARAMETERS.get(name)
        if spec is not None:
            raise AttributeError(f"DetectorConfig has no attribute {name!r}: it is config.{spec.group}.{name} "
                                 f"(or config.value({name!r}))")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


# ---------------------------------------------------------------------------- parameter table
PARAMETER_KINDS = ("bool", "int", "float", "str", "float_array", "int_array")


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: its group in DetectorConfig, default, kind (one of PARAMETER_KINDS),
    description, and accepted ranges."""

    name: str
    group: str
    default: object
    kind: str
    description: str
    bounds: tuple[float, float] | None
    element_bounds: tuple[float, float] | None
    restart: bool


def parameter_kind(default, int_array: bool = False) -> str:
    """The kind of a parameter from its default (tuples are float arrays unless ``int_array``)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, tuple):
        return "int_array" if int_array else "float_array"
    return "str"


def _parameter_specs() -> dict[str, ParameterSpec]:
    specs = {}
    for group_field in fields(DetectorConfig):
        group = group_field.default_factory()
        for f in fields(group):
            meta = f.metadata
            default = getattr(group, f.name)
            assert f.name not in specs, f"parameter {f.name} is in two groups"
            specs[f.name] = ParameterSpec(f.name, group_field.name, default,
                                          parameter_kind(default, meta["int_array"]), meta["description"],
                                          meta["bounds"], meta["element_bounds"], meta["restart"])
    return specs


PARAMETERS: dict[str, ParameterSpec] = _parameter_specs()
# Views of the table, by the names the ROS layer and the README generator use.
BOUNDS: dict[str, tuple[float, float]] = {n: s.bounds for n, s in PARAMETERS.items() if s.bounds}
ARRAY_ELEMENT_BOUNDS: dict[str, tuple[float, float]] = {
    n: s.element_bounds for n, s in PARAMETERS.items() if s.element_bounds}
INT_ARRAY_FIELDS = frozenset(n for n, s in PARAMETERS.items() if s.kind == "int_array")
# Fields that need a new backend/model: the node rejects runtime changes to them.
RESTART_FIELDS = frozenset(n for n, s in PARAMETERS.items() if s.restart)


def field_descriptions() -> dict[str, str]:
    return {name: spec.description for name, spec in PARAMETERS.items()}


def format_bound(value: float) -> str:
    """A bound as people write it: integers in full (16777216, not 1.67772e+07), others with %g."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"


# ------------------------------------------------------------------------------- coercion
_EXPECTED = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
             "float_array": "a list of numbers", "int_array": "a list of integers"}


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_list(value) -> bool:
    # YAML/Python lists and tuples, rclpy's array.array for ROS arrays, numpy arrays.
    return not isinstance(value, (str, bytes, dict)) and hasattr(value, "__iter__") and hasattr(value, "__len__")


def describe_value(value) -> str:
    """``value`` for an error message: its kind and, shortened, itself."""
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if _is_integer(value):
        return f"the integer {value}" if abs(value) < 10**30 else "a huge integer"
    if _is_number(value):
        return f"the number {float(value)!r}"
    if value is None:
        return "null (no value)"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {text!r}"
    if isinstance(value, dict):
        return "a mapping"
    if _is_list(value):
        text = repr(list(value))
        return f"the list {text if len(text) <= 60 else text[:56] + '...]'}"
    return f"a {type(value).__name__}"


def coerce_parameter(name: str, value, kind: str):
    """``value`` of parameter ``name`` in the Python type of ``kind``, or ConfigError saying what
    was expected and what came. The one conversion every path uses (YAML, CLI, ROS parameters).

    Accepted (ROS parameter typing): bool only true/false (not "true", not 0/1); int an integer
    (not 7.0, not "7"); float any number (ints included), finite; str a string (not a number);
    arrays a list of such numbers, null = empty.
    """
    if kind not in _EXPECTED:
        raise ConfigError(f"{name}: unknown parameter kind {kind!r}")  # a bug in the parameter table
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and _is_integer(value):
        return int(value)
    if kind == "float" and _is_number(value):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{name} must be finite, got {value!r}")
        return number
    if kind == "str" and isinstance(value, str):
        return value
    if kind in ("float_array", "int_array"):
        if value is None:
            return ()  # an unset ROS array parameter
        if _is_list(value):
            items = list(value)
            if kind == "int_array" and all(_is_integer(v) for v in items):
                return tuple(int(v) for v in items)
            if kind == "float_array" and all(_is_number(v) for v in items):
                return tuple(float(v) for v in items)
    raise ConfigError(f"{name} must be {_EXPECTED[kind]}, got {describe_value(value)}")


def deprecation_notice(old: str, new: str) -> str:
    return f"parameter {old!r} is deprecated and will be removed in the next release: use {new!r}"


def with_current_names(values: dict, notify=None) -> dict:
    """``values`` with deprecated parameter names replaced by the new ones (``notify(notice)``
    once per old name; default: one line on stderr). ConfigError when both names are given."""
    if not any(old in values for old in DEPRECATED_PARAMETERS):
        return values
    renamed = dict(values)
    for old, new in DEPRECATED_PARAMETERS.items():
        if old not in renamed:
            continue
        if new in renamed:
            raise ConfigError(f"both {old!r} (deprecated) and {new!r} are given: keep only {new!r}")
        (notify or _warn_on_stderr)(deprecation_notice(old, new))
        renamed[new] = renamed.pop(old)
    return renamed


def _warn_on_stderr(message: str) -> None:
    print(f"graspnet-edge: warning: {message}", file=sys.stderr)


def _unknown(key: str, known) -> ConfigError:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return ConfigError(f"unknown parameter {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""))


def from_mapping(values: dict, base: DetectorConfig | None = None, *, notify=None) -> DetectorConfig:
    """Merge flat ``values`` (from YAML, CLI or ROS parameters) into ``base``: unknown keys, wrong
    types and out-of-range values are ConfigErrors. Deprecated names are renamed (``notify``,
    see ``with_current_names``)."""
    base = base if base is not None else DetectorConfig()
    by_group: dict[str, dict] = {}
    for key, value in with_current_names(values, notify).items():
        spec = PARAMETERS.get(key)
        if spec is None:
            raise _unknown(key, PARAMETERS)
        by_group.setdefault(spec.group, {})[key] = coerce_parameter(key, value, spec.kind)
    groups = {group: dataclasses.replace(getattr(base, group), **changes) for group, changes in by_group.items()}
    return dataclasses.replace(base, **groups)


# ------------------------------------------------------------------------------ validation
def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(cfg: DetectorConfig) -> None:
    """Raise ConfigError naming the first invalid value (wrong type, or out of its accepted range)."""
    v = cfg.flat()
    for name, spec in PARAMETERS.items():
        value = v[name]
        coerce_parameter(name, value, spec.kind)  # a type check for groups built directly in Python
        if spec.bounds is not None:
            low, high = spec.bounds
            _require(low <= value <= high,
                     f"{name} must be in [{format_bound(low)}, {format_bound(high)}], got {value}")
        if spec.element_bounds is not None:
            low, high = spec.element_bounds
            _require(all(math.isfinite(x) and low <= x <= high for x in value),
                     f"{name} values must be finite and in [{format_bound(low)}, {format_bound(high)}], "
                     f"got {list(value)}")
    _require(v["depth_scale"] > 0, f"depth_scale must be > 0, got {v['depth_scale']}")
    _require(0 <= v["min_depth_m"] < v["max_depth_m"],
             f"need 0 <= min_depth_m < max_depth_m, got {v['min_depth_m']}, {v['max_depth_m']}")
    _require(len(v["workspace_min_xyz"]) in (0, 3) and len(v["workspace_max_xyz"]) == len(v["workspace_min_xyz"]),
             "workspace_min_xyz / workspace_max_xyz must both be empty or both have 3 numbers")
    _require(all(lo <= hi for lo, hi in zip(v["workspace_min_xyz"], v["workspace_max_xyz"])),
             f"workspace_min_xyz {v['workspace_min_xyz']} exceeds workspace_max_xyz {v['workspace_max_xyz']}")
    _require(0 <= v["gripper_min_width_m"] < v["gripper_max_width_m"] - v["width_margin_m"],
             "need 0 <= gripper_min_width_m < gripper_max_width_m - width_margin_m")
    _require(len(v["approach_direction"]) == 3 and any(abs(x) > 0 for x in v["approach_direction"]),
             "approach_direction must be a non-zero 3-vector")
    _require(v["table_plane_mode"] in TABLE_PLANE_MODES,
             f"table_plane_mode must be one of {TABLE_PLANE_MODES}, got {v['table_plane_mode']!r}")
    _require(len(v["table_plane"]) == 4 and any(abs(x) > 0 for x in v["table_plane"][:3]),
             "table_plane must be [nx, ny, nz, d] with a non-zero normal")
    _require(v["workspace_mode"] in WORKSPACE_MODES,
             f"workspace_mode must be one of {WORKSPACE_MODES}, got {v['workspace_mode']!r}")
    _require(v["workspace_min_height_m"] < v["workspace_max_height_m"],
             "need workspace_min_height_m < workspace_max_height_m")
    _require(v["pose_convention"] in POSE_CONVENTIONS,
             f"pose_convention must be one of {POSE_CONVENTIONS}, got {v['pose_convention']!r}")
    _require(v["twin_policy"] in TWIN_POLICIES, f"twin_policy must be one of {TWIN_POLICIES}, got {v['twin_policy']!r}")
    _check_backend_name(v["backend"])
    _check_providers(v["onnx_providers"])
    _require(v["model_type"] in MODEL_TYPES, f"model_type must be one of {MODEL_TYPES}, got {v['model_type']!r}")
    _require(v["planar_depth_window_px"] % 2 == 1,
             f"planar_depth_window_px must be a positive odd number, got {v['planar_depth_window_px']}")


def _check_providers(providers: str) -> None:
    """ConfigError for an execution provider name onnxruntime does not know (installed or not)."""
    from graspnet_edge_ros.formats import resolve_providers

    try:
        resolve_providers(providers)
    except ConfigError as exc:
        raise ConfigError(f"onnx_providers: {exc}") from exc


def _check_backend_name(backend: str) -> None:
    """ConfigError (with a did-you-mean) for a backend that is neither auto ("" too) nor a known one."""
    from graspnet_edge_ros.formats import get_format, is_auto_backend

    if not is_auto_backend(backend):
        get_format(backend)


def load_yaml(path, node_name: str = NODE_NAME) -> dict:
    """Parameters from a YAML file: a flat mapping, or the ROS 2 parameter-file layout.

    In the ROS layout (``<node>: ros__parameters: {...}``) the entries for every node (``/**``)
    apply first, then those of ``node_name`` (with or without a leading '/'); other nodes'
    entries are ignored.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or not a mapping of parameters.
    """
    import yaml

    try:
        with open(path) as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read parameter file {path}: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML ({first})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of parameters, got {type(data).__name__}")
    sections = {str(key).lstrip("/"): value for key, value in data.items()
                if isinstance(value, dict) and "ros__parameters" in value}
    if not sections:
        return {str(key): value for key, value in data.items()}
    merged: dict = {}
    for section in ("**", node_name.lstrip("/")):
        parameters = sections.get(section, {}).get("ros__parameters") if section in sections else {}
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise ConfigError(f"{path}: {section}.ros__parameters must be a mapping")
        merged.update({str(key): value for key, value in parameters.items()})
    if not merged and len(sections) == 1:
        # A file for a renamed node (replay --node-name): its only section is ours.
        merged = dict(next(iter(sections.values()))["ros__parameters"] or {})
    return merged


def detector_parameters(path) -> dict:
    """Detector parameters of a YAML file: flat, or the node's ROS layout (``/**`` or the node's name).

    Keys only the node uses (topics, QoS, ``use_sim_time``...) are dropped with one notice on
    stderr; any other unknown key is a ConfigError with a did-you-mean (from ``from_mapping``).
    """
    values = load_yaml(path)
    node_only = sorted(key for key in values if key in NODE_ONLY_PARAMETERS)
    if node_only:
        print(f"graspnet-edge: note: ignoring node-only parameter(s) in {path}: {', '.join(node_only)}",
              file=sys.stderr)
    return {key: value for key, value in values.items() if key not in node_only or key in PARAMETERS}


# Parameters of the node itself (ros/params.py NodeSettings and the ROS built-ins): the node's
# YAML carries them, the detector has no use for them. Listed here because the core must not
# import the ROS layer; test_hostile_inputs.py checks the list against NodeSettings.
NODE_ONLY_PARAMETERS = frozenset({
    "color_topic", "depth_topic", "camera_info_topic", "object_mask_topic", "qos_reliability", "qos_depth", "slop",
    "queue_size", "exact_sync", "warmup", "diagnostics_period_s", "mode", "service_timeout_s", "target_frame",
    "tf_timeout_s", "max_markers", "input_timeout_s", "pipeline_frames", "use_sim_time",
})
