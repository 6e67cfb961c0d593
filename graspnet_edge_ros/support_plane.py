"""Support plane: the table the objects stand on, found robustly in one view, kept across frames.

A single RANSAC plane is not enough for oblique views without a mask: the dominant plane may be
a wall, a door or the floor behind the desk, and a large box top can outscore a half-hidden
table. ``fit_support_plane`` therefore extracts several planes one after the other and keeps
the one that

- faces the camera (the camera is at least ``min_camera_height`` above it and the plane is not
  seen edge-on),
- optionally (``up_hint``, camera frame, e.g. from the robot's TF) points within ``max_tilt_deg``
  of "up"; off by default because image orientation varies between mounts,
- scores best by nearness-weighted inliers plus nearness-weighted points standing on it (points
  up to ``support_height`` above it, inside its extent): a near desk with objects beats a far
  floor, a door or a wall, and
- among parallel candidates, lies under the others (a box top is not the table).

``SupportPlaneTracker`` keeps the last good plane when a frame's fit disagrees with it (a big
object in front, a bad frame) and accepts a new plane only after it has been seen consistently
for several frames (the camera moved). Heights are ``normal . p + offset`` (metres, camera
frame), positive on the camera side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numba
import numpy as np

from graspnet_edge_ros.errors import ConfigError, InputError



@dataclass(frozen=True)
class SupportPlane:
    """A plane ``normal . p + offset = 0`` with the camera on the positive side, and its extent.

    Attributes:
        normal: (3,) unit normal pointing up (to the camera side), camera frame.
        offset: d, metres; equals the camera's height above the plane.
        hull: (K, 3) float64 equations [a, b, c] of the convex hull of the inliers in plane
            coordinates: a point (u, v) is inside when a*u + b*v + c <= 0 for every row; None when
            the extent is unknown (a given plane).
        origin, axis_u, axis_v: the plane coordinate frame of ``hull``.
        inliers: how many points supported the fit (0 for a given plane).
        source: "fit", "given" or "held" (last good plane kept for this frame).
    """

    normal: np.ndarray
    offset: float
    hull: np.ndarray | None = None
    origin: np.ndarray | None = None
    axis_u: np.ndarray | None = None
    axis_v: np.ndarray | None = None
    inliers: int = 0
    source: str = "fit"

    @classmethod
    def from_coefficients(cls, coefficients, source: str = "given") -> "SupportPlane":
        """[nx, ny, nz, d] (any scale) -> a unit-normal plane; the normal's sign is kept as given."""
        values = np.asarray(coefficients, np.float64).reshape(-1)
        if values.shape != (4,) or not np.isfinite(values).all():
            raise ConfigError(f"a plane needs 4 finite numbers [nx, ny, nz, d], got {coefficients}")
        norm = float(np.linalg.norm(values[:3]))
        if norm <= 1e-12:
            raise ConfigError(f"plane normal must be non-zero, got {coefficients}")
        return cls(values[:3] / norm, float(values[3] / norm), source=source)

    @property
    def coefficients(self) -> np.ndarray:
        return np.append(self.normal, self.offset)

    def heights(self, points: np.ndarray) -> np.ndarray:
        """(N,) float64 signed heights of (N, 3) points above the plane, metres."""
        return np.asarray(points, np.float64) @ self.normal + self.offset

    def inside_extent(self, points: np.ndarray, margin: float) -> np.ndarray:
        """(N,) bool: the point's foot on the plane lies within the observed extent grown by ``margin``."""
        return self.in_band(points, -np.inf, np.inf, margin)

    def in_band(self, points: np.ndarray, min_height: float, max_height: float, margin: float) -> np.ndarray:
        """(N,) bool: min_height <= height <= max_height and the foot lies in the extent + margin."""
        points = np.ascontiguousarray(points, np.float64) if np.asarray(points).dtype != np.float32 \
            else np.ascontiguousarray(points)
        if self.hull is None:
            hull, origin, basis = np.zeros((0, 3)), np.zeros(3), np.zeros((3, 2))
        else:
            hull, origin = self.hull, self.origin
            basis = np.stack([self.axis_u, self.axis_v], axis=1)
        return _in_band(points, self.normal, float(self.offset), float(min_height), float(max_height),
                        origin, basis, np.ascontiguousarray(hull), float(margin))

    def agrees_with(self, other: "SupportPlane", max_angle_deg: float, max_offset_m: float) -> bool:
        """Same plane within an angle and a height difference (measured at the camera origin)."""
        cosine = float(np.clip(self.normal @ other.normal, -1.0, 1.0))
        return math.degrees(math.acos(cosine)) <= max_angle_deg and abs(self.offset - other.offset) <= max_offset_m

    def transformed(self, matrix: np.ndarray) -> "SupportPlane":
        """The plane in another frame: ``matrix`` (4, 4) maps this plane's frame into the target frame."""
        rotation, translation = np.asarray(matrix, np.float64)[:3, :3], np.asarray(matrix, np.float64)[:3, 3]
        normal = rotation @ self.normal
        return replace(self, normal=normal, offset=float(self.offset - normal @ translation), hull=None,
                       origin=None, axis_u=None, axis_v=None)


