"""The node's ROS parameters: every ``DetectorConfig`` field plus the node's own ``NodeSettings``.

Both are declared from their dataclasses (name, default and description in one place) and every
change goes through the same validation (``config.from_mapping`` / ``settings_from_mapping``),
so a YAML file, ``-p name:=value`` and ``ros2 param set`` are checked alike.

Typing: every parameter is declared with dynamic typing and its value goes through
``config.coerce_parameter``, the one conversion the CLI and YAML files use too, so a wrong type
is refused with the same message everywhere (``nms_enabled must be true or false, got the string
'flase'``) instead of rclpy's own wording; it also lets an integer stand for a double
(``-p tcp_offset_m:=0``) and an empty array stay untyped. Ranges are declared in the
descriptors, so rclpy refuses out-of-range numbers before the callback runs.

Renamed parameters (``config.DEPRECATED_PARAMETERS``) are read under their old name at start
(params file or ``-p``) with a one-line warning; at runtime only the new name exists.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

from graspnet_edge_ros.config import (BOUNDS, DEPRECATED_PARAMETERS, PARAMETERS, RESTART_FIELDS, DetectorConfig,
                                      coerce_parameter, from_mapping, parameter_kind, with_current_names)
from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.topics import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC

MODES = ("continuous", "on_demand")
QOS_RELIABILITIES = ("best_effort", "reliable")
# ~/detect_grasps waits at most this long: a request's timeout_s above it (or inf) is clamped.
MAX_SERVICE_TIMEOUT_S = 600.0
# Accepted ranges [low, high] of the node's numeric settings (see config.BOUNDS for the detector's).
NODE_BOUNDS: dict[str, tuple[float, float]] = {
    "qos_depth": (1, 1000),
    "queue_size": (1, 1000),
    "slop": (0.0, 10.0),
    "diagnostics_period_s": (0.01, 3600.0),
    "service_timeout_s": (0.001, MAX_SERVICE_TIMEOUT_S),
    "tf_timeout_s": (0.0, 60.0),
    "max_markers": (0, 1000),
    "input_timeout_s": (0.001, 3600.0),
}
# Paths a parameter may name: checked at start and whenever they are set.
PATH_PARAMETERS = ("workspace_mask_path",)


def _f(default, description: str):
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True)
class NodeSettings:
    """Parameters of the ROS node itself (the detector's are DetectorConfig)."""

    # --- inputs (restart required) -----------------------------------------------------------
    # Relative names: resolved in the node's namespace, remappable (-r camera/color/image_raw:=...).
    color_topic: str = _f(COLOR_TOPIC, "colour image topic (rgb8/bgr8/rgba8/bgra8/mono8); "
                                       "relative = in the node's namespace")
    depth_topic: str = _f(DEPTH_TOPIC, "depth image aligned to the colour image (16UC1/mono16 or 32FC1)")
    camera_info_topic: str = _f(CAMERA_INFO_TOPIC, "CameraInfo of the colour (= aligned depth) image")
    object_mask_topic: str = _f("", "optional instance-label image aligned to colour (mono8/8UC1/mono16/16UC1/16SC1/"
                                    "32SC1, 0 = background, labels <= 2^24) with the colour image's stamp, "
                                    "synchronised with the other inputs; empty = off")
    qos_reliability: str = _f("best_effort", "input QoS: best_effort (receives from reliable and "
                                             "best-effort publishers) | reliable")
    qos_depth: int = _f(5, "input subscription queue depth")
    slop: float = _f(0.05, "approximate-time sync: max stamp spread of colour, depth and info, s")
    queue_size: int = _f(10, "approximate-time sync: messages kept per input while waiting for partners")
    exact_sync: bool = _f(False, "require identical stamps instead of approximate-time matching")
    warmup: bool = _f(True, "run one synthetic frame at start so the first real frame is not slow")
    diagnostics_period_s: float = _f(1.0, "period of the /diagnostics status, s")
    # --- behaviour (changeable at runtime) ---------------------------------------------------
    mode: str = _f("continuous", "continuous: detect on every frame | on_demand: only for ~/detect_grasps calls")
    service_timeout_s: float = _f(10.0, "~/detect_grasps wait for the next frame and its result when "
                                        "the request's timeout_s is 0, s")
    target_frame: str = _f("", "publish poses in this TF frame (looked up at the image stamp); "
                               "empty = the image frame")
    tf_timeout_s: float = _f(0.2, "how long to wait for the target_frame transform, s")
    max_markers: int = _f(20, "grippers drawn on ~/markers (best first)")
    input_timeout_s: float = _f(5.0, "diagnostics turn WARN when no synchronised frame arrived for this long, s")
    pipeline_frames: bool = _f(True, "overlap consecutive frames: prepare the next frame and finish the previous "
                                     "one while the model runs (false = one frame at a time)")


# Node settings fixed at start: the subscriptions, synchroniser and timer are built from them.
NODE_RESTART_FIELDS = frozenset({
    "color_topic", "depth_topic", "camera_info_topic", "object_mask_topic", "qos_reliability", "qos_depth", "slop",
    "queue_size", "exact_sync", "warmup", "diagnostics_period_s",
})
RESTART_REQUIRED = RESTART_FIELDS | NODE_RESTART_FIELDS

# Parameters rclpy declares on every node; config files may set them too.
ROS_BUILTIN_PARAMETERS = frozenset({"use_sim_time"})


def parameter_table() -> dict[str, tuple[object, str, str]]:
    """{name: (default, kind, description)} of every parameter the node declares (ROS built-ins aside).

    kind is one of bool, int, float, float_array, int_array, str.
    """
    table = {name: (spec.default, spec.kind, spec.description) for name, spec in PARAMETERS.items()}
    defaults = NodeSettings()
    for f in fields(NodeSettings):
        default = getattr(defaults, f.name)
        table[f.name] = (default, parameter_kind(default), f.metadata["description"])
    return table


_TABLE = parameter_table()
DETECTOR_FIELDS = frozenset(PARAMETERS)


def declared_parameter_names() -> frozenset[str]:
    """Names a config file or launch file may set on the node."""
    return frozenset(_TABLE) | ROS_BUILTIN_PARAMETERS


def checked_value(name: str, value):
    """``value`` of parameter ``name`` in its Python type, or ConfigError naming the expected type
    (``config.coerce_parameter`` with the parameter's kind). None (an unset ROS array) is ()."""
    kind = "bool" if name in ROS_BUILTIN_PARAMETERS else _TABLE[name][1]
    return coerce_parameter(name, value, kind)


def validate_settings(settings: NodeSettings) -> None:
    """Raise ConfigError naming the first invalid node setting."""
    for name in ("color_topic", "depth_topic", "camera_info_topic"):
        if not getattr(settings, name).strip():
            raise ConfigError(f"{name} must not be empty")
    checks = [
        (settings.qos_reliability in QOS_RELIABILITIES,
         f"qos_reliability must be one of {QOS_RELIABILITIES}, got {settings.qos_reliability!r}"),
        (settings.mode in MODES, f"mode must be one of {MODES}, got {settings.mode!r}"),
        (settings.qos_depth >= 1, f"qos_depth must be >= 1, got {settings.qos_depth}"),
        (settings.queue_size >= 1, f"queue_size must be >= 1, got {settings.queue_size}"),
        (math.isfinite(settings.slop) and settings.slop >= 0, f"slop must be >= 0 s, got {settings.slop}"),
        (settings.service_timeout_s > 0, f"service_timeout_s must be > 0, got {settings.service_timeout_s}"),
        (settings.tf_timeout_s >= 0, f"tf_timeout_s must be >= 0, got {settings.tf_timeout_s}"),
        (settings.max_markers >= 0, f"max_markers must be >= 0, got {settings.max_markers}"),
        (settings.diagnostics_period_s > 0,
         f"diagnostics_period_s must be > 0, got {settings.diagnostics_period_s}"),
        (settings.input_timeout_s > 0, f"input_timeout_s must be > 0, got {settings.input_timeout_s}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for name, (low, high) in NODE_BOUNDS.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise ConfigError(f"{name} must be in [{low:g}, {high:g}], got {value}")
    if settings.target_frame != settings.target_frame.strip() or settings.target_frame.startswith("/"):
        raise ConfigError(f"target_frame must be a TF frame id without spaces or a leading '/', "
                          f"got {settings.target_frame!r}")


def all_bounds() -> dict[str, tuple[float, float]]:
    """{parameter: (low, high)} of every bounded numeric parameter (detector and node)."""
    return {**BOUNDS, **NODE_BOUNDS}


def check_paths(config: DetectorConfig) -> None:
    """ConfigError when a path parameter names no readable file (empty = unset, fine)."""
    import os

    for name in PATH_PARAMETERS:
        path = config.value(name)
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise ConfigError(f"{name}: no readable file at {path!r}")


def unknown_parameter_notice(names) -> str | None:
    """A warning naming parameters the node does not declare (with a did-you-mean), or None."""
    import difflib

    known = sorted(declared_parameter_names())
    unknown = sorted(str(name) for name in names if str(name) not in known and not _is_ros_parameter(str(name))
                     and str(name) not in DEPRECATED_PARAMETERS)
    if not unknown:
        return None
    described = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        described.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"ignoring unknown parameter(s) {', '.join(described)}: the node does not declare them"


def _is_ros_parameter(name: str) -> bool:
    # QoS overrides and other rclpy-owned parameters are not ours to judge.
    return name.startswith("qos_overrides.") or name in ("start_type_description_service",)


def settings_from_mapping(values: dict, base: NodeSettings | None = None) -> NodeSettings:
    """Merge ``values`` into ``base`` (default NodeSettings) and validate; unknown keys are errors."""
    known = {f.name for f in fields(NodeSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown node parameter(s) {unknown}")
    settings = dataclasses.replace(base or NodeSettings(), **{k: checked_value(k, v) for k, v in values.items()})
    validate_settings(settings)
    return settings


def split_values(values: dict) -> tuple[dict, dict]:
    """({DetectorConfig fields}, {NodeSettings fields}) of a flat parameter mapping; others are dropped."""
    detector = {k: checked_value(k, v) for k, v in values.items() if k in DETECTOR_FIELDS}
    node = {k: v for k, v in values.items() if k in _TABLE and k not in DETECTOR_FIELDS}
    return detector, node


def apply_changes(changes: dict, config: DetectorConfig,
                  settings: NodeSettings) -> tuple[DetectorConfig, NodeSettings]:
    """The configuration after a runtime parameter change, or ConfigError saying why it is refused.

    Parameters that are not the node's (use_sim_time, QoS overrides) pass untouched. Changing a
    model/backend/thread or subscription setting is refused with "restart required"; setting it
    to its current value is accepted.
    """
    for name, value in changes.items():
        if name in RESTART_REQUIRED:
            current = config.value(name) if name in DETECTOR_FIELDS else getattr(settings, name)
            if checked_value(name, value) != current:
                raise ConfigError(f"{name} cannot change while the node runs: restart required "
                                  f"(current value {current!r})")
    detector_changes, node_changes = split_values(changes)
    new_config = from_mapping(detector_changes, config)
    if any(name in detector_changes for name in PATH_PARAMETERS):
        check_paths(new_config)
    return new_config, settings_from_mapping(node_changes, settings)


def overrides_from_strings(values: dict[str, str]) -> dict:
    """Typed parameter overrides from strings (launch arguments); empty strings are left out.

    An empty launch argument thus keeps the value of the parameter file. Booleans are
    true/false, arrays YAML lists ("[0.1, 0.2, 0.3]"). A deprecated name is kept (the node reads
    it and warns) with its value checked as the new name's.

    Raises:
        ConfigError: an unknown parameter or a value that does not parse as its type.
    """
    import yaml

    overrides = {}
    for name, text in values.items():
        current = DEPRECATED_PARAMETERS.get(name, name)
        if current not in _TABLE and name not in ROS_BUILTIN_PARAMETERS:
            import difflib

            close = difflib.get_close_matches(name, sorted(declared_parameter_names()), n=1)
            raise ConfigError(f"unknown parameter {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        text = str(text).strip()
        if not text:
            continue
        if name in ROS_BUILTIN_PARAMETERS or _TABLE[current][1] != "str":
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{name}: cannot parse {text!r}: {exc}") from exc
        else:
            value = text
        value = checked_value(current, value)
        # launch_ros takes lists for array parameters
        overrides[name] = list(value) if isinstance(value, tuple) else value
    return overrides


def declare_parameters(node) -> tuple[DetectorConfig, NodeSettings]:
    """Declare every parameter on an rclpy ``node`` (overrides from the command line or a YAML
    file apply) and return the validated configuration they describe.

    Raises:
        ConfigError: a value has the wrong type or is out of range.
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    constraints = {"bool": "true or false", "int": "integer", "float": "double (an integer is accepted)",
                   "str": "string", "float_array": "array of doubles ([] = unset)",
                   "int_array": "array of integers ([] = unset)"}
    bounds = all_bounds()
    initial_values = _values_under_deprecated_names(node)
    for name, (default, kind, description) in _TABLE.items():
        if name in RESTART_REQUIRED:
            description += " (fixed at start: restart required to change)"
        descriptor = ParameterDescriptor(
            name=name, description=description, dynamic_typing=True,
            additional_constraints=constraints[kind],
            read_only=False)
        if name in bounds:
            # rclpy refuses a set_parameters value outside the range before our callback runs.
            low, high = bounds[name]
            if kind == "int":
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high),
                                                                      step=0.0)]
        # An empty array has no ROS type: declared unset (None), read back as ().
        is_array = kind in ("float_array", "int_array")
        initial = (list(default) or None) if is_array else default
        node.declare_parameter(name, initial_values.get(name, initial), descriptor)
    values = {name: node.get_parameter(name).value for name in _TABLE}
    detector_values, node_values = split_values(values)
    config = from_mapping(detector_values)
    check_paths(config)
    return config, settings_from_mapping(node_values)


def _values_under_deprecated_names(node) -> dict:
    """{new name: value} of the overrides (params file, -p) that use a deprecated name, each
    warned about in one line; ConfigError when the new name is given as well."""
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    given = {name: overrides[name].value for name in overrides
             if name in DEPRECATED_PARAMETERS or name in DEPRECATED_PARAMETERS.values()}
    renamed = with_current_names(given, notify=node.get_logger().warning)
    return {new: renamed[new] for old, new in DEPRECATED_PARAMETERS.items() if old in given}
