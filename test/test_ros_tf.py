"""Grasps in the robot's frame: target_frame through TF, with the fallback buffer where tf2_ros is missing.

* TransformBuffer on its own: chains through a tree, static and interpolated dynamic edges,
  "latest", tolerance, waiting, and a typed error for unknown, unconnected, stale or future data.
* End to end over DDS: a hand-eye calibration on /tf_static (base_link -> camera_mount ->
  camera optical frame, published before the node starts: transient local) and the node with
  target_frame base_link; the published poses, pre-grasp poses and approach vectors must equal
  the camera-frame ones transformed by hand. A missing, stale or future transform gives the
  error status with a reason and no grasps.

tf2_ros is hidden from the node in these tests so the fallback is what runs, also on machines
that have tf2_ros; tf2_msgs is the real one or the stand-in built by scripts/setup_env.sh.
"""
import sys
import threading
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from conftest import REQUIRE_ROS_ENV, import_ros_or_skip
from test_ros_node import GraphClient, frame_messages, key, small_K, stamp, wait_until

CAMERA_FRAME = "camera_color_optical_frame"
# Hand-eye calibration of an eye-to-hand camera: base_link -> camera_mount -> optical frame.
MOUNT_IN_BASE = (np.array([0.40, -0.10, 0.55]), Rotation.from_euler("xyz", [0.0, 0.0, 35.0], degrees=True))
CAMERA_IN_MOUNT = (np.array([0.02, 0.05, 0.10]), Rotation.from_euler("xyz", [-120.0, 5.0, -90.0], degrees=True))
TCP_OFFSET = 0.015
PRE_GRASP = 0.08


def matrix_of(translation, rotation) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation.as_matrix(), translation
    return out


def transform_msg(parent: str, child: str, translation, rotation, seconds: float = 0.0):
    from geometry_msgs.msg import TransformStamped

    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp = stamp(seconds)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = map(float, translation)
    x, y, z, w = rotation.as_quat()
    msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z, msg.transform.rotation.w = (
        float(x), float(y), float(z), float(w))
    return msg


@pytest.fixture(scope="module")
def ros():
    return import_ros_or_skip()


@pytest.fixture(scope="module")
def tf_messages(ros):
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError as error:
        reason = f"tf2_msgs is not importable ({error}); scripts/setup_env.sh builds the stand-in"
        if __import__("os").environ.get(REQUIRE_ROS_ENV) == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return TFMessage


# ------------------------------------------------------------------------- the buffer alone
@pytest.fixture
def buffer(ros):
    from graspnet_edge_ros.ros.tf_fallback import TransformBuffer

    tf = TransformBuffer()
    tf.set_transform(transform_msg("base_link", "camera_mount", *MOUNT_IN_BASE), static=True)
    tf.set_transform(transform_msg("camera_mount", CAMERA_FRAME, *CAMERA_IN_MOUNT), static=True)
    return tf


def test_static_chain_of_two_frames_is_composed_both_ways(buffer):
    from graspnet_edge_ros.ros.conversions import transform_to_matrix

    expected = matrix_of(*MOUNT_IN_BASE) @ matrix_of(*CAMERA_IN_MOUNT)
    answer = buffer.lookup_transform("base_link", CAMERA_FRAME, stamp(123.4))
    assert answer.header.frame_id == "base_link" and answer.child_frame_id == CAMERA_FRAME
    assert key(answer.header.stamp) == key(stamp(123.4))  # static: valid at any time
    np.testing.assert_allclose(transform_to_matrix(answer.transform), expected, atol=1e-9)
    np.testing.assert_allclose(buffer.lookup_matrix(CAMERA_FRAME, "base_link", stamp(0.5)),
                               np.linalg.inv(expected), atol=1e-9)
    # Siblings: camera_mount -> optical frame and a second child of base_link.
    table = (np.array([0.6, 0.0, 0.0]), Rotation.from_euler("z", 90, degrees=True))
    buffer.set_transform(transform_msg("base_link", "table", *table), static=True)
    np.testing.assert_allclose(buffer.lookup_matrix("table", CAMERA_FRAME, stamp(1.0)),
                               np.linalg.inv(matrix_of(*table)) @ expected, atol=1e-9)
    assert buffer.can_transform("base_link", CAMERA_FRAME, stamp(9.0))


