"""Grasp filters: pure functions returning keep-masks tagged with a reason for reporting.

Each ``*_filter`` returns a :class:`FilterResult` over the grasps it was given; combine several
with :func:`apply_filters`. ``top_k_filter`` ranks among the grasps it is given, so call it last,
on the already filtered group. All geometry is in the grasps' frame (camera frame, metres).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ConfigError, InputError
from ..grasps import GraspGroup
from .nms import descending_score_order


@dataclass(frozen=True)
class FilterResult:
    """keep: (N,) bool, True = grasp passes; reason: short name used in reports."""

    reason: str
    keep: np.ndarray

    @property
    def rejected_count(self) -> int:
        return int(np.count_nonzero(~self.keep))


@dataclass(frozen=True)
class FilterOutcome:
    """Survivors of several filters and how many grasps each filter removed.

    ``rejected`` maps reason -> count; a grasp failing several filters is attributed to the
    first one in the order given, so the counts add up to the number removed.
    """

    grasps: GraspGroup
    keep: np.ndarray
    rejected: dict[str, int] = field(default_factory=dict)


def apply_filters(grasps: GraspGroup, results: Sequence[FilterResult]) -> FilterOutcome:
    """Keep the grasps that pass every filter result (each computed on ``grasps``)."""
    keep = np.ones(len(grasps), bool)
    rejected: dict[str, int] = {}
    for result in results:
        if result.keep.shape != keep.shape:
            raise InputError(f"filter '{result.reason}' mask has shape {result.keep.shape}, "
                             f"expected {keep.shape}")
        newly_rejected = keep & ~result.keep
        rejected[result.reason] = rejected.get(result.reason, 0) + int(newly_rejected.sum())
        keep &= result.keep
    return FilterOutcome(grasps[keep], keep, rejected)


def score_filter(grasps: GraspGroup, min_score: float) -> FilterResult:
    """Keep score >= min_score (NaN scores are rejected)."""
    return FilterResult("score", grasps.scores >= min_score)


def top_k_filter(grasps: GraspGroup, max_grasps: int) -> FilterResult:
    """Keep the ``max_grasps`` best-scoring grasps; equal scores keep input order."""
    if max_grasps < 0:
        raise ConfigError(f"max_grasps must be >= 0, got {max_grasps}")
    keep = np.zeros(len(grasps), bool)
    keep[descending_score_order(grasps.scores)[:max_grasps]] = True
    return FilterResult("max_grasps", keep)


def width_filter(grasps: GraspGroup, max_width: float, margin: float = 0.0,
                 min_width: float = 0.0) -> FilterResult:
    """Reject (never clamp) grasps the gripper cannot open to, or that are too narrow.

    Keeps ``min_width <= width <= max_width - margin`` (metres); NaN widths are rejected.
    """
    upper = max_width - margin
    if not (np.isfinite(upper) and np.isfinite(min_width) and min_width <= upper):
        raise ConfigError(f"need min_width <= max_width - margin, got {min_width} and {upper}")
    widths = grasps.widths
    return FilterResult("width", (widths >= min_width) & (widths <= upper))


def approach_cone_filter(grasps: GraspGroup, direction, max_angle: float) -> FilterResult:
    """Keep grasps whose approach vector is within ``max_angle`` radians of ``direction``.

    Args:
        direction: (3,) vector in the grasps' frame (normalised here), e.g. the table's downward
            normal for top-down grasps only.
        max_angle: radians in [0, pi].
    """
    direction = np.asarray(direction, np.float64).reshape(-1)
    norm = np.linalg.norm(direction) if direction.shape == (3,) else 0.0
    if not (np.isfinite(norm) and norm > 0):
        raise ConfigError(f"approach cone direction must be a finite non-zero 3-vector, "
                          f"got {direction}")
    if not 0 <= max_angle <= np.pi:
        raise ConfigError(f"max_angle must be in [0, pi], got {max_angle}")
    approaches = grasps.approaches.astype(np.float64)
    lengths = np.linalg.norm(approaches, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = approaches @ (direction / norm) / lengths
        angles = np.arccos(np.clip(cosines, -1.0, 1.0))
    return FilterResult("approach_cone", angles <= max_angle)


def fit_table_plane(points: np.ndarray, distance_thresh: float = 0.01, iterations: int = 300,
                    seed: int = 0, max_points: int = 50_000) -> tuple[np.ndarray, float]:
    """Fit the dominant plane by RANSAC, then refine it by least squares on its inliers.

    Deterministic for a given seed. Hypotheses are scored on at most ``max_points`` points drawn
    with that seed; the refit uses all inliers.

    Args:
        points: (N, 3) float, camera frame, metres (e.g. the workspace cloud).
        distance_thresh: inlier distance to the plane, metres.

    Returns:
        (normal (3,) float64 unit vector, offset d float) with ``normal . p + d = 0`` on the
        plane, oriented so the camera (the frame origin) is on the positive side (d > 0):
        ``normal . p + d`` is then the height of p above the table.
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) < 3:
        raise InputError(f"need at least 3 finite points to fit a plane, got {len(points)}")
    rng = np.random.default_rng(seed)
    sample = points
    if len(points) > max_points:
        sample = points[rng.choice(len(points), max_points, replace=False)]
    triples = sample[rng.integers(0, len(sample), (iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    usable = lengths > 1e-12
    if not usable.any():
        raise InputError("points are degenerate (collinear or coincident); no plane fits")
    normals = normals[usable] / lengths[usable, None]
    offsets = -np.einsum("ij,ij->i", normals, triples[usable, 0])
    inlier_counts = np.concatenate([
        (np.abs(sample @ normals[s:s + 32].T + offsets[s:s + 32]) < distance_thresh).sum(axis=0)
        for s in range(0, len(normals), 32)])
    best = int(np.argmax(inlier_counts))  # first best on ties: deterministic
    inliers = points[np.abs(points @ normals[best] + offsets[best]) < distance_thresh]
    normal, offset = _least_squares_plane(inliers) if len(inliers) >= 3 else (
        normals[best], offsets[best])
    if offset < 0:
        normal, offset = -normal, -offset
    return normal, float(offset)


def _least_squares_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Total least squares plane: normal = smallest right singular vector of centred points."""
    centroid = points.mean(axis=0)
    normal = np.linalg.svd(points - centroid, full_matrices=False)[2][-1]
    return normal, float(-normal @ centroid)


def table_height_filter(grasps: GraspGroup, plane_normal, plane_offset: float,
                        min_height: float = 0.0, point: str = "fingertips") -> FilterResult:
    """Reject grasps whose tested point lies less than ``min_height`` above the table plane.

    Height of x = normal . x + offset, with the plane oriented as by :func:`fit_table_plane`.

    Args:
        plane_normal: (3,) normal (normalised here), pointing to the camera side of the table.
        point: which point must clear the table:
            "fingertips" (default): the lower of the two jaw tips t + depth*a +- (width/2)*c,
            the part that penetrates first (a = approach, c = closing axis);
            "tip_center": t + depth*a; "center": the grasp point t.
    """
    normal = np.asarray(plane_normal, np.float64).reshape(-1)
    norm = np.linalg.norm(normal) if normal.shape == (3,) else 0.0
    if not (np.isfinite(norm) and norm > 0 and np.isfinite(plane_offset)):
        raise ConfigError(f"invalid table plane: normal {plane_normal}, offset {plane_offset}")
    normal, offset = normal / norm, float(plane_offset) / norm
    rotations = grasps.rotations.astype(np.float64)
    centers = grasps.translations.astype(np.float64)
    if point == "center":
        heights = centers @ normal + offset
    elif point in ("fingertips", "tip_center"):
        tips = centers + grasps.depths[:, None].astype(np.float64) * rotations[:, :, 0]
        heights = tips @ normal + offset
        if point == "fingertips":
            half_widths = 0.5 * np.abs(grasps.widths.astype(np.float64))
            heights -= half_widths * np.abs(rotations[:, :, 1] @ normal)
    else:
        raise ConfigError(f"point must be 'fingertips', 'tip_center' or 'center', got {point!r}")
    return FilterResult("table_height", heights >= min_height)
