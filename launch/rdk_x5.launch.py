"""Launch graspnet_edge_node on the Horizon RDK X5: X5 parameter file; a converted kit runs on the BPU.

    ros2 launch graspnet_edge_ros rdk_x5.launch.py model:=/opt/graspnet_edge/graspnet_x5_split \\
        target_frame:=base_link

``model_path`` is a split directory whose manifest.json lists the X5 ``.bin`` segments (converted
with the OpenExplorer toolchain, see README "RDK X5") or a single ``.bin``. ``backend`` is "auto":
the kit runs with hobot_dnn once its ``.bin`` files are there, with onnxruntime (CPU) before;
``backend:=hobot_dnn`` insists on the BPU (a kit not converted yet then stops with the hint). Parameters come from
``params_file`` (config/rdk_x5.yaml of the package by default: 4 ONNX Runtime threads of the
eight Cortex-A55 cores, longer service timeout); an empty launch argument keeps the file's value.
``launch``/``launch_ros`` are imported only when the description is generated, so this file can be
imported (and tested) without them.
"""
import os

from graspnet_edge_ros.ros.launch_support import (  # noqa: F401  (LAUNCH_ONLY_ARGUMENTS: read by tools)
    LAUNCH_ONLY_ARGUMENTS, launch_arguments, launch_description)

DEFAULT_PARAMS_FILE = os.path.join("config", "rdk_x5.yaml")  # inside the package share directory
# The arguments of this platform; launch_arguments adds the common ones (topics, frame, mode, ...).
ARGUMENTS = launch_arguments(DEFAULT_PARAMS_FILE, {
    "model_path": ("", "split directory with the X5 .bin segments (manifest.json), or one .bin model"),
    "backend": ("", "inference runtime: auto (from the model file: .bin segments -> hobot_dnn) | hobot_dnn | "
                    "onnxruntime (CPU fallback); empty = from params_file (auto)"),
    "num_threads": ("", "CPU threads of ONNX Runtime segments; empty = from params_file (4)"),
})


def generate_launch_description():
    return launch_description(ARGUMENTS, DEFAULT_PARAMS_FILE)
