"""Seeded fuzzing of the node's conversion layer and the pipeline (issue 15).

Thousands of random mutations of the example frame and of its ROS messages (Image/CameraInfo
fields: encodings, sizes, steps, endianness, garbage or truncated bytes, NaN/inf/zero/negative
depth, broken intrinsics) go through ``conversions.detect_on_messages`` - the exact path of the
node's worker - and through ``GraspDetector.detect`` with mutated arrays. No exception may escape
and every result must carry a known status (and a reason when it is not ok).

Not skippable: the messages are plain objects with the sensor_msgs fields (no rclpy needed), and
a missing example capture is a failure, not a skip. Most cases run a tiny deterministic stand-in
for the network (its outputs have the official names and shapes, so decode, filters, collision,
NMS and poses all run for real); a seeded subset runs the real split model.
"""
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import shared_dir_path
from graspnet_edge_ros.camera import IMAGE_LAYOUTS, CameraIntrinsics
from graspnet_edge_ros.config import DetectorConfig
from graspnet_edge_ros.pipeline import (STATUS_ERROR, STATUS_NO_GRASP, STATUS_NO_VALID_INPUT, STATUS_OK,
                                        GraspDetector)
from graspnet_edge_ros.ros.conversions import detect_on_messages

KNOWN_STATUSES = {STATUS_OK, STATUS_NO_VALID_INPUT, STATUS_NO_GRASP, STATUS_ERROR}
MESSAGE_CASES = 2000
ARRAY_CASES = 600
REAL_MODEL_CASES = 24
DOWNSAMPLE = 20       # 1280x720 -> 64x36 for the stand-in cases
REAL_DOWNSAMPLE = 4   # 320x180 for the real model
SEED = 15


@pytest.fixture(scope="module")
def example_frame():
    """(colour, depth uint16 mm, K) of the example capture; a missing capture fails the test."""
    from PIL import Image
    from scipy.io import loadmat

    scene = shared_dir_path() / "data" / "graspnet_example"
    if not (scene / "depth.png").is_file():
        pytest.fail(f"the fuzz test needs the example capture at {scene} (set GRASPNET_EDGE_SHARED)")
    meta = loadmat(scene / "meta.mat")
    return (np.array(Image.open(scene / "color.png").convert("RGB")), np.array(Image.open(scene / "depth.png")),
            np.asarray(meta["intrinsic_matrix"], float))


def downsampled(frame, factor):
    color, depth, K = frame
    K = K.copy()
    K[:2] /= factor
    return np.ascontiguousarray(color[::factor, ::factor]), np.ascontiguousarray(depth[::factor, ::factor]), K


class TinyRunner:
    """A deterministic stand-in for GraspNet: official raw outputs for 64 seeds picked from the points."""

    model_id = "fuzz-stand-in"
    model_type = "graspnet"
    backend_name = "numpy"
    kind = "stand-in"
    num_points = None
    last_timings_ms: dict = {}
    SEEDS, VIEWS, ANGLES, DEPTHS = 64, 300, 12, 4

    def __init__(self):
        from graspnet_edge_ros.model.views import generate_grasp_views

        self.views = generate_grasp_views(self.VIEWS)

    def __call__(self, points, skip_background_seeds=True, seed_gate=None):
        # Computes every head (like a single ONNX file): the pipeline applies seed_gate itself.
        points = np.asarray(points, np.float32)
        rng = np.random.default_rng(len(points))
        seeds = points[rng.integers(0, len(points), self.SEEDS)]
        head = (1, self.ANGLES, self.SEEDS, self.DEPTHS)
        return {
            "point_clouds": points[None],
            "objectness_score": rng.normal(size=(1, 2, self.SEEDS)).astype(np.float32),
            "fp2_xyz": seeds[None],
            "grasp_top_view_xyz": self.views[rng.integers(0, self.VIEWS, self.SEEDS)][None].astype(np.float32),
            "grasp_score_pred": rng.uniform(0, 1, head).astype(np.float32),
            "grasp_angle_cls_pred": rng.normal(size=head).astype(np.float32),
            "grasp_width_pred": rng.uniform(0, 0.08, head).astype(np.float32),
            "grasp_tolerance_pred": rng.uniform(0, 0.05, head).astype(np.float32),
        }


# ------------------------------------------------------------------- message building
def image_msg(array, encoding, stamp=0):
    dtype, channels = IMAGE_LAYOUTS[encoding]
    pixels = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=stamp, nanosec=0), frame_id="cam"),
                           height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=0,
                           step=pixels.shape[1] * channels * pixels.dtype.itemsize, data=pixels.tobytes())


