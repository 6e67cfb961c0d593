"""Message conversions, markers, diagnostics and parameter validation of the ROS layer, without a graph.

Only message types are needed (rclpy's generated Python classes); no node, no DDS.
"""
import math

import numpy as np
import pytest

from graspnet_edge_ros.config import DetectorConfig, RESTART_FIELDS, field_descriptions
from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.poses import tcp_poses

pytestmark = pytest.mark.usefixtures("ros_interfaces")


def raw_image(pixels: np.ndarray, encoding: str, *, padding: int = 0, big_endian: bool = False):
    """An Image built byte by byte (not with the code under test): rows padded, chosen byte order."""
    from sensor_msgs.msg import Image

    height, width = pixels.shape[:2]
    order = ">" if big_endian else "<"
    rows = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder(order))).reshape(height, -1)
    row_bytes = rows.view(np.uint8).reshape(height, -1)
    padded = np.concatenate([row_bytes, np.full((height, padding), 0xAB, np.uint8)], axis=1)
    return Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian),
                 step=row_bytes.shape[1] + padding, data=padded.tobytes())


def sample_pixels(encoding: str, rng) -> np.ndarray:
    shape = {"rgb8": (5, 7, 3), "bgr8": (5, 7, 3), "rgba8": (5, 7, 4), "bgra8": (5, 7, 4), "mono8": (5, 7),
             "16UC1": (5, 7), "mono16": (5, 7), "32FC1": (5, 7)}[encoding]
    if encoding == "32FC1":
        return rng.uniform(0.1, 3.0, size=shape).astype(np.float32)
    if encoding in ("16UC1", "mono16"):
        return rng.integers(0, 65535, size=shape, dtype=np.uint16)
    return rng.integers(0, 255, size=shape, dtype=np.uint8)


# ------------------------------------------------------------------------------------ images
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "16UC1", "mono16", "32FC1"])
@pytest.mark.parametrize("padding, big_endian", [(0, False), (5, False), (3, True)])
def test_image_to_array_honours_step_padding_and_byte_order(encoding, padding, big_endian):
    from graspnet_edge_ros.ros.conversions import image_to_array

    pixels = sample_pixels(encoding, np.random.default_rng(len(encoding) + padding))
    array = image_to_array(raw_image(pixels, encoding, padding=padding, big_endian=big_endian))
    assert array.dtype == pixels.dtype and array.dtype.isnative
    np.testing.assert_array_equal(array, pixels)


