"""Native CPU (numba) versions of the PointNet++ / GraspNet geometric operators.

Unbatched (one cloud), float32 coordinates in metres (camera frame), int32 indices. Every
operator follows the official CUDA kernel semantics (graspnet_spec.md §4.1-4.7) and returns
exactly what :mod:`graspnet_edge_ros.geometry.torch_ops` returns for the same inputs; the
float formulas are spelled out term by term, in the same order, in both modules so the
float32 roundings agree bit for bit (no FMA contraction: numba's default ``fastmath=False``).

Ball and cylinder queries run either as a plain early-exit scan or on a uniform grid
(:mod:`graspnet_edge_ros.geometry.native_grid`); both give the identical result, "auto"
picks the grid for large clouds. Kernels compile on first use and are cached on disk
(``cache=True``); call :func:`warmup` at start-up to pay that cost early. Parallel kernels
use numba's threading layer: with "omp"/"tbb" concurrent calls from several threads are
safe ("workqueue" is not), and GNU OpenMP does not survive fork() after first use.
This module must not import torch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit, prange

from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.geometry import native_grid

# CUDA compares the float32 |p|^2 with the double literal 1e-3. float32(1e-3) is slightly
# above 1e-3, so the equivalent float32 test is `mag <= largest float32 <= 1e-3`.
FPS_SKIP_MAG2 = np.float32(1e-3)
if float(FPS_SKIP_MAG2) > 1e-3:
    FPS_SKIP_MAG2 = np.nextafter(FPS_SKIP_MAG2, np.float32(0.0))
FPS_TEMP_INIT = np.float32(1e10)
INTERPOLATION_EPS = np.float32(1e-8)


# -- input checks ---------------------------------------------------------------------------------

def _points(array, name: str, allow_empty: bool = False) -> np.ndarray:
    """(N, 3) float32 C-contiguous copy/view of ``array``; InputError on bad shape or non-finite."""
    points = np.ascontiguousarray(array, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{name} must have shape (N, 3), got {points.shape}")
    if points.shape[0] == 0 and not allow_empty:
        raise InputError(f"{name} is empty")
    if not np.isfinite(points).all():
        raise InputError(f"{name} contains NaN or infinite coordinates")
    return points


def _components(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Structure-of-arrays view: three contiguous (N,) float32 arrays (vectorisable scans)."""
    soa = np.ascontiguousarray(points.T)
    return soa[0], soa[1], soa[2]


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _finite_float32(value, name: str) -> np.float32:
    if not np.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return np.float32(value)


# -- furthest point sampling ----------------------------------------------------------------------

FPS_POINTS_PER_BLOCK = 64     # measured: 20000 -> 2048 points, 32-128 within 10 %, ~5x faster than no blocks
FPS_CELLS_PER_AXIS = 1024     # caps the grid of a flat or thin cloud


