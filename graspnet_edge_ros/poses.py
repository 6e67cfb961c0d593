"""GraspNet gripper frames -> robot TCP poses (convention, offset, pre-grasp, 180-degree twin).

GraspNet's rotation columns are (approach, closing, height) = (x, y, z) of its gripper frame.
Robots usually want the TCP z axis along the approach. Supported conventions:

* ``"z_approach_x_closing"`` (default): z = approach, x = closing, y = z x x (right-handed).
  R_tcp = R_graspnet @ [[0, 0, 1], [1, 0, 0], [0, 1, 0]].
* ``"x_approach_y_closing"``: GraspNet's own frame (z = x x y).

A parallel-jaw grasp turned 180 degrees about its approach axis is the same grasp (its "twin");
``twin_policy="closest_to_reference"`` picks whichever twin is nearer to a reference orientation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .compat import rotation_as_canonical_quat
from .errors import ConfigError, InputError
from .grasps import GraspGroup

# Columns say which GraspNet axis (0 approach, 1 closing, 2 a x c) becomes TCP x, y, z.
_AXIS_PERMUTATIONS = {
    "z_approach_x_closing": np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float64),
    "x_approach_y_closing": np.eye(3),
}
# Column index of the approach axis in each TCP convention.
_APPROACH_COLUMN = {"z_approach_x_closing": 2, "x_approach_y_closing": 0}
CONVENTIONS = tuple(_AXIS_PERMUTATIONS)
TWIN_POLICIES = ("keep", "closest_to_reference")
_TRANSFORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class TcpPoses:
    """TCP poses of N grasps, float64, in one frame (``frame`` is informational).

    positions (N, 3) m; quaternions (N, 4) xyzw, unit, w >= 0; rotations (N, 3, 3) proper
    rotations whose columns are the TCP axes; approach (N, 3) unit approach vectors;
    pre_grasp_positions (N, 3) m; flipped (N,) bool, True where the 180-degree twin was chosen.
    """

    positions: np.ndarray
    quaternions: np.ndarray
    rotations: np.ndarray
    approach: np.ndarray
    pre_grasp_positions: np.ndarray
    flipped: np.ndarray
    convention: str

    def __len__(self) -> int:
        return len(self.positions)


def graspnet_to_tcp_rotation(rotations, convention: str = "z_approach_x_closing") -> np.ndarray:
    """Map GraspNet rotations to TCP rotations.

    Only the approach and closing columns are read; the third axis is rebuilt as
    approach x closing and the result is re-orthonormalised (polar decomposition), so float32
    noise or a left-handed input still yields a proper rotation.

    Args:
        rotations: (N, 3, 3) or (3, 3), columns (approach, closing, height), any float dtype.

    Returns:
        (N, 3, 3) float64, det = +1.

    Raises:
        ConfigError: unknown convention. InputError: non-finite or degenerate (approach
        parallel to closing) rotations.
    """
    if convention not in _AXIS_PERMUTATIONS:
        raise ConfigError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    rotations = np.asarray(rotations, np.float64)
    if rotations.shape[-2:] != (3, 3):
        raise InputError(f"rotations must be (N, 3, 3), got {rotations.shape}")
    rotations = rotations.reshape(-1, 3, 3)
    approach, closing = rotations[:, :, 0], rotations[:, :, 1]
    frames = np.stack([approach, closing, np.cross(approach, closing)], axis=-1)
    return nearest_rotation(frames) @ _AXIS_PERMUTATIONS[convention]


def nearest_rotation(matrices) -> np.ndarray:
    """(N, 3, 3) nearest proper rotations (Frobenius) via SVD: U diag(1, 1, det(U V^T)) V^T.

    Raises InputError for non-finite matrices or ones of rank < 2 (e.g. a frame built from
    parallel or zero axes), whose nearest rotation is not unique.
    """
    matrices = np.asarray(matrices, np.float64).reshape(-1, 3, 3)
    if not np.isfinite(matrices).all():
        raise InputError("rotation matrices contain NaN or inf")
    u, singular_values, vt = np.linalg.svd(matrices)
    if len(matrices) and (singular_values[:, 1] <= 1e-6 * singular_values[:, 0]).any():
        raise InputError("degenerate rotation: approach and closing axes are parallel or zero")
    signs = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= signs[:, None]
    return u @ vt


def quaternions_xyzw(rotations) -> np.ndarray:
    """(N, 3, 3) proper rotations -> (N, 4) float64 unit quaternions, xyzw, canonical w >= 0."""
    rotations = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
    if len(rotations) == 0:
        return np.zeros((0, 4), np.float64)
    return rotation_as_canonical_quat(Rotation.from_matrix(rotations))


def tcp_poses(grasps: GraspGroup, convention: str = "z_approach_x_closing",
              tcp_offset: float = 0.0, pre_grasp_distance: float = 0.1,
              twin_policy: str = "keep", reference_rotation=None,
              transform=None) -> TcpPoses:
    """TCP poses for robot hand-off.

    Args:
        grasps: N grasps in the camera (optical) frame.
        convention: one of ``CONVENTIONS``.
        tcp_offset: metres along the approach: position = grasp point + tcp_offset * approach,
            so positive moves the TCP deeper (towards the fingertips, which are at +depth) and
            negative moves it back towards the palm/wrist.
        pre_grasp_distance: metres, >= 0; pre-grasp = position - distance * approach.
        twin_policy: "keep" the network's orientation, or "closest_to_reference": of the pose
            and its 180-degree twin about the approach axis, take the one with the smaller
            geodesic angle to ``reference_rotation`` (ties keep the network's orientation).
        reference_rotation: (3, 3) TCP orientation in the output frame; default identity,
            i.e. prefer the TCP x axis (the closing axis in the default convention) along +x.
        transform: optional (4, 4) rigid transform from the grasps' frame to the output frame,
            applied before the twin choice.
    """
    if twin_policy not in TWIN_POLICIES:
        raise ConfigError(f"twin_policy must be one of {TWIN_POLICIES}, got {twin_policy!r}")
    if not (np.isfinite(tcp_offset) and np.isfinite(pre_grasp_distance)
            and pre_grasp_distance >= 0):
        raise ConfigError(f"need finite tcp_offset and pre_grasp_distance >= 0, got "
                          f"{tcp_offset} and {pre_grasp_distance}")
    rotations = graspnet_to_tcp_rotation(grasps.rotations, convention)
    approach_column = _APPROACH_COLUMN[convention]
    positions = grasps.translations.astype(np.float64)
    if transform is not None:
        positions, rotations = transform_poses(positions, rotations, transform)
    approach = rotations[:, :, approach_column]
    positions = positions + tcp_offset * approach

    flipped = np.zeros(len(rotations), bool)
    if twin_policy == "closest_to_reference":
        reference = np.eye(3) if reference_rotation is None else reference_rotation
        reference = nearest_rotation(_as_matrix(reference, "reference_rotation"))[0]
        twins = rotations @ _twin_flip(approach_column)
        # Geodesic angle falls as trace(R_ref^T R) rises, so compare traces.
        own_trace = np.einsum("ij,nij->n", reference, rotations)
        twin_trace = np.einsum("ij,nij->n", reference, twins)
        flipped = twin_trace > own_trace
        rotations = np.where(flipped[:, None, None], twins, rotations)

    return TcpPoses(positions=positions, quaternions=quaternions_xyzw(rotations),
                    rotations=rotations, approach=approach,
                    pre_grasp_positions=positions - pre_grasp_distance * approach,
                    flipped=flipped, convention=convention)


def transform_poses(positions, rotations, transform) -> tuple[np.ndarray, np.ndarray]:
    """Express poses in another frame: p' = R_T p + t_T, R' = R_T R.

    Args:
        positions: (N, 3) metres. rotations: (N, 3, 3).
        transform: (4, 4) rigid transform (new frame <- old frame), e.g. from tf.

    Returns:
        (positions (N, 3), rotations (N, 3, 3)), float64.

    Raises:
        InputError: the transform is not a finite rigid transform (within 1e-3).
    """
    transform = _as_matrix(transform, "transform", shape=(4, 4))
    rotation, translation = transform[:3, :3], transform[:3, 3]
    rigid = (np.abs(rotation.T @ rotation - np.eye(3)).max() < _TRANSFORM_TOLERANCE
             and np.linalg.det(rotation) > 0
             and np.abs(transform[3] - [0, 0, 0, 1]).max() < _TRANSFORM_TOLERANCE)
    if not rigid:
        raise InputError(f"transform is not a rigid transform:\n{transform}")
    positions = np.asarray(positions, np.float64).reshape(-1, 3)
    rotations = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
    return positions @ rotation.T + translation, rotation @ rotations


def _twin_flip(approach_column: int) -> np.ndarray:
    """Right-multiplied (3, 3): 180 degrees about the TCP approach axis (negates the others)."""
    flip = -np.ones(3)
    flip[approach_column] = 1.0
    return np.diag(flip)


def _as_matrix(value, name: str, shape=(3, 3)) -> np.ndarray:
    matrix = np.asarray(value, np.float64)
    if matrix.shape != shape or not np.isfinite(matrix).all():
        raise InputError(f"{name} must be a finite {shape} matrix, got {matrix!r}")
    return matrix
