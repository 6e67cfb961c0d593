"""Camera stage: intrinsics, depth/colour decoding and the depth → point-cloud step.

Everything here is ROS-free (numpy, plus one numba kernel for the per-pixel pass). The math follows the official GraspNet demo
(``demo.py::get_and_process_data``, spec §7): pinhole back-projection with u = column and
v = row, the workspace mask applied in image space, and the same sampling rule to
``num_points`` model inputs. Points are in the camera optical frame (x right, y down,
z forward), metres.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np

from graspnet_edge_ros.errors import ConfigError, InputError

DEPTH_ENCODINGS_UINT16 = ("16UC1", "mono16")
MIN_FOCAL_PX, MAX_FOCAL_PX = 1e-3, 1e8  # accepted focal lengths in pixels
DEPTH_ENCODINGS_FLOAT = ("32FC1",)
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of a rectified image (pixels).

    Examples:
        >>> CameraIntrinsics.from_matrix([[600, 0, 320], [0, 600, 240], [0, 0, 1]], 640, 480).fx
        600.0
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InputError(f"camera intrinsics: {name} is not finite ({value})")
        for name in ("fx", "fy"):
            if getattr(self, name) <= 0:
                raise InputError(
                    f"camera intrinsics: {name} must be > 0, got {getattr(self, name)} "
                    "(an all-zero K usually means an uncalibrated camera_info)"
                )
            # Beyond these, back-projection overflows (fx = 1e-300 gives infinite rays): not a pinhole camera.
            if not MIN_FOCAL_PX <= getattr(self, name) <= MAX_FOCAL_PX:
                raise InputError(f"camera intrinsics: {name}={getattr(self, name)} is outside "
                                 f"[{MIN_FOCAL_PX:g}, {MAX_FOCAL_PX:g}] pixels")
        for name in ("width", "height"):
            if getattr(self, name) <= 0:
                raise InputError(f"camera intrinsics: {name} must be > 0, got {getattr(self, name)}")
        # A principal point outside the image means K and the image size do not belong together.
        if not 0.0 <= self.cx <= self.width:
            raise InputError(f"camera intrinsics: cx={self.cx} lies outside the image width {self.width}")
        if not 0.0 <= self.cy <= self.height:
            raise InputError(f"camera intrinsics: cy={self.cy} lies outside the image height {self.height}")

    @classmethod
    def from_matrix(cls, matrix, width: int, height: int) -> CameraIntrinsics:
        """Build from a 3×3 camera matrix K (pixels) and the image size."""
        k = np.asarray(matrix, dtype=np.float64)
        if k.size != 9:
            raise InputError(f"camera matrix K must have 9 entries (3x3), got shape {k.shape}")
        k = k.reshape(3, 3)
        if not np.all(np.isfinite(k)):
            raise InputError(f"camera matrix K contains non-finite values: {k.ravel().tolist()}")
        return cls(
            fx=float(k[0, 0]), fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]),
            width=int(width), height=int(height),
        )

    @classmethod
    def from_camera_info(cls, info) -> CameraIntrinsics:
        """Build from any object with ``.k`` (ROS 2 CameraInfo) or ``.K`` (ROS 1), ``.width``, ``.height``."""
        if hasattr(info, "k"):
            k = info.k
        elif hasattr(info, "K"):
            k = info.K
        else:
            raise InputError(f"camera info {type(info).__name__} has neither .k nor .K")
        return cls.from_matrix(list(k), int(info.width), int(info.height))

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) float64 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


# encoding -> (element dtype, channels), for the encodings the detector accepts.
IMAGE_LAYOUTS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "16UC1": (np.uint16, 1), "mono16": (np.uint16, 1), "32FC1": (np.float32, 1),
    # instance-label images (cv_bridge passthrough of a uint8/int16 mask gives 8UC1/16SC1)
    "8UC1": (np.uint8, 1), "16SC1": (np.int16, 1), "32SC1": (np.int32, 1),
}


def image_to_array(msg) -> np.ndarray:
    """Pixels of a sensor_msgs/Image (or any object with its fields) as a new, native-endian array.

    Honours ``step`` (row padding is dropped) and ``is_bigendian``.

    Returns:
        (H, W) for single-channel encodings, (H, W, C) otherwise; dtype uint8, uint16, int16, int32 or float32.

    Raises:
        InputError: unsupported encoding, zero size, or ``step``/``data`` not matching the size.
    """
    layout = IMAGE_LAYOUTS.get(msg.encoding)
    if layout is None:
        raise InputError(f"unsupported image encoding {msg.encoding!r} (supported: {', '.join(IMAGE_LAYOUTS)})")
    dtype, channels = np.dtype(layout[0]), layout[1]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise InputError(f"{msg.encoding} image has no pixels ({width}x{height})")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise InputError(f"{msg.encoding} image {width}x{height}: step {step} is smaller than a row "
                         f"({row_bytes} bytes)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise InputError(f"{msg.encoding} image {width}x{height}: {data.size} data bytes, expected "
                         f"step x height = {step * height}")
    rows = data.reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype.newbyteorder(">" if msg.is_bigendian else "<"))
    pixels = pixels.astype(dtype.newbyteorder("="), copy=True)
    return pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)


def decode_depth(data: np.ndarray, encoding: str, depth_scale: float = 0.001) -> np.ndarray:
    """Convert a depth image to metres.

    Args:
        data: (H, W) or (H, W, 1) array; uint16 for "16UC1"/"mono16", float32 metres for "32FC1".
        encoding: ROS image encoding.
        depth_scale: metres per uint16 unit (0.001 for millimetre depth). Ignored for "32FC1".

    Returns:
        (H, W) float32 depth in metres; invalid pixels (0, NaN, ±inf, ≤ 0) are 0.
    """
    depth = _as_single_channel(np.asarray(data), "depth", encoding)
    if encoding in DEPTH_ENCODINGS_UINT16:
        depth = integer_depth_as_uint16(depth, encoding)
        if not (math.isfinite(depth_scale) and depth_scale > 0):
            raise ConfigError(f"depth_scale must be a positive number of metres per unit, got {depth_scale}")
        return depth.astype(np.float32) * np.float32(depth_scale)
    if encoding in DEPTH_ENCODINGS_FLOAT:
        if depth.dtype not in (np.float32, np.float64):
            raise InputError(f"depth encoding {encoding!r} needs float32 data, got {depth.dtype}")
        metres = depth.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            metres[~(np.isfinite(metres) & (metres > 0))] = 0.0
        return metres
    supported = ", ".join(DEPTH_ENCODINGS_UINT16 + DEPTH_ENCODINGS_FLOAT)
    raise InputError(f"unsupported depth encoding {encoding!r} (supported: {supported})")


def integer_depth_as_uint16(depth: np.ndarray, what: str = "16UC1") -> np.ndarray:
    """Integer depth units as uint16, never wrapped.

    Wider integer images (a 32-bit PNG/TIFF, ``int32`` arrays) are accepted only when every value
    fits 16 bits: a negative value or one above 65535 is an ``InputError`` with the counts, since
    ``astype(uint16)`` would silently wrap it into a plausible-looking distance.
    """
    if depth.dtype == np.uint16:
        return depth
    if depth.dtype.kind not in "iu":
        raise InputError(f"depth {what!r} needs integer (uint16) data, got {depth.dtype}")
    if depth.size:
        negative = int(np.count_nonzero(depth < 0)) if depth.dtype.kind == "i" else 0
        too_far = int(np.count_nonzero(depth > np.iinfo(np.uint16).max))
        if negative or too_far:
            raise InputError(f"depth {what!r} has {negative} negative and {too_far} values above 65535 "
                             f"(range {int(depth.min())}..{int(depth.max())}): not 16-bit depth units; "
                             "refusing to wrap them")
    return depth.astype(np.uint16)


def decode_color(data: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a colour image to (H, W, 3) uint8 RGB (a new array)."""
    image = np.asarray(data)
    if encoding not in COLOR_ENCODINGS:
        raise InputError(f"unsupported colour encoding {encoding!r} (supported: {', '.join(COLOR_ENCODINGS)})")
    if image.dtype != np.uint8:
        raise InputError(f"colour encoding {encoding!r} needs uint8 data, got {image.dtype}")
    if encoding == "mono8":
        gray = _as_single_channel(image, "colour", encoding)
        return np.repeat(gray[:, :, None], 3, axis=2)
    channels = 4 if encoding in ("rgba8", "bgra8") else 3
    if image.ndim != 3 or image.shape[2] != channels:
        raise InputError(f"colour encoding {encoding!r} needs an (H, W, {channels}) array, got shape {image.shape}")
    if encoding.startswith("bgr"):
        return np.ascontiguousarray(image[:, :, 2::-1])
    return np.ascontiguousarray(image[:, :, :3])


