"""Executability: the whole gripper, not only its fingertips, must stay above the support plane.

The model-free collision check only sees the observed cloud, and a single view has no points
under a table, so a grasp whose palm or wrist passes through the table looks collision-free.
Here the gripper is a set of solids in the grasp frame (GraspNet's: x = approach, y = closing,
z = height; fingertips at x = depth, see ``GripperGeometry``) and each solid's lowest point is
compared with the plane analytically.

Reasons, in the order a grasp is attributed to (first failing one):
    approach_from_below   the approach vector points up, out of the plane (a . n > sin 1 deg)
    below_plane_wrist     the wrist/flange corridor behind the palm dips below the plane
    below_plane_palm      the hand body dips below the plane
    below_plane_fingers   a finger reaches more than ``table_tolerance`` below the plane
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..grasps import GraspGroup
from .filters import FilterResult

# A horizontal approach is fine; only a clearly upward one (> ~1 deg) comes from below.
_UPWARD_APPROACH_SINE = 0.0175
REASONS = ("approach_from_below", "below_plane_wrist", "below_plane_palm", "below_plane_fingers")


@dataclass(frozen=True)
class GripperGeometry:
    """Parallel-jaw gripper solids, metres (defaults fit a Franka Panda hand).

    ::

                       |<-- wrist_radius -->|
                       +--------------------+   ^
                       |    wrist/flange    |   | wrist_length
           +-----------+--------------------+---+-------+   ^
           |                   palm                      |   | palm_depth   (palm_width along
           +----+---------------------------------+-----+   v               the closing axis,
                |  |<------ grasp width ------>|  |       ^                palm_thickness along
                |  |                           |  |       | finger_length   the height axis)
                |  |             o grasp point |  |       |
                +--+                           +--+       v  fingertips (x = depth)
               finger_width                                  approach: down the page
    """

    finger_length: float = 0.05
    finger_width: float = 0.02
    finger_thickness: float = 0.02
    palm_depth: float = 0.06
    palm_width: float = 0.2
    palm_thickness: float = 0.06
    wrist_length: float = 0.1
    wrist_radius: float = 0.045
    table_tolerance: float = 0.01

    @classmethod
    def from_config(cls, gripper) -> "GripperGeometry":
        """From the ``gripper`` group of a DetectorConfig (``config.gripper``)."""
        return cls(gripper.gripper_finger_length_m, gripper.gripper_finger_width_m,
                   gripper.gripper_finger_thickness_m, gripper.gripper_palm_depth_m,
                   gripper.gripper_palm_width_m, gripper.gripper_palm_thickness_m,
                   gripper.gripper_wrist_length_m, gripper.gripper_wrist_radius_m,
                   gripper.gripper_table_tolerance_m)


@dataclass(frozen=True)
class SolidHeights:
    """(N,) lowest height above the plane of each solid, metres."""

    fingers: np.ndarray
    palm: np.ndarray
    wrist: np.ndarray
    approach_up: np.ndarray  # (N,) approach . normal


def lowest_heights(grasps: GraspGroup, normal, offset: float, gripper: GripperGeometry) -> SolidHeights:
    """Lowest point of the fingers, palm and wrist of every grasp above the plane ``normal . p + offset``."""
    normal = np.asarray(normal, np.float64)
    rotations = grasps.rotations.astype(np.float64)
    centers = grasps.translations.astype(np.float64)
    depths = grasps.depths.astype(np.float64)
    widths = grasps.widths.astype(np.float64)
    # Components of the plane normal along the grasp axes: how much each axis points "up".
    up = np.einsum("nij,i->nj", rotations, normal)  # (N, 3): approach, closing, height
    abs_up = np.abs(up)
    center_height = centers @ normal + offset
    g = gripper
    # Fingers: boxes centred at x = depth - L/2, y = +-(w/2 + fw/2); the lower of the two counts.
    finger_x = depths - g.finger_length / 2
    finger_y = widths / 2 + g.finger_width / 2
    finger_extent = (g.finger_length / 2 * abs_up[:, 0] + g.finger_width / 2 * abs_up[:, 1]
                     + g.finger_thickness / 2 * abs_up[:, 2])
    fingers = center_height + finger_x * up[:, 0] - finger_y * abs_up[:, 1] - finger_extent
    # Palm: centred behind the finger bases, at least as wide as the open fingers.
    palm_x = depths - g.finger_length - g.palm_depth / 2
    palm_width = np.maximum(g.palm_width, widths + 2 * g.finger_width)
    palm = (center_height + palm_x * up[:, 0] - g.palm_depth / 2 * abs_up[:, 0]
            - palm_width / 2 * abs_up[:, 1] - g.palm_thickness / 2 * abs_up[:, 2])
    # Wrist: a cylinder along -approach from the back of the palm.
    back = depths - g.finger_length - g.palm_depth
    end_low = np.minimum(back * up[:, 0], (back - g.wrist_length) * up[:, 0])
    radial = g.wrist_radius * np.sqrt(np.clip(1.0 - up[:, 0] ** 2, 0.0, 1.0))
    wrist = center_height + end_low - radial
    return SolidHeights(fingers, palm, wrist, up[:, 0])


def executability_filters(grasps: GraspGroup, normal, offset: float,
                          gripper: GripperGeometry) -> list[FilterResult]:
    """One FilterResult per reason (see the module doc), in attribution order."""
    heights = lowest_heights(grasps, normal, offset, gripper)
    with np.errstate(invalid="ignore"):
        return [
            FilterResult("approach_from_below", ~(heights.approach_up > _UPWARD_APPROACH_SINE)),
            FilterResult("below_plane_wrist", heights.wrist >= 0.0),
            FilterResult("below_plane_palm", heights.palm >= 0.0),
            FilterResult("below_plane_fingers", heights.fingers >= -gripper.table_tolerance),
        ]
