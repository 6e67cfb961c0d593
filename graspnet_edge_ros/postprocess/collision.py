"""Model-free collision check of grasps against a scene point cloud (graspnet-baseline semantics).

Port of graspnet-baseline ``utils/collision_detector.py::ModelFreeCollisionDetector`` without
Open3D. The official version builds (grasps x points) boolean arrays; here a numba kernel only
visits voxel points in grid cells that can overlap each grasp's gripper box, then applies the
official region tests unchanged, so masks and IoUs equal the all-pairs computation.

Gripper regions, in the grasp frame (x = approach, y = closing, z = height; h = height,
w = width, D = depth, L = finger_length, fw = finger_width, a = approach_dist):
    height band  -h/2 < z < h/2                       (all regions)
    fingers      D - L < x < D,  w/2 < |y| < w/2 + fw
    palm         D - L - fw < x <= D - L,            |y| < w/2 + fw
    corridor     D - L - fw - a < x <= D - L - fw,   |y| < w/2 + fw
The bounds are evaluated in float32 from the float32 grasp columns exactly as the official
numpy expressions do; local coordinates are float64.
"""
from __future__ import annotations

import numba
import numpy as np

from ..errors import ConfigError, InputError
from ..grasps import GraspGroup

# Acceleration-grid cell edge in voxels: 4-5 measured fastest (fewer cell visits per grasp).
_CELL_SIZE_IN_VOXELS = 4.0
_MAX_GRID_CELLS = 8_000_000
# Above this many voxels in the cloud's bounding box, voxelise by sorting instead of a table.
_MAX_DENSE_VOXELS = 16_000_000
# Rotations further than this from orthonormal are treated as invalid input.
_ORTHONORMAL_TOLERANCE = 1e-3
IOU_COLUMNS = ("global", "left", "right", "bottom", "shifting")


def voxel_downsample(points: np.ndarray, voxel_size: float, anchor: np.ndarray | None = None) -> np.ndarray:
    """Open3D ``voxel_down_sample``: one point per occupied voxel, the mean of its points.

    The grid is anchored at ``min(points) - voxel_size / 2``; a point's voxel index is
    ``floor((p - anchor) / voxel_size)`` in float64, and each mean is summed in input order,
    as Open3D does. Non-finite points are dropped first.

    Args:
        points: (N, 3) float, metres.
        voxel_size: voxel edge length, metres, > 0.
        anchor: grid anchor to use instead of ``min(points) - voxel_size / 2`` (a cropped cloud
            keeps its parent's grid, so its voxel means equal the parent's); must not exceed
            ``min(points)``.

    Returns:
        (M, 3) float64 voxel means, ordered by voxel index (Open3D's order is unspecified).
    """
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise ConfigError(f"voxel_size must be > 0, got {voxel_size}")
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"points must be (N, 3), got {points.shape}")
    if not np.isfinite(points).all():
        points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        return np.zeros((0, 3), np.float64)
    points = np.ascontiguousarray(points)
    lowest, highest = _column_bounds(points)
    if anchor is None:
        anchor = lowest - voxel_size * 0.5
    elif np.any(np.asarray(anchor) > lowest):
        raise InputError(f"voxel grid anchor {anchor} lies above the cloud's minimum {lowest}")
    anchor = np.asarray(anchor, np.float64)
    # floor((p - anchor) / v) is monotone in p: the index range comes from the min and max points.
    # Indices are shifted by the first one so a cropped cloud's table covers only its own extent.
    first = np.floor((lowest - anchor) / voxel_size).astype(np.int64)
    dims = np.floor((highest - anchor) / voxel_size).astype(np.int64) - first + 1
    n_voxels = float(np.prod(dims.astype(np.float64)))
    if n_voxels >= 2.0 ** 62:
        raise ConfigError(f"voxel_size {voxel_size} is too small for a cloud of this extent")
    if n_voxels <= _MAX_DENSE_VOXELS:
        return _voxel_means_dense(points, anchor, float(voxel_size), first, dims)
    voxel_index = np.floor((points - anchor) / voxel_size).astype(np.int64) - first
    keys = (voxel_index[:, 0] * dims[1] + voxel_index[:, 1]) * dims[2] + voxel_index[:, 2]
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    sums = np.stack([np.bincount(inverse, weights=points[:, k], minlength=len(counts))
                     for k in range(3)], axis=1)
    return sums / counts[:, None].astype(np.float64)