def info_msg(K, width, height):
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0), frame_id="cam"),
                           width=width, height=height, k=[float(v) for v in np.ravel(K)],
                           d=[0.0] * 5, distortion_model="plumb_bob")


def messages_of(frame, depth_encoding="16UC1"):
    color, depth, K = frame
    depth_array = depth if depth_encoding != "32FC1" else depth.astype(np.float32) / 1000.0
    return [image_msg(color, "rgb8"), image_msg(depth_array, depth_encoding), info_msg(K, depth.shape[1],
                                                                                        depth.shape[0])]


# ------------------------------------------------------------------------- mutations
WEIRD_ENCODINGS = ["", "yuv422", "8UC1", "16SC1", "32FC1", "16UC1", "rgb8", "bgr8", "mono8", "mono16", "rgba8",
                   "bgra8", "\x00", "rgb8 ", "RGB8", "32FC1" * 40]
WEIRD_NUMBERS = [0, 1, -1, 2, 3, 7, 2**16, 2**31 - 1, 2**32 - 1, 10**12]
WEIRD_FLOATS = [0.0, -0.0, 1e-300, -1.0, np.nan, np.inf, -np.inf, 1e30, -1e30, 5e-324]


def _encoding(rng, msgs):
    msgs[rng.integers(0, 2)].encoding = WEIRD_ENCODINGS[rng.integers(len(WEIRD_ENCODINGS))]


def _size(rng, msgs):
    msg = msgs[rng.integers(0, 3)]
    setattr(msg, ["width", "height"][rng.integers(0, 2)], WEIRD_NUMBERS[rng.integers(len(WEIRD_NUMBERS))])


def _swap_size(rng, msgs):
    msg = msgs[rng.integers(0, 3)]
    msg.width, msg.height = msg.height, msg.width


