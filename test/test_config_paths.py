"""One strict config path: YAML files, the CLI and ROS parameters refuse a bad value with the same
message, the config is grouped per stage, and a renamed parameter still works under its old name.

The paths: ``graspnet-edge detect --params-file`` (YAML), ``graspnet-edge replay --param`` and the
launch arguments (``params.overrides_from_strings``), the node started with a parameter file, and
``ros2 param set`` (rclpy set_parameters on the running node).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graspnet_edge_ros import cli
from graspnet_edge_ros.config import (DEPRECATED_PARAMETERS, PARAMETERS, DetectorConfig, coerce_parameter,
                                      from_mapping)
from graspnet_edge_ros.errors import EXIT_USAGE, ConfigError
from test_ros_node import ros, stand_in_node  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent

# (parameter, YAML text of the bad value, the one message every path gives)
BAD_VALUES = [
    ("nms_enabled", "flase", "nms_enabled must be true or false, got the string 'flase'"),
    ("nms_enabled", "'false'", "nms_enabled must be true or false, got the string 'false'"),
    ("max_grasps", "'7'", "max_grasps must be an integer, got the string '7'"),
    ("max_grasps", "7.5", "max_grasps must be an integer, got the number 7.5"),
    ("tcp_offset_m", "true", "tcp_offset_m must be a number, got the boolean true"),
    ("pose_convention", "3", "pose_convention must be a string, got the integer 3"),
    ("workspace_min_xyz", "['a', 'b', 'c']",
     "workspace_min_xyz must be a list of numbers, got the list ['a', 'b', 'c']"),
    ("target_object_ids", "[1.5]", "target_object_ids must be a list of integers, got the list [1.5]"),
]
IDS = [f"{name}={text}" for name, text, _ in BAD_VALUES]


def _yaml_value(text: str):
    import yaml

    return yaml.safe_load(f"v: {text}")["v"]


# ------------------------------------------------------------------------ what is accepted
def test_ros_typing_is_the_rule_for_every_kind():
    accepted = [("bool", True, True), ("int", 7, 7), ("float", 0, 0.0), ("float", 2.5, 2.5), ("str", "auto", "auto"),
                ("float_array", [0, 1, 2.5], (0.0, 1.0, 2.5)), ("float_array", None, ()),
                ("int_array", [3, 4], (3, 4))]
    for kind, value, expected in accepted:
        coerced = coerce_parameter("p", value, kind)
        assert coerced == expected and type(coerced) is type(expected), (kind, value, coerced)
    refused = [("bool", "true"), ("bool", 1), ("int", 7.0), ("int", "7"), ("int", True), ("float", "0.1"),
               ("float", float("nan")), ("str", 3), ("str", None), ("float_array", "0 0 1"), ("int_array", [True])]
    for kind, value in refused:
        with pytest.raises(ConfigError, match="^p must be "):
            coerce_parameter("p", value, kind)


# ------------------------------------------------------------------ the same message everywhere
@pytest.mark.parametrize("name, text, message", BAD_VALUES, ids=IDS)
def test_cli_params_file_refuses_with_the_message(name, text, message, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(f"graspnet_edge_node:\n  ros__parameters:\n    {name}: {text}\n")
    (tmp_path / "c.png").write_bytes(b"")  # never read: the parameters are refused first
    code = cli.main(["detect", "--color", str(tmp_path / "c.png"), "--depth", str(tmp_path / "d.png"),
                     "--intrinsics", "50,50,32,24", "--model", str(tmp_path / "missing"), "--params-file", str(params),
                     "--output", str(tmp_path / "g.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE and err == [f"graspnet-edge: configuration error: {message}"], err


# A launch argument of a string parameter is its text ('3' is the string '3'): those are left out.
@pytest.mark.parametrize("name, text, message", [c for c in BAD_VALUES if PARAMETERS[c[0]].kind != "str"])
def test_command_line_param_and_launch_argument_refuse_with_the_message(name, text, message):
    from graspnet_edge_ros.ros.params import overrides_from_strings

    # `graspnet-edge replay --param name=value` and the launch files' arguments.
    with pytest.raises(ConfigError) as refused:
        overrides_from_strings({name: text})
    assert str(refused.value) == message


@pytest.mark.parametrize("name, text, message", BAD_VALUES, ids=IDS)
def test_ros_parameter_set_is_refused_with_the_message(stand_in_node, name, text, message):
    node, _, client = stand_in_node
    before = node._config
    result = client.set_parameters(**{name: _yaml_value(text)})[0]
    assert not result.successful and result.reason == message
    assert node._config is before


def test_node_start_with_a_bad_params_file_is_refused_in_one_line(ros, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("graspnet_edge_node:\n  ros__parameters:\n    nms_enabled: flase\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "graspnet_edge_ros.ros.node", "--ros-args", "--params-file",
                           str(params)], env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    output = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 1 and len(output) == 1, output
    assert output[0].endswith("cannot start: ConfigError: nms_enabled must be true or false, got the string 'flase'")


# ------------------------------------------------------------------------------ grouping
def test_flat_names_map_one_to_one_onto_the_groups():
    config = DetectorConfig.from_flat(max_grasps=7, nms_enabled=False, decode_width_clamp_m=0.067,
                                      gripper_max_width_m=0.08, num_points=4096)
    assert config.filters.max_grasps == 7 and config.nms.nms_enabled is False
    assert config.decode.decode_width_clamp_m == 0.067 and config.gripper.gripper_max_width_m == 0.08
    assert config.camera.num_points == 4096 and config.value("num_points") == 4096
    flat = config.flat()
    assert list(flat) == list(PARAMETERS) and DetectorConfig.from_flat(**flat) == config
    changed = config.replace(nms_enabled=True, min_score=0.2)
    assert changed.nms.nms_enabled and changed.filters.min_score == 0.2 and config.filters.min_score == 0.0
    assert changed.camera is config.camera  # untouched groups are shared
    with pytest.raises(ConfigError, match="max_grasps must be in"):
        config.replace(max_grasps=0)
    with pytest.raises(AttributeError, match=r"config\.filters\.max_grasps"):
        config.max_grasps  # noqa: B018 - the old flat read names its group


def test_the_stages_take_their_own_group():
    from graspnet_edge_ros.postprocess.executability import GripperGeometry

    config = DetectorConfig.from_flat(gripper_palm_width_m=0.15, gripper_table_tolerance_m=0.02)
    gripper = GripperGeometry.from_config(config.gripper)
    assert gripper.palm_width == 0.15 and gripper.table_tolerance == 0.02


# ---------------------------------------------------------------------------- the rename
def test_old_name_works_with_one_warning_and_both_names_are_refused(tmp_path, capsys):
    assert DEPRECATED_PARAMETERS["grasp_max_width_m"] == "decode_width_clamp_m"
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    grasp_max_width_m: 0.067\n")
    config = from_mapping(cli.detector_parameters(params))
    err = capsys.readouterr().err.strip().splitlines()
    assert config.decode.decode_width_clamp_m == 0.067
    assert err == ["graspnet-edge: warning: parameter 'grasp_max_width_m' is deprecated and will be removed in the "
                   "next release: use 'decode_width_clamp_m'"], err
    assert DetectorConfig().replace(grasp_max_width_m=0.05).decode.decode_width_clamp_m == 0.05
    with pytest.raises(ConfigError, match="both 'grasp_max_width_m' \\(deprecated\\) and 'decode_width_clamp_m'"):
        from_mapping({"grasp_max_width_m": 0.067, "decode_width_clamp_m": 0.1})


def test_launch_argument_under_the_old_name_is_passed_on_to_the_node():
    from graspnet_edge_ros.ros.params import overrides_from_strings

    assert overrides_from_strings({"grasp_max_width_m": "0.067"}) == {"grasp_max_width_m": 0.067}
    with pytest.raises(ConfigError, match="decode_width_clamp_m must be a number, got the string 'wide'"):
        overrides_from_strings({"grasp_max_width_m": "wide"})


@pytest.mark.parametrize("stand_in_node", [{"grasp_max_width_m": 0.067}], indirect=True)
def test_node_started_with_the_old_name_takes_its_value_and_warns(capfd, stand_in_node):
    node, detector, client = stand_in_node
    assert node._config.decode.decode_width_clamp_m == 0.067 == detector.config.decode.decode_width_clamp_m
    assert client.get_parameter("decode_width_clamp_m") == 0.067
    # rclpy logs from C: the warning went to this process's stderr when the node was declared.
    log = capfd.readouterr().err
    assert "parameter 'grasp_max_width_m' is deprecated" in log and "use 'decode_width_clamp_m'" in log, log


def test_node_given_both_names_does_not_start(ros):
    from rclpy.parameter import Parameter

    from graspnet_edge_ros.ros.node import GraspDetectorNode

    context = ros.Context()
    ros.init(context=context)
    try:
        with pytest.raises(ConfigError, match="keep only 'decode_width_clamp_m'"):
            GraspDetectorNode("both_names", context=context, detector_factory=lambda c: None,
                              parameter_overrides=[Parameter("grasp_max_width_m", value=0.067),
                                                   Parameter("decode_width_clamp_m", value=0.1)])
    finally:
        context.try_shutdown()