def _as_single_channel(image: np.ndarray, what: str, encoding: str) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2:
        raise InputError(f"{what} with encoding {encoding!r} must be (H, W), got shape {image.shape}")
    return image


def back_project(
    depth_m: np.ndarray, intrinsics: CameraIntrinsics, min_depth: float = 0.0, max_depth: float = math.inf
) -> np.ndarray:
    """Organised point cloud of a depth image (official demo math).

    Args:
        depth_m: (H, W) float depth in metres.
        intrinsics: camera intrinsics of that image.
        min_depth, max_depth: pixels with depth outside (min_depth, max_depth] become (0, 0, 0).

    Returns:
        (H, W, 3) float32 points in the camera optical frame, metres; x = (u − cx)·z/fx, y = (v − cy)·z/fy.
    """
    depth = _check_depth(depth_m, intrinsics)
    z = np.where(_depth_in_range(depth, min_depth, max_depth), depth, 0).astype(np.float32)
    x_per_z, y_per_z = _ray_tables(intrinsics)
    cloud = np.empty(depth.shape + (3,), dtype=np.float32)
    np.multiply(z, x_per_z[None, :], out=cloud[:, :, 0])
    np.multiply(z, y_per_z[:, None], out=cloud[:, :, 1])
    cloud[:, :, 2] = z
    return cloud


