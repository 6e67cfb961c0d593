"""Approach views and the gripper rotation builder, exactly as graspnet-baseline defines them.

numpy only (the torch twins live in ``graspnet_edge_ros.model.graspnet``), so the runtime
decoder and the split runtime need no torch.
"""
from __future__ import annotations

import numpy as np

GOLDEN_PHI = (np.sqrt(5.0) - 1.0) / 2.0


def generate_grasp_views(num_views: int = 300) -> np.ndarray:
    """Fibonacci-sphere view directions (graspnet-baseline ``generate_grasp_views``).

    Computed in float64 then cast, as the official Python loop does.

    Returns:
        (num_views, 3) float32 unit vectors pointing from the grasp point towards the viewpoint;
        the approach direction of view i is ``-views[i]``.
    """
    i = np.arange(num_views, dtype=np.float64)
    z = (2.0 * i + 1.0) / num_views - 1.0
    radial = np.sqrt(1.0 - z * z)
    x = radial * np.cos(2.0 * np.pi * i * GOLDEN_PHI)
    y = radial * np.sin(2.0 * np.pi * i * GOLDEN_PHI)
    return np.stack([x, y, z], axis=1).astype(np.float32)


def viewpoint_params_to_matrix(towards: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotation whose columns are (approach, closing, height) axes: ``batch_viewpoint_params_to_matrix``.

    Args:
        towards: (N, 3) approach vectors (need not be normalised), camera frame.
        angles: (N,) in-plane rotation about the approach axis, radians.

    Returns:
        (N, 3, 3) float32 rotations R = [a | y0 | z0] @ Rx(angle).
    """
    towards = np.asarray(towards, np.float32).reshape(-1, 3)
    angles = np.asarray(angles, np.float32).reshape(-1)
    axis_x = towards
    axis_y = np.stack([-axis_x[:, 1], axis_x[:, 0], np.zeros_like(axis_x[:, 0])], axis=1)
    # The official code writes y = (0, 1, 0) where the horizontal vector vanishes exactly.
    degenerate = np.linalg.norm(axis_y, axis=1) == 0
    axis_y[degenerate, 1] = 1.0
    axis_x = axis_x / np.linalg.norm(axis_x, axis=1, keepdims=True)
    axis_y = axis_y / np.linalg.norm(axis_y, axis=1, keepdims=True)
    axis_z = np.cross(axis_x, axis_y)
    sin, cos = np.sin(angles), np.cos(angles)
    rot_about_x = np.zeros((len(angles), 3, 3), np.float32)
    rot_about_x[:, 0, 0] = 1.0
    rot_about_x[:, 1, 1] = cos
    rot_about_x[:, 1, 2] = -sin
    rot_about_x[:, 2, 1] = sin
    rot_about_x[:, 2, 2] = cos
    frame = np.stack([axis_x, axis_y, axis_z], axis=-1).astype(np.float32)
    return np.matmul(frame, rot_about_x).astype(np.float32)