@numba.njit(cache=True, nogil=True)
def _column_bounds(points):
    """Per-column min and max of (N, 3) points (numpy's axis-0 reductions are slow on N x 3)."""
    lowest = points[0].copy()
    highest = points[0].copy()
    for i in range(1, points.shape[0]):
        for k in range(3):
            lowest[k] = min(lowest[k], points[i, k])
            highest[k] = max(highest[k], points[i, k])
    return lowest, highest


@numba.njit(cache=True, nogil=True)
def _voxel_means_dense(points, anchor, voxel_size, first, dims):
    """Voxel means via a dense per-voxel slot table: (M, 3) float64 ordered by voxel key."""
    n_points = points.shape[0]
    keys = np.empty(n_points, np.int64)
    slots = np.zeros(dims[0] * dims[1] * dims[2], np.int32)
    for i in range(n_points):
        key = 0
        for k in range(3):
            key = key * dims[k] + int(np.floor((points[i, k] - anchor[k]) / voxel_size)) - first[k]
        keys[i] = key
        slots[key] += 1
    counts = np.empty(n_points, np.int64)
    n_occupied = 0
    for key in range(slots.shape[0]):
        if slots[key] > 0:
            counts[n_occupied] = slots[key]
            slots[key] = n_occupied
            n_occupied += 1
    sums = np.zeros((n_occupied, 3), np.float64)
    for i in range(n_points):  # input order, as Open3D accumulates
        slot = slots[keys[i]]
        for k in range(3):
            sums[slot, k] += points[i, k]
    for slot in range(n_occupied):
        for k in range(3):
            sums[slot, k] /= counts[slot]
    return sums


