"""Greedy grasp non-maximum suppression (graspnetAPI ``GraspGroup.nms`` / graspnms semantics).

Grasps are visited in descending score order; each surviving grasp deletes every later grasp
that is BOTH closer than ``translation_thresh`` (Euclidean, metres) AND rotated by less than
``rotation_thresh`` (geodesic angle, radians). Both comparisons are strict, everything is float64,
and width/depth/height/object id are ignored (no gripper-symmetry handling, as upstream).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import ConfigError
from ..grasps import ROTATION, TRANSLATION, GraspGroup


def grasp_nms(grasps: GraspGroup, translation_thresh: float = 0.03,
              rotation_thresh: float = np.pi / 6) -> GraspGroup:
    """Suppress near-duplicate grasps, keeping the best-scoring one of each cluster.

    Ties in score keep input order (stable sort); upstream's ``std::sort`` leaves ties
    unspecified. NaN scores sort last; a grasp with a non-finite pose neither suppresses nor
    is suppressed.

    Args:
        grasps: N grasps.
        translation_thresh: metres, >= 0.
        rotation_thresh: radians, >= 0. The angle between R_i and R_j is
            acos((clamp(trace(R_i R_j^T), -1, 3) - 1) / 2).

    Returns:
        A new GraspGroup of the survivors in descending score order.
    """
    for name, value in (("translation_thresh", translation_thresh),
                        ("rotation_thresh", rotation_thresh)):
        if not value >= 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
    if len(grasps) == 0:
        return GraspGroup.empty()
    order = descending_score_order(grasps.scores)
    ordered = grasps.array[order]
    rows = ordered.astype(np.float64)
    keep = _greedy_keep(np.ascontiguousarray(rows[:, TRANSLATION]),
                        np.ascontiguousarray(rows[:, ROTATION]),
                        float(translation_thresh), float(rotation_thresh))
    return GraspGroup(ordered[keep])


def descending_score_order(scores: np.ndarray) -> np.ndarray:
    """(N,) int64 indices sorting ``scores`` descending; equal scores keep input order, NaN last."""
    scores = np.asarray(scores, np.float64)
    return np.argsort(-scores, kind="stable")


@numba.njit(cache=True, nogil=True)
def _greedy_keep(translations, rotations, translation_thresh, rotation_thresh):
    """(N,) bool survivors of the greedy pass over score-sorted rows.

    translations (N, 3) and row-major rotations (N, 9), float64, already in visiting order.
    """
    n = translations.shape[0]
    keep = np.ones(n, np.bool_)
    for i in range(n):
        if not keep[i]:
            continue
        for j in range(i + 1, n):
            if not keep[j]:
                continue
            dx = translations[i, 0] - translations[j, 0]
            dy = translations[i, 1] - translations[j, 1]
            dz = translations[i, 2] - translations[j, 2]
            if not math.sqrt(dx * dx + dy * dy + dz * dz) < translation_thresh:
                continue
            # trace(R_i R_j^T) is the elementwise dot product of the two matrices.
            trace = 0.0
            for k in range(9):
                trace += rotations[i, k] * rotations[j, k]
            trace = min(max(trace, -1.0), 3.0)
            if math.acos((trace - 1.0) / 2.0) < rotation_thresh:
                keep[j] = False
    return keep

