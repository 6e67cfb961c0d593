"""Detector configuration: one flat, validated dataclass shared by the CLI, YAML files and the node.

Flat on purpose: every field maps 1:1 to a ROS parameter of the same name, so the node declares
its parameters from this table (with these descriptions) and validates changes with the same
``validate``. Units are in the names (``_m``, ``_deg``).
"""
from __future__ import annotations

import dataclasses
import math
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

# Tuple fields holding integers (the others hold floats).
INT_ARRAY_FIELDS = frozenset({"target_object_ids"})

# Fields that need a new backend/model: the node rejects runtime changes to them.
RESTART_FIELDS = frozenset({"model_path", "model_type", "backend", "num_threads"})


# Accepted ranges [low, high] (inclusive) of numeric parameters. config.validate enforces them and
# the node declares them as ROS parameter ranges, so `ros2 param set` refuses a value outside
# before the node sees it. Upper bounds keep one frame's cost finite (3 M points took 14 s and
# 1.2 GB per frame); sizes are metres, angles degrees.
MAX_NUM_POINTS = 100_000
BOUNDS: dict[str, tuple[float, float]] = {
    "num_threads": (0, 256),
    "num_points": (1, MAX_NUM_POINTS),
    "depth_scale": (1e-6, 1.0),
    "min_depth_m": (0.0, 20.0),
    "max_depth_m": (0.0, 20.0),
    "sampling_seed": (-1, 2**31 - 1),
    "grasp_max_width_m": (1e-4, 1.0),
    "grasp_max_tolerance_m": (1e-4, 1.0),
    "planar_num_grasps": (1, 1000),
    "planar_min_quality": (-1.0, 1.0),
    "planar_width_scale": (1e-3, 10_000.0),
    "planar_depth_window_px": (1, 101),
    "planar_insertion_depth_m": (0.0, 0.5),
    "collision_thresh": (-1.0, 1.0),
    "collision_voxel_size_m": (0.001, 0.5),
    "collision_approach_dist_m": (0.0, 1.0),
    "finger_width_m": (1e-4, 0.5),
    "finger_length_m": (1e-4, 0.5),
    "nms_translation_m": (0.0, 1.0),
    "nms_rotation_deg": (0.0, 180.0),
    "min_score": (-1000.0, 1000.0),
    "max_grasps": (1, 10_000),
    "gripper_max_width_m": (0.0, 1.0),
    "gripper_min_width_m": (0.0, 1.0),
    "width_margin_m": (-1.0, 1.0),
    "approach_max_angle_deg": (1e-3, 180.0),
    "min_table_height_m": (-1.0, 1.0),
    "gripper_finger_length_m": (0.0, 1.0),
    "gripper_finger_width_m": (0.0, 1.0),
    "gripper_finger_thickness_m": (0.0, 1.0),
    "gripper_palm_depth_m": (0.0, 1.0),
    "gripper_palm_width_m": (0.0, 1.0),
    "gripper_palm_thickness_m": (0.0, 1.0),
    "gripper_wrist_length_m": (0.0, 1.0),
    "gripper_wrist_radius_m": (0.0, 1.0),
    "gripper_table_tolerance_m": (0.0, 1.0),
    "workspace_max_height_m": (-5.0, 5.0),
    "workspace_min_height_m": (-5.0, 5.0),
    "workspace_extent_margin_m": (0.0, 5.0),
    "target_sampling_fraction": (0.0, 1.0),
    "target_context_m": (0.0, 5.0),
    "tcp_offset_m": (-1.0, 1.0),
    "pre_grasp_distance_m": (0.0, 2.0),
}
# Array elements: workspace box corners, approach axis and plane coefficients.
ARRAY_ELEMENT_BOUNDS: dict[str, tuple[float, float]] = {
    "workspace_min_xyz": (-20.0, 20.0), "workspace_max_xyz": (-20.0, 20.0),
    "approach_direction": (-1e3, 1e3), "table_plane": (-1e3, 1e3),
    "target_object_ids": (1, MAX_OBJECT_ID),  # labels beyond are not exact in the float32 grasp rows
}