class ModelFreeCollisionDetector:
    """Collision check of grasps against a voxel-downsampled scene cloud.

    Args:
        scene_points: (N, 3) float, camera frame, metres (the full workspace cloud, not the
            network's sample).
        voxel_size: voxel edge for downsampling the scene, metres (official demo: 0.01).
        finger_width: finger thickness along the closing axis, metres (official: 0.01).
        finger_length: finger length along the approach axis, metres (official: 0.06).

    Examples:
        >>> det = ModelFreeCollisionDetector(np.zeros((0, 3), np.float32))
        >>> det.detect(GraspGroup.empty()).shape
        (0,)
    """

    def __init__(self, scene_points: np.ndarray, voxel_size: float = 0.01,
                 finger_width: float = 0.01, finger_length: float = 0.06, *,
                 crop_to: GraspGroup | None = None, crop_approach_dist: float = 0.05):
        for name, value in (("finger_width", finger_width), ("finger_length", finger_length)):
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        self.voxel_size = float(voxel_size)
        self.finger_width = float(finger_width)
        self.finger_length = float(finger_length)
        # With crop_to, only the voxels that can reach those grasps' gripper boxes are built:
        # the answer for them is identical, the cost no longer grows with the whole frame.
        self.crop_approach_dist = None
        if crop_to is not None:
            self.crop_approach_dist = max(float(crop_approach_dist), self.finger_width)
            self.scene_points = self._voxels_near(scene_points, crop_to, self.crop_approach_dist)
        else:
            self.scene_points = voxel_downsample(scene_points, self.voxel_size)
        self._grid = _PointGrid(self.scene_points, self.voxel_size * _CELL_SIZE_IN_VOXELS)

    def detect(self, grasps: GraspGroup, approach_dist: float = 0.05,
               collision_thresh: float = 0.01, return_ious: bool = False):
        """Which grasps collide with the scene.

        Args:
            grasps: N grasps, same frame as the scene points.
            approach_dist: free corridor required behind the palm, metres; raised to at least
                finger_width as in the official code.
            collision_thresh: a grasp collides if its global IoU > this; <= 0 skips the check.
            return_ious: also return the IoUs.

        Returns:
            (N,) bool, True = in collision; with ``return_ious`` also (N, 5) float64 IoUs in
            ``IOU_COLUMNS`` order (zeros when the check is skipped). Grasps with non-finite
            values or non-orthonormal rotations are reported as colliding (IoU inf).
        """
        n = len(grasps)
        if self.crop_approach_dist is not None and max(float(approach_dist), self.finger_width) > self.crop_approach_dist:
            raise ConfigError(f"approach_dist {approach_dist} exceeds the crop's {self.crop_approach_dist}")
        if collision_thresh <= 0 or n == 0:
            mask = np.zeros(n, bool)
            return (mask, np.zeros((n, 5), np.float64)) if return_ious else mask
        approach_dist = max(float(approach_dist), self.finger_width)
        bounds = self._region_bounds(grasps, approach_dist)
        volumes = self._region_volumes(grasps, approach_dist)
        rotations = grasps.rotations.astype(np.float64)
        translations = grasps.translations.astype(np.float64)
        valid = _valid_poses(rotations, translations) & np.isfinite(bounds).all(axis=1)

        counts = np.zeros((n, 5), np.int64)
        if valid.any() and len(self.scene_points):
            index = np.flatnonzero(valid)
            counts[index] = self._grid.count_hits(translations[index], rotations[index],
                                                  bounds[index])
        # Official normalisation: int counts / float32 (volume + 1e-6) promote to float64.
        ious = counts / (volumes + np.float32(1e-6))
        ious[~valid] = np.inf
        mask = ious[:, 0] > collision_thresh
        return (mask, ious) if return_ious else mask

    def _voxels_near(self, scene_points, grasps: GraspGroup, approach_dist: float) -> np.ndarray:
        """The voxel means of the full cloud that can lie in any of the grasps' gripper boxes.

        Whole voxels of the full cloud's grid are kept or dropped (in blocks of voxels), so each
        kept mean equals the full cloud's, summed in the same order; a dropped voxel's mean lies
        outside every gripper box, where it could not have been counted. The only voxels that can
        be cut (by the float pre-test at the union's border) lie two voxels outside every box, so
        their means do too. One pass over the cloud.
        """
        if not np.isfinite(self.voxel_size) or self.voxel_size <= 0:
            raise ConfigError(f"voxel_size must be > 0, got {self.voxel_size}")
        points = np.asarray(scene_points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise InputError(f"points must be (N, 3), got {points.shape}")
        if points.dtype not in (np.float32, np.float64):
            points = points.astype(np.float64)
        if not np.isfinite(points).all():
            points = points[np.isfinite(points).all(axis=1)]
        if len(points) == 0 or len(grasps) == 0:
            return np.zeros((0, 3), np.float64)
        points = np.ascontiguousarray(points)
        lowest, highest = (bound.astype(np.float64) for bound in _column_bounds(points))
        anchor = lowest - self.voxel_size * 0.5
        bounds = self._region_bounds(grasps, approach_dist)
        rotations = grasps.rotations.astype(np.float64)
        translations = grasps.translations.astype(np.float64)
        valid = _valid_poses(rotations, translations) & np.isfinite(bounds).all(axis=1)
        if not valid.any():
            return np.zeros((0, 3), np.float64)
        bounds, rotations, translations = bounds[valid], rotations[valid], translations[valid]
        box_lo = np.stack([np.minimum.reduce([bounds[:, 2], bounds[:, 4], bounds[:, 5]]),
                           np.minimum(bounds[:, 6], bounds[:, 8]), bounds[:, 0]], axis=1)
        box_hi = np.stack([np.maximum.reduce([bounds[:, 3], bounds[:, 2], bounds[:, 4]]),
                           np.maximum(bounds[:, 7], bounds[:, 9]), bounds[:, 1]], axis=1)
        to_world = np.linalg.inv(np.swapaxes(rotations, 1, 2))  # as _count_region_hits
        centre = translations + np.einsum("nij,nj->ni", to_world, 0.5 * (box_lo + box_hi))
        reach = np.einsum("nij,nj->ni", np.abs(to_world), 0.5 * (box_hi - box_lo))
        # Two voxels of slack on each side absorb rounding here and in the kernel's block test.
        lo_voxel = np.floor((centre - reach - anchor) / self.voxel_size).astype(np.int64) - 2
        hi_voxel = np.floor((centre + reach - anchor) / self.voxel_size).astype(np.int64) + 2
        top_voxel = np.floor((highest - anchor) / self.voxel_size).astype(np.int64)
        shift = 2  # blocks of 4^3 voxels, coarser for huge extents
        while np.prod((top_voxel // (1 << shift) + 1).astype(np.float64)) > _MAX_GRID_CELLS:
            shift += 1
        # A cheap float test against the union of the boxes (one voxel wider) skips most of an
        # unmasked frame before any voxel index is computed.
        union_lo = anchor + (lo_voxel.min(axis=0) - 1) * self.voxel_size
        union_hi = anchor + (hi_voxel.max(axis=0) + 2) * self.voxel_size
        return _voxel_means_in_marked_blocks(points, anchor, self.voxel_size, shift, top_voxel,
                                             np.ascontiguousarray(lo_voxel), np.ascontiguousarray(hi_voxel),
                                             union_lo, union_hi)

    def _region_bounds(self, grasps: GraspGroup, approach_dist: float) -> np.ndarray:
        """(N, 10) float64 region limits, computed in float32 like the official expressions."""
        heights, depths, widths = grasps.heights, grasps.depths, grasps.widths
        fl, fw = self.finger_length, self.finger_width
        columns = [
            -heights / 2, heights / 2,                          # z band
            depths - fl, depths,                                # finger x range
            depths - fl - fw,                                   # palm lower x
            depths - fl - fw - approach_dist,                   # corridor lower x
            -(widths / 2 + fw), -widths / 2,                    # left finger y
            widths / 2, widths / 2 + fw,                        # right finger y
        ]
        return np.stack([np.asarray(c, np.float32) for c in columns], axis=1).astype(np.float64)

    def _region_volumes(self, grasps: GraspGroup, approach_dist: float) -> np.ndarray:
        """(N, 5) float32 equivalent voxel counts of [global, left, right, bottom, shifting]."""
        heights, widths = grasps.heights, grasps.widths
        fl, fw, voxel_volume = self.finger_length, self.finger_width, self.voxel_size ** 3
        finger = heights * fl * fw / voxel_volume
        bottom = heights * (widths + 2 * fw) * fw / voxel_volume
        shifting = heights * (widths + 2 * fw) * approach_dist / voxel_volume
        total = finger * 2 + bottom + shifting
        return np.stack([total, finger, finger, bottom, shifting], axis=1).astype(np.float32)


def _valid_poses(rotations: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """(N,) bool: finite pose with a rotation within tolerance of orthonormal."""
    finite = np.isfinite(rotations).all(axis=(1, 2)) & np.isfinite(translations).all(axis=1)
    safe = np.where(finite[:, None, None], rotations, np.eye(3))
    gram_error = np.abs(np.swapaxes(safe, 1, 2) @ safe - np.eye(3)).max(axis=(1, 2))
    return finite & (gram_error < _ORTHONORMAL_TOLERANCE)


class _PointGrid:
    """Scene points bucketed into a dense uniform grid (CSR layout) for neighbourhood queries."""

    def __init__(self, points: np.ndarray, cell_size: float):
        self.points = np.zeros((0, 3), np.float64)
        self.cell_start = np.zeros(2, np.int64)
        self.origin = np.zeros(3, np.float64)
        self.dims = np.ones(3, np.int64)
        self.cell_size = float(cell_size)
        if len(points) == 0:
            return
        self.origin = points.min(axis=0)
        extent = points.max(axis=0) - self.origin
        # Grow cells for very large scenes so the dense grid stays bounded in memory.
        while np.prod(np.floor(extent / self.cell_size) + 1) > _MAX_GRID_CELLS:
            self.cell_size *= 2
        self.dims = (np.floor(extent / self.cell_size) + 1).astype(np.int64)
        cell = np.minimum(np.floor((points - self.origin) / self.cell_size).astype(np.int64),
                          self.dims - 1)
        linear = (cell[:, 0] * self.dims[1] + cell[:, 1]) * self.dims[2] + cell[:, 2]
        order = np.argsort(linear, kind="stable")
        self.points = np.ascontiguousarray(points[order])
        counts = np.bincount(linear, minlength=int(np.prod(self.dims)))
        self.cell_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def count_hits(self, translations, rotations, bounds) -> np.ndarray:
        """(N, 5) int64 point counts per region [global, left, right, bottom, shifting]."""
        inverse_transposed = np.linalg.inv(np.swapaxes(rotations, 1, 2))
        counts = np.zeros((len(translations), 5), np.int64)
        _count_region_hits(self.points, self.cell_start, self.origin, self.cell_size, self.dims,
                           np.ascontiguousarray(translations), np.ascontiguousarray(rotations),
                           np.ascontiguousarray(inverse_transposed),
                           np.ascontiguousarray(bounds), counts)
        return counts


@numba.njit(cache=True, nogil=True)
def _voxel_means_in_marked_blocks(points, anchor, voxel_size, shift, top_voxel, lo_voxel, hi_voxel,
                                  union_lo, union_hi):
    """Voxel means (ordered by voxel index) of the voxels in blocks of (2^``shift``)^3 voxels that meet
    any [lo, hi] voxel box; indices and sums exactly as voxel_downsample computes them. Points
    outside [union_lo, union_hi] (the boxes' union, a voxel wider) are skipped without indexing."""
    block = 1 << shift  # a power of two, so a voxel's block is a shift of its index
    block_dims = top_voxel // block + 1
    marked = np.zeros((block_dims[0], block_dims[1], block_dims[2]), np.bool_)
    first = block_dims.copy()   # marked block range -> the local voxel table
    last = np.full(3, -1, np.int64)
    for g in range(lo_voxel.shape[0]):
        lo = np.empty(3, np.int64)
        hi = np.empty(3, np.int64)
        empty = False
        for k in range(3):
            lo[k] = max(lo_voxel[g, k], 0) // block
            hi[k] = min(hi_voxel[g, k] // block, block_dims[k] - 1)
            if hi_voxel[g, k] < 0 or lo[k] > hi[k]:
                empty = True
        if empty:
            continue
        marked[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
        for k in range(3):
            first[k] = min(first[k], lo[k])
            last[k] = max(last[k], hi[k])
    if last[0] < 0:
        return np.zeros((0, 3), np.float64)
    origin = first * block
    dims = np.empty(3, np.int64)
    for k in range(3):
        dims[k] = min((last[k] + 1) * block - 1, top_voxel[k]) - origin[k] + 1
    # Each voxel's sum in input order, as Open3D accumulates, in one pass: a voxel gets a slot when
    # its first point comes (zeroed arrays sized for the worst case are only touched where used).
    table = np.full(dims[0] * dims[1] * dims[2], -1, np.int32)
    capacity = min(points.shape[0], table.shape[0])
    sums = np.zeros((capacity, 3), np.float64)
    counts = np.zeros(capacity, np.int64)
    n_occupied = 0
    for i in range(points.shape[0]):
        x, y, z = np.float64(points[i, 0]), np.float64(points[i, 1]), np.float64(points[i, 2])
        if (x < union_lo[0] or x > union_hi[0] or y < union_lo[1] or y > union_hi[1]
                or z < union_lo[2] or z > union_hi[2]):
            continue
        # Exact voxel index (the division voxel_downsample uses), so whole voxels are kept or
        # dropped: a kept voxel's mean equals the full cloud's.
        v0 = int(np.floor((x - anchor[0]) / voxel_size))
        v1 = int(np.floor((y - anchor[1]) / voxel_size))
        v2 = int(np.floor((z - anchor[2]) / voxel_size))
        # block is a power of two: max(v, 0) >> shift == max(v // block, 0), without a 64-bit
        # division per axis and point.
        if not marked[min(max(v0, 0) >> shift, block_dims[0] - 1), min(max(v1, 0) >> shift, block_dims[1] - 1),
                      min(max(v2, 0) >> shift, block_dims[2] - 1)]:
            continue
        l0, l1, l2 = v0 - origin[0], v1 - origin[1], v2 - origin[2]
        if l0 < 0 or l0 >= dims[0] or l1 < 0 or l1 >= dims[1] or l2 < 0 or l2 >= dims[2]:
            continue  # a voxel of a marked block's overhang past the cloud's extent
        key = (l0 * dims[1] + l1) * dims[2] + l2
        slot = table[key]
        if slot < 0:
            slot = table[key] = n_occupied
            n_occupied += 1
        sums[slot, 0] += x
        sums[slot, 1] += y
        sums[slot, 2] += z
        counts[slot] += 1
    means = np.empty((n_occupied, 3), np.float64)
    row = 0
    for key in range(table.shape[0]):  # ordered by voxel index
        slot = table[key]
        if slot >= 0:
            for k in range(3):
                means[row, k] = sums[slot, k] / counts[slot]
            row += 1
    return means


# Serial on purpose: ~4 ms for 1024 grasps already, and numba's default (workqueue) threading
# layer aborts when two Python threads launch parallel kernels at once, as a node may.
@numba.njit(cache=True, nogil=True)
def _count_region_hits(points, cell_start, origin, cell_size, dims, translations, rotations,
                       inverse_transposed, bounds, counts):
    """Fill counts (N, 5) with exact official region hits, visiting only overlapping cells."""
    ny, nz = dims[1], dims[2]
    for g in range(translations.shape[0]):
        z_lo, z_hi, fx_lo, x_hi = bounds[g, 0], bounds[g, 1], bounds[g, 2], bounds[g, 3]
        bx_lo, sx_lo = bounds[g, 4], bounds[g, 5]
        ly_lo, ly_hi, ry_lo, ry_hi = bounds[g, 6], bounds[g, 7], bounds[g, 8], bounds[g, 9]
        if not z_lo < z_hi:
            continue
        t = translations[g]
        rot = rotations[g]
        # Local box holding every region; exact for any sane or insane bound ordering.
        box_lo = np.array([min(fx_lo, bx_lo, sx_lo), min(ly_lo, ry_lo), z_lo])
        box_hi = np.array([max(x_hi, fx_lo, bx_lo), max(ly_hi, ry_hi), z_hi])
        box_center = 0.5 * (box_lo + box_hi)
        box_half = 0.5 * (box_hi - box_lo)
        # World AABB of the box: the region is {t + R^-T q : q in box}.
        world_center = t + inverse_transposed[g] @ box_center
        cell_lo = np.empty(3, np.int64)
        cell_hi = np.empty(3, np.int64)
        empty = False
        for i in range(3):
            reach = 1e-9
            for k in range(3):
                reach += abs(inverse_transposed[g, i, k]) * box_half[k]
            lo = int(np.floor((world_center[i] - reach - origin[i]) / cell_size))
            hi = int(np.floor((world_center[i] + reach - origin[i]) / cell_size))
            lo = max(lo, 0)
            hi = min(hi, dims[i] - 1)
            if lo > hi:
                empty = True
            cell_lo[i] = lo
            cell_hi[i] = hi
        if empty:
            continue
        # A cell's points map into local q within +-slack of the cell centre's image.
        slack = np.empty(3)
        for k in range(3):
            slack[k] = 0.5 * cell_size * (abs(rot[0, k]) + abs(rot[1, k]) + abs(rot[2, k])) + 1e-9
        n_left = n_right = n_bottom = n_shift = n_global = 0
        for ix in range(cell_lo[0], cell_hi[0] + 1):
            for iy in range(cell_lo[1], cell_hi[1] + 1):
                for iz in range(cell_lo[2], cell_hi[2] + 1):
                    cx = origin[0] + (ix + 0.5) * cell_size - t[0]
                    cy = origin[1] + (iy + 0.5) * cell_size - t[1]
                    cz = origin[2] + (iz + 0.5) * cell_size - t[2]
                    outside = False
                    for k in range(3):
                        local = cx * rot[0, k] + cy * rot[1, k] + cz * rot[2, k]
                        if abs(local - box_center[k]) > box_half[k] + slack[k]:
                            outside = True
                            break
                    if outside:
                        continue
                    cell = (ix * ny + iy) * nz + iz
                    for p in range(cell_start[cell], cell_start[cell + 1]):
                        dx = points[p, 0] - t[0]
                        dy = points[p, 1] - t[1]
                        dz = points[p, 2] - t[2]
                        qz = dx * rot[0, 2] + dy * rot[1, 2] + dz * rot[2, 2]
                        if not (qz > z_lo and qz < z_hi):
                            continue
                        qx = dx * rot[0, 0] + dy * rot[1, 0] + dz * rot[2, 0]
                        qy = dx * rot[0, 1] + dy * rot[1, 1] + dz * rot[2, 1]
                        in_fingers_x = qx > fx_lo and qx < x_hi
                        above_left_outer = qy > ly_lo
                        below_right_outer = qy < ry_hi
                        left = in_fingers_x and above_left_outer and qy < ly_hi
                        right = in_fingers_x and below_right_outer and qy > ry_lo
                        between_outer = above_left_outer and below_right_outer
                        bottom = between_outer and qx <= fx_lo and qx > bx_lo
                        shifting = between_outer and qx <= bx_lo and qx > sx_lo
                        if left:
                            n_left += 1
                        if right:
                            n_right += 1
                        if bottom:
                            n_bottom += 1
                        if shifting:
                            n_shift += 1
                        if left or right or bottom or shifting:
                            n_global += 1
        counts[g, 0] = n_global
        counts[g, 1] = n_left
        counts[g, 2] = n_right
        counts[g, 3] = n_bottom
        counts[g, 4] = n_shift
