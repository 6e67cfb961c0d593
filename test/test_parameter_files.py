"""The node's parameter YAML works everywhere a ROS user would pass it, and its ranges are declared.

* `graspnet-edge detect --params-file` takes config/default.yaml in both ROS layouts (the node's
  name or `/**`), drops node-only keys with one notice line, and still refuses unknown keys
  with a did-you-mean.
* Every bounded parameter is declared with its range in the ROS descriptor (what `ros2 param
  describe` shows and what rclpy enforces before the node's callback).
"""
import math
from pathlib import Path

import pytest
import yaml

from graspnet_edge_ros import cli
from graspnet_edge_ros.config import DetectorConfig, from_mapping
from graspnet_edge_ros.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_YAML = REPO_ROOT / "config" / "default.yaml"


def as_wildcard_layout(path: Path, destination: Path, extra: dict | None = None) -> Path:
    data = yaml.safe_load(path.read_text())
    parameters = {**data["graspnet_edge_node"]["ros__parameters"], **(extra or {})}
    destination.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
    return destination


@pytest.mark.parametrize("layout", ["node name", "/**"])
def test_cli_takes_the_node_parameter_file_with_one_notice(layout, tmp_path, capsys):
    path = DEFAULT_YAML if layout == "node name" else as_wildcard_layout(DEFAULT_YAML, tmp_path / "p.yaml")
    values = cli.detector_parameters(path)
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "ignoring node-only parameter(s)" in notice[0]
    for node_only in ("color_topic", "target_frame", "use_sim_time", "qos_reliability"):
        assert node_only in notice[0] and node_only not in values
    config = from_mapping(values, DetectorConfig())
    expected = yaml.safe_load(DEFAULT_YAML.read_text())["graspnet_edge_node"]["ros__parameters"]
    assert config.model.backend == expected["backend"] == "auto" and config.filters.max_grasps == expected["max_grasps"]
    assert config.filters.approach_direction == tuple(expected["approach_direction"])


def test_cli_params_file_unknown_key_still_fails_with_a_suggestion(tmp_path, capsys):
    path = as_wildcard_layout(DEFAULT_YAML, tmp_path / "p.yaml", {"min_scroe": 0.3})
    with pytest.raises(ConfigError, match="unknown parameter 'min_scroe'; did you mean 'min_score'"):
        from_mapping(cli.detector_parameters(path))


def test_every_bounded_parameter_declares_its_range(ros_context):
    import rclpy

    from graspnet_edge_ros.ros.params import all_bounds, declare_parameters, parameter_table

    node = rclpy.create_node("range_check", context=ros_context)
    try:
        declare_parameters(node)
        table = parameter_table()
        checked = 0
        for name, (low, high) in all_bounds().items():
            kind = table[name][1]
            if kind not in ("int", "float"):
                continue  # arrays: element bounds are validated by the node, ROS ranges are scalar-only
            descriptor = node.describe_parameter(name)
            ranges = descriptor.integer_range if kind == "int" else descriptor.floating_point_range
            assert len(ranges) == 1, name
            assert math.isclose(ranges[0].from_value, low) and math.isclose(ranges[0].to_value, high), name
            checked += 1
        assert checked >= 20  # the table is not empty by accident
        for name in ("nms_rotation_deg", "tf_timeout_s", "qos_depth", "max_grasps"):
            descriptor = node.describe_parameter(name)
            assert descriptor.integer_range or descriptor.floating_point_range, name
    finally:
        node.destroy_node()
