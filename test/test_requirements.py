"""requirements.txt (Kilted) and requirements-jazzy.txt (Jazzy) differ only in the ROS block.

Both distributions are tested with the same ML and test stack, so a failure on one of them is a
ROS difference, never a NumPy/torch/SciPy one; torch stays the pinned CPU build on both.
"""
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)\s*((?:==|>=|<=|~=|<|>)\S*)?\s*$")


def requirements(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = REQUIREMENT.match(line)
        assert match, f"{name}: cannot read {line!r}"
        package = match.group(1).lower().replace("_", "-")
        assert package not in pins, f"{name}: {package} listed twice"
        pins[package] = match.group(2) or ""
    return pins


def test_both_distributions_share_the_non_ros_stack_exactly():
    kilted, jazzy = requirements("requirements.txt"), requirements("requirements-jazzy.txt")
    non_ros = {name: spec for name, spec in kilted.items() if not name.startswith("ros-")}
    assert non_ros == {name: spec for name, spec in jazzy.items() if not name.startswith("ros-")}
    assert non_ros["torch"] == "==2.13.0" and non_ros["numpy"].startswith("==")
    # every package is pinned exactly, except setuptools' range (see requirements.txt)
    for pins in (kilted, jazzy):
        assert all(spec.startswith("==") for name, spec in pins.items() if name != "setuptools"), pins


def test_each_file_pins_its_own_distributions_ros():
    kilted, jazzy = requirements("requirements.txt"), requirements("requirements-jazzy.txt")
    assert kilted["ros-rclpy"].startswith("==9.") and jazzy["ros-rclpy"].startswith("==7.")
    # the same ROS packages, but Kilted's ament_cmake_ros_core is Jazzy's ament_cmake_ros (which also
    # needs gmock/gtest and python_cmake_module at configure time)
    kilted_ros = {name for name in kilted if name.startswith("ros-")} - {"ros-ament-cmake-ros-core"}
    jazzy_ros = {name for name in jazzy if name.startswith("ros-")}
    assert jazzy_ros - kilted_ros == {"ros-ament-cmake-ros", "ros-ament-cmake-gmock", "ros-ament-cmake-gtest",
                                      "ros-python-cmake-module"}
    assert kilted_ros <= jazzy_ros
    # no version is shared between the two ROS blocks by accident (copied lines)
    shared_pins = {name for name in kilted_ros if kilted[name] == jazzy[name]}
    assert not shared_pins, shared_pins
