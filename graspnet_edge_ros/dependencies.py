"""What to install for each third-party module the package imports: one line when one is missing.

A robot set up by hand may lack a Python package; the node's entry point and the launchers turn the
resulting ImportError into one line naming the package and how to install it, instead of a
traceback. The keys here agree with package.xml and requirements-robot.txt (test_packaging.py).

Standard library only: this module must import when everything else is missing.
"""
from __future__ import annotations

import os

ROSDEP_HINT = "or, from the workspace: rosdep install --from-paths src --ignore-src -y"

# module -> (rosdep key or pip requirement, how to install it)
APT_MODULES = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "yaml": "python3-yaml",
    "PIL": "python3-pil",
    "numba": "python3-numba",
    "tqdm": "python3-tqdm",
}
PIP_MODULES = {
    "onnxruntime": "pip install onnxruntime",
    "torch": "pip install torch --index-url https://download.pytorch.org/whl/cpu",
    "onnx": "pip install onnx onnxscript",
    "rosbags": "pip install rosbags",
    "pybullet": "pip install pybullet",
    "pybullet_data": "pip install pybullet",
}
BOARD_MODULES = {
    "hbm_runtime": "on the RDK X5 (RDK OS >= 3.5.0): sudo apt install hobot-spdev",
    "hobot_dnn": "comes with the RDK X5 board image (pyeasy_dnn)",
    "hobot_dnn_rdkx5": "comes with the RDK X5 board image (pyeasy_dnn)",
}
# ROS packages (rosdep key = package name; apt package ros-<distro>-<name with dashes>).
ROS_MODULES = frozenset({
    "rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "geometry_msgs", "sensor_msgs",
    "visualization_msgs", "diagnostic_msgs", "rosgraph_msgs", "ament_index_python", "launch", "launch_ros",
    "message_filters", "tf2_ros", "tf2_msgs",
})


def install_hint(module: str) -> str | None:
    """How to install top-level ``module`` (None when it is not one of the package's dependencies)."""
    top = module.split(".")[0]
    if top in APT_MODULES:
        return f"sudo apt install {APT_MODULES[top]} ({ROSDEP_HINT})"
    if top in PIP_MODULES:
        return f"{PIP_MODULES[top]} (see requirements-robot.txt)"
    if top in BOARD_MODULES:
        return BOARD_MODULES[top]
    if top in ROS_MODULES:
        distro = os.environ.get("ROS_DISTRO") or "<distro>"
        return (f"source /opt/ros/{distro}/setup.bash, or sudo apt install ros-{distro}-{top.replace('_', '-')} "
                f"({ROSDEP_HINT})")
    if top == "graspnet_edge_ros":
        return "build the package (colcon build) and source install/setup.bash, which provides its generated messages"
    return None


def missing_dependency_message(error: BaseException, program: str) -> str | None:
    """One line for an ImportError of a known dependency, else None (a bug: let it raise)."""
    if not isinstance(error, ImportError):
        return None
    name = getattr(error, "name", None) or ""
    hint = install_hint(name) if name else None
    if hint is None:
        return None
    what = name.split(".")[0] if not name.startswith("graspnet_edge_ros") else name
    return f"{program}: cannot start: missing Python package {what!r} ({error}); install it: {hint}"
