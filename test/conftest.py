"""Shared test set-up: an isolated ROS 2 domain, the reference material, and the example scene.

The DDS settings are written to os.environ at import time, before any test module can import
rclpy, and child processes inherit them, so a test run never talks to other runs or to the LAN.
"""
import os
from pathlib import Path

import numpy as np
import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# One domain per test run (1..100), so concurrent runs on one machine cannot see each other.
os.environ["ROS_DOMAIN_ID"] = str(os.getpid() % 100 + 1)

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIRE_ROS_ENV = "GRASPNET_EDGE_REQUIRE_ROS"
REQUIRE_SHARED_ENV = "GRASPNET_EDGE_REQUIRE_SHARED"


def install_space() -> Path:
    """This repository's colcon install space for the distribution under test (scripts/env.sh
    exports GRASPNET_EDGE_ROS_DISTRO): install/ for Kilted, install-<distro>/ otherwise."""
    distro = os.environ.get("GRASPNET_EDGE_ROS_DISTRO") or "kilted"
    return REPO_ROOT / ("install" if distro == "kilted" else f"install-{distro}")


def shared_dir_path() -> Path:
    """../shared beside the repository, or GRASPNET_EDGE_SHARED when set."""
    configured = os.environ.get("GRASPNET_EDGE_SHARED")
    return Path(configured) if configured else REPO_ROOT.parent / "shared"


def require_module(name: str, hint: str = ""):
    """Import and return module ``name``, or skip the calling test when it is missing.

    Under `make test` (GRASPNET_EDGE_REQUIRE_SHARED=1) a missing module is a failure, not a skip:
    the venv installs every optional dependency the tests use (pybullet for the simulator).
    """
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        reason = f"{name} is not importable ({error})" + (f"; {hint}" if hint else "")
        if os.environ.get(REQUIRE_SHARED_ENV) == "1":
            pytest.fail(f"{REQUIRE_SHARED_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_dir_path()
    if not path.is_dir():
        reason = (f"reference material not found at {path} "
                  "(place it beside the repository as ../shared or set GRASPNET_EDGE_SHARED)")
        # Under `make test` and CI a missing ../shared is a failure: a third of the tests need it.
        if os.environ.get(REQUIRE_SHARED_ENV) == "1":
            pytest.fail(f"{REQUIRE_SHARED_ENV}=1 but the {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def example_scene(shared_dir) -> dict:
    """The real RGB-D capture of graspnet-baseline's example, as read-only arrays.

    Keys: color (H, W, 3) uint8 RGB, depth (H, W) uint16 in sensor units, workspace_mask (H, W)
    bool, K (3, 3) float64 intrinsics, factor_depth float (sensor units per metre).
    """
    from PIL import Image
    from scipy.io import loadmat

    scene_dir = shared_dir / "data" / "graspnet_example"
    meta = loadmat(scene_dir / "meta.mat")
    scene = {
        "color": np.array(Image.open(scene_dir / "color.png").convert("RGB"), dtype=np.uint8),
        "depth": np.array(Image.open(scene_dir / "depth.png"), dtype=np.uint16),
        "workspace_mask": np.array(Image.open(scene_dir / "workspace_mask.png")).astype(bool),
        "K": np.asarray(meta["intrinsic_matrix"], dtype=np.float64),
        "factor_depth": float(np.asarray(meta["factor_depth"]).reshape(-1)[0]),
    }
    # Session-scoped: one test must not be able to change what the next one sees.
    for value in scene.values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return scene


# -- the `ros` marker -------------------------------------------------------------------------------
# ROS-facing tests get rclpy and the generated interfaces through one of these fixtures (directly
# or through another fixture); each such test is marked `ros`, so `pytest -m ros` runs exactly the
# tests that touch ROS (`make test-ros`: the part of the suite run on every ROS distribution).
ROS_FIXTURES = frozenset({"ros_interfaces", "ros_context", "ros"})
_running_item = None  # the test being set up or run, for import_ros_or_skip's check


def pytest_collection_modifyitems(config, items):
    for item in items:
        if ROS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ros)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _running_item
    _running_item = item
    try:
        return (yield)
    finally:
        _running_item = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a ROS test (its fixtures torn down), collect garbage: rclpy futures that hold an
    exception print "The following exception was never retrieved: ..." to stderr when collected,
    which would otherwise land in whichever later test's captured stderr (seen on Kilted)."""
    try:
        return (yield)
    finally:
        if item.get_closest_marker("ros") is not None:
            import gc

            gc.collect()


def import_ros_or_skip():
    """Import rclpy and this package's generated interfaces, or skip the calling test.

    Under `make test` (GRASPNET_EDGE_REQUIRE_ROS=1) a missing ROS is a failure, not a skip.
    A test that reaches ROS without being marked `ros` fails: `make test-ros` would miss it.
    Returns the rclpy module.
    """
    if _running_item is not None and _running_item.get_closest_marker("ros") is None:
        pytest.fail(f"{_running_item.nodeid} imports ROS but is not marked `ros`: get rclpy through one of "
                    f"the fixtures {sorted(ROS_FIXTURES)} or mark it `@pytest.mark.ros`", pytrace=False)
    try:
        import rclpy
        import graspnet_edge_ros.msg  # noqa: F401
        import graspnet_edge_ros.srv  # noqa: F401
    except ImportError as error:
        reason = (f"rclpy or the generated graspnet_edge_ros messages are not importable ({error}); "
                  "run `make test`, or scripts/setup_env.sh then `. scripts/env.sh`")
        if os.environ.get(REQUIRE_ROS_ENV) == "1":
            pytest.fail(f"{REQUIRE_ROS_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return rclpy


@pytest.fixture
def ros_interfaces():
    """rclpy, after checking that it and graspnet_edge_ros.msg/.srv import (skip or fail otherwise)."""
    return import_ros_or_skip()


@pytest.fixture
def ros_context(ros_interfaces):
    """An initialised rclpy Context of its own, shut down after the test."""
    rclpy = ros_interfaces
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


# -- GraspNet artefacts shared by every test module (loading and exporting cost seconds) -----------

@pytest.fixture(scope="session")
def graspnet_checkpoint(shared_dir) -> Path:
    """The shared trained GraspNet state dict (bare, Conv1d-shaped heads)."""
    return shared_dir / "models" / "graspnet_edge_grasp.pth"


@pytest.fixture(scope="session")
def example_cloud(example_scene):
    """PreparedCloud of the example scene: workspace mask, 20000 points sampled with seed 0."""
    from graspnet_edge_ros.camera import CameraIntrinsics, Workspace, decode_depth, prepare_points

    depth = example_scene["depth"]
    intrinsics = CameraIntrinsics.from_matrix(example_scene["K"], depth.shape[1], depth.shape[0])
    return prepare_points(decode_depth(depth, "16UC1", 1.0 / example_scene["factor_depth"]), intrinsics,
                          workspace=Workspace(mask=example_scene["workspace_mask"]), num_points=20000, seed=0)


@pytest.fixture(scope="session")
def split_model_dir(graspnet_checkpoint, tmp_path_factory) -> Path:
    """The shared checkpoint exported as split ONNX segments + manifest.json (the runtime model)."""
    pytest.importorskip("torch", reason="exporting the model needs PyTorch (not in the make test-jammy-deps venv)")
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    directory = tmp_path_factory.mktemp("graspnet_split")
    export_split(load_graspnet(graspnet_checkpoint), directory)
    return directory
