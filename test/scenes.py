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
from graspnet_edge_ros.x5.frames import rerender  # noqa: F401  (re-exported: tests import it from here)


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


def rotation_about(axis, angle_deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    axis = np.asarray(axis, np.float64)
    return Rotation.from_rotvec(np.radians(angle_deg) * axis / np.linalg.norm(axis)).as_matrix()
