"""Launch graspnet_edge_node on the Horizon RDK X5: hobot_dnn (BPU) backend, X5 parameter file.

    ros2 launch graspnet_edge_ros rdk_x5.launch.py model:=/opt/graspnet_edge/graspnet_x5_split \\
        target_frame:=base_link

``model_path`` is a split directory whose manifest.json lists the X5 ``.bin`` segments (converted
with the OpenExplorer toolchain, see README "RDK X5") or a single ``.bin``. Parameters come from
``params_file`` (config/rdk_x5.yaml of the package by default: 4 ONNX Runtime threads of the
eight Cortex-A55 cores, longer service timeout); an empty launch argument keeps the file's value.
``launch``/``launch_ros`` are imported only when the description is generated, so this file can be
imported (and tested) without them.
"""
import os

from graspnet_edge_ros.ros.launch_support import LAUNCH_ONLY_ARGUMENTS, launch_description, launch_node  # noqa: F401

DEFAULT_PARAMS_FILE = os.path.join("config", "rdk_x5.yaml")  # inside the package share directory
ARGUMENTS = {  # name: (default, description)
    "params_file": ("", f"parameter YAML; empty = <share>/{DEFAULT_PARAMS_FILE}"),
    "namespace": ("", "ROS namespace of the node"),
    "model": ("", "short for model_path (wins when both are given)"),
    "model_path": ("", "split directory with the X5 .bin segments (manifest.json), or one .bin model"),
    "backend": ("hobot_dnn", "inference runtime: hobot_dnn (BPU) | onnxruntime (CPU fallback)"),
    "num_threads": ("", "CPU threads of ONNX Runtime segments; empty = from params_file (4)"),
    "target_frame": ("", "TF frame of the published poses (e.g. base_link); empty = from params_file"),
    "color_topic": ("", "colour image topic; empty = from params_file (/camera/color/image_raw)"),
    "depth_topic": ("", "aligned depth topic; empty = from params_file "
                        "(/camera/aligned_depth_to_color/image_raw)"),
    "camera_info_topic": ("", "CameraInfo topic; empty = from params_file (/camera/color/camera_info)"),
    "mode": ("", "continuous | on_demand; empty = from params_file"),
    "use_sim_time": ("false", "use /clock (bag playback with --clock)"),
}


def generate_launch_description():
    return launch_description(ARGUMENTS, DEFAULT_PARAMS_FILE)