def test_dynamic_edge_is_interpolated_and_latest_is_time_zero(buffer):
    first = (np.array([0.0, 0.0, 0.0]), Rotation.identity())
    second = (np.array([1.0, 2.0, 0.0]), Rotation.from_euler("z", 90, degrees=True))
    buffer.set_transform(transform_msg("world", "base_link", *second, seconds=11.0))
    buffer.set_transform(transform_msg("world", "base_link", *first, seconds=10.0))  # out of order on purpose
    world_from_camera = buffer.lookup_matrix("world", CAMERA_FRAME, stamp(10.25))
    slerp = Slerp([0, 1], Rotation.concatenate([first[1], second[1]]))
    world_from_base = matrix_of(0.75 * first[0] + 0.25 * second[0], slerp([0.25])[0])
    expected = world_from_base @ matrix_of(*MOUNT_IN_BASE) @ matrix_of(*CAMERA_IN_MOUNT)
    np.testing.assert_allclose(world_from_camera, expected, atol=1e-9)
    latest = buffer.lookup_transform("world", CAMERA_FRAME, stamp(0.0))
    assert key(latest.header.stamp) == key(stamp(11.0))
    np.testing.assert_allclose(buffer.lookup_matrix("world", "base_link", stamp(0.0)), matrix_of(*second), atol=1e-9)


def test_failures_are_typed_and_say_why(buffer):
    from graspnet_edge_ros.ros import tf_fallback

    buffer.set_transform(transform_msg("world", "base_link", np.zeros(3), Rotation.identity(), seconds=20.0))
    buffer.set_transform(transform_msg("world", "base_link", np.ones(3), Rotation.identity(), seconds=20.1))
    buffer.set_transform(transform_msg("odom", "robot2", np.zeros(3), Rotation.identity()), static=True)
    cases = {
        ("nowhere", CAMERA_FRAME, 20.05): (tf_fallback.LookupException, "'nowhere' does not exist"),
        ("robot2", CAMERA_FRAME, 20.05): (tf_fallback.ConnectivityException, "not in one tree"),
        ("world", CAMERA_FRAME, 40.0): (tf_fallback.ExtrapolationException, "stale"),
        ("world", CAMERA_FRAME, 5.0): (tf_fallback.ExtrapolationException, "before the earliest data"),
    }
    for (target, source, seconds), (error, fragment) in cases.items():
        with pytest.raises(error, match=fragment):
            buffer.lookup_transform(target, source, stamp(seconds))
        assert issubclass(error, tf_fallback.TransformException)
        assert buffer.can_transform(target, source, stamp(seconds)) is False
    assert buffer.can_transform("world", CAMERA_FRAME, stamp(20.05))


def test_tolerance_uses_the_nearest_sample_and_old_samples_expire(ros):
    from graspnet_edge_ros.ros.tf_fallback import ExtrapolationException, TransformBuffer

    tf = TransformBuffer(cache_time_s=1.0, extrapolation_tolerance_s=0.05)
    for seconds in (1.0, 1.5, 2.0, 2.5):
        tf.set_transform(transform_msg("world", "tool", [seconds, 0, 0], Rotation.identity(), seconds=seconds))
    assert tf.lookup_matrix("world", "tool", stamp(2.54))[0, 3] == pytest.approx(2.5)  # within 50 ms
    with pytest.raises(ExtrapolationException):
        tf.lookup_matrix("world", "tool", stamp(2.6))
    with pytest.raises(ExtrapolationException, match="before the earliest data"):
        tf.lookup_matrix("world", "tool", stamp(1.2))  # dropped: more than 1 s before the newest


def test_lookup_waits_for_data_until_its_timeout(buffer):
    from rclpy.duration import Duration

    from graspnet_edge_ros.ros.tf_fallback import ExtrapolationException

    buffer.set_transform(transform_msg("world", "base_link", np.zeros(3), Rotation.identity(), seconds=30.0))
    later = threading.Timer(0.2, lambda: buffer.set_transform(
        transform_msg("world", "base_link", [0.0, 0.0, 1.0], Rotation.identity(), seconds=31.0)))
    later.start()
    start = time.monotonic()
    matrix = buffer.lookup_matrix("world", "base_link", stamp(30.5), timeout=Duration(seconds=5.0))
    assert 0.1 < time.monotonic() - start < 4.0 and matrix[2, 3] == pytest.approx(0.5)
    start = time.monotonic()
    with pytest.raises(ExtrapolationException):
        buffer.lookup_matrix("world", "base_link", stamp(60.0), timeout=Duration(seconds=0.3))
    assert time.monotonic() - start >= 0.3