@dataclass(frozen=True, eq=False)
class Workspace:
    """Which part of the view counts as workspace.

    Attributes:
        mask: optional (H, W) bool image (non-zero = keep), applied in image space like the official demo.
        min_xyz, max_xyz: optional axis-aligned box in the camera optical frame, metres (both or neither).
    """

    mask: np.ndarray | None = None
    min_xyz: tuple[float, float, float] | None = None
    max_xyz: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if (self.min_xyz is None) != (self.max_xyz is None):
            raise ConfigError("workspace box needs both min_xyz and max_xyz (or neither)")
        if self.min_xyz is not None:
            low, high = np.asarray(self.min_xyz, float), np.asarray(self.max_xyz, float)
            if low.shape != (3,) or high.shape != (3,) or not np.all(np.isfinite(low) & np.isfinite(high)):
                raise ConfigError(f"workspace box corners must be 3 finite numbers, got {self.min_xyz}, {self.max_xyz}")
            if np.any(low > high):
                raise ConfigError(f"workspace box min_xyz {self.min_xyz} exceeds max_xyz {self.max_xyz}")


@dataclass(frozen=True, eq=False)
class PreparedCloud:
    """Points of one frame, ready for the model and for collision checking.

    Attributes:
        cloud: (M, 3) float32, every valid workspace point, camera frame, metres (collision checking).
        color_image: the frame's (H, W, 3) uint8 RGB image, or None.
        sampled: (num_points, 3) float32 model input, equal to cloud[sampled_indices].
        sampled_indices: (num_points,) int64 indices into cloud.
        num_valid: M.
        pixel_ids: (M,) flat pixel index of each cloud point, when known.
    """

    cloud: np.ndarray
    color_image: np.ndarray | None
    sampled: np.ndarray
    sampled_indices: np.ndarray
    num_valid: int
    pixel_ids: np.ndarray | None = None

    @functools.cached_property
    def colors(self) -> np.ndarray | None:
        """(M, 3) uint8 RGB of the cloud's points, or None (overlays only, not a model input).

        Gathered on first use: the pipeline never needs them, and on a 1280x720 frame the gather
        alone costs a fifth of the preprocessing budget.
        """
        if self.color_image is None or self.pixel_ids is None:
            return None
        # np.take on rows is several times faster than fancy indexing for (M, 3) gathers.
        return np.take(self.color_image.reshape(-1, 3), self.pixel_ids, axis=0)