def _f(default, description: str, **extra):
    return field(default=default, metadata={"description": description, **extra})


@dataclass(frozen=True)
class DetectorConfig:
    # --- model and backend (restart required) -------------------------------------------------
    model_path: str = _f("", "GraspNet artefact (checkpoint, single .onnx, split directory) or planar model (.pt/.onnx)")
    model_type: str = _f("auto", "auto | graspnet | grconvnet | affga; auto = detected from the model file")
    backend: str = _f("auto", "runtime: auto (from the model file: .pth/.pt torch, .onnx onnxruntime, .bin/.hbm "
                              "hobot_dnn, split directory onnxruntime or hobot_dnn) | onnxruntime | hobot_dnn | torch")
    num_threads: int = _f(0, "intra-op threads of the backend (0 = runtime default)")
    # --- points --------------------------------------------------------------------------------
    num_points: int = _f(20000, "points sampled from the workspace as model input")
    depth_scale: float = _f(0.001, "metres per unit of 16UC1 depth")
    min_depth_m: float = _f(0.0, "ignore depth at or below this distance")
    max_depth_m: float = _f(3.0, "ignore depth beyond this distance")
    workspace_mask_path: str = _f("", "optional PNG mask (non-zero = workspace), same size as the depth image")
    workspace_min_xyz: tuple = _f((), "optional workspace box corner [x, y, z] in the camera frame, m")
    workspace_max_xyz: tuple = _f((), "optional workspace box corner [x, y, z] in the camera frame, m")
    sampling_seed: int = _f(-1, "seed of the point sampling (-1 = random, like the official demo)")
    # --- decode (official constants; GraspNet-Edge retrained weights use 0.067 / 0.045) --------
    grasp_max_width_m: float = _f(0.1, "decoder width clamp (GRASP_MAX_WIDTH)")
    grasp_max_tolerance_m: float = _f(0.05, "decoder tolerance normaliser (GRASP_MAX_TOLERANCE)")
    # --- planar networks (GR-ConvNet, SGDN/AFFGA): decode and lifting to 6-DoF ------------------
    planar_num_grasps: int = _f(10, "planar grasps decoded per frame (strongest quality-map peaks)")
    planar_min_quality: float = _f(-1.0, "quality-map peak threshold; < 0 = the network's own (GR-ConvNet 0.2, AFFGA 0.5)")
    planar_width_scale: float = _f(150.0, "GR-ConvNet width map to pixels (150 as the repo; 112 = label scale)")
    planar_depth_window_px: int = _f(9, "odd window around the grasp pixel for the robust grasp depth")
    planar_insertion_depth_m: float = _f(0.01, "planar grasps: fingertips reach this far beyond the surface")
    # --- collision -----------------------------------------------------------------------------
    collision_thresh: float = _f(0.01, "model-free collision IoU threshold (<= 0 disables the check)")
    collision_voxel_size_m: float = _f(0.01, "voxel size of the scene cloud for the collision check")
    collision_approach_dist_m: float = _f(0.05, "approach corridor length checked behind the palm")
    finger_width_m: float = _f(0.01, "finger thickness used by the collision check")
    finger_length_m: float = _f(0.06, "finger length used by the collision check")
    # --- NMS -----------------------------------------------------------------------------------
    nms_enabled: bool = _f(True, "remove near-duplicate grasps")
    nms_translation_m: float = _f(0.03, "NMS translation threshold")
    nms_rotation_deg: float = _f(30.0, "NMS rotation threshold")
    # --- filters -------------------------------------------------------------------------------
    min_score: float = _f(0.0, "reject grasps scoring below this")
    max_grasps: int = _f(50, "publish at most this many grasps (best first)")
    gripper_max_width_m: float = _f(0.1, "reject grasps wider than this minus the margin (not clamped)")
    gripper_min_width_m: float = _f(0.0, "reject grasps narrower than this")
    width_margin_m: float = _f(0.0, "safety margin subtracted from gripper_max_width_m")
    approach_direction: tuple = _f((0.0, 0.0, 1.0), "cone axis for the approach filter (camera frame)")
    approach_max_angle_deg: float = _f(180.0, "max angle between approach and approach_direction (180 = off)")
    table_plane_mode: str = _f("fit", "support plane: none | fit (robust fit per frame, last good plane kept) | given")
    table_plane: tuple = _f((0.0, 0.0, -1.0, 1.0), "given plane [nx, ny, nz, d] with n.p + d = height above it")
    table_plane_frame: str = _f("", "TF frame table_plane is expressed in (node only; empty = camera frame), "
                                    "e.g. base_link with [0, 0, 1, 0] for z = 0 of the robot base; in fit "
                                    "mode its z axis is the 'up' the fitted plane must face")
    min_table_height_m: float = _f(0.0, "fingertips must stay at least this high above the table")
    # --- executability: the gripper body must stay above the support plane ---------------------
    executability_filter: bool = _f(True, "reject grasps whose fingers, palm or wrist go below the support "
                                          "plane or that approach from below it")
    gripper_finger_length_m: float = _f(0.05, "finger length along the approach, palm to fingertip")
    gripper_finger_width_m: float = _f(0.02, "finger size along the closing axis (outside the jaw opening)")
    gripper_finger_thickness_m: float = _f(0.02, "finger size along the grasp's height axis")
    gripper_palm_depth_m: float = _f(0.06, "palm (hand body) size along the approach, behind the fingers")
    gripper_palm_width_m: float = _f(0.2, "palm size along the closing axis (Panda hand: 0.2)")
    gripper_palm_thickness_m: float = _f(0.06, "palm size along the grasp's height axis")
    gripper_wrist_length_m: float = _f(0.1, "wrist/flange corridor behind the palm, along -approach")
    gripper_wrist_radius_m: float = _f(0.045, "radius of the wrist/flange corridor")
    gripper_table_tolerance_m: float = _f(0.01, "fingers may reach this far below the support plane (contact)")
    # --- workspace from the support plane -------------------------------------------------------
    workspace_mode: str = _f("auto", "auto: crop to the space above the support plane when no mask or box "
                                     "is given | plane: always (combined with mask/box) | off")
    workspace_max_height_m: float = _f(0.35, "auto workspace: keep points up to this height above the plane")
    workspace_min_height_m: float = _f(-0.02, "auto workspace: keep points down to this height (the table "
                                              "surface itself stays in the cloud)")
    workspace_extent_margin_m: float = _f(0.05, "auto workspace: margin around the plane's observed extent")
    # --- object targeting ------------------------------------------------------------------------
    target_object_ids: tuple = _f((), "keep only grasps on these instance labels, each 1..2^24 "
                                         "(empty = all objects)")
    target_sampling_fraction: float = _f(0.0, "share of the model's input points drawn from the target "
                                               "objects when targeting, each target point at most once "
                                               "(0 = uniform sampling)")
    target_context_m: float = _f(0.1, "when targeting, the model's input is the targets' bounding box grown by "
                                      "this margin (0 = the whole scene); collisions always use the whole scene")
    # --- poses ---------------------------------------------------------------------------------
    pose_convention: str = _f("z_approach_x_closing", "TCP axes of the published pose")
    tcp_offset_m: float = _f(0.0, "shift of the published pose along the approach (+ = deeper)")
    pre_grasp_distance_m: float = _f(0.1, "pre-grasp pose backs off this far along -approach")
    twin_policy: str = _f("keep", "keep | closest_to_reference: choose between a grasp and its 180 deg twin")

    def __post_init__(self):
        validate(self)

    def replace(self, **changes) -> "DetectorConfig":
        return dataclasses.replace(self, **changes)

    @property
    def nms_rotation_rad(self) -> float:
        return math.radians(self.nms_rotation_deg)


