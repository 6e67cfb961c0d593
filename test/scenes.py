"""Test scenes with known geometry: analytic tables, boxes and walls, and re-rendered captures.

World frame: z up, the table top is z = 0. Cameras use the optical convention (x right, y down,
z forward). Every scene returns depth in millimetres (uint16, 0 = no return), an RGB image, an
instance-label image (0 = background / table / walls, boxes 1..N) and the ground truth (the
table plane in the camera frame, the boxes in the camera frame).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graspnet_edge_ros.camera import CameraIntrinsics


def look_at(eye, target, world_up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(4, 4) camera-to-world pose of an optical-frame camera at ``eye`` looking at ``target``."""
    eye, target, world_up = (np.asarray(v, np.float64) for v in (eye, target, world_up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, world_up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = eye
    return pose


def realsense_intrinsics(width: int = 640, height: int = 480) -> CameraIntrinsics:
    focal = 0.71 * width  # ~69 deg horizontal field of view, as a D435 colour stream
    return CameraIntrinsics(focal, focal, width / 2 - 0.5, height / 2 - 0.5, width, height)


@dataclass
class Box:
    """Axis-aligned box in the world frame (metres) with an instance label."""

    low: tuple
    high: tuple
    label: int
    color: tuple = (200, 60, 60)


@dataclass
class AnalyticScene:
    color: np.ndarray
    depth_mm: np.ndarray
    labels: np.ndarray
    intrinsics: CameraIntrinsics
    camera_pose: np.ndarray            # camera -> world
    table_plane_camera: np.ndarray     # [nx, ny, nz, d] in the camera frame, up normal
    boxes: list = field(default_factory=list)

    @property
    def world_to_camera(self) -> np.ndarray:
        return np.linalg.inv(self.camera_pose)

    def points_to_world(self, points_camera: np.ndarray) -> np.ndarray:
        points = np.asarray(points_camera, np.float64)
        return points @ self.camera_pose[:3, :3].T + self.camera_pose[:3, 3]


def render_tabletop(boxes=(), *, eye=(0.0, -0.75, 0.55), target=(0.0, 0.05, 0.0),
                    table_half=(0.45, 0.35), wall_y: float | None = 2.0, floor_z: float | None = -0.75,
                    width: int = 640, height: int = 480, noise_mm: float = 0.0, seed: int = 0) -> AnalyticScene:
    """Ray-cast a table (top at z = 0), optional floor and wall (plane y = wall_y) and boxes."""
    intrinsics = realsense_intrinsics(width, height)
    pose = look_at(eye, target)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    rays_camera = np.stack([(cols - intrinsics.cx) / intrinsics.fx, (rows - intrinsics.cy) / intrinsics.fy,
                            np.ones_like(cols, dtype=np.float64)], axis=-1).reshape(-1, 3)
    rays = rays_camera @ pose[:3, :3].T
    origin = pose[:3, 3]
    best_t = np.full(len(rays), np.inf)
    labels = np.zeros(len(rays), np.int32)
    colors = np.zeros((len(rays), 3), np.uint8)

    def take(t, label, color):
        closer = (t > 1e-6) & (t < best_t)
        best_t[closer] = t[closer]
        labels[closer] = label
        colors[closer] = color

    with np.errstate(divide="ignore", invalid="ignore"):
        # Table top: z = 0 inside the rectangle (a slab: seen from above only).
        t = -origin[2] / rays[:, 2]
        hit = origin + t[:, None] * rays
        on_table = (np.abs(hit[:, 0]) <= table_half[0]) & (np.abs(hit[:, 1]) <= table_half[1])
        take(np.where(on_table, t, np.inf), 0, (150, 120, 90))
        if floor_z is not None:
            t = (floor_z - origin[2]) / rays[:, 2]
            take(np.where(np.isfinite(t), t, np.inf), 0, (90, 90, 90))
        if wall_y is not None:
            t = (wall_y - origin[1]) / rays[:, 1]
            take(np.where(np.isfinite(t), t, np.inf), 0, (220, 220, 210))
        for box in boxes:
            low, high = np.asarray(box.low, float), np.asarray(box.high, float)
            t1 = (low - origin) / rays
            t2 = (high - origin) / rays
            t_near = np.nanmax(np.minimum(t1, t2), axis=1)
            t_far = np.nanmin(np.maximum(t1, t2), axis=1)
            take(np.where((t_near <= t_far) & (t_far > 0), t_near, np.inf), box.label, box.color)
    depth = best_t * (rays @ pose[:3, :3][:, 2])  # z of the hit in the camera frame
    depth[~np.isfinite(depth)] = 0
    if noise_mm:
        depth += np.random.default_rng(seed).normal(0, noise_mm / 1000.0, depth.shape) * (depth > 0)
    depth_mm = np.clip(np.rint(depth * 1000.0), 0, 65535).astype(np.uint16).reshape(height, width)
    world_to_camera = np.linalg.inv(pose)
    up_camera = world_to_camera[:3, :3] @ np.array([0.0, 0.0, 1.0])
    # Plane z_world = 0: n . p_world = 0 -> in the camera frame n_c . p_c + (n . origin) = 0.
    table_plane = np.append(up_camera, float(np.array([0.0, 0.0, 1.0]) @ origin))
    return AnalyticScene(colors.reshape(height, width, 3), depth_mm, labels.reshape(height, width), intrinsics,
                         pose, table_plane, list(boxes))


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


def rotation_about(axis, angle_deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    axis = np.asarray(axis, np.float64)
    return Rotation.from_rotvec(np.radians(angle_deg) * axis / np.linalg.norm(axis)).as_matrix()
