"""Launch graspnet_edge_node on a CPU with ONNX Runtime (x86 or ARM).

    ros2 launch graspnet_edge_ros graspnet_edge.launch.py model_path:=/models/graspnet_split \\
        target_frame:=base_link

Parameters come from ``params_file`` (config/default.yaml of the package by default); a launch
argument that is left empty keeps the file's value, one that is given overrides it. Topics can
also be remapped as usual. ``launch``/``launch_ros`` are imported only when the description is
generated, so this file can be imported (and tested) without them.
"""
import os

PACKAGE = "graspnet_edge_ros"
EXECUTABLE = "graspnet_edge_node"
DEFAULT_PARAMS_FILE = os.path.join("config", "default.yaml")  # inside the package share directory
# Launch arguments that configure the launch itself; every other argument is a node parameter.
LAUNCH_ONLY_ARGUMENTS = ("params_file", "namespace")
ARGUMENTS = {  # name: (default, description)
    "params_file": ("", f"parameter YAML; empty = <share>/{DEFAULT_PARAMS_FILE}"),
    "namespace": ("", "ROS namespace of the node"),
    "model_path": ("", "GraspNet model: split directory (manifest.json), .onnx file or .pth checkpoint"),
    "backend": ("onnxruntime", "inference runtime: onnxruntime | torch"),
    "num_threads": ("", "ONNX Runtime intra-op threads (0 = one per core); empty = from params_file"),
    "target_frame": ("", "TF frame of the published poses (e.g. base_link); empty = from params_file"),
    "color_topic": ("", "colour image topic; empty = from params_file (/camera/color/image_raw)"),
    "depth_topic": ("", "aligned depth topic; empty = from params_file "
                        "(/camera/aligned_depth_to_color/image_raw)"),
    "camera_info_topic": ("", "CameraInfo topic; empty = from params_file (/camera/color/camera_info)"),
    "mode": ("", "continuous | on_demand; empty = from params_file"),
    "use_sim_time": ("false", "use /clock (bag playback with --clock)"),
}


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, (default, description) in ARGUMENTS.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=launch_node)])


def launch_node(context, *args, **kwargs):
    """The node action, built once the launch arguments are known (empty ones are left out)."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from graspnet_edge_ros.ros.params import overrides_from_strings

    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = values.pop("params_file") or package_file(DEFAULT_PARAMS_FILE)
    namespace = values.pop("namespace")
    return [Node(package=PACKAGE, executable=EXECUTABLE, name=EXECUTABLE, namespace=namespace, output="screen",
                 emulate_tty=True, parameters=[params_file, overrides_from_strings(values)])]


def package_file(relative_path: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory(PACKAGE), relative_path)