def prepare_points(
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    color: np.ndarray | None = None,
    workspace: Workspace | None = None,
    min_depth: float = 0.0,
    max_depth: float = math.inf,
    num_points: int = 20000,
    seed: int | None = None,
) -> PreparedCloud:
    """Back-project the valid workspace pixels and sample the model input like the official demo.

    Sampling: with M ≥ num_points valid points, ``rng.choice(M, num_points, replace=False)``;
    otherwise all M indices in order followed by ``rng.choice(M, num_points − M, replace=True)``.
    ``rng = np.random.default_rng(seed)``; with seed=None the draw is random, as in the official
    demo. The demo uses the legacy ``np.random.choice``: the rule is the same, only the random
    stream differs.

    Args:
        depth_m: (H, W) float depth in metres (0 = invalid), e.g. from decode_depth.
        intrinsics: camera intrinsics; width/height must equal the depth image size.
        color: optional (H, W, 3) uint8 RGB image registered to the depth image.
        workspace: optional image mask and/or camera-frame box.
        min_depth, max_depth: keep depths in (min_depth, max_depth], metres.
        num_points: model input size (≥ 1).
        seed: random seed of the sampling, or None.

    Raises:
        InputError: size mismatch, no valid depth at all, or nothing left inside the workspace.
    """
    if int(num_points) < 1:
        raise ConfigError(f"num_points must be >= 1, got {num_points}")
    selection = select_workspace(depth_m, intrinsics, color, workspace, min_depth, max_depth)
    return sample_cloud(selection, num_points, seed)


@dataclass(frozen=True, eq=False)
class WorkspaceSelection:
    """The back-projected workspace pixels of one frame, before sampling.

    Attributes:
        cloud: (M, 3) float32 points, camera frame, metres.
        pixel_ids: (M,) int64 flat pixel index of each point (row * width + column).
        color: the frame's (H, W, 3) uint8 RGB image or None.
        num_valid_depth: pixels with any valid depth (for messages).
    """

    cloud: np.ndarray
    pixel_ids: np.ndarray
    color: np.ndarray | None
    num_valid_depth: int

    def subset(self, keep: np.ndarray) -> "WorkspaceSelection":
        """The points where the (M,) bool ``keep`` is true, in the same order."""
        index = np.flatnonzero(keep)
        # np.take is several times faster than boolean indexing for (M, 3) rows.
        return WorkspaceSelection(np.take(self.cloud, index, axis=0), np.take(self.pixel_ids, index),
                                  self.color, self.num_valid_depth)


def select_workspace(
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    color: np.ndarray | None = None,
    workspace: Workspace | None = None,
    min_depth: float = 0.0,
    max_depth: float = math.inf,
) -> WorkspaceSelection:
    """Back-project the valid pixels inside the depth range, mask and box (see prepare_points).

    Raises:
        InputError: size mismatch, no valid depth at all, or nothing left inside the workspace.
    """
    depth = _check_depth(depth_m, intrinsics)
    height, width = depth.shape
    if color is not None:
        color = np.asarray(color)
        if color.shape != (height, width, 3) or color.dtype != np.uint8:
            raise InputError(
                f"colour image must be ({height}, {width}, 3) uint8 like the depth image, "
                f"got {color.shape} {color.dtype}"
            )
    mask = None if workspace is None or workspace.mask is None else np.asarray(workspace.mask)
    mask_fits = mask is None or mask.shape == (height, width)
    if mask is not None and mask_fits:
        mask = mask if mask.dtype == bool else mask != 0
    valid_range = min_depth < max_depth  # also false for NaN
    if depth.dtype == np.float32:
        # One pass; its points are only used once every check below has passed.
        num_valid_depth, pixel_ids, cloud = _select_and_back_project(
            depth, intrinsics, mask if mask_fits else None, min_depth, max_depth if valid_range else -math.inf)
    else:
        num_valid_depth = int(_depth_in_range(depth, 0.0, math.inf).sum())
    if num_valid_depth == 0:
        raise InputError(f"no valid depth in the {width}x{height} frame (all pixels are 0, NaN or inf)")
    _depth_in_range(depth[:0], min_depth, max_depth)  # ConfigError for an empty depth range
    if not mask_fits:
        raise InputError(f"workspace mask is {mask.shape}, depth image is {(height, width)}")
    if depth.dtype != np.float32:  # float64 (or float16) depth: the numpy formulation
        keep = _depth_in_range(depth, min_depth, max_depth)
        pixel_ids = np.flatnonzero(keep if mask is None else keep & mask)
        cloud = _back_project_pixels(depth, pixel_ids, intrinsics)
    if workspace is not None and workspace.min_xyz is not None:
        low = np.asarray(workspace.min_xyz, np.float32)
        high = np.asarray(workspace.max_xyz, np.float32)
        inside = np.all((cloud >= low) & (cloud <= high), axis=1)
        cloud, pixel_ids = cloud[inside], pixel_ids[inside]
    if cloud.shape[0] == 0:
        raise InputError(
            f"workspace empty: none of the {num_valid_depth} valid-depth pixels survive the "
            f"mask, depth range ({min_depth}, {max_depth}] m and box"
        )
    return WorkspaceSelection(cloud, pixel_ids, color, num_valid_depth)