# ----------------------------------------------------------------------------- end to end
class RotatedDetector:
    """Three fixed grasps with distinct, non-trivial orientations in the camera frame."""

    model_id = "tf-stand-in"

    def __init__(self, config):
        from graspnet_edge_ros.grasps import GraspGroup

        self.config = config
        self.support_planes = []  # support_plane passed to each detect call
        self.up_hints = []        # up_hint passed to each detect call
        rotations = Rotation.from_euler("xyz", [[10, 20, 30], [-40, 5, 100], [170, -60, 15]], degrees=True)
        self.grasps = GraspGroup.from_parts([0.9, 0.7, 0.5], [0.05, 0.04, 0.03], [0.01, 0.02, 0.03],
                                            list(rotations.as_matrix()),
                                            [[0.02, -0.03, 0.48], [0.1, 0.05, 0.52], [-0.08, 0.0, 0.6]])

    def update_config(self, config):
        self.config = config

    def detect(self, color, depth, encoding, intrinsics, **options):
        from graspnet_edge_ros.pipeline import DetectionResult, check_table_plane_frame
        from graspnet_edge_ros.poses import tcp_poses

        c = self.config
        # The real detector's contract: a plane in another TF frame must arrive as support_plane.
        check_table_plane_frame(c, options.get("support_plane"))
        self.support_planes.append(options.get("support_plane"))
        self.up_hints.append(options.get("up_hint"))
        return DetectionResult("ok", grasps=self.grasps, model_id=self.model_id, timings_ms={"model": 1.0},
                               poses=tcp_poses(self.grasps, c.poses.pose_convention, c.poses.tcp_offset_m,
                                               c.poses.pre_grasp_distance_m, c.poses.twin_policy))


