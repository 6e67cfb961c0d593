"""The tests run against the ROS 2 distribution they were asked for (`make test ROS_DISTRO=...`).

scripts/env.sh exports GRASPNET_EDGE_ROS_DISTRO and puts that distribution's venv and install
space first; a mix-up (Kilted's rclpy with Jazzy's messages, or the other install space) would
let the Jazzy run silently test Kilted again.
"""
import importlib.metadata
import os
import sys
from pathlib import Path

import pytest

from conftest import REQUIRE_ROS_ENV, install_space

REPO_ROOT = Path(__file__).resolve().parent.parent
RCLPY_MAJOR = {"humble": 3, "jazzy": 7, "kilted": 9}


def selected_distro() -> str:
    distro = os.environ.get("GRASPNET_EDGE_ROS_DISTRO") or os.environ.get("ROS_DISTRO")
    if not distro:
        message = "no GRASPNET_EDGE_ROS_DISTRO or ROS_DISTRO: source scripts/env.sh (or a ROS setup file)"
        if os.environ.get(REQUIRE_ROS_ENV) == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return distro


def test_rclpy_is_the_selected_distributions(ros_interfaces):
    distro = selected_distro()
    assert distro in RCLPY_MAJOR, f"unknown distribution {distro!r}"
    version = importlib.metadata.version("rclpy")
    assert int(version.split(".")[0]) == RCLPY_MAJOR[distro], (distro, version, ros_interfaces.__file__)


def test_generated_interfaces_come_from_the_selected_install_space(ros_interfaces):
    if not os.environ.get("GRASPNET_EDGE_ROS_DISTRO"):
        pytest.skip("not set up by scripts/env.sh: the install space is not this repository's")
    import graspnet_edge_ros.msg
    import graspnet_edge_ros.srv

    distro = os.environ["GRASPNET_EDGE_ROS_DISTRO"]
    install = install_space().resolve()
    for module in (graspnet_edge_ros.msg, graspnet_edge_ros.srv):
        assert Path(module.__file__).resolve().is_relative_to(install), (module.__file__, install)
    # and the interpreter and rclpy are the distribution's venv
    venv = Path(os.environ.get("GRASPNET_EDGE_VENV")
                or REPO_ROOT / (".venv" if distro == "kilted" else f".venv-{distro}")).resolve()
    assert Path(sys.prefix).resolve() == venv
    assert Path(ros_interfaces.__file__).resolve().is_relative_to(venv), (ros_interfaces.__file__, venv)
