"""Launch graspnet_edge_node on a CPU with ONNX Runtime (x86 or ARM).

    ros2 launch graspnet_edge_ros graspnet_edge.launch.py model:=/models/graspnet_split \\
        target_frame:=base_link

Parameters come from ``params_file`` (config/default.yaml of the package by default); a launch
argument that is left empty keeps the file's value, one that is given overrides it. Topics can
also be remapped as usual. ``launch``/``launch_ros`` are imported only when the description is
generated, so this file can be imported (and tested) without them.
"""
import os

from graspnet_edge_ros.ros.launch_support import LAUNCH_ONLY_ARGUMENTS, launch_description, launch_node  # noqa: F401

DEFAULT_PARAMS_FILE = os.path.join("config", "default.yaml")  # inside the package share directory
ARGUMENTS = {  # name: (default, description)
    "params_file": ("", f"parameter YAML; empty = <share>/{DEFAULT_PARAMS_FILE}"),
    "namespace": ("", "ROS namespace of the node"),
    "model": ("", "short for model_path (wins when both are given)"),
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
    return launch_description(ARGUMENTS, DEFAULT_PARAMS_FILE)