def field_descriptions() -> dict[str, str]:
    return {f.name: f.metadata["description"] for f in fields(DetectorConfig)}


def format_bound(value: float) -> str:
    """A bound as people write it: integers in full (16777216, not 1.67772e+07), others with %g."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(cfg: DetectorConfig) -> None:
    """Raise ConfigError naming the first invalid value (with the accepted range)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float):
            _require(math.isfinite(value), f"{f.name} must be finite, got {value}")
        if f.name in BOUNDS:
            low, high = BOUNDS[f.name]
            _require(low <= value <= high,
                     f"{f.name} must be in [{format_bound(low)}, {format_bound(high)}], got {value}")
        if f.name in ARRAY_ELEMENT_BOUNDS:
            low, high = ARRAY_ELEMENT_BOUNDS[f.name]
            _require(all(isinstance(v, (int, float)) and math.isfinite(v) and low <= v <= high for v in value),
                     f"{f.name} values must be finite and in [{format_bound(low)}, {format_bound(high)}], "
                     f"got {list(value)}")
    _require(cfg.num_points >= 1, f"num_points must be >= 1, got {cfg.num_points}")
    _require(cfg.num_threads >= 0, f"num_threads must be >= 0, got {cfg.num_threads}")
    _require(cfg.depth_scale > 0, f"depth_scale must be > 0, got {cfg.depth_scale}")
    _require(0 <= cfg.min_depth_m < cfg.max_depth_m,
             f"need 0 <= min_depth_m < max_depth_m, got {cfg.min_depth_m}, {cfg.max_depth_m}")
    _require(len(cfg.workspace_min_xyz) in (0, 3) and len(cfg.workspace_max_xyz) == len(cfg.workspace_min_xyz),
             "workspace_min_xyz / workspace_max_xyz must both be empty or both have 3 numbers")
    _require(all(lo <= hi for lo, hi in zip(cfg.workspace_min_xyz, cfg.workspace_max_xyz)),
             f"workspace_min_xyz {cfg.workspace_min_xyz} exceeds workspace_max_xyz {cfg.workspace_max_xyz}")
    _require(cfg.grasp_max_width_m > 0 and cfg.grasp_max_tolerance_m > 0, "decoder constants must be > 0")
    _require(cfg.collision_voxel_size_m > 0, f"collision_voxel_size_m must be > 0, got {cfg.collision_voxel_size_m}")
    _require(cfg.collision_approach_dist_m >= 0 and cfg.finger_width_m > 0 and cfg.finger_length_m > 0,
             "collision approach distance must be >= 0 and finger sizes > 0")
    _require(cfg.nms_translation_m >= 0 and 0 <= cfg.nms_rotation_deg <= 180, "NMS thresholds out of range")
    _require(cfg.max_grasps >= 1, f"max_grasps must be >= 1, got {cfg.max_grasps}")
    _require(0 <= cfg.gripper_min_width_m < cfg.gripper_max_width_m - cfg.width_margin_m,
             "need 0 <= gripper_min_width_m < gripper_max_width_m - width_margin_m")
    _require(len(cfg.approach_direction) == 3 and any(abs(v) > 0 for v in cfg.approach_direction),
             "approach_direction must be a non-zero 3-vector")
    _require(0 < cfg.approach_max_angle_deg <= 180, "approach_max_angle_deg must be in (0, 180]")
    _require(cfg.table_plane_mode in TABLE_PLANE_MODES,
             f"table_plane_mode must be one of {TABLE_PLANE_MODES}, got {cfg.table_plane_mode!r}")
    _require(len(cfg.table_plane) == 4 and any(abs(v) > 0 for v in cfg.table_plane[:3]),
             "table_plane must be [nx, ny, nz, d] with a non-zero normal")
    _require(cfg.workspace_mode in WORKSPACE_MODES,
             f"workspace_mode must be one of {WORKSPACE_MODES}, got {cfg.workspace_mode!r}")
    _require(cfg.workspace_min_height_m < cfg.workspace_max_height_m,
             "need workspace_min_height_m < workspace_max_height_m")
    _require(cfg.workspace_extent_margin_m >= 0, "workspace_extent_margin_m must be >= 0")
    for name in ("gripper_finger_length_m", "gripper_finger_width_m", "gripper_finger_thickness_m",
                 "gripper_palm_depth_m", "gripper_palm_width_m", "gripper_palm_thickness_m",
                 "gripper_wrist_length_m", "gripper_wrist_radius_m", "gripper_table_tolerance_m"):
        _require(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    _require(all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in cfg.target_object_ids),
             f"target_object_ids must be positive integer labels, got {cfg.target_object_ids}")
    _require(cfg.target_context_m >= 0, f"target_context_m must be >= 0, got {cfg.target_context_m}")
    _require(0 <= cfg.target_sampling_fraction <= 1,
             f"target_sampling_fraction must be in [0, 1], got {cfg.target_sampling_fraction}")
    _require(cfg.pose_convention in POSE_CONVENTIONS,
             f"pose_convention must be one of {POSE_CONVENTIONS}, got {cfg.pose_convention!r}")
    _require(cfg.twin_policy in TWIN_POLICIES, f"twin_policy must be one of {TWIN_POLICIES}, got {cfg.twin_policy!r}")
    _check_backend_name(cfg.backend)
    _require(cfg.model_type in MODEL_TYPES, f"model_type must be one of {MODEL_TYPES}, got {cfg.model_type!r}")
    _require(cfg.planar_num_grasps >= 1, f"planar_num_grasps must be >= 1, got {cfg.planar_num_grasps}")
    _require(cfg.planar_width_scale > 0, f"planar_width_scale must be > 0, got {cfg.planar_width_scale}")
    _require(cfg.planar_depth_window_px >= 1 and cfg.planar_depth_window_px % 2 == 1,
             f"planar_depth_window_px must be a positive odd number, got {cfg.planar_depth_window_px}")
    _require(cfg.planar_insertion_depth_m >= 0,
             f"planar_insertion_depth_m must be >= 0, got {cfg.planar_insertion_depth_m}")
    _require(cfg.pre_grasp_distance_m >= 0, f"pre_grasp_distance_m must be >= 0, got {cfg.pre_grasp_distance_m}")