@dataclass(frozen=True)
class PlaneFitOptions:
    distance_thresh: float = 0.01       # RANSAC inlier distance, m
    iterations: int = 200               # hypotheses per extracted plane
    max_candidates: int = 4             # planes extracted one after the other
    min_inlier_fraction: float = 0.05   # a candidate must hold this share of the fitted points
    max_points: int = 6000              # points the fit looks at (uniform, seeded sample)
    min_camera_height: float = 0.05     # the camera must be this far above the plane, m
    max_view_angle_deg: float = 85.0    # planes seen more edge-on than this are not tables
    up_hint: tuple | None = None        # camera-frame "up" direction, or None (no tilt gate)
    max_tilt_deg: float = 60.0          # max angle between the plane normal and up_hint
    support_height: float = 0.3         # points this high above a plane and inside it stand on it, m
    parallel_deg: float = 10.0          # candidates this close in angle count as parallel
    under_margin: float = 0.02          # a parallel plane this much lower is "under" the other, m
    under_max_gap: float = 0.3          # ... but not more (a floor under a desk is not the support)
    under_min_score_ratio: float = 0.25 # ... and wins when it scores at least this share
    above_min_score_ratio: float = 0.2  # a parallel plane more than under_max_gap higher (a desk over
                                        # a floor) wins when it scores at least this share
    # Without up_hint, of two candidates at least wall_pair_deg apart (a wall and a desk), one whose
    # camera-facing normal points down the image by more than wall_like_deg while the other's
    # points up the image by as much is the wall (seen by a camera pitched down; an upright
    # camera never sees a desk that way): its score is multiplied by wall_like_factor. A rolled
    # camera (wrist) should give up_hint instead (table_plane_frame in the node).
    wall_like_deg: float = 5.0
    wall_pair_deg: float = 45.0
    wall_like_factor: float = 0.05
    seed: int = 0