def sample_cloud(selection: WorkspaceSelection, num_points: int, seed: int | None = None,
                 preferred: np.ndarray | None = None, preferred_fraction: float = 0.0) -> PreparedCloud:
    """The model input of a workspace selection: official sampling, or denser on ``preferred`` points.

    Args:
        preferred: optional (M,) bool over the selection's points (e.g. the target objects); when
            they make up less than ``preferred_fraction`` of the points, that share of the input
            is drawn from them and the rest from the whole selection, so the scene stays in the input.
    """
    cloud, pixel_ids, color = selection.cloud, selection.pixel_ids, selection.color
    if cloud.shape[0] == 0:
        raise InputError("workspace empty: no points left to sample")
    rng = np.random.default_rng(seed)
    num_points = int(num_points)
    indices = None
    if preferred is not None and preferred_fraction > 0:
        preferred_ids = np.flatnonzero(preferred)
        # Never more than each preferred point once: repeated points change the model's local
        # features (a ball query groups copies), which costs more grasps than it adds seeds.
        wanted = min(int(round(preferred_fraction * num_points)), preferred_ids.size)
        if 0 < preferred_ids.size and preferred_ids.size < preferred_fraction * cloud.shape[0] and wanted > 0:
            chosen = preferred_ids[sample_indices(preferred_ids.size, wanted, rng)]
            others = np.flatnonzero(~preferred)
            rest = (others[sample_indices(others.size, num_points - wanted, rng)]
                    if num_points > wanted and others.size else chosen[:0])
            indices = np.concatenate([chosen, rest])
    if indices is None:
        indices = sample_indices(cloud.shape[0], num_points, rng)
    return PreparedCloud(cloud, color, np.take(cloud, indices, axis=0), indices, int(cloud.shape[0]), pixel_ids)


