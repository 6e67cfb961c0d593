"""Real RGB-D frames for calibration and the quantisation check, from three kinds of source.

* A **rosbag2** directory or ``.mcap`` file (MCAP or sqlite3), read with ``rosbags`` (pure Python, no
  rclpy): colour, aligned depth and CameraInfo messages paired by identical header stamps.
* A **GraspNet capture** directory (graspnet-baseline's example layout): ``color.png``,
  ``depth.png`` (uint16), ``meta.mat`` (``intrinsic_matrix``, ``factor_depth``) and optionally
  ``workspace_mask.png``; or a directory whose sub-directories are such captures.
* A **frame directory**: ``color/<name>.png`` and ``depth/<name>.png`` (16-bit, units x depth
  scale) or ``depth/<name>.npy`` (float32 metres) with matching names, ``camera_info.yaml`` (``k``/
  ``K``/``camera_matrix`` like ``graspnet-edge detect --camera-info``, optional ``depth_scale`` in
  metres per unit, default 0.001) and optionally ``workspace_mask.png`` for every frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from graspnet_edge_ros.camera import CameraIntrinsics, image_to_array
from graspnet_edge_ros.cdr import cdr_header
from graspnet_edge_ros.files import read_color, read_depth, read_intrinsics  # the rules of `detect`'s files
from graspnet_edge_ros.errors import BackendUnavailableError, InputError
from graspnet_edge_ros.topics import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC, absolute

CAPTURE_FILES = ("color.png", "depth.png", "meta.mat")
# The node's default inputs, in the root namespace (where a driver records them).
DEFAULT_TOPICS = {"color": absolute(COLOR_TOPIC), "depth": absolute(DEPTH_TOPIC), "info": absolute(CAMERA_INFO_TOPIC)}


@dataclass(frozen=True)
class RgbdFrame:
    """One registered frame as ``GraspDetector.detect`` takes it, plus where it came from."""

    name: str
    color: np.ndarray | None
    depth: np.ndarray
    encoding: str
    intrinsics: CameraIntrinsics
    depth_scale: float = 0.001
    workspace_mask_path: str = ""


@dataclass(frozen=True)
class FrameSource:
    """A described, re-iterable set of frames (bags are read lazily, one frame at a time)."""

    description: str
    count: int
    load: Callable[[], Iterable[RgbdFrame]]
    location: str = ""

    def __iter__(self) -> Iterator[RgbdFrame]:
        return iter(self.load())


def open_frame_source(source, topics: dict | None = None, max_frames: int = 0) -> FrameSource:
    """Frames of ``source`` (bag, capture directory, directory of captures, or frame directory).

    Args:
        topics: bag topic names {"color", "depth", "info"} overriding DEFAULT_TOPICS.
        max_frames: use at most this many frames, evenly spread over the source (0 = all).

    Raises:
        InputError: the source does not exist, has an unknown layout, or holds no complete frame.
    """
    path = Path(source)
    if not path.exists():
        raise InputError(f"frame source not found: {path}")
    if path.suffix == ".mcap" or (path / "metadata.yaml").is_file():
        return _bag_source(path, {**DEFAULT_TOPICS, **(topics or {})}, max_frames)
    if path.is_dir() and all((path / name).is_file() for name in CAPTURE_FILES):
        frames = [_capture_frame(path)]
    elif path.is_dir() and (path / "color").is_dir() and (path / "depth").is_dir():
        frames = _frame_directory(path)
    elif path.is_dir() and any(_is_capture(p) for p in path.iterdir()):
        frames = [_capture_frame(p) for p in sorted(path.iterdir()) if _is_capture(p)]
    else:
        raise InputError(f"{path}: not a rosbag2 (metadata.yaml / .mcap), a GraspNet capture "
                         f"({', '.join(CAPTURE_FILES)}), "
                         "a directory of captures, or a frame directory (color/, depth/, camera_info.yaml)")
    frames = [frames[i] for i in _spread(len(frames), max_frames)]
    return FrameSource(f"{len(frames)} frame(s) from {path}", len(frames), lambda: frames, str(path.resolve()))


def _spread(count: int, limit: int) -> list[int]:
    if not limit or count <= limit:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, limit)})


def _is_capture(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in CAPTURE_FILES)


def _capture_frame(directory: Path) -> RgbdFrame:
    depth, encoding = read_depth(directory / "depth.png")
    intrinsics, scale = read_intrinsics(depth.shape, camera_info=directory / "meta.mat")
    mask = directory / "workspace_mask.png"
    return RgbdFrame(directory.name, read_color(directory / "color.png"), depth, encoding, intrinsics,
                     scale if scale is not None else 0.001, str(mask) if mask.is_file() else "")


def _frame_directory(directory: Path) -> list[RgbdFrame]:
    import yaml

    info = next((directory / name for name in ("camera_info.yaml", "camera_info.yml", "meta.mat")
                 if (directory / name).is_file()), None)
    if info is None:
        raise InputError(f"{directory}: frame directory without camera_info.yaml (k: [fx, 0, cx, 0, fy, cy, 0, 0, 1])")
    depth_scale = 0.001
    if info.suffix != ".mat":
        try:
            data = yaml.safe_load(info.read_text()) or {}
            depth_scale = float(data.get("depth_scale", depth_scale))
        except (yaml.YAMLError, AttributeError, TypeError, ValueError) as exc:
            raise InputError(f"{info}: not a camera-info YAML mapping with a numeric depth_scale ({exc})") from exc
    mask = directory / "workspace_mask.png"
    depths = {p.stem: p for p in sorted((directory / "depth").iterdir()) if p.suffix in (".png", ".npy")}
    frames = []
    for color_path in sorted((directory / "color").glob("*.png")):
        if color_path.stem not in depths:
            continue
        depth, encoding = read_depth(depths[color_path.stem])
        intrinsics, scale = read_intrinsics(depth.shape, camera_info=info)
        frames.append(RgbdFrame(color_path.stem, read_color(color_path), depth, encoding, intrinsics,
                                scale if scale is not None else depth_scale, str(mask) if mask.is_file() else ""))
    if not frames:
        raise InputError(f"{directory}: no color/<name>.png with a matching depth/<name>.png or .npy")
    return frames


# ------------------------------------------------------------------------------------- bags
def _bag_source(path: Path, topics: dict, max_frames: int) -> FrameSource:
    try:
        from rosbags.rosbag2 import Reader
    except ImportError as exc:
        raise BackendUnavailableError(f"reading {path} needs rosbags (pip install rosbags): {exc}") from exc

    try:
        with Reader(path) as reader:
            available = {c.topic for c in reader.connections}
            missing = [t for t in topics.values() if t not in available]
            if missing:
                raise InputError(f"{path}: topics {missing} not in the bag (has {sorted(available)}); "
                                 "set --color-topic/--depth-topic/--camera-info-topic")
            stamps = _complete_stamps(reader, topics)
    except InputError:
        raise
    except Exception as exc:  # rosbags raises its own ReaderError family for unreadable bags
        raise InputError(f"cannot read bag {path}: {type(exc).__name__}: {exc}") from exc
    if not stamps:
        raise InputError(f"{path}: no header stamp has all of {sorted(topics.values())}")
    chosen = [stamps[i] for i in _spread(len(stamps), max_frames)]
    return FrameSource(f"{len(chosen)} of {len(stamps)} frame(s) from bag {path}", len(chosen),
                       lambda: _read_bag_frames(path, topics, set(chosen)), str(path.resolve()))


def _complete_stamps(reader, topics: dict) -> list[int]:
    seen: dict[int, set] = {}
    wanted = [c for c in reader.connections if c.topic in topics.values()]
    for conn, _, raw in reader.messages(connections=wanted):
        seen.setdefault(cdr_header(raw)[0], set()).add(conn.topic)
    return sorted(stamp for stamp, got in seen.items() if len(got) == len(set(topics.values())))


def _read_bag_frames(path: Path, topics: dict, stamps: set) -> Iterator[RgbdFrame]:
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    pending: dict[int, dict] = {}
    role = {topic: key for key, topic in topics.items()}
    with Reader(path) as reader:
        wanted = [c for c in reader.connections if c.topic in topics.values()]
        for conn, _, raw in reader.messages(connections=wanted):
            stamp = cdr_header(raw)[0]
            if stamp not in stamps:
                continue
            parts = pending.setdefault(stamp, {})
            parts[role[conn.topic]] = typestore.deserialize_cdr(raw, conn.msgtype)
            if len(parts) == 3:
                yield _bag_frame(stamp, pending.pop(stamp))


def _bag_frame(stamp: int, parts: dict) -> RgbdFrame:
    from graspnet_edge_ros.camera import decode_color

    color_msg, depth_msg, info = parts["color"], parts["depth"], parts["info"]
    if depth_msg.encoding not in ("16UC1", "mono16", "32FC1"):
        raise InputError(f"frame {stamp}: depth encoding {depth_msg.encoding!r} (need 16UC1, mono16 or 32FC1)")
    color = decode_color(image_to_array(color_msg), color_msg.encoding)
    intrinsics = CameraIntrinsics.from_matrix(np.asarray(info.k, float).reshape(3, 3), int(info.width),
                                              int(info.height))
    return RgbdFrame(f"stamp_{stamp}", color, image_to_array(depth_msg), depth_msg.encoding, intrinsics)


# ------------------------------------------------------------------------- re-rendered views
def rerender(points: np.ndarray, colors: np.ndarray, intrinsics: CameraIntrinsics,
             new_from_old: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer a coloured cloud into a virtual camera: (depth_mm uint16, colour uint8).

    Args:
        points: (N, 3) points in the original camera frame.
        new_from_old: (4, 4) transform of points from the original to the new camera frame.
    """
    moved = points @ new_from_old[:3, :3].T + new_from_old[:3, 3]
    z = moved[:, 2]
    front = z > 0.05
    moved, z, colors = moved[front], z[front], colors[front]
    cols = np.rint(intrinsics.fx * moved[:, 0] / z + intrinsics.cx).astype(np.int64)
    rows = np.rint(intrinsics.fy * moved[:, 1] / z + intrinsics.cy).astype(np.int64)
    inside = (cols >= 0) & (cols < intrinsics.width) & (rows >= 0) & (rows < intrinsics.height)
    cols, rows, z, colors = cols[inside], rows[inside], z[inside], colors[inside]
    flat = rows * intrinsics.width + cols
    order = np.lexsort((z, flat))  # nearest point first within each pixel
    flat, z, colors = flat[order], z[order], colors[order]
    first = np.ones(len(flat), bool)
    first[1:] = flat[1:] != flat[:-1]
    depth = np.zeros(intrinsics.width * intrinsics.height, np.float64)
    image = np.zeros((intrinsics.width * intrinsics.height, 3), np.uint8)
    depth[flat[first]] = z[first]
    image[flat[first]] = colors[first]
    # Points are sparser than pixels when the view gets closer: fill one-pixel holes from neighbours.
    depth = depth.reshape(intrinsics.height, intrinsics.width)
    image = image.reshape(intrinsics.height, intrinsics.width, 3)
    from scipy.ndimage import grey_closing

    holes = depth == 0
    closed = grey_closing(np.where(holes, 0, depth), size=3)
    filled = holes & (closed > 0)
    depth[filled] = closed[filled]
    return np.clip(np.rint(depth * 1000.0), 0, 65535).astype(np.uint16), image


