"""Launch files and parameter files name only what the node declares, with values it accepts.

launch/launch_ros are not installable from PyPI, so each launch file is imported as a plain
module (it must not import them at import time) and its description is generated against small
stand-ins that record what the real classes would receive. The YAML files are checked three
ways: key set and types against the declared parameters, the core's validation, and rcl's own
YAML parser plus the node's declaration code.
"""
import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from graspnet_edge_ros.config import DetectorConfig, from_mapping
from graspnet_edge_ros.ros.params import (ROS_BUILTIN_PARAMETERS, declared_parameter_names, parameter_table,
                                          settings_from_mapping, split_values)

REPO_ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILES = sorted((REPO_ROOT / "launch").glob("*.launch.py"))
CONFIG_FILES = sorted((REPO_ROOT / "config").glob("*.yaml"))
NODE_NAME = "graspnet_edge_node"
REQUIRED_ARGUMENTS = {"params_file", "model_path", "backend", "target_frame", "color_topic", "depth_topic",
                      "camera_info_topic"}


def load_launch_module(path: Path, monkeypatch):
    """Import a launch file with `launch` and `launch_ros` made unimportable."""
    monkeypatch.setitem(sys.modules, "launch", None)
    monkeypatch.setitem(sys.modules, "launch_ros", None)
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.name.split('.')[0]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorded:
    """Stand-in for a launch class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def install_launch_stand_ins(monkeypatch, share_dir: Path):
    """Minimal launch, launch_ros and ament_index_python modules with the API the launch files use."""
    class LaunchConfiguration(Recorded):
        def perform(self, context):
            return context.launch_configurations[self.args[0]]

    modules = {
        "launch": {"LaunchDescription": lambda entities: list(entities)},
        "launch.actions": {"DeclareLaunchArgument": Recorded, "OpaqueFunction": Recorded},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Recorded},
        "ament_index_python": {},
        "ament_index_python.packages": {"get_package_share_directory": lambda package: str(share_dir)},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)


def generated_node(module, monkeypatch, **given):
    """(declared launch arguments {name: default}, the Node stand-in) for the given argument values."""
    install_launch_stand_ins(monkeypatch, REPO_ROOT)
    entities = module.generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if "default_value" in e.kwargs}
    opaque = [e for e in entities if "function" in e.kwargs]
    assert len(opaque) == 1
    context = types.SimpleNamespace(launch_configurations={**declared, **given})
    # launch's OpaqueFunction calls function(context, *args).
    actions = opaque[0].kwargs["function"](context, *opaque[0].kwargs.get("args", []))
    assert len(actions) == 1
    return declared, actions[0]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_imports_without_launch_and_names_only_declared_parameters(path, monkeypatch):
    module = load_launch_module(path, monkeypatch)
    assert REQUIRED_ARGUMENTS <= set(module.ARGUMENTS)
    node_arguments = set(module.ARGUMENTS) - set(module.LAUNCH_ONLY_ARGUMENTS)
    assert node_arguments <= declared_parameter_names(), node_arguments - declared_parameter_names()
    assert (REPO_ROOT / module.DEFAULT_PARAMS_FILE).is_file()


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_generated_node_gets_the_parameter_file_and_typed_overrides(path, monkeypatch):
    module = load_launch_module(path, monkeypatch)
    declared, node = generated_node(module, monkeypatch, model_path="/models/split", num_threads="3",
                                    target_frame="base_link")
    assert set(declared) == set(module.ARGUMENTS)
    assert node.kwargs["package"] == "graspnet_edge_ros" and node.kwargs["executable"] == NODE_NAME
    assert node.kwargs["name"] == NODE_NAME
    params_file, overrides = node.kwargs["parameters"]
    assert Path(params_file) == REPO_ROOT / module.DEFAULT_PARAMS_FILE and Path(params_file).is_file()
    assert set(overrides) <= declared_parameter_names()
    assert overrides["model_path"] == "/models/split" and overrides["num_threads"] == 3
    assert overrides["target_frame"] == "base_link" and overrides["use_sim_time"] is False
    # backend is left to the parameter file (auto: chosen from the model file), so model:=x.pth works
    assert module.ARGUMENTS["backend"][0] == "" and "backend" not in overrides
    # Empty arguments keep the parameter file's values: they are not passed at all.
    assert "mode" not in overrides and "color_topic" not in overrides
    _, node = generated_node(module, monkeypatch, params_file="/robot/params.yaml", num_threads="")
    assert node.kwargs["parameters"][0] == "/robot/params.yaml" and "num_threads" not in node.kwargs["parameters"][1]
    _, node = generated_node(module, monkeypatch, model="/board/x5_split")      # short spelling
    assert node.kwargs["parameters"][1]["model_path"] == "/board/x5_split" and "model" not in node.kwargs["parameters"][1]


def test_each_launch_file_has_its_backend_and_config():
    defaults = {path.name: path.read_text() for path in LAUNCH_FILES}
    assert set(defaults) == {"graspnet_edge.launch.py", "rdk_x5.launch.py"}
    assert '"rdk_x5.yaml"' in defaults["rdk_x5.launch.py"]
    assert '"default.yaml"' in defaults["graspnet_edge.launch.py"]


def parameters_of(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert list(data) == [NODE_NAME] and list(data[NODE_NAME]) == ["ros__parameters"]
    return data[NODE_NAME]["ros__parameters"]


PYTHON_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_file_holds_every_parameter_with_its_declared_type(path):
    values = parameters_of(path)
    assert set(values) == set(declared_parameter_names()), set(values) ^ set(declared_parameter_names())
    table = parameter_table()
    for name, value in values.items():
        kind = "bool" if name in ROS_BUILTIN_PARAMETERS else table[name][1]
        if kind in ("float_array", "int_array"):
            item_type = float if kind == "float_array" else int
            assert isinstance(value, list) and all(type(v) is item_type for v in value), (name, value)
        else:
            assert type(value) is PYTHON_TYPES[kind], (name, value, kind)
    detector_values, node_values = split_values(values)
    config = from_mapping(detector_values)
    settings = settings_from_mapping(node_values)
    assert isinstance(config, DetectorConfig) and settings.color_topic == "camera/color/image_raw"  # relative: in the namespace


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_config_entry_is_commented(path):
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"\s{4}(\w+):", line)
        if match:
            assert "#" in line or lines[index - 1].strip().startswith("#"), f"{path.name}: {match.group(1)}"


def test_config_files_differ_where_the_platforms_differ():
    default, x5 = (parameters_of(REPO_ROOT / "config" / name) for name in ("default.yaml", "rdk_x5.yaml"))
    # Both choose the backend from the model file: a .pth runs with torch, an X5 kit on the BPU.
    assert default["backend"] == "auto" and x5["backend"] == "auto"
    assert x5["num_threads"] > 0 and default["num_threads"] == 0


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_rcl_parses_the_config_file_and_the_node_declares_it(path, ros_interfaces):
    """rcl's YAML parser reads the file and the node's own declaration code accepts every value."""
    import rclpy

    from graspnet_edge_ros.ros.params import declare_parameters

    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=context)
    try:
        node = rclpy.create_node(NODE_NAME, context=context)
        try:
            config, settings = declare_parameters(node)
            expected = parameters_of(path)
            assert config.model.backend == expected["backend"] and config.model.num_threads == expected["num_threads"]
            assert settings.max_markers == expected["max_markers"]
            assert config.camera.workspace_min_xyz == tuple(expected["workspace_min_xyz"])
            assert config.filters.approach_direction == tuple(expected["approach_direction"])
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()
