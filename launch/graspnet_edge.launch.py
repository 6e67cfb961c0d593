"""Launch graspnet_edge_node on a CPU (x86 or ARM); the backend comes from the model file.

    ros2 launch graspnet_edge_ros graspnet_edge.launch.py model:=/models/graspnet_split \\
        target_frame:=base_link
    ros2 launch graspnet_edge_ros graspnet_edge.launch.py model:=graspnet.pth namespace:=left_arm

``model:=`` takes a split directory (manifest.json; ONNX Runtime), an ``.onnx`` (ONNX Runtime) or
a ``.pth``/``.pt`` checkpoint (PyTorch). ``namespace:=`` puts the node, its relative input topics
(``camera/color/image_raw``...), ``~/grasps``, ``~/markers`` and ``~/detect_grasps`` under it.

Parameters come from ``params_file`` (config/default.yaml of the package by default); a launch
argument that is left empty keeps the file's value, one that is given overrides it. Topics can
also be remapped as usual. ``launch``/``launch_ros`` are imported only when the description is
generated, so this file can be imported (and tested) without them.
"""
import os

from graspnet_edge_ros.ros.launch_support import (  # noqa: F401  (LAUNCH_ONLY_ARGUMENTS: read by tools)
    LAUNCH_ONLY_ARGUMENTS, launch_arguments, launch_description)

DEFAULT_PARAMS_FILE = os.path.join("config", "default.yaml")  # inside the package share directory
# The arguments of this platform; launch_arguments adds the common ones (topics, frame, mode, ...).
ARGUMENTS = launch_arguments(DEFAULT_PARAMS_FILE, {
    "model_path": ("", "GraspNet split directory (manifest.json), .onnx or .pth; or a planar GR-ConvNet/AFFGA .onnx/.pt"),
    "backend": ("", "inference runtime: auto (from the model file) | onnxruntime | torch; empty = from params_file (auto)"),
    "num_threads": ("", "ONNX Runtime intra-op threads (0 = one per core); empty = from params_file"),
})


def generate_launch_description():
    return launch_description(ARGUMENTS, DEFAULT_PARAMS_FILE)
