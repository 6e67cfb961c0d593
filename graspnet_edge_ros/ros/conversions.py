"""ROS messages <-> the core's arrays: Image, CameraInfo, TF transforms in; GraspArray out (and back).

No node, no graph: every function takes and returns plain messages or numpy arrays, so all of
it is tested without a running ROS graph. Bad input raises ``InputError`` with the reason; the
node turns that into a STATUS_NO_VALID_INPUT result.
"""
from __future__ import annotations

import numpy as np

from graspnet_edge_ros.camera import IMAGE_LAYOUTS, CameraIntrinsics, decode_color, image_to_array  # noqa: F401
from graspnet_edge_ros.errors import InputError
from graspnet_edge_ros.ros.stamps import stamp_nanoseconds  # noqa: F401  (the node's name for it)
from graspnet_edge_ros.status import STATUS_CODES, STATUS_NO_VALID_INPUT

DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
TOTAL_STAGE = "total"


def color_from_image(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a colour Image (rgb8, bgr8, rgba8, bgra8 or mono8)."""
    if msg.encoding in DEPTH_ENCODINGS:
        raise InputError(f"colour image has depth encoding {msg.encoding!r}: are the colour and depth topics swapped?")
    return decode_color(image_to_array(msg), msg.encoding)


def depth_from_image(msg) -> tuple[np.ndarray, str]:
    """(raw (H, W) depth array, encoding) from a depth Image, for ``GraspDetector.detect``.

    16UC1/mono16 stay uint16 (scaled by the depth_scale parameter); 32FC1 is float32 metres.
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        raise InputError(f"unsupported depth encoding {msg.encoding!r} (supported: {', '.join(DEPTH_ENCODINGS)})")
    return image_to_array(msg), msg.encoding


def image_from_array(array: np.ndarray, encoding: str, stamp=None, frame_id: str = ""):
    """A sensor_msgs/Image (little-endian, unpadded rows) holding ``array`` (for tools and tests)."""
    from sensor_msgs.msg import Image

    if encoding not in IMAGE_LAYOUTS:
        raise InputError(f"unsupported image encoding {encoding!r}")
    dtype, channels = IMAGE_LAYOUTS[encoding]
    pixels = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    if channels == 1 and pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim != (2 if channels == 1 else 3) or (channels > 1 and pixels.shape[2] != channels):
        expected = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise InputError(f"{encoding} needs an {expected} array, got {pixels.shape}")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * pixels.dtype.itemsize
    msg.data = pixels.tobytes()
    return msg


def intrinsics_from_camera_info(msg) -> CameraIntrinsics:
    """Pinhole intrinsics from a sensor_msgs/CameraInfo (K, width, height); InputError for a bad K."""
    return CameraIntrinsics.from_camera_info(msg)


def labels_from_image(msg) -> np.ndarray:
    """(H, W) integer instance labels from a label Image (mono8/8UC1, mono16/16UC1, 16SC1 or 32SC1)."""
    from graspnet_edge_ros.targeting import LABEL_ENCODINGS

    if msg.encoding not in LABEL_ENCODINGS:
        raise InputError(f"object mask encoding {msg.encoding!r} is not a label image "
                         f"(supported: {', '.join(LABEL_ENCODINGS)})")
    return image_to_array(msg)


def detect_on_messages(detector, color_msg, depth_msg, info_msg, mask_msg=None, support_plane=None, up_hint=None):
    """(DetectionResult, conversion ms): the node's path from the input messages to a detection.

    Conversion errors become ``no_valid_input`` with the reason; the detector reports everything
    else in its status. Used by the fuzz test; the node runs the same phases on several frames at
    once (``prepare_on_messages``, then the detector's ``infer`` and ``finish``).
    ``mask_msg``: optional instance-label image; ``support_plane``: a given plane in the camera frame;
    ``up_hint``: the camera-frame "up" for the plane fit.
    """
    prepared, convert_ms = prepare_on_messages(detector, color_msg, depth_msg, info_msg, mask_msg, support_plane,
                                               up_hint)
    if prepared.settled:
        return prepared.result, convert_ms
    return detector.finish(prepared, detector.infer(prepared)), convert_ms


def prepare_on_messages(detector, color_msg, depth_msg, info_msg, mask_msg=None, support_plane=None, up_hint=None):
    """(PreparedFrame, conversion ms): the messages converted and ``detector.prepare``d.

    A frame whose messages cannot be converted comes back settled with ``no_valid_input``. A
    detector without phases (a test stand-in with ``detect`` only) runs whole here, settled.
    """
    import time

    from graspnet_edge_ros.pipeline import DetectionResult, PreparedFrame

    start = time.perf_counter()
    try:
        color = color_from_image(color_msg)
        depth, encoding = depth_from_image(depth_msg)
        intrinsics = intrinsics_from_camera_info(info_msg)
        labels = labels_from_image(mask_msg) if mask_msg is not None else None
    except InputError as exc:
        return (PreparedFrame.of_result(DetectionResult(STATUS_NO_VALID_INPUT, str(exc),
                                                        model_id=str(detector.model_id))),
                (time.perf_counter() - start) * 1e3)
    convert_ms = (time.perf_counter() - start) * 1e3
    options = dict(object_labels=labels, support_plane=support_plane, up_hint=up_hint)
    if not hasattr(detector, "prepare"):
        return PreparedFrame.of_result(detector.detect(color, depth, encoding, intrinsics, **options)), convert_ms
    return detector.prepare(color, depth, encoding, intrinsics, **options), convert_ms


def transform_to_matrix(transform) -> np.ndarray:
    """(4, 4) float64 homogeneous matrix of a geometry_msgs/Transform (target <- source).

    Raises:
        InputError: a zero or non-finite quaternion or translation.
    """
    from scipy.spatial.transform import Rotation

    t, q = transform.translation, transform.rotation
    quaternion = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    translation = np.array([t.x, t.y, t.z], dtype=np.float64)
    norm = float(np.linalg.norm(quaternion))
    if not (np.isfinite(quaternion).all() and np.isfinite(translation).all()) or norm < 1e-9:
        raise InputError(f"invalid transform: translation {translation.tolist()}, quaternion {quaternion.tolist()}")
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat(quaternion / norm).as_matrix()
    matrix[:3, 3] = translation
    return matrix


def matrix_to_transform(matrix):
    """geometry_msgs/Transform of a (4, 4) homogeneous matrix (the inverse of transform_to_matrix)."""
    from geometry_msgs.msg import Transform
    from scipy.spatial.transform import Rotation

    matrix = np.asarray(matrix, dtype=np.float64)
    transform = Transform()
    transform.translation.x, transform.translation.y, transform.translation.z = (float(v) for v in matrix[:3, 3])
    x, y, z, w = Rotation.from_matrix(matrix[:3, :3]).as_quat()
    transform.rotation.x, transform.rotation.y, transform.rotation.z, transform.rotation.w = (
        float(x), float(y), float(z), float(w))
    return transform


def status_code(status: str) -> int:
    """GraspArray.STATUS_* constant of a DetectionResult status string."""
    try:
        return STATUS_CODES[status]
    except KeyError:
        raise InputError(f"unknown detection status {status!r}") from None


def stage_latencies(timings_ms: dict, total_ms: float | None = None) -> tuple[list[str], list[float]]:
    """(stage_names, stage_latencies_ms) from a {stage: ms} mapping, in its order, plus "total"."""
    names = [str(name) for name in timings_ms if name != TOTAL_STAGE]
    values = [float(timings_ms[name]) for name in names]
    if total_ms is not None:
        names.append(TOTAL_STAGE)
        values.append(float(total_ms))
    return names, values


def stage_timings(msg) -> dict[str, float]:
    """{stage: ms} of a GraspArray (rclpy or rosbags message): the inverse of :func:`stage_latencies`."""
    return {str(name): float(value) for name, value in zip(msg.stage_names, msg.stage_latencies_ms)}


def grasp_array(stamp, frame_id: str, status: str, reason: str = "", *, model_id: str = "",
                pose_convention: str = "", pre_grasp_distance: float = 0.0, grasps=None, poses=None,
                timings_ms: dict | None = None, total_ms: float | None = None):
    """Build a graspnet_edge_ros/GraspArray.

    Args:
        stamp: builtin_interfaces/Time of the input image.
        frame_id: frame of every pose (the image frame or the target frame).
        status: "ok" | "no_valid_input" | "no_grasp" | "error" (pipeline constants).
        grasps: GraspGroup sorted best first (score, width, height, depth, object id), or None.
        poses: TcpPoses of those grasps in ``frame_id`` (required when grasps is non-empty).
        timings_ms: {stage: ms}; total_ms is appended as the "total" stage.
    """
    from graspnet_edge_ros.msg import GraspArray

    msg = GraspArray()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.status = status_code(status)
    msg.status_reason = reason
    msg.model_id = model_id
    msg.pose_convention = pose_convention
    msg.pre_grasp_distance = float(pre_grasp_distance)
    msg.stage_names, latencies = stage_latencies(timings_ms or {}, total_ms)
    msg.stage_latencies_ms = latencies
    if grasps is not None and len(grasps):
        if poses is None or len(poses) != len(grasps):
            raise InputError("grasp_array needs one TCP pose per grasp")
        msg.grasps = _grasp_messages(grasps, poses)
    return msg


def grasp_group_from_msg(msg, tcp_offset_m: float = 0.0):
    """GraspArray (rosbags or rclpy message) -> GraspGroup in the message's frame.

    Inverts the node's pose conversion: the GraspNet rotation is R_tcp @ P^T for the message's
    pose convention P, and the grasp point is the pose position minus ``tcp_offset_m`` times the
    approach (the node's tcp_offset_m parameter; it is not in the message).
    """
    from scipy.spatial.transform import Rotation

    from graspnet_edge_ros.grasps import GraspGroup
    from graspnet_edge_ros.poses import graspnet_to_tcp_rotation

    grasps = list(msg.grasps)
    if not grasps:
        return GraspGroup.empty()
    convention = msg.pose_convention or "z_approach_x_closing"
    permutation = graspnet_to_tcp_rotation(np.eye(3)[None], convention)[0]
    quats = np.array([[g.pose.orientation.x, g.pose.orientation.y, g.pose.orientation.z, g.pose.orientation.w]
                      for g in grasps])
    rotations = Rotation.from_quat(quats).as_matrix() @ permutation.T
    approach = np.array([[g.approach.x, g.approach.y, g.approach.z] for g in grasps])
    positions = np.array([[g.pose.position.x, g.pose.position.y, g.pose.position.z] for g in grasps])
    return GraspGroup.from_parts(
        scores=[g.score for g in grasps], widths=[g.width for g in grasps], depths=[g.depth for g in grasps],
        rotations=rotations, translations=positions - tcp_offset_m * approach,
        heights=[g.height for g in grasps], object_ids=[g.object_id for g in grasps])


def _grasp_messages(grasps, poses) -> list:
    from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
    from graspnet_edge_ros.msg import Grasp

    messages = []
    columns = zip(grasps.scores.tolist(), grasps.widths.tolist(), grasps.heights.tolist(),
                  grasps.depths.tolist(), grasps.object_ids.tolist(), poses.positions.tolist(),
                  poses.pre_grasp_positions.tolist(), poses.quaternions.tolist(), poses.approach.tolist())
    for rank, (score, width, height, depth, object_id, position, pre_grasp, quat, approach) in enumerate(columns):
        orientation = Quaternion(x=quat[0], y=quat[1], z=quat[2], w=quat[3])
        messages.append(Grasp(
            pose=Pose(position=Point(x=position[0], y=position[1], z=position[2]), orientation=orientation),
            pre_grasp_pose=Pose(position=Point(x=pre_grasp[0], y=pre_grasp[1], z=pre_grasp[2]),
                                orientation=Quaternion(x=quat[0], y=quat[1], z=quat[2], w=quat[3])),
            approach=Vector3(x=approach[0], y=approach[1], z=approach[2]),
            score=float(score), width=float(width), height=float(height), depth=float(depth),
            object_id=int(round(object_id)), rank=rank))
    return messages


def on_objects(msg, object_ids):
    """A new GraspArray keeping only the grasps on ``object_ids`` (ranks renumbered), with a status
    that says why it is empty when it is."""
    result = type(msg)()
    for name in msg.get_fields_and_field_types():
        setattr(result, name, getattr(msg, name))
    if msg.status != msg.STATUS_OK:
        return result
    import copy

    wanted = {int(i) for i in object_ids}
    # Copies: other callers share ``msg`` and its ranks.
    kept = [copy.deepcopy(grasp) for grasp in msg.grasps if grasp.object_id in wanted]
    for rank, grasp in enumerate(kept):
        grasp.rank = rank
    result.grasps = kept
    if not kept:
        present = sorted({grasp.object_id for grasp in msg.grasps})
        result.status = msg.STATUS_NO_GRASP
        result.status_reason = (f"none of the frame's {len(msg.grasps)} grasps is on object(s) {sorted(wanted)} "
                                f"(grasps are on {present}; -1 = no label, is object_mask_topic set?)")
    return result


def truncated(msg, max_grasps: int):
    """A new GraspArray equal to ``msg`` but keeping only its best ``max_grasps`` grasps (ranks unchanged)."""
    result = type(msg)()
    for name in msg.get_fields_and_field_types():
        setattr(result, name, getattr(msg, name))
    result.grasps = list(msg.grasps[:max(0, int(max_grasps))])
    return result