@njit(cache=True, nogil=True)
def _fps_blocks(x, y, z, points_per_block):
    """(candidates, block_start): the pickable point indices sorted by grid cell, ascending within a cell.

    Cells hold about ``points_per_block`` candidates; block b is candidates[block_start[b]:block_start[b + 1]].
    """
    pickable = np.empty(x.shape[0], np.int64)
    count = 0
    for i in range(x.shape[0]):
        # float32, same terms and order as the kernel's |p|^2 (no FMA contraction)
        if x[i] * x[i] + y[i] * y[i] + z[i] * z[i] > FPS_SKIP_MAG2:
            pickable[count] = i
            count += 1
    pickable = pickable[:count]
    if count == 0:
        return pickable, np.zeros(1, np.int64)
    coords = np.empty((count, 3))
    for p in range(count):
        coords[p, 0] = x[pickable[p]]
        coords[p, 1] = y[pickable[p]]
        coords[p, 2] = z[pickable[p]]
    low = np.empty(3)
    extent = np.empty(3)
    for axis in range(3):
        low[axis] = coords[:, axis].min()
        extent[axis] = max(coords[:, axis].max() - low[axis], 1e-6)
    cells = max(1, count // points_per_block)
    side = max((extent[0] * extent[1] * extent[2] / cells) ** (1.0 / 3.0), extent.max() / FPS_CELLS_PER_AXIS)
    dims = np.empty(3, np.int64)
    for axis in range(3):
        dims[axis] = min(np.floor(extent[axis] / side), FPS_CELLS_PER_AXIS) + 1
    key = np.empty(count, np.int64)
    for p in range(count):
        cell = 0
        for axis in range(3):
            cell = cell * dims[axis] + min(np.int64(np.floor((coords[p, axis] - low[axis]) / side)), dims[axis] - 1)
        key[p] = cell
    num_keys = dims[0] * dims[1] * dims[2]
    if num_keys <= 8 * count:
        # Counting sort: stable, so each cell keeps ascending point order.
        fill = np.zeros(num_keys + 1, np.int64)
        for p in range(count):
            fill[key[p] + 1] += 1
        for cell in range(num_keys):
            fill[cell + 1] += fill[cell]
        order = np.empty(count, np.int64)
        for p in range(count):
            order[fill[key[p]]] = p
            fill[key[p]] += 1
    else:
        order = np.argsort(key, kind="mergesort")
    block_start = np.empty(count + 1, np.int64)
    blocks = 0
    for r in range(count):
        if r == 0 or key[order[r]] != key[order[r - 1]]:
            block_start[blocks] = r
            blocks += 1
    block_start[blocks] = count
    return pickable[order], block_start[:blocks + 1]


@njit(cache=True, nogil=True)
def _fps_kernel(x, y, z, candidates, block_start, npoint):
    """Greedy FPS over the pickable candidates, visited in spatial blocks (see ``_fps_blocks``).

    A block whose bounding box lies at least its largest buffer value away from the new pick
    cannot change (min(temp, d) == temp for all its points), so it is skipped; every other point
    is updated with the same float32 formula as the plain scan. The pick is the largest buffer
    value, exact ties to the lowest original index (candidates ascend within a block), so the
    result is the plain scan's. Buffer values are >= 0, so their int32 bit patterns order like
    the floats: the maxima are integer reductions, which vectorise. Loops run over slices from 0
    so numba can drop its negative-index checks (with them the updates ran ~4x slower).
    """
    count = candidates.shape[0]
    picks = np.zeros(npoint, np.int32)
    if count == 0:
        return picks  # every point skipped: the kernel's candidate is index 0 each round
    num_blocks = block_start.shape[0] - 1
    block_x = np.empty(count, np.float32)
    block_y = np.empty(count, np.float32)
    block_z = np.empty(count, np.float32)
    for k in range(count):
        block_x[k] = x[candidates[k]]
        block_y[k] = y[candidates[k]]
        block_z[k] = z[candidates[k]]
    lower = np.empty((3, num_blocks))
    upper = np.empty((3, num_blocks))
    for b in range(num_blocks):
        members = slice(block_start[b], block_start[b + 1])
        for axis, values in enumerate((block_x[members], block_y[members], block_z[members])):
            lower[axis, b] = values.min()
            upper[axis, b] = values.max()
    lower_x, lower_y, lower_z = lower[0], lower[1], lower[2]
    upper_x, upper_y, upper_z = upper[0], upper[1], upper[2]
    temp = np.full(count, FPS_TEMP_INIT)
    temp_bits = temp.view(np.int32)
    block_best = np.full(num_blocks, FPS_TEMP_INIT)
    block_best_bits = block_best.view(np.int32)
    block_first = candidates[block_start[:-1]].copy()
    near = np.empty(num_blocks, np.bool_)
    no_index = np.int64(1) << 62
    old = 0
    for j in range(1, npoint):
        x0 = x[old]
        y0 = y[old]
        z0 = z[old]
        for b in range(num_blocks):
            ex = max(lower_x[b] - x0, 0.0, x0 - upper_x[b])
            ey = max(lower_y[b] - y0, 0.0, y0 - upper_y[b])
            ez = max(lower_z[b] - z0, 0.0, z0 - upper_z[b])
            # float64 box distance, shrunk well past the few float32 roundings of d below.
            near[b] = (ex * ex + ey * ey + ez * ez) * (1.0 - 1e-5) < block_best[b]
        for b in range(num_blocks):
            if not near[b]:
                continue
            start = block_start[b]
            end = block_start[b + 1]
            member_x = block_x[start:end]
            member_y = block_y[start:end]
            member_z = block_z[start:end]
            member_temp = temp[start:end]
            member_bits = temp_bits[start:end]
            for k in range(member_temp.shape[0]):
                dx = member_x[k] - x0
                dy = member_y[k] - y0
                dz = member_z[k] - z0
                d = dx * dx + dy * dy + dz * dz
                t = member_temp[k]
                member_temp[k] = d if d < t else t
            largest = np.int32(-1)
            for k in range(member_bits.shape[0]):
                v = member_bits[k]
                largest = v if v > largest else largest
            k = 0
            while member_bits[k] != largest:
                k += 1
            block_best[b] = member_temp[k]
            block_first[b] = candidates[start + k]
        top = np.int32(-1)
        for b in range(num_blocks):
            v = block_best_bits[b]
            top = v if v > top else top
        first = no_index
        for b in range(num_blocks):
            v = block_first[b] if block_best_bits[b] == top else no_index
            first = v if v < first else first
        old = first
        picks[j] = old
    return picks


def furthest_point_sample(xyz, npoint: int) -> np.ndarray:
    """Official CUDA furthest point sampling, single cloud.

    Args:
        xyz: (N, 3) float32 points (metres).
        npoint: number of picks (>= 0).

    Returns:
        (npoint,) int32 indices into ``xyz``.

    Semantics (spec §4.1): pick 0 first; distance buffer starts at 1e10; points with
    float32 x²+y²+z² <= 1e-3 are never picked (except index 0 as the start) and never
    updated; squared distances in float32; next pick = argmax of the buffer over pickable
    points, exact ties to the lowest index. CUDA instead prefers the lowest lane
    ``k mod T`` (T = min(512, 2^⌊log2 N⌋)), so the two can differ only on exact ties
    between distinct points. One such tie is exhaustion (npoint > pickable count): every
    buffer is 0 and each further pick is the lowest-index pickable point, which is 0 (as
    in CUDA) whenever point 0 is pickable. If no point is pickable every pick is 0, as in
    CUDA (every lane keeps best = −1, index 0).
    """
    points = _points(xyz, "xyz")
    npoint = _positive_int(npoint, "npoint", minimum=0)
    x, y, z = _components(points)
    candidates, block_start = _fps_blocks(x, y, z, FPS_POINTS_PER_BLOCK)
    return _fps_kernel(x, y, z, candidates, block_start, npoint)


# -- ball and cylinder queries --------------------------------------------------------------------

QUERY_METHODS = ("auto", "grid", "scan")
GRID_MIN_POINTS = 4096        # measured: below this the early-exit scan is as fast or faster
ROTATION_TOLERANCE = 1e-3     # grid bound assumes near-orthonormal frames (max |RᵀR − I|)


def _use_grid(method: str, num_points: int) -> bool:
    if method not in QUERY_METHODS:
        raise ConfigError(f"method must be one of {QUERY_METHODS}, got {method!r}")
    return method == "grid" or (method == "auto" and num_points >= GRID_MIN_POINTS)


def _conservative_reach(distance: float) -> float:
    """A radius no float32 hit can lie beyond: float32 rounding is ~1e-7 relative."""
    return distance * 1.001 + 1e-6


def ball_query(xyz, centers, radius: float, nsample: int, method: str = "auto") -> np.ndarray:
    """Official ball query: first ``nsample`` points with |p - c|² < r² in ascending index order.

    Args:
        xyz: (N, 3) float32 points; centers: (S, 3) float32 query centres (same frame).
        radius: metres; r² is computed in float32. nsample: slots per centre.
        method: "scan" (every point in index order), "grid" (uniform grid, same result), or
            "auto" (grid from GRID_MIN_POINTS points on).

    Returns:
        (S, nsample) int32. Unfilled slots repeat the first hit; a centre without hits is all 0.
    """
    points = _points(xyz, "xyz")
    query = _points(centers, "centers", allow_empty=True)
    radius = _finite_float32(radius, "radius")
    nsample = _positive_int(nsample, "nsample")
    x, y, z = _components(points)
    radius2 = radius * radius
    if not _use_grid(method, len(points)):
        return native_grid.ball_query_scan(x, y, z, query, radius2, nsample)
    reach = _conservative_reach(abs(float(radius)))
    grid = native_grid.build_grid(x, y, z, reach)
    return native_grid.ball_query_grid(x, y, z, query, radius2, nsample, reach, *grid)


def cylinder_query(xyz, centers, rotations, radius: float, hmin: float, hmax: Sequence[float],
                   nsample: int, method: str = "auto") -> np.ndarray:
    """Official cylinder query for D depth classes at once (one pass per centre).

    Args:
        xyz: (N, 3) float32 points. centers: (S, 3) float32. rotations: (S, 3, 3) float32 whose
            columns are the gripper axes in the points' frame (local = Rᵀ(p − c); local x runs
            along the approach). radius, hmin: metres. hmax: (D,) metres, one query per value.
        nsample: slots per centre and depth.
        method: as for :func:`ball_query`; "auto" also falls back to the scan when a frame is
            not orthonormal (the grid's distance bound needs it).

    Returns:
        (S, D, nsample) int32; [s, d] is the independent query with upper bound hmax[d]:
        first nsample points with y²+z² < r² and hmin < x < hmax[d] (all strict, float32),
        ascending index order, padded with the first hit, all 0 when there is none.
    """
    points = _points(xyz, "xyz")
    query = _points(centers, "centers", allow_empty=True)
    frames = np.ascontiguousarray(rotations, dtype=np.float32)
    if frames.shape != (query.shape[0], 3, 3):
        raise InputError(f"rotations must have shape ({query.shape[0]}, 3, 3), got {frames.shape}")
    if not np.isfinite(frames).all():
        raise InputError("rotations contain NaN or infinite values")
    radius = _finite_float32(radius, "radius")
    lower = _finite_float32(hmin, "hmin")
    bounds = np.ascontiguousarray(hmax, dtype=np.float32).reshape(-1)
    if bounds.size == 0 or not np.isfinite(bounds).all():
        raise ConfigError(f"hmax must be a non-empty sequence of finite values, got {hmax!r}")
    nsample = _positive_int(nsample, "nsample")
    x, y, z = _components(points)
    args = (x, y, z, query, frames, radius * radius, lower, bounds, nsample)

    use_grid = _use_grid(method, len(points))
    gram = np.einsum("sji,sjk->sik", frames.astype(np.float64), frames.astype(np.float64))
    deviation = float(np.abs(gram - np.eye(3)).max()) if len(frames) else 0.0
    if use_grid and deviation > ROTATION_TOLERANCE:
        if method == "grid":
            raise InputError("method='grid' needs orthonormal rotations "
                             f"(max |RᵀR − I| = {deviation:.2g})")
        use_grid = False
    if not use_grid:
        return native_grid.cylinder_query_scan(*args)
    # |p − c| = |Rᵀ(p − c)| / σ(R) and σ_min >= sqrt(1 − 3·deviation) (Gershgorin on RᵀR)
    height = max(abs(float(lower)), abs(float(bounds.max())))
    bound = np.sqrt(float(radius) ** 2 + height ** 2) / np.sqrt(1.0 - 3.0 * deviation)
    reach = _conservative_reach(bound)
    grid = native_grid.build_grid(x, y, z, reach)
    return native_grid.cylinder_query_grid(*args, reach, *grid)


@njit(cache=True, nogil=True, parallel=True)
def _cylinder_group_kernel(points, centers, rotations, idx):
    local = np.empty((idx.shape[0], idx.shape[1], 3), np.float32)
    for s in prange(idx.shape[0]):
        r = rotations[s]
        for m in range(idx.shape[1]):
            k = idx[s, m]
            dx = points[k, 0] - centers[s, 0]
            dy = points[k, 1] - centers[s, 1]
            dz = points[k, 2] - centers[s, 2]
            for j in range(3):
                local[s, m, j] = dx * r[0, j] + dy * r[1, j] + dz * r[2, j]
    return local


def cylinder_group(xyz, centers, rotations, idx) -> np.ndarray:
    """Grouped points in each centre's gripper frame, (p − c) as a row vector times R.

    Args:
        xyz: (N, 3) float32; centers: (S, 3); rotations: (S, 3, 3) (columns = gripper axes);
        idx: (S, ...) integer indices into xyz, e.g. (S, D, K) from :func:`cylinder_query`.

    Returns:
        (S, ..., 3) float32 local coordinates in metres [along approach, width, height], the
        same float32 values (same term order) the cylinder test saw.
    """
    points = _points(xyz, "xyz")
    query = _points(centers, "centers", allow_empty=True)
    frames = np.ascontiguousarray(rotations, dtype=np.float32)
    indices = np.asarray(idx)
    if indices.shape[:1] != query.shape[:1] or frames.shape != (query.shape[0], 3, 3):
        raise InputError(f"idx {indices.shape} and rotations {frames.shape} must lead with "
                         f"S = {query.shape[0]}")
    if indices.size and (indices.min() < 0 or indices.max() >= len(points)):
        raise InputError(f"idx out of range for {len(points)} points")
    flat = np.ascontiguousarray(indices.reshape(len(query), -1), dtype=np.int64)
    return _cylinder_group_kernel(points, query, frames, flat).reshape(*indices.shape, 3)


# -- set-abstraction grouping (segment inputs) ----------------------------------------------------

@njit(cache=True, nogil=True, parallel=True)
def _group_xyz_kernel(points, centers, idx, radius, out):
    for s in prange(idx.shape[0]):
        cx = centers[s, 0]
        cy = centers[s, 1]
        cz = centers[s, 2]
        for k in range(idx.shape[1]):
            j = idx[s, k]
            out[0, s, k] = (points[j, 0] - cx) / radius
            out[1, s, k] = (points[j, 1] - cy) / radius
            out[2, s, k] = (points[j, 2] - cz) / radius


def group_xyz(xyz, centers, idx, radius: float, out: np.ndarray | None = None) -> np.ndarray:
    """(3, S, K) official radius-normalised grouping, (xyz[idx] − centre) / radius in float32.

    ``out``: an optional (3, S, K) float32 C-contiguous buffer to write into (e.g. a reused
    segment input), returned.
    """
    points = _points(xyz, "xyz")
    query = _points(centers, "centers", allow_empty=True)
    indices = _group_indices(idx, len(query), len(points))
    out = _output_buffer(out, (3,) + indices.shape)
    _group_xyz_kernel(points, query, indices, _finite_float32(radius, "radius"), out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def _group_first_layer_kernel(points, centers, idx, radius, projected, weight_xyz, bias, out):
    num_samples = idx.shape[1]
    for s in prange(idx.shape[0]):
        normalised = np.empty((num_samples, 3), np.float32)
        for k in range(num_samples):
            j = idx[s, k]
            for axis in range(3):
                normalised[k, axis] = (points[j, axis] - centers[s, axis]) / radius
        for c in range(projected.shape[0]):
            w0 = weight_xyz[c, 0]
            w1 = weight_xyz[c, 1]
            w2 = weight_xyz[c, 2]
            b = bias[c]
            row = projected[c]
            for k in range(num_samples):
                value = row[idx[s, k]] + (w0 * normalised[k, 0] + w1 * normalised[k, 1]
                                          + w2 * normalised[k, 2]) + b
                out[c, s, k] = value if value > 0 else np.float32(0.0)


@njit(cache=True, nogil=True, parallel=True)
def _group_first_layer_channels_last_kernel(points, centers, idx, radius, projected_t, weight_xyz_t, bias, out):
    w0, w1, w2 = weight_xyz_t[0], weight_xyz_t[1], weight_xyz_t[2]
    for s in prange(idx.shape[0]):
        for k in range(idx.shape[1]):
            j = idx[s, k]
            n0 = (points[j, 0] - centers[s, 0]) / radius
            n1 = (points[j, 1] - centers[s, 1]) / radius
            n2 = (points[j, 2] - centers[s, 2]) / radius
            source = projected_t[j]
            row = out[s, k]
            for c in range(row.shape[0]):  # contiguous on both sides: vectorised
                value = source[c] + (w0[c] * n0 + w1[c] * n1 + w2[c] * n2) + bias[c]
                row[c] = value if value > 0 else np.float32(0.0)


def group_first_layer(xyz, centers, idx, radius: float, projected, weight_xyz, bias,
                      out: np.ndarray | None = None, channels_last: bool = False) -> np.ndarray:
    """First SA layer (1x1 conv, BN folded, ReLU) on [normalised xyz, features], per group.

    The layer is linear in its input, so the feature half is computed once per source point
    (``projected`` = W_feat · features, (C, N)) instead of once per (centre, neighbour); this
    adds the xyz half per group: out[c, s, k] = relu(projected[c, j] + W_xyz[c] · (p_j − c_s)/r
    + bias[c]) with j = idx[s, k].

    Args:
        xyz: (N, 3) float32 source points; centers: (S, 3); idx: (S, K) ball-query indices.
        radius: the ball-query radius (normalisation). projected: (C, N) float32.
        weight_xyz: (C, 3) float32; bias: (C,) float32 (BatchNorm folded in).
        out: optional (C, S, K) float32 C-contiguous buffer to write into, returned.
        channels_last: give (S, K, C) instead, the same values: each (centre, neighbour)'s channels
            are contiguous in both ``projected.T`` and the output, so the kernel vectorises over the
            channels instead of gathering one value per neighbour (0.6 -> 0.2 ms per 256 SA2 centres).

    Returns:
        (C, S, K) float32 activations of the first layer ((S, K, C) with ``channels_last``).
    """
    points = _points(xyz, "xyz")
    query = _points(centers, "centers", allow_empty=True)
    indices = _group_indices(idx, len(query), len(points))
    features = np.asarray(projected, dtype=np.float32)
    weights = np.ascontiguousarray(weight_xyz, dtype=np.float32)
    offsets = np.ascontiguousarray(bias, dtype=np.float32)
    channels = features.shape[0] if features.ndim else 0
    if features.shape != (channels, len(points)) or weights.shape != (channels, 3) \
            or offsets.shape != (channels,):
        raise InputError(f"projected {features.shape}, weight_xyz {weights.shape} and bias "
                         f"{offsets.shape} must be (C, {len(points)}), (C, 3), (C,)")
    if channels_last:
        out = _output_buffer(out, indices.shape + (channels,))
        # (N, C) rows: no copy when ``projected`` is Fortran-ordered (a caller making several calls
        # on one projection transposes it once).
        _group_first_layer_channels_last_kernel(points, query, indices, _finite_float32(radius, "radius"),
                                                np.ascontiguousarray(features.T), np.ascontiguousarray(weights.T),
                                                offsets, out)
        return out
    features = np.ascontiguousarray(features)
    out = _output_buffer(out, (channels,) + indices.shape)
    _group_first_layer_kernel(points, query, indices, _finite_float32(radius, "radius"), features,
                              weights, offsets, out)
    return out


def _group_indices(idx, num_centers: int, num_points: int) -> np.ndarray:
    indices = np.ascontiguousarray(idx, dtype=np.int32)
    if indices.ndim != 2 or indices.shape[0] != num_centers:
        raise InputError(f"idx must have shape ({num_centers}, K), got {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= num_points):
        raise InputError(f"idx out of range for {num_points} points")
    return indices


def _output_buffer(out, shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape, np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise InputError(f"out must be a C-contiguous float32 array of shape {shape}, got "
                         f"{out.dtype} {out.shape}")
    return out


# -- feature propagation --------------------------------------------------------------------------

@njit(cache=True, nogil=True, parallel=True)
def _three_nn_kernel(unknown, kx, ky, kz):
    n = unknown.shape[0]
    m = kx.shape[0]
    dist2 = np.empty((n, 3), np.float32)
    idx = np.zeros((n, 3), np.int32)
    for j in prange(n):
        ux = unknown[j, 0]
        uy = unknown[j, 1]
        uz = unknown[j, 2]
        best1 = 1e40  # float64, as in the kernel
        best2 = 1e40
        best3 = 1e40
        i1 = 0
        i2 = 0
        i3 = 0
        for k in range(m):
            dx = ux - kx[k]
            dy = uy - ky[k]
            dz = uz - kz[k]
            d = dx * dx + dy * dy + dz * dz
            if d < best1:
                best3, i3 = best2, i2
                best2, i2 = best1, i1
                best1, i1 = d, k
            elif d < best2:
                best3, i3 = best2, i2
                best2, i2 = d, k
            elif d < best3:
                best3, i3 = d, k
        dist2[j, 0] = best1
        dist2[j, 1] = best2
        dist2[j, 2] = best3
        idx[j, 0] = i1
        idx[j, 1] = i2
        idx[j, 2] = i3
    return dist2, idx


def three_nn(unknown, known) -> tuple[np.ndarray, np.ndarray]:
    """Three nearest known points of every unknown point (official ``three_nn``).

    Args:
        unknown: (n, 3) float32; known: (m, 3) float32 with m >= 3.

    Returns:
        dist (n, 3) float32 Euclidean distances (sqrt of the float32 squared distance),
        ascending; idx (n, 3) int32. Ties keep the lower index (strict ``<`` insertion).
    """
    queries = _points(unknown, "unknown", allow_empty=True)
    reference = _points(known, "known")
    if reference.shape[0] < 3:
        raise InputError(f"three_nn needs at least 3 known points, got {reference.shape[0]}")
    kx, ky, kz = _components(reference)
    dist2, idx = _three_nn_kernel(queries, kx, ky, kz)
    return np.sqrt(dist2), idx


def interpolation_weights(dist) -> np.ndarray:
    """FP weights from (n, 3) float32 Euclidean distances: 1/(d + 1e-8), normalised per row.

    Returns (n, 3) float32; the sum runs left to right as in torch_ops.
    """
    reciprocal = np.float32(1.0) / (np.asarray(dist, dtype=np.float32) + INTERPOLATION_EPS)
    norm = reciprocal[:, 0] + reciprocal[:, 1] + reciprocal[:, 2]
    return reciprocal / norm[:, None]


@njit(cache=True, nogil=True, parallel=True)
def _three_interpolate_kernel(values, idx, weights, out):
    for c in prange(values.shape[0]):
        row = values[c]
        for j in range(idx.shape[0]):
            # Same term order as torch_ops (left to right), no FMA: identical float32 roundings.
            out[c, j] = row[idx[j, 0]] * weights[j, 0] + row[idx[j, 1]] * weights[j, 1] \
                + row[idx[j, 2]] * weights[j, 2]


def three_interpolate(features, idx, weight, out: np.ndarray | None = None) -> np.ndarray:
    """out[c, j] = Σ_i weight[j, i] · features[c, idx[j, i]] (i = 0, 1, 2 in that order).

    Args:
        features: (C, m) float32; idx: (n, 3) int; weight: (n, 3) float32.
        out: optional (C, n) float32 C-contiguous buffer to write into (e.g. part of a segment
            input), returned.

    Returns:
        (C, n) float32.
    """
    values = np.ascontiguousarray(features, dtype=np.float32)
    indices = np.ascontiguousarray(idx, dtype=np.int64)
    weights = np.ascontiguousarray(weight, dtype=np.float32)
    if values.ndim != 2 or indices.ndim != 2 or indices.shape[1] != 3 or weights.shape != indices.shape:
        raise InputError(f"features (C, m), idx (n, 3) and weight (n, 3) expected, got {values.shape}, "
                         f"{indices.shape}, {weights.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= values.shape[1]):
        raise InputError(f"idx out of range for {values.shape[1]} known points")
    out = _output_buffer(out, (values.shape[0], indices.shape[0]))
    _three_interpolate_kernel(values, indices, weights, out)
    return out


def gather_points(features, idx) -> np.ndarray:
    """(C, N) features, (M,) indices -> (C, M) (official ``gather_operation``)."""
    return np.asarray(features)[:, np.asarray(idx)]


def group_points(features, idx) -> np.ndarray:
    """(C, N) features, (S, K) indices -> (C, S, K) (official ``grouping_operation``)."""
    return np.asarray(features)[:, np.asarray(idx)]


@njit(cache=True, nogil=True)
def _column_argmax_kernel(values):
    columns = values.shape[1]
    best = values[0].copy()
    index = np.zeros(columns, np.int64)
    for row in range(1, values.shape[0]):
        current = values[row]
        for j in range(columns):  # rows outer, columns inner: contiguous, vectorised
            value = current[j]
            # numpy's rule: the first maximum, and a NaN is larger than anything
            better = (value > best[j]) | ((value != value) & (best[j] == best[j]))
            best[j] = value if better else best[j]
            index[j] = row if better else index[j]
    return index


def column_argmax(values) -> np.ndarray:
    """``np.argmax(values, axis=0)`` of a (R, C) float32 array, same result (first maximum, NaN wins).

    numpy reduces a C-contiguous array along axis 0 one column at a time (0.9 ms for the 300 x 1024
    view scores); this walks the rows once.
    """
    array = np.ascontiguousarray(values, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] == 0:
        raise InputError(f"values must be (R, C) with R > 0, got {array.shape}")
    return _column_argmax_kernel(array)


def warmup() -> None:
    """Compile (or load from the on-disk cache) every kernel on a tiny input."""
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.0, 1.0, size=(16, 3)).astype(np.float32)
    furthest_point_sample(points, 4)
    frames = np.tile(np.eye(3, dtype=np.float32), (4, 1, 1))
    for method in ("grid", "scan"):
        ball_query(points, points[:4], 0.5, 4, method=method)
        cylinder_query(points, points[:4], frames, 0.5, -0.1, [0.1, 0.2], 4, method=method)
    three_nn(points[:4], points)
    three_interpolate(points.T, np.zeros((4, 3), np.int32), np.ones((4, 3), np.float32))
    group_xyz(points, points[:4], np.zeros((4, 2), np.int32), 0.5)
    group_first_layer(points, points[:4], np.zeros((4, 2), np.int32), 0.5, np.zeros((2, 16), np.float32),
                      np.zeros((2, 3), np.float32), np.zeros(2, np.float32))
    group_first_layer(points, points[:4], np.zeros((4, 2), np.int32), 0.5, np.zeros((2, 16), np.float32),
                      np.zeros((2, 3), np.float32), np.zeros(2, np.float32), channels_last=True)
    cylinder_group(points, points[:4], frames, np.zeros((4, 2, 3), np.int32))
    column_argmax(points)