@pytest.fixture
def tf_node(ros, tf_messages, request, monkeypatch):
    """(node with target_frame base_link and the TF fallback, its GraphClient, /tf publisher, detectors)."""
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from graspnet_edge_ros.ros.node import GraspDetectorNode

    monkeypatch.setitem(sys.modules, "tf2_ros", None)  # the fallback runs even where tf2_ros exists
    name = f"tf_{request.node.name.split('[')[0][-24:]}"
    topics = (f"/{name}/color", f"/{name}/depth", f"/{name}/info")
    context = ros.Context()
    ros.init(context=context)
    publisher_node = ros.create_node(f"{name}_tf_publisher", context=context)
    static_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
    static_publisher = publisher_node.create_publisher(tf_messages, "/tf_static", static_qos)
    tf_publisher = publisher_node.create_publisher(tf_messages, "/tf", 100)
    # Published before the node exists: it must still get it (transient local).
    static_publisher.publish(tf_messages(transforms=[transform_msg("base_link", "camera_mount", *MOUNT_IN_BASE),
                                                     transform_msg("camera_mount", CAMERA_FRAME, *CAMERA_IN_MOUNT)]))
    overrides = {"color_topic": topics[0], "depth_topic": topics[1], "camera_info_topic": topics[2],
                 "warmup": False, "target_frame": "base_link", "tf_timeout_s": 2.0,
                 "tcp_offset_m": TCP_OFFSET, "pre_grasp_distance_m": PRE_GRASP}
    detectors = []
    node = GraspDetectorNode(name, context=context, detector_factory=lambda c: detectors.append(
        RotatedDetector(c)) or detectors[-1], parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    client = GraphClient(context, name, topics, executor_nodes=(node, publisher_node))
    try:
        client.wait_for_node(30.0)
        yield node, client, tf_publisher, detectors[0]
    finally:
        client.close()
        node.destroy_node()
        publisher_node.destroy_node()
        context.try_shutdown()


def tiny_frame(seconds: float):
    time_msg = stamp(seconds)
    return time_msg, frame_messages(np.zeros((6, 8, 3), np.uint8), np.full((6, 8), 500, np.uint16),
                                    small_K(8, 6), time_msg, frame_id=CAMERA_FRAME)


def detect_at(client, seconds: float):
    time_msg, messages = tiny_frame(seconds)
    client.publish(messages)
    return client.wait_for_result(time_msg)


def assert_poses_equal_transformed(result, detector, target_from_camera: np.ndarray):
    """Published poses == the camera-frame ones (same parameters) moved into the target frame by hand."""
    from graspnet_edge_ros.poses import tcp_poses

    c = detector.config
    camera = tcp_poses(detector.grasps, c.poses.pose_convention, c.poses.tcp_offset_m, c.poses.pre_grasp_distance_m,
                       c.poses.twin_policy)
    rotation, translation = target_from_camera[:3, :3], target_from_camera[:3, 3]
    assert len(result.grasps) == len(camera)
    for grasp, position, quaternion, approach, pre_grasp in zip(
            result.grasps, camera.positions, camera.quaternions, camera.approach, camera.pre_grasp_positions):
        expected_rotation = rotation @ Rotation.from_quat(quaternion).as_matrix()
        got = Rotation.from_quat([grasp.pose.orientation.x, grasp.pose.orientation.y, grasp.pose.orientation.z,
                                  grasp.pose.orientation.w]).as_matrix()
        np.testing.assert_allclose(got, expected_rotation, atol=1e-6)
        np.testing.assert_allclose([grasp.pose.position.x, grasp.pose.position.y, grasp.pose.position.z],
                                   rotation @ position + translation, atol=1e-6)
        np.testing.assert_allclose([grasp.approach.x, grasp.approach.y, grasp.approach.z], rotation @ approach,
                                   atol=1e-6)
        np.testing.assert_allclose([grasp.pre_grasp_pose.position.x, grasp.pre_grasp_pose.position.y,
                                    grasp.pre_grasp_pose.position.z], rotation @ pre_grasp + translation, atol=1e-6)
        pre_orientation = grasp.pre_grasp_pose.orientation
        np.testing.assert_allclose(Rotation.from_quat([pre_orientation.x, pre_orientation.y, pre_orientation.z,
                                                       pre_orientation.w]).as_matrix(), expected_rotation, atol=1e-6)
        # In the robot's frame the approach is still the TCP z axis, backed off by PRE_GRASP.
        np.testing.assert_allclose(got[:, 2], [grasp.approach.x, grasp.approach.y, grasp.approach.z], atol=1e-6)


def test_grasps_are_published_in_base_link_through_the_static_hand_eye_chain(tf_node):
    from graspnet_edge_ros.msg import GraspArray

    node, client, _, detector = tf_node
    assert node._transformer.implementation == "tf_fallback"
    result = detect_at(client, 1.0)
    assert result.status == GraspArray.STATUS_OK, result.status_reason
    assert result.header.frame_id == "base_link" and key(result.header.stamp) == key(stamp(1.0))
    assert "tf" in result.stage_names
    base_from_camera = matrix_of(*MOUNT_IN_BASE) @ matrix_of(*CAMERA_IN_MOUNT)
    assert_poses_equal_transformed(result, detector, base_from_camera)
    # Not the identity by accident: the camera-frame positions differ from the published ones.
    published = result.grasps[0].pose.position
    assert np.linalg.norm([published.x, published.y, published.z] - detector.grasps.translations[0]) > 0.2


def test_a_given_table_plane_in_base_link_reaches_the_detector_in_the_camera_frame(tf_node):
    from graspnet_edge_ros.msg import GraspArray
    from graspnet_edge_ros.support_plane import SupportPlane

    node, client, _, detector = tf_node
    base_plane = [0.0, 0.0, 1.0, -0.02]  # 2 cm above base_link's z = 0
    assert all(r.successful for r in client.set_parameters(
        table_plane_mode="given", table_plane_frame="base_link", table_plane=base_plane))
    result = detect_at(client, 3.0)
    assert result.status == GraspArray.STATUS_OK, result.status_reason
    camera_from_base = np.linalg.inv(matrix_of(*MOUNT_IN_BASE) @ matrix_of(*CAMERA_IN_MOUNT))
    expected = SupportPlane.from_coefficients(base_plane).transformed(camera_from_base)
    np.testing.assert_allclose(detector.support_planes[-1].coefficients, expected.coefficients, atol=1e-9)
    # Already the camera frame: passed on as it is (not None, which the detector would refuse).
    assert all(r.successful for r in client.set_parameters(table_plane_frame=CAMERA_FRAME))
    result = detect_at(client, 3.5)
    assert result.status == GraspArray.STATUS_OK, result.status_reason
    np.testing.assert_allclose(detector.support_planes[-1].coefficients,
                               SupportPlane.from_coefficients(base_plane).coefficients)


def test_fit_mode_gets_the_up_of_table_plane_frame_in_the_camera_frame(tf_node):
    from graspnet_edge_ros.msg import GraspArray

    node, client, _, detector = tf_node
    result = detect_at(client, 4.0)
    assert result.status == GraspArray.STATUS_OK and detector.up_hints[-1] is None  # no frame: no hint
    assert all(r.successful for r in client.set_parameters(table_plane_mode="fit", table_plane_frame="base_link"))
    result = detect_at(client, 4.5)
    assert result.status == GraspArray.STATUS_OK, result.status_reason
    camera_from_base = np.linalg.inv(matrix_of(*MOUNT_IN_BASE) @ matrix_of(*CAMERA_IN_MOUNT))
    np.testing.assert_allclose(detector.up_hints[-1], camera_from_base[:3, :3] @ [0.0, 0.0, 1.0], atol=1e-9)


def test_missing_stale_and_future_transforms_give_an_error_without_grasps(tf_node):
    from graspnet_edge_ros.msg import GraspArray

    node, client, tf_publisher, detector = tf_node
    assert all(r.successful for r in client.set_parameters(target_frame="nowhere", tf_timeout_s=0.3))
    missing = detect_at(client, 2.0)
    assert missing.status == GraspArray.STATUS_ERROR and len(missing.grasps) == 0
    assert missing.header.frame_id == "nowhere" and "'nowhere' does not exist" in missing.status_reason

    # A moving base in "world" (e.g. a mobile manipulator), on /tf at 20.0 s and 20.1 s.
    world_from_base = [(np.array([1.0, 0.0, 0.0]), Rotation.identity()),
                       (np.array([1.2, 0.0, 0.0]), Rotation.from_euler("z", 20, degrees=True))]
    from tf2_msgs.msg import TFMessage

    wait_until(lambda: tf_publisher.get_subscription_count() > 0, 30.0, "the node's /tf subscription")
    tf_publisher.publish(TFMessage(transforms=[
        transform_msg("world", "base_link", *world_from_base[0], seconds=20.0),
        transform_msg("world", "base_link", *world_from_base[1], seconds=20.1)]))
    assert all(r.successful for r in client.set_parameters(target_frame="world"))
    future = detect_at(client, 5.0)  # the only transforms are 15 s newer than the image
    assert future.status == GraspArray.STATUS_ERROR and len(future.grasps) == 0
    assert "before the earliest data" in future.status_reason and "image stamp 5.000000000" in future.status_reason

    interpolated = detect_at(client, 20.05)
    assert interpolated.status == GraspArray.STATUS_OK, interpolated.status_reason
    halfway = matrix_of(np.array([1.1, 0.0, 0.0]), Rotation.from_euler("z", 10, degrees=True))
    assert_poses_equal_transformed(interpolated, detector,
                                   halfway @ matrix_of(*MOUNT_IN_BASE) @ matrix_of(*CAMERA_IN_MOUNT))

    stale = detect_at(client, 40.0)  # the newest transform is 19.9 s older than the image
    assert stale.status == GraspArray.STATUS_ERROR and len(stale.grasps) == 0
    assert "stale" in stale.status_reason and stale.header.frame_id == "world"


# RIHS01 hash of tf2_msgs/msg/TFMessage as real ROS 2 (Jazzy, Kilted) publishes it, e.g. in
# `ros2 topic info /tf --verbose` and in the golden-hash test of rosidl.
REAL_TFMESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_tf2_msgs_in_use_has_the_real_type_hash(tf_messages):
    """The stand-in built here talks to real /tf publishers: its type hash is the real one."""
    import json
    import os
    from pathlib import Path

    descriptions = [Path(prefix) / "share" / "tf2_msgs" / "msg" / "TFMessage.json"
                    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if prefix]
    found = [path for path in descriptions if path.is_file()]
    if not found:
        pytest.skip("no TFMessage.json type description (Humble has no type hashes)")
    hashes = {entry["type_name"]: entry["hash_string"] for entry in json.loads(found[0].read_text())["type_hashes"]}
    assert hashes["tf2_msgs/msg/TFMessage"] == REAL_TFMESSAGE_HASH
