"""Build ROS 2 bags (MCAP or sqlite3) of RGB-D traffic for replay tests, benchmarks and the demo.

Written with ``rosbags`` (pure Python, ``Stores.ROS2_KILTED`` typestore), so nothing here imports
rclpy and the bags can be made on a machine without ROS. Each bag holds the topics of a
RealSense-style driver with aligned depth: colour ``rgb8`` Image, aligned depth ``16UC1`` Image
and CameraInfo (plumb_bob, zero distortion), all three with the same header stamp per frame.

* :func:`write_capture_bag`: ``num_frames`` copies of one capture with distinct, advancing stamps.
* :func:`write_malformed_bag`: good frames interleaved with broken ones (wrong encodings, wrong
  step, mismatched sizes, all-zero depth, bad K, out-of-order stamps); every frame's label and
  expected outcome is stored in the bag's ``custom_data`` (key :data:`FRAMES_KEY`, JSON).

:func:`read_bag_frames` and :func:`read_bag_frame` read a bag's frame list and one colour frame
(with its intrinsics) back, e.g. to draw a replay's result on the image it was computed from.

The stamps of frame ``i`` are ``start_ns + i / rate_hz`` (also the bag's log time), unless a frame
says otherwise (the out-of-order one).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from graspnet_edge_ros import topics
from graspnet_edge_ros.cdr import cdr_header
from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.ros.stamps import stamp_fields

# The node's default inputs, in the root namespace (where a driver publishes them).
COLOR_TOPIC = topics.absolute(topics.COLOR_TOPIC)
DEPTH_TOPIC = topics.absolute(topics.DEPTH_TOPIC)
INFO_TOPIC = topics.absolute(topics.CAMERA_INFO_TOPIC)
FRAME_ID = "camera_color_optical_frame"
DEFAULT_START_NS = 1_700_000_000 * 10**9  # fixed, so bags (and their stamps) are reproducible
FRAMES_KEY = "graspnet_edge.frames"
SOURCE_KEY = "graspnet_edge.source"
STORAGES = ("mcap", "sqlite3")

IMAGE_TYPE = "sensor_msgs/msg/Image"
INFO_TYPE = "sensor_msgs/msg/CameraInfo"

# Expected node outcome of a frame (GraspArray status names, lower case).
EXPECT_OK = "ok"
EXPECT_NO_VALID_INPUT = "no_valid_input"


@dataclass(frozen=True)
class RgbdCapture:
    """One registered RGB-D frame: colour (H, W, 3) uint8 RGB, depth (H, W) uint16, K (3, 3).

    ``depth_scale`` is metres per depth unit; ``notice`` names where the data comes from and its
    licence, and ends up in every bag built from the capture.
    """

    color: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    depth_scale: float = 0.001
    notice: str = ""
    license_files: tuple = ()

    def __post_init__(self):
        if self.color.ndim != 3 or self.color.shape[2] != 3 or self.color.dtype != np.uint8:
            raise InputError(f"colour must be (H, W, 3) uint8, got {self.color.shape} {self.color.dtype}")
        if self.depth.shape != self.color.shape[:2] or self.depth.dtype != np.uint16:
            raise InputError(f"depth must be (H, W) uint16 matching the colour image, got "
                             f"{self.depth.shape} {self.depth.dtype}")
        if np.asarray(self.K).shape != (3, 3):
            raise InputError(f"K must be 3x3, got {np.asarray(self.K).shape}")

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    @classmethod
    def from_directory(cls, directory) -> "RgbdCapture":
        """Read graspnet-baseline's example layout: color.png, depth.png (uint16), meta.mat.

        meta.mat holds ``intrinsic_matrix`` (3x3) and ``factor_depth`` (units per metre). Any
        LICENSE* / README* beside the images is named in the notice and copied next to bags.
        """
        from graspnet_edge_ros.files import read_color, read_depth, read_intrinsics

        directory = Path(directory)
        missing = [name for name in ("color.png", "depth.png", "meta.mat") if not (directory / name).is_file()]
        if missing:
            raise InputError(f"{directory}: missing {', '.join(missing)} (need color.png, depth.png, meta.mat)")
        # The same readers and rules as `graspnet-edge detect` (integer depth is never wrapped).
        color = read_color(directory / "color.png")
        depth, _ = read_depth(directory / "depth.png")
        intrinsics, scale = read_intrinsics(depth.shape, camera_info=directory / "meta.mat")
        licenses = tuple(sorted(str(p) for p in directory.glob("LICENSE*")))
        notice = f"RGB-D frames built from the capture in {directory.name}/"
        if licenses:
            notice += " (licence: " + ", ".join(Path(p).name for p in licenses) + ", copied beside this bag)"
        readme = directory / "README.md"
        if readme.is_file():
            first = next((line.strip() for line in readme.read_text().splitlines()
                          if line.strip() and not line.startswith("#")), "")
            if first:
                notice += ". Source: " + first
        return cls(color=color, depth=depth, K=intrinsics.matrix, depth_scale=0.001 if scale is None else scale,
                   notice=notice, license_files=licenses)

    def downscaled(self, factor: int) -> "RgbdCapture":
        """Every ``factor``-th pixel (nearest neighbour, so depth stays valid), K scaled to match."""
        if factor < 1:
            raise ConfigError(f"downscale factor must be >= 1, got {factor}")
        if factor == 1:
            return self
        k = np.array(self.K, float)
        k[:2] /= factor  # pixel u' of the subsampled image is pixel factor * u' of the original
        return replace(self, color=np.ascontiguousarray(self.color[::factor, ::factor]),
                       depth=np.ascontiguousarray(self.depth[::factor, ::factor]), K=k,
                       notice=self.notice + f" (downscaled {factor}x)")


@dataclass
class FrameSpec:
    """What one frame of a bag contains and what the node should make of it.

    ``depth``/``color`` are the arrays to serialise (None = do not publish that topic);
    ``depth_encoding``/``depth_step`` override the Image fields (the data stays as given),
    ``K``/``info_size`` override the CameraInfo. ``stamp_ns`` = header stamp, ``log_ns`` = bag time.
    """

    label: str
    stamp_ns: int
    log_ns: int
    expect: str = EXPECT_OK
    color: np.ndarray | None = None
    depth: np.ndarray | None = None
    depth_encoding: str = "16UC1"
    depth_step: int | None = None
    K: np.ndarray | None = None
    info_size: tuple | None = None  # (width, height) of the CameraInfo

    def describe(self) -> dict:
        return {"label": self.label, "stamp_ns": self.stamp_ns, "log_ns": self.log_ns, "expect": self.expect}


@dataclass
class BagInfo:
    """What was written: path, storage, topics and one entry per frame (label, stamps, expectation)."""

    path: Path
    storage: str
    frames: list[dict] = field(default_factory=list)
    topics: dict = field(default_factory=dict)
    frame_id: str = FRAME_ID

    @property
    def stamps_ns(self) -> list[int]:
        return [f["stamp_ns"] for f in self.frames]


# ------------------------------------------------------------------------------------ frames
def capture_frames(capture: RgbdCapture, num_frames: int, rate_hz: float,
                   start_ns: int = DEFAULT_START_NS) -> list[FrameSpec]:
    """``num_frames`` identical frames with stamps ``start_ns + i / rate_hz``."""
    if num_frames < 1:
        raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
    if not rate_hz > 0:
        raise ConfigError(f"rate_hz must be > 0, got {rate_hz}")
    period = int(round(1e9 / rate_hz))
    return [FrameSpec(f"good_{i}", start_ns + i * period, start_ns + i * period, EXPECT_OK,
                      capture.color, capture.depth)
            for i in range(num_frames)]


def malformed_frames(capture: RgbdCapture, rate_hz: float = 1.0,
                     start_ns: int = DEFAULT_START_NS) -> list[FrameSpec]:
    """Broken frames with good ones in between (first, middle and last frames are good).

    Sizes come from ``capture``; the half-size depth is taken from the capture itself so only the
    size is wrong.
    """
    color, depth = capture.color, capture.depth
    h, w = depth.shape
    # a VGA depth image (real values, nearest-neighbour resampled) next to the full-size colour
    rows = np.linspace(0, h - 1, 480).round().astype(int)
    cols = np.linspace(0, w - 1, 640).round().astype(int)
    small = np.ascontiguousarray(depth[rows][:, cols])
    zero_k = np.zeros((3, 3))
    negative_k = np.array(capture.K, float)
    negative_k[0, 0] = -abs(negative_k[0, 0])
    cases = [
        ("good_first", EXPECT_OK, {}),
        ("depth_encoding_yuv422", EXPECT_NO_VALID_INPUT, {"depth_encoding": "yuv422"}),
        # 16-bit data labelled 32FC1 with a 16-bit step: the step does not fit the encoding
        ("depth_32fc1_wrong_step", EXPECT_NO_VALID_INPUT, {"depth_encoding": "32FC1", "depth_step": w * 2}),
        ("good_after_encodings", EXPECT_OK, {}),
        ("depth_size_mismatch", EXPECT_NO_VALID_INPUT, {"depth": small}),
        ("depth_all_zero", EXPECT_NO_VALID_INPUT, {"depth": np.zeros_like(depth)}),
        ("camera_info_zero_k", EXPECT_NO_VALID_INPUT, {"K": zero_k}),
        ("camera_info_negative_fx", EXPECT_NO_VALID_INPUT, {"K": negative_k}),
        ("good_after_bad_k", EXPECT_OK, {}),
        # header stamp half a period older than the previous frame's (log time still advances)
        ("stamp_out_of_order", EXPECT_NO_VALID_INPUT, {"stamp_shift": -1.5}),
        ("good_last", EXPECT_OK, {}),
    ]
    period = int(round(1e9 / rate_hz))
    frames = []
    for i, (label, expect, change) in enumerate(cases):
        log_ns = start_ns + i * period
        stamp_ns = log_ns + int(round(change.pop("stamp_shift", 0.0) * period))
        frames.append(FrameSpec(label, stamp_ns, log_ns, expect, color, change.pop("depth", depth), **change))
    return frames


# ------------------------------------------------------------------------------------ writing
def write_capture_bag(path, capture: RgbdCapture, num_frames: int = 3, rate_hz: float = 1.0,
                      storage: str = "mcap", start_ns: int = DEFAULT_START_NS, frame_id: str = FRAME_ID,
                      topics: dict | None = None) -> BagInfo:
    """A bag of ``num_frames`` copies of ``capture`` at ``rate_hz`` (see the module docstring)."""
    return write_frames_bag(path, capture, capture_frames(capture, num_frames, rate_hz, start_ns),
                            storage=storage, frame_id=frame_id, topics=topics)


def write_malformed_bag(path, capture: RgbdCapture, rate_hz: float = 1.0, storage: str = "mcap",
                        start_ns: int = DEFAULT_START_NS, frame_id: str = FRAME_ID,
                        topics: dict | None = None) -> BagInfo:
    """A bag of bad frames with good ones in between (see :func:`malformed_frames`)."""
    return write_frames_bag(path, capture, malformed_frames(capture, rate_hz, start_ns),
                            storage=storage, frame_id=frame_id, topics=topics)


def write_frames_bag(path, capture: RgbdCapture, frames: list[FrameSpec], storage: str = "mcap",
                     frame_id: str = FRAME_ID, topics: dict | None = None) -> BagInfo:
    """Serialise ``frames`` into a new rosbag2 directory at ``path`` (must not exist).

    Per frame: CameraInfo, then depth, then colour, 1 us apart in log time so every storage
    replays them in that order. ``topics`` may rename ``{"color", "depth", "info"}``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.errors import WriterError
    from rosbags.typesys import Stores, get_typestore

    if storage not in STORAGES:
        raise ConfigError(f"storage must be one of {STORAGES}, got {storage!r}")
    names = {"color": COLOR_TOPIC, "depth": DEPTH_TOPIC, "info": INFO_TOPIC, **(topics or {})}
    path = Path(path)
    typestore = get_typestore(Stores.ROS2_KILTED)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        writer = Writer(path, version=9, storage_plugin=plugin)
    except WriterError as exc:
        raise ConfigError(str(exc)) from exc
    info = BagInfo(path=path, storage=storage, frames=[f.describe() for f in frames],
                   topics=dict(names), frame_id=frame_id)
    writer.set_custom_data(FRAMES_KEY, json.dumps(info.frames))
    if capture.notice:
        writer.set_custom_data(SOURCE_KEY, capture.notice)
    writer.open()
    try:
        conn_info = writer.add_connection(names["info"], INFO_TYPE, typestore=typestore)
        conn_depth = writer.add_connection(names["depth"], IMAGE_TYPE, typestore=typestore)
        conn_color = writer.add_connection(names["color"], IMAGE_TYPE, typestore=typestore)
        cache: dict = {}
        for frame in frames:
            header = _header(typestore, frame.stamp_ns, frame_id)
            info_msg = _camera_info(typestore, header, frame.K if frame.K is not None else capture.K,
                                    frame.info_size or (capture.width, capture.height))
            writer.write(conn_info, frame.log_ns, typestore.serialize_cdr(info_msg, INFO_TYPE))
            if frame.depth is not None:
                msg = _image(typestore, header, frame.depth, frame.depth_encoding, frame.depth_step, cache)
                writer.write(conn_depth, frame.log_ns + 1000, typestore.serialize_cdr(msg, IMAGE_TYPE))
            if frame.color is not None:
                msg = _image(typestore, header, frame.color, "rgb8", None, cache)
                writer.write(conn_color, frame.log_ns + 2000, typestore.serialize_cdr(msg, IMAGE_TYPE))
    finally:
        writer.close()
    _write_notice(path, capture, info)
    return info