def orbited_view(frame: RgbdFrame, angle_deg: float = 25.0, max_depth_m: float = 1.5) -> RgbdFrame:
    """``frame`` seen from a camera orbited ``angle_deg`` about the table's in-plane axis (a second scene).

    The capture's cloud (within ``max_depth_m``) is z-buffered into the same camera model after
    rotating it about an axis lying in the fitted support plane through its centre, so the objects
    are seen from a steeper or flatter angle; the depth is 16UC1 mm and no workspace mask applies.
    """
    from scipy.spatial.transform import Rotation

    from graspnet_edge_ros.camera import decode_depth, select_workspace
    from graspnet_edge_ros.support_plane import fit_support_plane

    depth_m = decode_depth(frame.depth, frame.encoding, frame.depth_scale)
    selection = select_workspace(depth_m, frame.intrinsics, frame.color, max_depth=max_depth_m)
    plane = fit_support_plane(selection.cloud)
    axis = np.asarray(plane.axis_u, np.float64)
    turn = Rotation.from_rotvec(np.radians(angle_deg) * axis / np.linalg.norm(axis)).as_matrix()
    new_from_old = np.eye(4)
    new_from_old[:3, :3] = turn
    new_from_old[:3, 3] = plane.origin - turn @ plane.origin
    color = frame.color if frame.color is not None else np.full(depth_m.shape + (3,), 128, np.uint8)
    colors = np.take(color.reshape(-1, 3), selection.pixel_ids, axis=0)
    depth_mm, image = rerender(selection.cloud.astype(np.float64), colors, frame.intrinsics, new_from_old)
    return RgbdFrame(f"{frame.name}_orbit{angle_deg:g}deg", image, depth_mm, "16UC1", frame.intrinsics, 0.001, "")


def with_orbited_views(frames: FrameSource, max_views: int = 1, angle_deg: float = 25.0) -> FrameSource:
    """``frames`` plus an orbited view (``orbited_view``) of each of the first ``max_views`` of them."""
    originals = list(frames)
    views = [orbited_view(frame, angle_deg) for frame in originals[:max_views]]
    every = originals + views
    return FrameSource(f"{frames.description} + {len(views)} view(s) re-rendered {angle_deg:g} deg around the "
                       "table", len(every), lambda: every, frames.location)