def _check_backend_name(backend: str) -> None:
    """ConfigError (with a did-you-mean) for a backend that is neither auto ("" too) nor a known one."""
    from graspnet_edge_ros.backends.registry import get_format, is_auto_backend

    if not is_auto_backend(backend):
        get_format(backend)


def from_mapping(values: dict, base: DetectorConfig | None = None) -> DetectorConfig:
    """Merge ``values`` (from YAML, CLI or ROS parameters) into ``base``; unknown keys are errors."""
    base = base or DetectorConfig()
    known = {f.name: f for f in fields(DetectorConfig)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, list(known), n=1)
            raise ConfigError(f"unknown parameter {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        changes[key] = _coerce(key, value, getattr(base, key))
    return dataclasses.replace(base, **changes)


def _as_int(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("not an integer")
    return int(value)


def _coerce(key: str, value, default):
    """``value`` in the type of ``default``; ConfigError when it is not one (no silent guesses)."""
    if isinstance(default, bool):
        # Only true/false: "maybe", "no" or 0 must not silently switch a feature off.
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    try:
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("not an integer")
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError("not a number")
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, (str, bytes)):
                raise ValueError("not a list")
            if key in INT_ARRAY_FIELDS:
                return tuple(_as_int(v) for v in value)
            return tuple(float(v) for v in value)
        if isinstance(value, (dict, list, tuple)):
            raise ValueError("not a string")
        return str(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{key}: cannot use {value!r} ({type(default).__name__} expected)") from exc


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
    detector_fields = DetectorConfig.__dataclass_fields__
    return {key: value for key, value in values.items() if key not in node_only or key in detector_fields}


# Parameters of the node itself (ros/params.py NodeSettings and the ROS built-ins): the node's
# YAML carries them, the detector has no use for them. Listed here because the core must not
# import the ROS layer; test_hostile_inputs.py checks the list against NodeSettings.
NODE_ONLY_PARAMETERS = frozenset({
    "color_topic", "depth_topic", "camera_info_topic", "object_mask_topic", "qos_reliability", "qos_depth", "slop",
    "queue_size", "exact_sync", "warmup", "diagnostics_period_s", "mode", "service_timeout_s", "target_frame",
    "tf_timeout_s", "max_markers", "input_timeout_s", "pipeline_frames", "use_sim_time",
})