def _step(rng, msgs):
    msg = msgs[rng.integers(0, 2)]
    msg.step = int(rng.choice([0, msg.step - 1, msg.step + 1, msg.step * 2, msg.step // 2, 2**32 - 1]))


def _truncate(rng, msgs):
    msg = msgs[rng.integers(0, 2)]
    msg.data = bytes(msg.data)[:int(rng.integers(0, len(msg.data) + 1))]


def _extend(rng, msgs):
    msg = msgs[rng.integers(0, 2)]
    msg.data = bytes(msg.data) + rng.bytes(int(rng.integers(1, 64)))


def _garbage(rng, msgs):
    msg = msgs[rng.integers(0, 2)]
    msg.data = rng.bytes(len(msg.data))


def _endianness(rng, msgs):
    msg = msgs[rng.integers(0, 2)]
    msg.is_bigendian = int(rng.choice([0, 1, 2, 255]))


def _depth_values(rng, msgs):
    depth = msgs[1]
    if depth.encoding != "32FC1" or depth.step != depth.width * 4 or len(depth.data) != depth.step * depth.height:
        return
    values = np.frombuffer(depth.data, np.float32).copy()
    chosen = rng.random(values.size) < rng.uniform(0, 1)
    values[chosen] = np.array(WEIRD_FLOATS, np.float32)[rng.integers(len(WEIRD_FLOATS), size=chosen.sum())]
    depth.data = values.tobytes()


def _depth_units(rng, msgs):
    depth = msgs[1]
    if depth.encoding not in ("16UC1", "mono16") or len(depth.data) != depth.step * depth.height:
        return
    values = np.frombuffer(depth.data, np.uint16).copy()
    values[rng.random(values.size) < rng.uniform(0, 1)] = int(rng.choice([0, 1, 65535]))
    depth.data = values.tobytes()


def _intrinsics(rng, msgs):
    info = msgs[2]
    k = list(info.k)
    for _ in range(int(rng.integers(1, 4)) if k else 0):
        k[int(rng.integers(0, len(k)))] = float(rng.choice(WEIRD_FLOATS + [float(rng.normal() * 1000)]))
    info.k = k


def _k_length(rng, msgs):
    info = msgs[2]
    info.k = list(info.k)[:int(rng.integers(0, 9))] if rng.random() < 0.5 else list(info.k) + [1.0]


MESSAGE_MUTATIONS = [_encoding, _size, _swap_size, _step, _truncate, _extend, _garbage, _endianness, _depth_values,
                     _depth_units, _intrinsics, _k_length]


def assert_sane(result, case):
    assert result.status in KNOWN_STATUSES, (case, result.status)
    if result.status != STATUS_OK:
        assert result.reason, (case, result.status)
        assert len(result.grasps) == 0, case
    else:
        assert len(result.grasps) > 0 and np.isfinite(result.grasps.array).all(), case
        assert np.isfinite(result.poses.positions).all() and np.isfinite(result.poses.quaternions).all(), case


def tiny_detector(**overrides):
    config = DetectorConfig.from_flat(num_points=1024, sampling_seed=0, table_plane_mode="none", workspace_mode="off",
                            executability_filter=False,
                            **overrides)
    return GraspDetector(config, runner=TinyRunner())


# --------------------------------------------------------------------------------- tests
def test_fuzzed_messages_through_the_node_conversion_layer(example_frame):
    small = downsampled(example_frame, DOWNSAMPLE)
    detector = tiny_detector()
    for encoding in ("16UC1", "32FC1"):  # the unmutated frame works: the mutations are what fails
        result, _ = detect_on_messages(detector, *messages_of(small, encoding))
        assert result.status == STATUS_OK, result.reason
    rng = np.random.default_rng(SEED)
    statuses = {}
    start = time.monotonic()
    for case in range(MESSAGE_CASES):
        msgs = messages_of(small, "32FC1" if rng.random() < 0.5 else "16UC1")
        applied = [MESSAGE_MUTATIONS[i] for i in rng.choice(len(MESSAGE_MUTATIONS), int(rng.integers(1, 4)))]
        for mutate in applied:
            mutate(rng, msgs)
        result, _ = detect_on_messages(detector, *msgs)
        assert_sane(result, (case, [m.__name__ for m in applied]))
        statuses[result.status] = statuses.get(result.status, 0) + 1
    elapsed = time.monotonic() - start
    # Both the refusals and the survivors are exercised, and it stays cheap enough for CI.
    assert statuses.get(STATUS_NO_VALID_INPUT, 0) > MESSAGE_CASES // 4, statuses
    assert statuses.get(STATUS_OK, 0) + statuses.get(STATUS_NO_GRASP, 0) > MESSAGE_CASES // 20, statuses
    assert statuses.get(STATUS_ERROR, 0) == 0, statuses  # a hostile frame is an input problem, not a fault
    assert elapsed < 120, f"{MESSAGE_CASES} cases took {elapsed:.0f} s"


DEFAULT_STAGE_CASES = 300


def _label_msg(rng, height, width):
    """A label image, mostly well formed, sometimes of the wrong size, encoding, range or length."""
    encoding = str(rng.choice(["mono8", "8UC1", "mono16", "16UC1", "16SC1", "32SC1", "32FC1", "rgb8"]))
    dtype, channels = IMAGE_LAYOUTS[encoding]
    rows, cols = (height, width) if rng.random() < 0.7 else (int(rng.integers(1, height + 5)),
                                                             int(rng.integers(1, width + 5)))
    shape = (rows, cols) if channels == 1 else (rows, cols, channels)
    wide = rng.random() < 0.2 and np.dtype(dtype).kind in "iu"
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    values = (rng.integers(info.min, int(info.max) + 1, shape, dtype=np.int64) if wide
              else rng.integers(-1 if np.dtype(dtype).kind != "u" else 0, 5, shape))
    msg = image_msg(values.astype(dtype), encoding)
    if rng.random() < 0.1:
        msg.data = msg.data[:-1]
    return msg


def test_fuzzed_frames_and_label_images_through_the_default_stages(example_frame):
    """The defaults (support plane fit, automatic workspace, executability filter) and object
    labels/targets under mutated frames: known statuses only, never an exception or an error."""
    small = downsampled(example_frame, DOWNSAMPLE // 2)
    detector = GraspDetector(DetectorConfig.from_flat(num_points=1024, sampling_seed=0), runner=TinyRunner())
    height, width = small[1].shape
    rng = np.random.default_rng(SEED + 1)
    statuses = {}
    for case in range(DEFAULT_STAGE_CASES):
        msgs = messages_of(small, "32FC1" if rng.random() < 0.5 else "16UC1")
        applied = [MESSAGE_MUTATIONS[i] for i in rng.choice(len(MESSAGE_MUTATIONS), int(rng.integers(0, 3)))]
        for mutate in applied:
            mutate(rng, msgs)
        labels = _label_msg(rng, height, width) if rng.random() < 0.7 else None
        targets = tuple(int(t) for t in rng.integers(1, 4, int(rng.integers(0, 3))))
        detector.update_config(detector.config.replace(target_object_ids=targets))
        if rng.random() < 0.3:
            detector.reset_support_plane()
        result, _ = detect_on_messages(detector, *msgs, labels)
        assert_sane(result, (case, [m.__name__ for m in applied], targets))
        statuses[result.status] = statuses.get(result.status, 0) + 1
    assert statuses.get(STATUS_ERROR, 0) == 0, statuses
    assert statuses.get(STATUS_NO_VALID_INPUT, 0) > DEFAULT_STAGE_CASES // 10, statuses
    assert statuses.get(STATUS_OK, 0) > DEFAULT_STAGE_CASES // 20, statuses  # the stages did run


def _array_case(rng, frame):
    color, depth, K = frame
    height, width = depth.shape
    color = color.copy()
    depth_m = depth.astype(np.float32) / 1000.0
    encoding = "16UC1"
    depth_out = depth.copy()
    kind = int(rng.integers(0, 9))
    if kind == 0:    # float depth with NaN/inf/negative/huge patches
        depth_out, encoding = depth_m, "32FC1"
        patch = rng.random(depth_m.shape) < rng.uniform(0, 1)
        depth_out[patch] = np.array(WEIRD_FLOATS, np.float32)[rng.integers(len(WEIRD_FLOATS), size=patch.sum())]
    elif kind == 1:  # wide integers, sometimes outside 16 bits
        depth_out = depth.astype(np.int32) + int(rng.choice([0, -70000, 70000, 1]))
    elif kind == 2:  # wrong dtype for the encoding
        depth_out = depth.astype([np.float64, np.uint8, np.int8, np.float16, np.bool_][rng.integers(5)])
    elif kind == 3:  # wrong shapes
        shapes = [depth[:, :, None], depth[None], depth[:0], depth.ravel(), np.stack([depth] * 2, 2)]
        depth_out = shapes[rng.integers(len(shapes))]
    elif kind == 4:  # colour broken
        colors = [color[:, :, :2], color[:-1], color.astype(np.float32), None, color[..., None]]
        color = colors[rng.integers(len(colors))]
    elif kind == 5:  # unknown encodings
        encoding = str(rng.choice(WEIRD_ENCODINGS))
    elif kind == 6:  # everything too near / too far
        depth_out = np.full_like(depth, int(rng.choice([1, 65535, 0])))
    elif kind == 7:  # a few valid pixels only
        depth_out = np.zeros_like(depth)
        keep = rng.integers(0, depth.size, int(rng.integers(1, 6)))
        depth_out.flat[keep] = depth.flat[keep]
    else:            # intrinsics at the edge of validity (built here; invalid ones raise at construction)
        K = K.copy()
        K[0, 0] *= float(rng.choice([1e-6, 1e6, 1.0]))
    try:
        intrinsics = CameraIntrinsics.from_matrix(K, width, height)
    except Exception as exc:  # noqa: BLE001 - only InputError may come out of the intrinsics check
        from graspnet_edge_ros.errors import InputError

        assert isinstance(exc, InputError), exc
        return None
    return color, depth_out, encoding, intrinsics


def test_fuzzed_arrays_through_the_pipeline(example_frame):
    small = downsampled(example_frame, DOWNSAMPLE)
    rng = np.random.default_rng(SEED + 1)
    detectors = [tiny_detector(), tiny_detector(depth_scale=0.01, max_depth_m=20.0, nms_enabled=False),
                 tiny_detector(collision_thresh=-1.0, min_score=0.5)]
    for case in range(ARRAY_CASES):
        arguments = _array_case(rng, small)
        if arguments is None:
            continue
        result = detectors[case % len(detectors)].detect(*arguments)
        assert_sane(result, case)


def test_fuzzed_frames_through_the_real_split_model(example_frame, split_model_dir):
    """A seeded subset through the trained network exported as the robot runs it."""
    frame = downsampled(example_frame, REAL_DOWNSAMPLE)
    detector = GraspDetector(DetectorConfig.from_flat(model_path=str(split_model_dir), sampling_seed=0,
                                                      num_points=8000))
    result, _ = detect_on_messages(detector, *messages_of(frame))
    assert result.status == STATUS_OK, result.reason
    rng = np.random.default_rng(SEED + 2)
    for case in range(REAL_MODEL_CASES):
        msgs = messages_of(frame, "32FC1" if case % 2 else "16UC1")
        for index in rng.choice(len(MESSAGE_MUTATIONS), int(rng.integers(1, 3))):
            MESSAGE_MUTATIONS[index](rng, msgs)
        result, _ = detect_on_messages(detector, *msgs)
        assert_sane(result, case)
        assert result.status != STATUS_ERROR, (case, result.reason)