def read_bag_frames(path) -> list[dict] | None:
    """The frame list a bag built here carries in its metadata (None for other bags)."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        custom = getattr(reader.storage.metadata, "custom", None) or {}
    text = custom.get(FRAMES_KEY)
    return json.loads(text) if text else None


def read_bag_frame(bag, stamp_ns: int, color_topic: str = COLOR_TOPIC, info_topic: str = INFO_TOPIC):
    """(colour (H, W, 3) uint8 RGB, CameraIntrinsics, frame_id) of the frame stamped ``stamp_ns``."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from graspnet_edge_ros.camera import CameraIntrinsics
    from graspnet_edge_ros.ros.conversions import color_from_image

    typestore = get_typestore(Stores.ROS2_KILTED)
    color = intrinsics = frame_id = None
    with Reader(Path(bag)) as reader:
        wanted = [c for c in reader.connections if c.topic in (color_topic, info_topic)]
        for conn, _, raw in reader.messages(connections=wanted):
            if cdr_header(raw)[0] != stamp_ns:
                continue
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == color_topic:
                color, frame_id = color_from_image(msg), msg.header.frame_id
            else:
                intrinsics = CameraIntrinsics.from_matrix(np.asarray(msg.k).reshape(3, 3), msg.width, msg.height)
            if color is not None and intrinsics is not None:
                return color, intrinsics, frame_id
    raise InputError(f"{bag}: no {color_topic} + {info_topic} pair stamped {stamp_ns}")


