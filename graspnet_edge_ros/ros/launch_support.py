"""What both launch files share: declaring their arguments and building the node action.

``launch``/``launch_ros``/``ament_index_python`` are imported inside the functions, so the launch
files (and this module) import without them; only ``ros2 launch`` needs them.
"""
from __future__ import annotations

import os

from graspnet_edge_ros import NODE_NAME
from graspnet_edge_ros.topics import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC

PACKAGE = "graspnet_edge_ros"
EXECUTABLE = NODE_NAME
# Launch arguments that configure the launch itself; every other argument is a node parameter.
LAUNCH_ONLY_ARGUMENTS = ("params_file", "namespace", "model")


def launch_arguments(default_params_file: str, platform_arguments: dict) -> dict:
    """{name: (default, description)} of a launch file: the common arguments, then its own ones."""
    return {
        "params_file": ("", f"parameter YAML; empty = <share>/{default_params_file}"),
        "namespace": ("", "ROS namespace of the node: its relative input topics, ~/grasps, ~/markers and "
                                "~/detect_grasps resolve under it"),
        "model": ("", "short for model_path (wins when both are given)"),
        **platform_arguments,
        "target_frame": ("", "TF frame of the published poses (e.g. base_link); empty = from params_file"),
        "color_topic": ("", f"colour image topic; empty = from params_file ({COLOR_TOPIC}, relative to namespace)"),
        "depth_topic": ("", f"aligned depth topic; empty = from params_file ({DEPTH_TOPIC})"),
        "camera_info_topic": ("", f"CameraInfo topic; empty = from params_file ({CAMERA_INFO_TOPIC})"),
        "mode": ("", "continuous | on_demand; empty = from params_file"),
        "use_sim_time": ("false", "use /clock (bag playback with --clock)"),
    }


def launch_description(arguments: dict, default_params_file: str):
    """LaunchDescription declaring ``arguments`` ({name: (default, description)}) and the node."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [DeclareLaunchArgument(name, default_value=default, description=description)
                for name, (default, description) in arguments.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=launch_node,
                                                        args=[arguments, default_params_file])])


def launch_node(context, arguments: dict, default_params_file: str):
    """The node action, built once the launch arguments are known (empty ones are left out)."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from graspnet_edge_ros.ros.params import overrides_from_strings

    values = {name: LaunchConfiguration(name).perform(context) for name in arguments}
    params_file = values.pop("params_file") or package_file(default_params_file)
    namespace = values.pop("namespace")
    model = values.pop("model", "")
    if model:  # `model:=DIR` is the short spelling of `model_path:=DIR`
        values["model_path"] = model
    return [Node(package=PACKAGE, executable=EXECUTABLE, name=EXECUTABLE, namespace=namespace, output="screen",
                 emulate_tty=True, parameters=[params_file, overrides_from_strings(values)])]


def package_file(relative_path: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory(PACKAGE), relative_path)
