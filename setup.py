"""pip packaging of the ROS-free core and the `graspnet-edge` CLI, for use without ROS.

    pip install .            # core (numpy, scipy, pillow, numba, pyyaml) + graspnet-edge
    pip install .[onnx]      # + ONNX Runtime backend and ONNX export checks
    pip install .[torch]     # + PyTorch backend
    pip install .[train]     # + what training needs
    pip install .[sim]       # + pybullet for the pick-success benchmark (graspnet-edge sim-eval)

ROS users build with colcon instead: package.xml declares build_type ament_cmake, so colcon
ignores this file. Do not pip-install it into the colcon venv: it would shadow the installed
package that carries the generated messages.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).resolve().parent
# One version, kept in the package itself.
version = re.search(r'^__version__ = "([^"]+)"',
                    (here / "graspnet_edge_ros" / "__init__.py").read_text(), re.M).group(1)

setup(
    name="graspnet-edge-ros",
    version=version,
    description="Ranked 6-DoF grasps from RGB-D frames with GraspNet, CUDA-free, for CPUs and edge boards",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The ROS layer needs rclpy and the colcon-generated messages; it is not part of the pip package.
    packages=find_packages(include=["graspnet_edge_ros", "graspnet_edge_ros.*"],
                           exclude=["graspnet_edge_ros.ros", "graspnet_edge_ros.ros.*"]),
    # Floors = what `make test-jammy-deps` runs the core tests with (Python 3.10, Ubuntu 22.04's
    # SciPy and Pillow; graspnet_edge_ros/compat.py covers what they lack; numba 0.59 needs NumPy
    # >= 1.22). test_compat.py keeps the two in step.
    install_requires=["numpy>=1.22", "scipy>=1.8", "pillow>=9.0", "numba>=0.59", "pyyaml>=6"],
    extras_require={
        "onnx": ["onnxruntime>=1.16", "onnx>=1.15"],
        "torch": ["torch>=2.1"],
        "train": ["torch>=2.1", "pyyaml>=6", "tqdm>=4.60"],
        # X5 kit on a workstation: export (torch), ONNX checks and the int8 simulation, bag frames
        "x5": ["torch>=2.1", "onnx>=1.15", "onnxruntime>=1.16", "rosbags>=0.10"],
        # pick-success benchmark in simulation (graspnet-edge sim-eval); never needed by the runtime
        "sim": ["pybullet>=3.2.5"],
    },
    entry_points={"console_scripts": ["graspnet-edge = graspnet_edge_ros.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