def sample_indices(num_valid: int, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """(num_points,) int64 indices into num_valid points, official demo rule (see prepare_points)."""
    if num_valid >= num_points:
        return rng.choice(num_valid, num_points, replace=False).astype(np.int64, copy=False)
    extra = rng.choice(num_valid, num_points - num_valid, replace=True)
    return np.concatenate([np.arange(num_valid, dtype=np.int64), extra.astype(np.int64, copy=False)])


def _select_and_back_project(depth: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray | None,
                             min_depth: float, max_depth: float) -> tuple[int, np.ndarray, np.ndarray]:
    """(valid-depth pixel count, flat pixel ids, (M, 3) float32 points) of a float32 depth image.

    The numpy formulation (``_depth_in_range``, ``np.flatnonzero``, ``_back_project_pixels``)
    in one pass over the pixels plus one over the kept ones, with the same float32 comparisons
    and products, hence the same points; it makes no full-frame temporaries.
    """
    # numpy compares a float32 image with a Python float in float32: so does the kernel.
    with np.errstate(over="ignore"):
        lower = np.float32(max(min_depth, 0.0))
        upper = np.float32(max_depth)
    x_per_z, y_per_z = _ray_tables(intrinsics)
    use_mask = mask is not None
    mask_bytes = np.ascontiguousarray(mask).view(np.uint8) if use_mask else np.ones((1, 1), np.uint8)
    return _select_pixels_kernel(np.ascontiguousarray(depth), lower, upper, max_depth < math.inf, mask_bytes,
                                 use_mask, x_per_z, y_per_z)


@numba.njit(cache=True, nogil=True)
def _select_pixels_kernel(depth, lower, upper, upper_inclusive, mask, use_mask, x_per_z, y_per_z):
    height, width = depth.shape
    flat = depth.ravel()
    mask_flat = mask.ravel()
    num_valid = 0
    keep = np.zeros(flat.shape[0], np.bool_)  # one test, shared by both passes
    num_kept = 0
    for p in range(flat.shape[0]):
        d = flat[p]
        if d > 0 and d < np.inf:  # NaN fails both
            num_valid += 1
            if d > lower and (d <= upper or not upper_inclusive) and (not use_mask or mask_flat[p] != 0):
                keep[p] = True
                num_kept += 1
    pixel_ids = np.empty(num_kept, np.int64)
    cloud = np.empty((num_kept, 3), np.float32)
    k = 0
    for row in range(height):
        y_ray = y_per_z[row]
        for col in range(width):
            p = row * width + col
            if keep[p]:
                d = flat[p]
                pixel_ids[k] = p
                cloud[k, 0] = d * x_per_z[col]
                cloud[k, 1] = d * y_ray
                cloud[k, 2] = d
                k += 1
    return num_valid, pixel_ids, cloud


def _back_project_pixels(depth: np.ndarray, pixel_ids: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(M, 3) float32 points of the given flat pixel indices of an (H, W) depth image.

    Only these pixels are back-projected: a full-frame float cloud would dominate the run time.
    """
    z = depth.ravel()[pixel_ids].astype(np.float32, copy=False)
    x_per_z, y_per_z = _flat_ray_tables(intrinsics)
    cloud = np.empty((pixel_ids.size, 3), dtype=np.float32)
    np.multiply(z, x_per_z[pixel_ids], out=cloud[:, 0])
    np.multiply(z, y_per_z[pixel_ids], out=cloud[:, 1])
    cloud[:, 2] = z
    return cloud


def _check_depth(depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise InputError(f"depth must be an (H, W) array in metres, got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise InputError(f"depth must be float metres, got {depth.dtype} (convert raw images with decode_depth)")
    expected = (intrinsics.height, intrinsics.width)
    if depth.shape != expected:
        raise InputError(f"depth image is {depth.shape} (H, W) but the intrinsics describe {expected}")
    return depth


def _depth_in_range(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    if not min_depth < max_depth:  # also false for NaN
        raise ConfigError(f"depth range needs min_depth < max_depth, got ({min_depth}, {max_depth}] m")
    # NaN compares False, so NaN pixels drop out; +inf is excluded explicitly even for max_depth = inf.
    with np.errstate(invalid="ignore"):
        keep = depth > max(min_depth, 0.0)
        if max_depth < math.inf:
            keep &= depth <= max_depth
        else:
            keep &= depth < math.inf
    return keep


@functools.lru_cache(maxsize=4)
def _flat_ray_tables(intrinsics: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(H·W,) read-only float32 (u − cx)/fx and (v − cy)/fy per flat pixel index, cached per camera.

    Gathering from these is several times faster than recovering (row, column) with divmod.
    """
    x_per_z, y_per_z = _ray_tables(intrinsics)
    x_flat, y_flat = np.tile(x_per_z, intrinsics.height), np.repeat(y_per_z, intrinsics.width)
    x_flat.setflags(write=False)
    y_flat.setflags(write=False)
    return x_flat, y_flat


def _ray_tables(intrinsics: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(W,) (u − cx)/fx and (H,) (v − cy)/fy, float32, so that x = z·table[u] and y = z·table[v]."""
    x_per_z = (np.arange(intrinsics.width, dtype=np.float64) - intrinsics.cx) / intrinsics.fx
    y_per_z = (np.arange(intrinsics.height, dtype=np.float64) - intrinsics.cy) / intrinsics.fy
    return x_per_z.astype(np.float32), y_per_z.astype(np.float32)
