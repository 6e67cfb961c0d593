"""Lift planar (pixel, angle, width) grasps to 6-DoF grasp rows with aligned depth and intrinsics.

Top-down lifting (the generic recipe of the planar networks' ROS nodes): the approach is the
camera's optical axis (+z, into the scene), the jaws close along the image direction of the grasp
angle, the grasp point is the back-projected grasp pixel at the robust top-surface depth of the
window around it and the jaw segment, and the opening in metres is pixels x depth / focal length
along the closing direction. The rows are ordinary GraspNet rows, so
filters, collision check, NMS, poses and markers treat planar and GraspNet grasps alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graspnet_edge_ros.camera import CameraIntrinsics
from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.planar.types import PlanarGrasps


@dataclass(frozen=True)
class LiftingOptions:
    """How planar grasps become 6-DoF rows.

    Attributes:
        depth_window_px: side of the square depth window around the grasp pixel (odd; holes ignored).
        depth_percentile: percentile of the valid depths (window + jaw segment) taken as the grasp
            surface: a low one picks the top of the object rather than a hole or the table.
        min_valid_fraction: a grasp with fewer valid depth pixels than this (fraction of the window
            + segment pixels) is dropped.
        insertion_depth_m: how far the fingertips reach beyond the surface (the row's ``depth``).
        finger_height_m: the row's ``height`` (finger thickness along the third axis).
    """

    depth_window_px: int = 9
    depth_percentile: float = 10.0
    min_valid_fraction: float = 0.25
    insertion_depth_m: float = 0.02
    finger_height_m: float = 0.02

    def __post_init__(self) -> None:
        if self.depth_window_px < 1 or self.depth_window_px % 2 == 0:
            raise ConfigError(f"depth_window_px must be a positive odd number, got {self.depth_window_px}")
        if not 0.0 <= self.depth_percentile <= 100.0:
            raise ConfigError(f"depth_percentile must be in [0, 100], got {self.depth_percentile}")
        if not 0.0 < self.min_valid_fraction <= 1.0:
            raise ConfigError(f"min_valid_fraction must be in (0, 1], got {self.min_valid_fraction}")
        if self.insertion_depth_m < 0 or self.finger_height_m <= 0:
            raise ConfigError("insertion_depth_m must be >= 0 and finger_height_m > 0")


@dataclass(frozen=True)
class LiftedGrasps:
    """The lifted rows (input order) and, per input grasp, whether it was kept (False = no depth)."""

    grasps: GraspGroup
    kept: np.ndarray


def grasp_surface_depths(depth_m: np.ndarray, planar: PlanarGrasps, window_px: int, percentile: float,
                         min_valid_fraction: float) -> np.ndarray:
    """Robust top-surface depth (metres) of each grasp; NaN where too few pixels are valid.

    The pixels looked at are the window around the grasp centre plus the jaw segment between the
    two fingertips (AFFGA's rule: the centre can lie on a hole or on the table between the
    fingers, while the fingers must clear the highest surface they straddle). Valid = finite and
    > 0; a low percentile of the valid depths resists flying pixels. Windows are clipped at the
    image border.
    """
    height, width = depth_m.shape
    half = window_px // 2
    offsets = np.arange(-half, half + 1)
    result = np.full(len(planar), np.nan)
    for i in range(len(planar)):
        row, col = float(planar.rows[i]), float(planar.cols[i])
        angle, half_width = float(planar.angles_rad[i]), 0.5 * float(planar.widths_px[i])
        steps = np.linspace(-half_width, half_width, max(2, int(np.ceil(2 * half_width)) + 1))
        segment_rows = row - steps * np.sin(angle)
        segment_cols = col + steps * np.cos(angle)
        rows = np.concatenate([np.repeat(np.rint(row) + offsets, window_px), np.rint(segment_rows)]).astype(int)
        cols = np.concatenate([np.tile(np.rint(col) + offsets, window_px), np.rint(segment_cols)]).astype(int)
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        values = depth_m[rows[inside], cols[inside]]
        with np.errstate(invalid="ignore"):
            valid = values[np.isfinite(values) & (values > 0)]
        if valid.size and valid.size >= min_valid_fraction * rows.size:
            result[i] = np.percentile(valid, percentile)
    return result


def grasp_rotations(angles_rad: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(K, 3, 3) GraspNet-convention rotations (columns: approach, closing, third axis).

    Approach = camera +z. The image angle a (anticlockwise on screen from +u, rows growing
    downwards) closes along (du, dv) = (cos a, -sin a); at constant depth that pixel direction is
    the camera direction (cos a / fx, -sin a / fy, 0), normalised (exact for fx != fy). The third
    axis is approach x closing, so the frame is right-handed.
    """
    dx, dy = np.cos(angles_rad) / intrinsics.fx, -np.sin(angles_rad) / intrinsics.fy
    norm = np.hypot(dx, dy)
    dx, dy = dx / norm, dy / norm
    zeros, ones = np.zeros_like(dx), np.ones_like(dx)
    approach = np.stack([zeros, zeros, ones], axis=-1)
    closing = np.stack([dx, dy, zeros], axis=-1)
    third = np.stack([-dy, dx, zeros], axis=-1)
    return np.stack([approach, closing, third], axis=-1)


def widths_in_metres(widths_px: np.ndarray, angles_rad: np.ndarray, depths_m: np.ndarray,
                     intrinsics: CameraIntrinsics) -> np.ndarray:
    """Pixel opening -> metres at depth Z, with the focal length along the closing direction."""
    focal = 1.0 / np.sqrt((np.cos(angles_rad) / intrinsics.fx) ** 2 + (np.sin(angles_rad) / intrinsics.fy) ** 2)
    return np.asarray(widths_px, float) * depths_m / focal


def lift_planar_grasps(planar: PlanarGrasps, depth_m: np.ndarray, intrinsics: CameraIntrinsics,
                       options: LiftingOptions = LiftingOptions()) -> LiftedGrasps:
    """Planar grasps (full-image pixels) -> GraspNet rows in the camera optical frame.

    Args:
        planar: grasps in the pixel coordinates of ``depth_m`` (the aligned depth image).
        depth_m: (H, W) float depth in metres; 0/NaN are holes.
        intrinsics: of ``depth_m``.

    Raises:
        InputError: depth not (H, W) float or not matching the intrinsics.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise InputError(f"depth must be an (H, W) float array in metres, got {depth.shape} {depth.dtype}")
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise InputError(f"depth image is {depth.shape} (H, W) but the intrinsics describe "
                         f"{(intrinsics.height, intrinsics.width)}")
    rows, cols = np.asarray(planar.rows, float), np.asarray(planar.cols, float)
    depths = grasp_surface_depths(depth, planar, options.depth_window_px, options.depth_percentile,
                                  options.min_valid_fraction)
    kept = np.isfinite(depths)
    z = depths[kept]
    angles = np.asarray(planar.angles_rad, float)[kept]
    translations = np.stack([(cols[kept] - intrinsics.cx) * z / intrinsics.fx,
                             (rows[kept] - intrinsics.cy) * z / intrinsics.fy, z], axis=-1)
    grasps = GraspGroup.from_parts(
        scores=np.asarray(planar.scores, float)[kept],
        widths=widths_in_metres(np.asarray(planar.widths_px, float)[kept], angles, z, intrinsics),
        depths=options.insertion_depth_m,
        rotations=grasp_rotations(angles, intrinsics),
        translations=translations.reshape(-1, 3),
        heights=options.finger_height_m,
    )
    return LiftedGrasps(grasps, kept)