def fit_support_plane(points: np.ndarray, options: PlaneFitOptions = PlaneFitOptions()) -> SupportPlane:
    """The support surface under the objects in one view (see the module doc for the rules).

    Args:
        points: (N, 3) camera-frame points, metres (the valid workspace cloud).

    Raises:
        InputError: no candidate plane qualifies (no table in view); the message says why.
    """
    points = np.asarray(points).reshape(-1, 3)
    rng = np.random.default_rng(options.seed)
    if len(points) > options.max_points:
        points = points[np.sort(rng.choice(len(points), options.max_points, replace=False))]
    points = points.astype(np.float64)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) < 50:
        raise InputError(f"too few points ({len(points)}) to find a support plane")
    up_hint = None
    if options.up_hint is not None:
        up_hint = np.asarray(options.up_hint, np.float64)
        up_hint = up_hint / np.linalg.norm(up_hint)
    # Pixels of a surface fall off with distance squared; this weight favours near surfaces beyond that.
    nearness = 1.0 / np.maximum(np.einsum("ij,ij->i", points, points), 0.01)
    remaining = np.ones(len(points), bool)
    min_inliers = max(30, int(options.min_inlier_fraction * len(points)))
    candidates, refused = [], []
    for _ in range(options.max_candidates):
        if remaining.sum() < min_inliers:
            break
        plane = _ransac_plane(points[remaining], options.distance_thresh, options.iterations, rng)
        if plane is None:
            break
        normal, offset = plane
        inlier_mask = np.abs(points @ normal + offset) < options.distance_thresh
        inlier_mask &= remaining
        if inlier_mask.sum() < min_inliers:
            break
        normal, offset = _refit(points[inlier_mask], normal, offset)
        remaining &= ~inlier_mask
        why_not = _why_not_a_table(points[inlier_mask], normal, offset, up_hint, options)
        if why_not:
            refused.append(why_not)
            continue
        heights = points @ normal + offset
        standing = (heights > options.distance_thresh) & (heights <= options.support_height)
        standing[standing] = _inside_hull(points[standing], points[inlier_mask], normal)
        score = float(nearness[inlier_mask].sum() + nearness[standing].sum())
        candidates.append((score, normal, offset, inlier_mask))
    if not candidates:
        detail = "; ".join(refused) if refused else "no plane holds enough points"
        raise InputError(f"no support plane found ({detail})")
    if up_hint is None:
        candidates = _wall_like_scored_down(candidates, options)
    candidates.sort(key=lambda c: -c[0])
    best = candidates[0]
    for other in candidates[1:]:
        parallel = math.degrees(math.acos(np.clip(abs(best[1] @ other[1]), 0, 1))) <= options.parallel_deg
        # "under" = the best plane's inliers stand clearly above the other plane.
        best_points_height = np.median(points[best[3]] @ other[1] + other[2])
        if parallel and options.under_margin < best_points_height <= options.under_max_gap \
                and other[0] >= options.under_min_score_ratio * best[0]:
            best = other
        elif parallel and best_points_height < -options.under_max_gap \
                and other[0] >= options.above_min_score_ratio * best[0]:
            best = other  # the best was a floor far under a desk that also qualifies
    return _with_extent(points[best[3]], best[1], best[2])


def _wall_like_scored_down(candidates: list, options: PlaneFitOptions) -> list:
    limit = math.sin(math.radians(options.wall_like_deg))
    pair = math.cos(math.radians(options.wall_pair_deg))
    scored = []
    for score, normal, offset, inliers in candidates:
        down_the_image = normal[1] > limit
        if down_the_image and any(other[1][1] < -limit and abs(other[1] @ normal) <= pair for other in candidates):
            score *= options.wall_like_factor
        scored.append((score, normal, offset, inliers))
    return scored


