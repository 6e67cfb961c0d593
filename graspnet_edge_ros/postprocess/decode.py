"""The official ``pred_decode`` in numpy: raw network outputs -> (Ns, 17) grasp rows.

Same steps and constants as graspnet-baseline ``models/graspnet.py::pred_decode`` (batch item 0):
width = clamp(1.2 * width_pred, 0, GRASP_MAX_WIDTH) before selection; angle argmax per (seed, depth);
depth argmax over the gathered scores; objectness argmax == 1; score = score * tolerance / 0.05;
height 0.02; depth (k + 1) * 0.01; object id -1; rotation built from (-top view, angle).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graspnet_edge_ros.errors import ModelError
from graspnet_edge_ros.grasps import DEPTH, GraspGroup
from graspnet_edge_ros.model.views import viewpoint_params_to_matrix

# Names of the raw outputs the decoder reads (official end_points keys, batch 1).
DECODE_INPUTS = ("objectness_score", "fp2_xyz", "grasp_top_view_xyz", "grasp_score_pred",
                 "grasp_angle_cls_pred", "grasp_width_pred", "grasp_tolerance_pred")


@dataclass(frozen=True)
class DecodeConfig:
    """Official constants (graspnet-baseline ``utils/loss_utils.py`` and ``pred_decode``).

    GraspNet-Edge retrained with 0.067 / 0.045; use those only with such a checkpoint.
    """

    grasp_max_width_m: float = 0.1
    grasp_max_tolerance_m: float = 0.05
    width_scale: float = 1.2
    grasp_height_m: float = 0.02
    depth_step_m: float = 0.01


def object_seed_mask(objectness_score: np.ndarray) -> np.ndarray:
    """(2, S) logits -> (S,) bool: object logit strictly greater than background (argmax == 1)."""
    return objectness_score[1] > objectness_score[0]


def require_decode_inputs(raw: dict) -> None:
    """ModelError naming the raw outputs the decoder reads that ``raw`` lacks."""
    missing = [name for name in DECODE_INPUTS if name not in raw]
    if missing:
        raise ModelError(f"raw outputs lack {missing}")


def decode_grasps(raw: dict[str, np.ndarray], config: DecodeConfig = DecodeConfig(),
                  seed_mask: np.ndarray | None = None) -> GraspGroup:
    """Decode batch item 0 of the raw outputs.

    Args:
        raw: official end_points names -> arrays with a leading batch axis of 1:
            objectness_score (1,2,S), fp2_xyz (1,S,3) camera frame m, grasp_top_view_xyz (1,S,3),
            grasp_score_pred / grasp_angle_cls_pred / grasp_width_pred / grasp_tolerance_pred (1,A,S,D).
            Rows of seeds that are not objects may hold anything (NaN included): they are dropped
            before any arithmetic touches them. So may those of seeds whose optional
            ``grasp_seed_gate`` (1, S) bool is False: the split runtime skipped their heads.
        seed_mask: (S,) bool, optional: decode only these of the object seeds (the rows of the
            others may hold anything too).

    Returns:
        GraspGroup of the object seeds in seed order (not sorted), object_id -1.
    """
    require_decode_inputs(raw)
    keep = object_seed_mask(np.asarray(raw["objectness_score"][0], np.float32))
    if "grasp_seed_gate" in raw:
        keep &= np.asarray(raw["grasp_seed_gate"], bool)[0]
    if seed_mask is not None:
        keep &= np.asarray(seed_mask, bool)
    if not keep.any():
        return GraspGroup.empty()
    seeds = np.flatnonzero(keep)
    score = np.asarray(raw["grasp_score_pred"][0], np.float32)[:, seeds]          # (A, Ns, D)
    angle_logits = np.asarray(raw["grasp_angle_cls_pred"][0], np.float32)[:, seeds]
    width = np.asarray(raw["grasp_width_pred"][0], np.float32)[:, seeds]
    tolerance = np.asarray(raw["grasp_tolerance_pred"][0], np.float32)[:, seeds]
    num_angle = angle_logits.shape[0]

    width = np.clip(config.width_scale * width, 0.0, config.grasp_max_width_m)
    angle_class = np.argmax(angle_logits, axis=0)                                  # (Ns, D)
    take = angle_class[None]
    score = np.take_along_axis(score, take, axis=0)[0]
    width = np.take_along_axis(width, take, axis=0)[0]
    tolerance = np.take_along_axis(tolerance, take, axis=0)[0]

    depth_class = np.argmax(score, axis=1)[:, None]                                # (Ns, 1)
    score = np.take_along_axis(score, depth_class, axis=1)[:, 0]
    width = np.take_along_axis(width, depth_class, axis=1)[:, 0]
    tolerance = np.take_along_axis(tolerance, depth_class, axis=1)[:, 0]
    final_score = score * tolerance / np.float32(config.grasp_max_tolerance_m)
    approaching = -np.asarray(raw["grasp_top_view_xyz"][0], np.float32)[seeds]
    centers = np.asarray(raw["fp2_xyz"][0], np.float32)[seeds]
    angle_class = np.take_along_axis(angle_class, depth_class, axis=1)[:, 0]
    return _grasp_rows(final_score, width, angle_class, depth_class[:, 0], num_angle, approaching, centers, config)


def head_outcomes(centers: np.ndarray, approaching: np.ndarray, num_angle: int, num_depth: int,
                  width: float, config: DecodeConfig = DecodeConfig()) -> GraspGroup:
    """Every grasp the decoder could make of each seed before its grasp head has run.

    A seed's grasp differs by the head's angle class, depth class, width and score only; this is
    the seed's row for each (angle, depth) class, at ``width`` and score 0, seed-major
    (row ``(seed * num_angle + angle) * num_depth + depth``). Rows are built as ``decode_grasps``
    builds them, so geometry filters decide on them exactly as on the decoded grasp.

    Args:
        centers: (Ns, 3) seed points (``fp2_xyz``); approaching: (Ns, 3) ``-grasp_top_view_xyz``.
    """
    rows = len(centers) * num_angle
    # One row per (seed, angle) at depth class 0 (the rotation, the costly part, does not depend on
    # the depth), repeated per depth class with the decoder's depth values: elementwise, so each
    # row equals the one built for its (angle, depth) directly.
    per_angle = _grasp_rows(np.zeros(rows, np.float32), np.full(rows, width, np.float32),
                            np.tile(np.arange(num_angle), len(centers)), np.zeros(rows, np.int64), num_angle,
                            np.repeat(np.asarray(approaching, np.float32), num_angle, axis=0),
                            np.repeat(np.asarray(centers, np.float32), num_angle, axis=0), config)
    array = np.repeat(per_angle.array, num_depth, axis=0)
    array[:, DEPTH] = np.tile(_depth_values(np.arange(num_depth), config), rows)
    return GraspGroup(array)


def _depth_values(depth_class: np.ndarray, config: DecodeConfig) -> np.ndarray:
    return (depth_class.astype(np.float32) + 1.0) * np.float32(config.depth_step_m)


def _grasp_rows(score: np.ndarray, width: np.ndarray, angle_class: np.ndarray, depth_class: np.ndarray,
                num_angle: int, approaching: np.ndarray, centers: np.ndarray, config: DecodeConfig) -> GraspGroup:
    """Rows of seeds from their chosen classes (one element per row)."""
    # Same float32 operation order as the official ``class.float() / 12 * np.pi``.
    angle = angle_class.astype(np.float32) / np.float32(num_angle) * np.float32(np.pi)
    depth = _depth_values(depth_class, config)
    rotation = viewpoint_params_to_matrix(approaching, angle)
    return GraspGroup.from_parts(score, width, depth, rotation, centers,
                                 heights=config.grasp_height_m, object_ids=-1)