def test_colour_images_become_rgb():
    from graspnet_edge_ros.ros.conversions import color_from_image

    rgb = sample_pixels("rgb8", np.random.default_rng(1))
    np.testing.assert_array_equal(color_from_image(raw_image(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(color_from_image(raw_image(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(color_from_image(raw_image(rgba, "rgba8", padding=2)), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(color_from_image(raw_image(bgra, "bgra8")), rgb)
    gray = rgb[:, :, 0].copy()
    np.testing.assert_array_equal(color_from_image(raw_image(gray, "mono8")), np.stack([gray] * 3, axis=2))


def test_depth_images_keep_raw_values_and_encoding():
    from graspnet_edge_ros.ros.conversions import depth_from_image

    millimetres = np.array([[0, 500], [1000, 65535]], np.uint16)
    depth, encoding = depth_from_image(raw_image(millimetres, "16UC1", big_endian=True))
    assert encoding == "16UC1" and depth.dtype == np.uint16
    np.testing.assert_array_equal(depth, millimetres)
    metres = np.array([[0.5, np.nan], [np.inf, 1.25]], np.float32)
    depth, encoding = depth_from_image(raw_image(metres, "32FC1", padding=4))
    assert encoding == "32FC1"
    np.testing.assert_array_equal(depth, metres)  # NaN/inf handling belongs to decode_depth


@pytest.mark.parametrize("mutate, message", [
    (lambda m: setattr(m, "step", m.step - 1), "smaller than a row"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "data bytes"),
    (lambda m: setattr(m, "data", bytes(m.data) + b"\0"), "data bytes"),
    (lambda m: setattr(m, "encoding", "8UC3"), "unsupported image encoding"),
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported image encoding"),
    (lambda m: setattr(m, "height", 0), "no pixels"),
])
def test_malformed_images_raise_input_error(mutate, message):
    from graspnet_edge_ros.ros.conversions import image_to_array

    msg = raw_image(sample_pixels("rgb8", np.random.default_rng(0)), "rgb8")
    mutate(msg)
    with pytest.raises(InputError, match=message):
        image_to_array(msg)


def test_swapped_or_wrong_encodings_are_named():
    from graspnet_edge_ros.ros.conversions import color_from_image, depth_from_image

    depth_msg = raw_image(np.ones((2, 2), np.uint16), "16UC1")
    with pytest.raises(InputError, match="swapped"):
        color_from_image(depth_msg)
    with pytest.raises(InputError, match="unsupported depth encoding 'rgb8'"):
        depth_from_image(raw_image(np.ones((2, 2, 3), np.uint8), "rgb8"))


def test_image_from_array_round_trips_and_checks_shape():
    from builtin_interfaces.msg import Time

    from graspnet_edge_ros.ros.conversions import image_from_array, image_to_array

    pixels = sample_pixels("16UC1", np.random.default_rng(3))
    msg = image_from_array(pixels, "16UC1", Time(sec=4, nanosec=5), "cam")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (4, 5, "cam")
    assert msg.step == 7 * 2 and msg.is_bigendian == 0
    np.testing.assert_array_equal(image_to_array(msg), pixels)
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        image_from_array(np.zeros((4, 4), np.uint8), "rgb8")


# ------------------------------------------------------------------------ camera info, TF
def test_camera_info_gives_intrinsics_and_rejects_a_zero_k():
    from sensor_msgs.msg import CameraInfo

    from graspnet_edge_ros.ros.conversions import intrinsics_from_camera_info

    info = CameraInfo(width=1280, height=720, k=[927.17, 0.0, 651.32, 0.0, 927.37, 349.62, 0.0, 0.0, 1.0])
    intrinsics = intrinsics_from_camera_info(info)
    assert (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy) == (927.17, 927.37, 651.32, 349.62)
    assert (intrinsics.width, intrinsics.height) == (1280, 720)
    with pytest.raises(InputError, match="uncalibrated"):
        intrinsics_from_camera_info(CameraInfo(width=1280, height=720))


def test_transform_to_matrix_matches_a_hand_computed_rotation():
    from geometry_msgs.msg import Quaternion, Transform, Vector3

    from graspnet_edge_ros.ros.conversions import transform_to_matrix

    half = math.sqrt(0.5)  # 90 degrees about z
    matrix = transform_to_matrix(Transform(translation=Vector3(x=1.0, y=2.0, z=3.0),
                                           rotation=Quaternion(x=0.0, y=0.0, z=half, w=half)))
    np.testing.assert_allclose(matrix @ [1.0, 0.0, 0.0, 1.0], [1.0, 3.0, 3.0, 1.0], atol=1e-12)
    with pytest.raises(InputError, match="invalid transform"):
        transform_to_matrix(Transform(rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)))


# ------------------------------------------------------------------------------- GraspArray
def example_grasps(count: int = 4) -> GraspGroup:
    rng = np.random.default_rng(11)
    q, r = np.linalg.qr(rng.normal(size=(count, 3, 3)))
    q *= np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 2] *= -1
    scores = np.sort(rng.uniform(0.1, 1.2, count))[::-1]
    return GraspGroup.from_parts(scores, rng.uniform(0.02, 0.09, count), rng.uniform(0.01, 0.04, count),
                                 q, rng.uniform(-0.2, 0.6, (count, 3)), heights=0.02,
                                 object_ids=np.arange(count) - 1)


def test_grasp_array_carries_every_grasp_field_in_rank_order():
    from builtin_interfaces.msg import Time

    from graspnet_edge_ros.msg import GraspArray
    from graspnet_edge_ros.ros.conversions import grasp_array

    grasps = example_grasps()
    poses = tcp_poses(grasps, "z_approach_x_closing", tcp_offset=0.01, pre_grasp_distance=0.1)
    timings = {"preprocess": 12.0, "model": 300.0, "model.fps": 30.0, "nms": 1.0}
    msg = grasp_array(Time(sec=7, nanosec=8), "camera_color_optical_frame", "ok", model_id="m@ort",
                      pose_convention="z_approach_x_closing", pre_grasp_distance=0.1, grasps=grasps,
                      poses=poses, timings_ms=timings, total_ms=345.0)
    assert msg.status == GraspArray.STATUS_OK and msg.status_reason == ""
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (7, 8)
    assert msg.header.frame_id == "camera_color_optical_frame" and msg.model_id == "m@ort"
    assert msg.pose_convention == "z_approach_x_closing" and msg.pre_grasp_distance == pytest.approx(0.1)
    assert list(msg.stage_names) == ["preprocess", "model", "model.fps", "nms", "total"]
    np.testing.assert_allclose(msg.stage_latencies_ms, [12.0, 300.0, 30.0, 1.0, 345.0])
    assert [g.rank for g in msg.grasps] == [0, 1, 2, 3]
    for i, g in enumerate(msg.grasps):
        p, q = g.pose.position, g.pose.orientation
        np.testing.assert_allclose([p.x, p.y, p.z], poses.positions[i])
        np.testing.assert_allclose([q.x, q.y, q.z, q.w], poses.quaternions[i])
        pre = g.pre_grasp_pose.position
        np.testing.assert_allclose([pre.x, pre.y, pre.z], poses.pre_grasp_positions[i])
        assert g.pre_grasp_pose.orientation == g.pose.orientation
        np.testing.assert_allclose([g.approach.x, g.approach.y, g.approach.z], poses.approach[i])
        assert (g.score, g.width, g.height, g.depth) == pytest.approx(
            (grasps.scores[i], grasps.widths[i], grasps.heights[i], grasps.depths[i]), rel=1e-6)
        assert g.object_id == i - 1


def test_status_only_arrays_have_no_grasps_and_map_every_status():
    from builtin_interfaces.msg import Time

    from graspnet_edge_ros.msg import GraspArray
    from graspnet_edge_ros.ros.conversions import grasp_array
    from graspnet_edge_ros.status import status_name

    expected = {"ok": GraspArray.STATUS_OK, "no_valid_input": GraspArray.STATUS_NO_VALID_INPUT,
                "no_grasp": GraspArray.STATUS_NO_GRASP, "error": GraspArray.STATUS_ERROR}
    for status, code in expected.items():
        msg = grasp_array(Time(), "cam", status, "why", grasps=GraspGroup.empty())
        assert msg.status == code and msg.status_reason == "why" and len(msg.grasps) == 0
        assert status_name(msg.status) == status
    assert status_name(7) == "status 7"
    with pytest.raises(InputError, match="unknown detection status"):  # a ValueError too
        grasp_array(Time(), "cam", "fine")
    with pytest.raises(InputError, match="one TCP pose per grasp"):
        grasp_array(Time(), "cam", "ok", grasps=example_grasps(2), poses=None)


def test_truncated_keeps_the_best_grasps_and_every_other_field():
    from builtin_interfaces.msg import Time

    from graspnet_edge_ros.ros.conversions import grasp_array, truncated

    grasps = example_grasps(4)
    msg = grasp_array(Time(sec=1), "cam", "ok", "", model_id="m", grasps=grasps,
                      poses=tcp_poses(grasps), timings_ms={"model": 5.0}, total_ms=6.0)
    short = truncated(msg, 2)
    assert [g.rank for g in short.grasps] == [0, 1] and short.grasps[0] == msg.grasps[0]
    assert short.header == msg.header and short.model_id == "m" and list(short.stage_names) == ["model", "total"]
    assert len(msg.grasps) == 4  # the original is untouched


# ---------------------------------------------------------------------------------- markers
def test_markers_start_with_deleteall_and_are_capped():
    from builtin_interfaces.msg import Time
    from visualization_msgs.msg import Marker

    from graspnet_edge_ros.ros.markers import BEST_LINE_WIDTH_M, LINE_WIDTH_M, grasp_markers
    from graspnet_edge_ros.visualization import gripper_line_segments, score_colors

    grasps = example_grasps(4)
    markers = grasp_markers(grasps, Time(sec=3), "cam", max_markers=3).markers
    assert markers[0].action == Marker.DELETEALL
    assert len(markers) == 1 + 2 * 3
    lines = [m for m in markers if m.type == Marker.LINE_LIST]
    labels = [m for m in markers if m.type == Marker.TEXT_VIEW_FACING]
    assert [m.id for m in lines] == [0, 1, 2] and [m.id for m in labels] == [0, 1, 2]
    assert all(m.header.frame_id == "cam" and m.header.stamp.sec == 3 for m in markers)
    segments = gripper_line_segments(grasps[:3])
    colors = score_colors(grasps.scores[:3])
    for rank, line in enumerate(lines):
        points = np.array([[p.x, p.y, p.z] for p in line.points])
        np.testing.assert_allclose(points, segments[rank].reshape(-1, 3), atol=1e-6)
        np.testing.assert_allclose([line.color.r, line.color.g, line.color.b], colors[rank], atol=1e-6)
        assert line.scale.x == (BEST_LINE_WIDTH_M if rank == 0 else LINE_WIDTH_M)
    assert labels[0].text == f"0: {grasps.scores[0]:.2f}"
    assert labels[0].scale.z > labels[1].scale.z  # the best label stands out
    assert [m.action for m in grasp_markers(grasps, Time(), "cam", max_markers=0).markers] == [Marker.DELETEALL]


def test_markers_follow_the_transform_into_the_target_frame():
    from builtin_interfaces.msg import Time

    from graspnet_edge_ros.ros.markers import grasp_markers
    from graspnet_edge_ros.visualization import gripper_line_segments

    grasps = example_grasps(1)
    transform = np.eye(4)
    transform[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    transform[:3, 3] = [0.5, 0.0, 1.0]
    line = grasp_markers(grasps, Time(), "base_link", 5, transform=transform).markers[1]
    points = np.array([[p.x, p.y, p.z] for p in line.points])
    expected = gripper_line_segments(grasps)[0].reshape(-1, 3) @ transform[:3, :3].T + transform[:3, 3]
    np.testing.assert_allclose(points, expected, atol=1e-6)


# ------------------------------------------------------------------------------ diagnostics
@pytest.mark.parametrize("encoding, dtype", [("mono8", np.uint8), ("8UC1", np.uint8), ("mono16", np.uint16),
                                             ("16UC1", np.uint16), ("16SC1", np.int16), ("32SC1", np.int32)])
def test_label_images_in_every_integer_encoding_a_segmenter_publishes(encoding, dtype):
    from graspnet_edge_ros.ros.conversions import image_from_array, labels_from_image
    from graspnet_edge_ros.targeting import check_labels

    labels = np.arange(12, dtype=dtype).reshape(3, 4) % 5
    decoded = labels_from_image(image_from_array(labels, encoding))
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(check_labels(decoded, (3, 4)), labels.astype(np.int64))


def test_label_images_in_float_or_colour_encodings_are_refused():
    from graspnet_edge_ros.errors import InputError
    from graspnet_edge_ros.ros.conversions import image_from_array, labels_from_image

    for encoding, array in (("32FC1", np.zeros((3, 4), np.float32)), ("rgb8", np.zeros((3, 4, 3), np.uint8))):
        with pytest.raises(InputError, match="not a label image"):
            labels_from_image(image_from_array(array, encoding))


def test_diagnostic_level_names_the_object_mask_topic_when_frames_do_not_synchronise():
    from graspnet_edge_ros.ros.diagnostics import LEVEL_WARN, StatisticsSnapshot, diagnostic_level

    silent = StatisticsSnapshot(started=100.0, last_input=101.0)
    level, message = diagnostic_level(silent, 110.0, 5.0, mask_topic="/seg/labels")
    assert level == LEVEL_WARN
    assert "colour/depth/camera_info/object mask (/seg/labels) frame for 9.0 s" in message
    assert "/seg/labels must carry the colour image's stamp" in message
    assert "object mask" not in diagnostic_level(silent, 110.0, 5.0)[1]


def test_diagnostic_level_warns_on_silence_and_on_errors():
    from graspnet_edge_ros.ros.diagnostics import LEVEL_OK, LEVEL_WARN, StatisticsSnapshot, diagnostic_level

    fresh = StatisticsSnapshot(started=100.0)
    assert diagnostic_level(fresh, 101.0, input_timeout_s=5.0)[0] == LEVEL_OK
    level, message = diagnostic_level(fresh, 106.0, input_timeout_s=5.0)
    assert level == LEVEL_WARN and "yet" in message
    streaming = StatisticsSnapshot(started=100.0, last_input=109.0, last_status="ok")
    assert diagnostic_level(streaming, 110.0, 5.0) == (LEVEL_OK, "last frame: ok")
    failing = StatisticsSnapshot(started=100.0, last_input=109.0, last_status="error", last_reason="tf")
    assert diagnostic_level(failing, 110.0, 5.0) == (LEVEL_WARN, "last frame: error: tf")
    assert diagnostic_level(streaming, 120.0, 5.0)[0] == LEVEL_WARN


def test_diagnostics_report_rates_counters_and_latencies():
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticStatus

    from graspnet_edge_ros.ros.diagnostics import DiagnosticsReporter, NodeStatistics

    now = [0.0]
    stats = NodeStatistics(clock=lambda: now[0])
    reporter = DiagnosticsReporter("node: grasp detection", clock=lambda: now[0])
    for _ in range(4):
        stats.record_input()
    stats.record_dropped()
    stats.record_result("ok", "", {"model": 12.5, "total": 20.0})
    stats.record_result("no_valid_input", "bad K", {"total": 1.0})
    now[0] = 2.0
    array = reporter.report(stats.snapshot(), Time(sec=9), backend="onnxruntime", model_id="m", mode="continuous",
                            input_timeout_s=5.0)
    status = array.status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN and "bad K" in status.message
    assert values["input_rate_hz"] == "2.00" and values["output_rate_hz"] == "1.00"
    assert values["frames_dropped"] == "1" and values["backend"] == "onnxruntime" and values["model_id"] == "m"
    assert values["last_error"] == "no_valid_input: bad K" and values["latency_ms.total"] == "1.0"


# ------------------------------------------------------------------------------- parameters
def test_every_detector_field_is_a_parameter_with_its_description():
    from graspnet_edge_ros.ros.params import declared_parameter_names, parameter_table

    table = parameter_table()
    for name, description in field_descriptions().items():
        assert table[name][0] == DetectorConfig().value(name)
        assert table[name][2] == description
    assert {"color_topic", "slop", "queue_size", "mode", "target_frame", "use_sim_time"} <= declared_parameter_names()


def test_parameter_values_are_type_checked():
    from graspnet_edge_ros.ros.params import checked_value

    assert checked_value("tcp_offset_m", 0) == 0.0 and isinstance(checked_value("tcp_offset_m", 0), float)
    assert checked_value("workspace_min_xyz", [0, 1, 2.5]) == (0.0, 1.0, 2.5)
    assert checked_value("workspace_min_xyz", None) == ()
    for name, value in [("tcp_offset_m", "deep"), ("tcp_offset_m", True), ("tcp_offset_m", math.nan),
                        ("max_grasps", 2.5), ("nms_enabled", 1), ("mode", 3), ("workspace_min_xyz", ["a"])]:
        with pytest.raises(ConfigError, match=name):
            checked_value(name, value)


def test_runtime_changes_are_validated_and_restart_fields_refused():
    from graspnet_edge_ros.ros.params import NODE_RESTART_FIELDS, NodeSettings, apply_changes

    config, settings = DetectorConfig.from_flat(model_path="/m"), NodeSettings()
    new_config, new_settings = apply_changes({"max_grasps": 3, "mode": "on_demand", "use_sim_time": True},
                                             config, settings)
    assert new_config.filters.max_grasps == 3 and new_settings.mode == "on_demand" and config.filters.max_grasps == 50
    for name, value in [("model_path", "/other"), ("backend", "torch"), ("num_threads", 2),
                        ("color_topic", "/x"), ("slop", 0.1)]:
        assert name in RESTART_FIELDS | NODE_RESTART_FIELDS
        with pytest.raises(ConfigError, match="restart required"):
            apply_changes({name: value}, config, settings)
    assert apply_changes({"model_path": "/m"}, config, settings)[0] == config  # unchanged value: fine
    for changes, message in [({"max_grasps": 0}, "max_grasps"), ({"mode": "sometimes"}, "mode"),
                             ({"workspace_min_xyz": [1.0, 2.0]}, "workspace"), ({"max_markers": -1}, "max_markers"),
                             ({"target_frame": "/base_link"}, "target_frame")]:
        with pytest.raises(ConfigError, match=message):
            apply_changes(changes, config, settings)