def _ransac_plane(points: np.ndarray, thresh: float, iterations: int, rng) -> tuple[np.ndarray, float] | None:
    triples = points[rng.integers(0, len(points), (iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    usable = lengths > 1e-12
    if not usable.any():
        return None
    normals = normals[usable] / lengths[usable, None]
    offsets = -np.einsum("ij,ij->i", normals, triples[usable, 0])
    columns = np.ascontiguousarray(points.T)
    counts = _inlier_counts(columns[0], columns[1], columns[2], normals, offsets, float(thresh))
    best = int(np.argmax(counts))
    return normals[best], float(offsets[best])


@numba.njit(cache=True, nogil=True)
def _inlier_counts(x, y, z, normals, offsets, thresh):
    """Points within ``thresh`` of each hypothesis plane: |x*a + y*b + z*c + d| < thresh in float64.

    The (points x hypotheses) distance matrix in numpy was 4 ms per RANSAC call (9.6 MB temporaries
    for 6000 points x 200 hypotheses); this is one pass per hypothesis over contiguous columns.
    """
    counts = np.zeros(normals.shape[0], np.int64)
    for h in range(normals.shape[0]):
        a, b, c, d = normals[h, 0], normals[h, 1], normals[h, 2], offsets[h]
        count = 0
        for i in range(x.shape[0]):
            distance = x[i] * a + y[i] * b + z[i] * c + d
            count += abs(distance) < thresh
        counts[h] = count
    return counts


def _refit(inliers: np.ndarray, normal: np.ndarray, offset: float) -> tuple[np.ndarray, float]:
    """Least-squares refinement, oriented so the camera (origin) is on the positive side."""
    centroid = inliers.mean(axis=0)
    refined = np.linalg.svd(inliers - centroid, full_matrices=False)[2][-1]
    refined_offset = float(-refined @ centroid)
    if refined_offset < 0:
        refined, refined_offset = -refined, -refined_offset
    return refined, refined_offset


def _why_not_a_table(inliers, normal, offset, up_hint, options: PlaneFitOptions) -> str:
    if offset < options.min_camera_height:
        return f"a plane {offset:.2f} m from the camera is not below it"
    centroid = inliers.mean(axis=0)
    view = -centroid / max(np.linalg.norm(centroid), 1e-9)
    view_angle = math.degrees(math.acos(np.clip(normal @ view, -1, 1)))
    if view_angle > options.max_view_angle_deg:
        return f"a plane seen edge-on ({view_angle:.0f} deg)"
    if up_hint is not None:
        tilt = math.degrees(math.acos(np.clip(normal @ up_hint, -1, 1)))
        if tilt > options.max_tilt_deg:
            return f"a plane {tilt:.0f} deg from up_hint (a wall?)"
    return ""


def _plane_axes(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    axis_u = np.cross(normal, helper)
    axis_u /= np.linalg.norm(axis_u)
    return axis_u, np.cross(normal, axis_u)


def _convex_hull_equations(planar: np.ndarray) -> np.ndarray | None:
    from scipy.spatial import ConvexHull, QhullError

    try:
        return ConvexHull(planar).equations  # rows [a, b, c], unit (a, b): a*u + b*v + c <= 0 inside
    except (QhullError, ValueError):
        return None


def _inside_hull(points: np.ndarray, inliers: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """(N,) bool: the feet of ``points`` on the plane lie inside the inliers' convex hull."""
    if len(points) == 0:
        return np.zeros(0, bool)
    axis_u, axis_v = _plane_axes(normal)
    basis = np.stack([axis_u, axis_v], axis=1)
    hull = _convex_hull_equations(inliers @ basis)
    if hull is None:
        return np.zeros(len(points), bool)
    return ((points @ basis) @ hull[:, :2].T + hull[:, 2] <= 0).all(axis=1)


def _with_extent(inliers: np.ndarray, normal: np.ndarray, offset: float,
                 cell: float = 0.02, bridge_cells: int = 2) -> SupportPlane:
    """The plane with the convex hull of its largest connected patch of inliers as its extent.

    Inliers also include stray points far away where another surface crosses the plane (the foot
    of a wall, a distant floor at the same height); they would stretch the hull over the gap, so
    only the largest patch on a ``cell`` grid (gaps of up to ``bridge_cells`` bridged, e.g.
    occlusion shadows behind objects) counts.
    """
    from scipy import ndimage

    axis_u, axis_v = _plane_axes(normal)
    planar = np.stack([inliers @ axis_u, inliers @ axis_v], axis=1)
    cells = np.floor((planar - planar.min(axis=0)) / cell).astype(np.int64)
    shape = cells.max(axis=0) + 1
    if shape[0] * shape[1] <= 4_000_000:
        occupied = np.zeros(shape, bool)
        occupied[cells[:, 0], cells[:, 1]] = True
        bridged = ndimage.binary_dilation(occupied, iterations=bridge_cells) if bridge_cells else occupied
        components, count = ndimage.label(bridged)
        if count > 1:
            point_component = components[cells[:, 0], cells[:, 1]]
            largest = np.argmax(np.bincount(point_component, minlength=count + 1)[1:]) + 1
            inliers = inliers[point_component == largest]
    origin = inliers.mean(axis=0)
    relative = inliers - origin
    hull = _convex_hull_equations(np.stack([relative @ axis_u, relative @ axis_v], axis=1))
    return SupportPlane(normal, float(offset), hull, origin, axis_u, axis_v, int(len(inliers)), "fit")


# Cells of the extent test's lookup grid per side (at most) and the rounding allowance of a cell's
# verdict: a cell is "inside" (or "outside") only when every corner is inside every edge (or outside
# one edge) by more than this, metres; float64 rounding of these sums is ~1e-15 m.
_EXTENT_GRID_CELLS = 64
_EXTENT_GRID_SLACK = 1e-9


@numba.njit(cache=True, nogil=True)
def _in_band(points, normal, offset, min_height, max_height, origin, basis, hull, margin):
    """One pass for the height band, then the extent test: a (u, v) lookup grid classifies most
    points as surely inside or outside the hull grown by ``margin``; only points in cells the
    border crosses run the per-edge test, the same expression as for every point before, so the
    result is the per-edge test's. (numpy's (N, 3) @ (3,) and (N, 2) @ (2, K) are slow here.)"""
    n = points.shape[0]
    keep = np.zeros(n, np.bool_)
    lo_u, hi_u, lo_v, hi_v = np.inf, -np.inf, np.inf, -np.inf
    for i in range(n):
        x, y, z = float(points[i, 0]), float(points[i, 1]), float(points[i, 2])
        height = x * normal[0] + y * normal[1] + z * normal[2] + offset
        if not (height >= min_height and height <= max_height):
            continue
        keep[i] = True
        dx, dy, dz = x - origin[0], y - origin[1], z - origin[2]
        u = dx * basis[0, 0] + dy * basis[1, 0] + dz * basis[2, 0]
        v = dx * basis[0, 1] + dy * basis[1, 1] + dz * basis[2, 1]
        lo_u, hi_u, lo_v, hi_v = min(lo_u, u), max(hi_u, u), min(lo_v, v), max(hi_v, v)
    if hull.shape[0] == 0 or lo_u > hi_u:
        return keep
    cells = _EXTENT_GRID_CELLS
    size_u = max((hi_u - lo_u) / cells, 1e-6)
    size_v = max((hi_v - lo_v) / cells, 1e-6)
    # 0 = the border crosses the cell, 1 = inside, 2 = outside.
    verdict = np.zeros((cells, cells), np.uint8)
    for cu in range(cells):
        for cv in range(cells):
            inside_all = True
            for k in range(hull.shape[0]):
                lowest, highest = np.inf, -np.inf
                for corner in range(4):
                    u = lo_u + (cu + corner // 2) * size_u
                    v = lo_v + (cv + corner % 2) * size_v
                    value = hull[k, 0] * u + hull[k, 1] * v + hull[k, 2] - margin
                    lowest, highest = min(lowest, value), max(highest, value)
                if lowest > _EXTENT_GRID_SLACK:
                    verdict[cu, cv] = 2
                    break
                if highest >= -_EXTENT_GRID_SLACK:
                    inside_all = False
            if verdict[cu, cv] == 0 and inside_all:
                verdict[cu, cv] = 1
    for i in range(n):
        if not keep[i]:
            continue
        x, y, z = float(points[i, 0]), float(points[i, 1]), float(points[i, 2])
        dx, dy, dz = x - origin[0], y - origin[1], z - origin[2]
        u = dx * basis[0, 0] + dy * basis[1, 0] + dz * basis[2, 0]
        v = dx * basis[0, 1] + dy * basis[1, 1] + dz * basis[2, 1]
        cu = min(max(int((u - lo_u) / size_u), 0), cells - 1)
        cv = min(max(int((v - lo_v) / size_v), 0), cells - 1)
        if verdict[cu, cv] == 1:
            continue
        if verdict[cu, cv] == 2:
            keep[i] = False
            continue
        for k in range(hull.shape[0]):
            if hull[k, 0] * u + hull[k, 1] * v + hull[k, 2] > margin:
                keep[i] = False
                break
    return keep


@dataclass
class SupportPlaneTracker:
    """Keeps the last good plane across frames (see the module doc).

    ``update`` returns the plane to use for this frame (or None) and a note for diagnostics
    ("" when the fresh fit was used as is).
    """

    max_angle_deg: float = 5.0
    max_offset_m: float = 0.02
    frames_to_switch: int = 5
    last_good: SupportPlane | None = None
    _pending: list = field(default_factory=list)

    def update(self, fitted: SupportPlane | None, failure: str = "") -> tuple[SupportPlane | None, str]:
        if fitted is None:
            if self.last_good is None:
                return None, failure
            return replace(self.last_good, source="held"), f"{failure}; keeping the last good support plane"
        if self.last_good is None or fitted.agrees_with(self.last_good, self.max_angle_deg, self.max_offset_m):
            self.last_good, self._pending = fitted, []
            return fitted, ""
        # Disagreement: a new plane must be seen consistently before it replaces the old one.
        if self._pending and not fitted.agrees_with(self._pending[-1], self.max_angle_deg, self.max_offset_m):
            self._pending = []
        self._pending.append(fitted)
        if len(self._pending) >= self.frames_to_switch:
            self.last_good, self._pending = fitted, []
            return fitted, "support plane changed (seen consistently): camera or table moved"
        return (replace(self.last_good, source="held"),
                f"this frame's support plane disagrees with the last good one "
                f"({len(self._pending)}/{self.frames_to_switch}); keeping the last good plane")

    def reset(self) -> None:
        self.last_good, self._pending = None, []