def _header(typestore, stamp_ns: int, frame_id: str):
    Header = typestore.types["std_msgs/msg/Header"]
    Time = typestore.types["builtin_interfaces/msg/Time"]
    sec, nanosec = stamp_fields(stamp_ns)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _image(typestore, header, array: np.ndarray, encoding: str, step: int | None, cache: dict):
    Image = typestore.types["sensor_msgs/msg/Image"]
    array = np.ascontiguousarray(array)
    key = id(array)
    if key not in cache:  # one flat byte view per distinct array (frames share the capture)
        cache[key] = (array, array.reshape(-1).view(np.uint8))
    data = cache[key][1]
    height, width = array.shape[:2]
    row_bytes = array.strides[0]
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                 step=int(step if step is not None else row_bytes), data=data)


def _camera_info(typestore, header, K, size):
    CameraInfo = typestore.types["sensor_msgs/msg/CameraInfo"]
    RegionOfInterest = typestore.types["sensor_msgs/msg/RegionOfInterest"]
    k = np.asarray(K, np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return CameraInfo(header=header, height=int(size[1]), width=int(size[0]), distortion_model="plumb_bob",
                      d=np.zeros(5), k=k.reshape(-1).copy(), r=np.eye(3).reshape(-1), p=p.reshape(-1),
                      binning_x=0, binning_y=0,
                      roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _write_notice(path: Path, capture: RgbdCapture, info: BagInfo) -> None:
    """README.txt (provenance + frame list) and the capture's licence files beside the bag."""
    lines = ["Generated by graspnet_edge_ros.ros.bags for replay tests; not an original recording.",
             capture.notice or "Source capture: unknown.", "",
             f"storage: {info.storage}; frame_id: {info.frame_id}; topics: "
             + ", ".join(f"{k}={v}" for k, v in info.topics.items()), "frames (label, header stamp ns, expected):"]
    lines += [f"  {f['label']}  {f['stamp_ns']}  {f['expect']}" for f in info.frames]
    (path / "README.txt").write_text("\n".join(lines) + "\n")
    for license_file in capture.license_files:
        shutil.copyfile(license_file, path / Path(license_file).name)

