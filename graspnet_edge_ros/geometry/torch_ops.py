"""Batched PyTorch versions of the PointNet++ / GraspNet geometric operators (training, export).

Same semantics and the same results as :mod:`graspnet_edge_ros.geometry.native` (spec §4):
distances are written term by term, ``dx*dx + dy*dy + dz*dz`` with dx = p − c, never the
−2ab matrix expansion, so float32 roundings match the native kernels bit for bit (eager
CPU torch rounds every elementwise op; nothing is fused into an FMA). Remaining caveat:
other backends (CUDA, or a runtime that fuses Mul+Add) may round differently and flip
points lying within ~1 ulp of a radius or height boundary.

Queries are traceable with ``torch.onnx.export(dynamo=False)``: the only Python branches
depend on shapes or arguments, never on data. Ball/cylinder queries use masked keys
``where(inside, arange(N), N)`` + ``topk(nsample, largest=False)`` (spec §4.9) with float32
keys (exact for N < 2^24; TopK on float is supported by every runtime). Only
:func:`furthest_point_sample` is a Python loop (npoint rounds).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from graspnet_edge_ros.errors import InputError

# Identical constants to the native module (see there for the 1e-3 rounding argument).
_SKIP = np.float32(1e-3)
FPS_SKIP_MAG2 = float(np.nextafter(_SKIP, np.float32(0.0)) if float(_SKIP) > 1e-3 else _SKIP)
FPS_TEMP_INIT = 1e10
INTERPOLATION_EPS = 1e-8
DEFAULT_CHUNK_SIZE = 256


def _check_points(tensor: torch.Tensor, name: str) -> None:
    if tensor.dim() != 3 or tensor.shape[-1] != 3:
        raise InputError(f"{name} must have shape (B, N, 3), got {tuple(tensor.shape)}")


def _squared_radius(radius: float) -> float:
    """r² as the kernel computes it: float32(r) · float32(r) rounded to float32."""
    r = np.float32(radius)
    return float(r * r)


def _float32_constant(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.float32), dtype=torch.float32, device=like.device)


def _first_keys(keys: torch.Tensor, nsample: int, n: int) -> torch.Tensor:
    """Smallest ``nsample`` float keys (n = "no hit") -> int32 indices, CUDA padding rules.

    keys: (..., N) float32 holding the point index where inside, else N.
    Returns (..., nsample) int32: hits ascending, padded with the first hit, all 0 if none.
    """
    k = min(nsample, keys.shape[-1])
    first = torch.topk(keys, k, dim=-1, largest=False, sorted=True).values
    if nsample > k:  # fewer points than slots: the extra slots can only be padding
        first = torch.cat([first, first[..., :1].expand(*first.shape[:-1], nsample - k)], dim=-1)
    lead = first[..., :1]
    first = torch.where(first == n, lead, first)
    first = torch.where(lead == n, torch.zeros_like(first), first)
    return first.to(torch.int32)


def _chunks(total: int, chunk_size: int | None):
    if chunk_size is None or chunk_size >= total:
        return [slice(0, total)]
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    return [slice(start, min(start + chunk_size, total)) for start in range(0, total, chunk_size)]


# -- sampling and gathering -----------------------------------------------------------------------

@torch.jit.script
def _fps_loop(xyz: torch.Tensor, npoint: int, skip_mag2: float, temp_init: float) -> torch.Tensor:
    """The FPS rounds as TorchScript: exports as one ONNX ``Loop`` node instead of npoint copies."""
    batch = xyz.shape[0]
    x, y, z = xyz[:, :, 0], xyz[:, :, 1], xyz[:, :, 2]
    skipped = x * x + y * y + z * z <= skip_mag2
    temp = torch.where(skipped, torch.full_like(x, -1.0), torch.full_like(x, temp_init))
    picks = torch.zeros(batch, npoint, dtype=torch.long, device=xyz.device)
    last = torch.zeros(batch, 1, dtype=torch.long, device=xyz.device)
    for j in range(1, npoint):
        old = torch.gather(xyz, 1, last.unsqueeze(2).expand(batch, 1, 3))      # (B, 1, 3)
        dx = x - old[:, :, 0]
        dy = y - old[:, :, 1]
        dz = z - old[:, :, 2]
        temp = torch.minimum(temp, dx * dx + dy * dy + dz * dz)               # skipped stay at -1
        last = torch.argmax(temp, dim=1, keepdim=True)
        picks[:, j:j + 1] = last
    return picks.to(torch.int32)


def furthest_point_sample(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    """Official FPS (spec §4.1); same picks as the native kernel.

    Args:
        xyz: (B, N, 3) float32 points.
        npoint: picks per cloud.

    Returns:
        (B, npoint) int32. Starts at index 0; points with float32 |p|² <= 1e-3 keep a
        distance of −1 so they are never picked; argmax takes the first index on ties
        (torch.argmax is documented first-occurrence), so exhausted or all-skipped clouds
        repeat the lowest-index pickable point, or 0. Scripted, so ``torch.onnx.export``
        (dynamo=False) records one ``Loop`` node.
    """
    _check_points(xyz, "xyz")
    if npoint <= 0:
        return torch.zeros(xyz.shape[0], 0, dtype=torch.int32, device=xyz.device)
    with torch.no_grad():
        return _fps_loop(xyz, int(npoint), FPS_SKIP_MAG2, FPS_TEMP_INIT)


def gather_points(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, C, N) features, (B, M) indices -> (B, C, M) (official ``gather_operation``)."""
    index = idx.long().unsqueeze(1).expand(-1, features.shape[1], -1)
    return torch.gather(features, 2, index)


def group_points(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, C, N) features, (B, S, K) indices -> (B, C, S, K) (official ``grouping_operation``)."""
    batch, channels, _ = features.shape
    _, centres, nsample = idx.shape
    flat = idx.long().reshape(batch, 1, centres * nsample).expand(-1, channels, -1)
    return torch.gather(features, 2, flat).reshape(batch, channels, centres, nsample)


# -- ball and cylinder queries --------------------------------------------------------------------

def ball_query(xyz: torch.Tensor, centers: torch.Tensor, radius: float, nsample: int,
               chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """Official ball query (spec §4.3).

    Args:
        xyz: (B, N, 3) float32; centers: (B, S, 3) float32.
        radius: metres (strict |p − c|² < r², float32). nsample: slots per centre.
        chunk_size: centres per step (bounds the (B, chunk, N) temporaries); None = one
            step, i.e. a static graph for export.

    Returns:
        (B, S, nsample) int32: first hits in ascending index order, padded with the first
        hit, all 0 when a centre has none.
    """
    _check_points(xyz, "xyz")
    _check_points(centers, "centers")
    n = xyz.shape[1]
    radius2 = _squared_radius(radius)
    order = torch.arange(n, device=xyz.device, dtype=torch.float32)
    px, py, pz = (xyz[:, None, :, i] for i in range(3))                # (B, 1, N)
    parts = []
    for part in _chunks(centers.shape[1], chunk_size):
        c = centers[:, part]
        dx = px - c[..., 0:1]
        dy = py - c[..., 1:2]
        dz = pz - c[..., 2:3]
        inside = dx * dx + dy * dy + dz * dz < radius2                 # (B, s, N)
        keys = torch.where(inside, order, torch.full_like(order, float(n)))
        parts.append(_first_keys(keys, nsample, n))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _local_coordinates(dx, dy, dz, rotations: torch.Tensor):
    """Rᵀd per gripper axis j: dx·R0j + dy·R1j + dz·R2j (the CUDA / native term order).

    d*: (B, s, ...) offsets; rotations: (B, s, 3, 3) broadcast over the trailing dims.
    """
    extra = dx.dim() - 2
    r = rotations.reshape(*rotations.shape[:2], *([1] * extra), 3, 3)
    return tuple(dx * r[..., 0, j] + dy * r[..., 1, j] + dz * r[..., 2, j] for j in range(3))


def cylinder_query(xyz: torch.Tensor, centers: torch.Tensor, rotations: torch.Tensor,
                   radius: float, hmin: float, hmax: Sequence[float], nsample: int,
                   chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """Official cylinder query (spec §4.7) for D depth classes from one set of local coords.

    Args:
        xyz: (B, N, 3) float32; centers: (B, S, 3); rotations: (B, S, 3, 3), columns = gripper
            axes (local = Rᵀ(p − c), x along the approach).
        radius, hmin: metres. hmax: D upper bounds (metres), each an independent query.
        nsample: slots per centre and depth.
        chunk_size: centres per step; temporaries are (B, chunk, D, N). None = one step
            (static graph for export; 1024 × 4 × 20000 float32 keys are 328 MB).

    Returns:
        (B, S, D, nsample) int32: hits with y²+z² < r² and hmin < x < hmax[d] (strict),
        ascending, padded with the first hit, all 0 when there is none.
    """
    _check_points(xyz, "xyz")
    _check_points(centers, "centers")
    if rotations.shape != (*centers.shape[:2], 3, 3):
        raise InputError(f"rotations must have shape {(*centers.shape[:2], 3, 3)}, "
                         f"got {tuple(rotations.shape)}")
    n = xyz.shape[1]
    radius2 = _squared_radius(radius)
    lower = float(np.float32(hmin))
    upper = _float32_constant(list(hmax), xyz).reshape(1, 1, -1, 1)     # (1, 1, D, 1)
    order = torch.arange(n, device=xyz.device, dtype=torch.float32)
    px, py, pz = (xyz[:, None, :, i] for i in range(3))                # (B, 1, N)
    parts = []
    for part in _chunks(centers.shape[1], chunk_size):
        c = centers[:, part]
        along, side, up = _local_coordinates(px - c[..., 0:1], py - c[..., 1:2], pz - c[..., 2:3],
                                             rotations[:, part])       # each (B, s, N)
        in_tube = (side * side + up * up < radius2) & (along > lower)
        inside = in_tube.unsqueeze(2) & (along.unsqueeze(2) < upper)   # (B, s, D, N)
        keys = torch.where(inside, order, torch.full_like(order, float(n)))
        parts.append(_first_keys(keys, nsample, n))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def cylinder_group(xyz: torch.Tensor, centers: torch.Tensor, rotations: torch.Tensor,
                   idx: torch.Tensor) -> torch.Tensor:
    """Grouped points in the gripper frame, (p − c)·R with the native term order.

    Args:
        xyz: (B, N, 3); centers: (B, S, 3); rotations: (B, S, 3, 3); idx: (B, S, D, K).

    Returns:
        (B, S, D, K, 3) float32 local coordinates (metres). Equals the official
        ``matmul(grouped, rot)`` up to float32 rounding (matmul may fuse/reorder).
    """
    batch, seeds = idx.shape[:2]
    flat = idx.long().reshape(batch, -1, 1).expand(-1, -1, 3)
    grouped = torch.gather(xyz, 1, flat).reshape(*idx.shape, 3)
    c = centers.reshape(batch, seeds, *([1] * (idx.dim() - 2)), 3)
    offsets = grouped - c
    local = _local_coordinates(offsets[..., 0], offsets[..., 1], offsets[..., 2], rotations)
    return torch.stack(local, dim=-1)


# -- feature propagation --------------------------------------------------------------------------

def three_nn(unknown: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Official three_nn (spec §4.5): three nearest known points per unknown point.

    Args:
        unknown: (B, n, 3) float32; known: (B, m, 3) float32, m >= 3.

    Returns:
        dist (B, n, 3) float32 Euclidean (sqrt of the float32 squared distance), ascending;
        idx (B, n, 3) int32. Three first-occurrence argmin rounds rather than topk(3), whose
        tie order is unspecified: this reproduces the kernel's "ties keep the lower index".
    """
    _check_points(unknown, "unknown")
    _check_points(known, "known")
    m = known.shape[1]
    if m < 3:
        raise InputError(f"three_nn needs at least 3 known points, got {m}")
    dx = unknown[:, :, None, 0] - known[:, None, :, 0]
    dy = unknown[:, :, None, 1] - known[:, None, :, 1]
    dz = unknown[:, :, None, 2] - known[:, None, :, 2]
    dist2 = dx * dx + dy * dy + dz * dz                                # (B, n, m)
    order = torch.arange(m, device=known.device)
    best_dist, best_idx = [], []
    for _ in range(3):
        nearest = torch.argmin(dist2, dim=2, keepdim=True)             # (B, n, 1)
        best_idx.append(nearest)
        best_dist.append(torch.gather(dist2, 2, nearest))
        dist2 = torch.where(order == nearest, torch.full_like(dist2, float("inf")), dist2)
    # torch's float32 sqrt is not correctly rounded (1 ulp off for ~17% of inputs on CPU);
    # the float64 sqrt rounded once to float32 is, like CUDA sqrtf and numpy.
    dist = torch.sqrt(torch.cat(best_dist, dim=2).double()).float()
    return dist, torch.cat(best_idx, dim=2).to(torch.int32)


def interpolation_weights(dist: torch.Tensor) -> torch.Tensor:
    """FP weights from (B, n, 3) distances: 1/(d + 1e-8) normalised, summed left to right."""
    reciprocal = 1.0 / (dist + INTERPOLATION_EPS)
    norm = reciprocal[..., 0:1] + reciprocal[..., 1:2] + reciprocal[..., 2:3]
    return reciprocal / norm


def three_interpolate(features: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """out[b, c, j] = Σ_i weight[b, j, i] · features[b, c, idx[b, j, i]] (i = 0, 1, 2 in order).

    Args:
        features: (B, C, m); idx: (B, n, 3); weight: (B, n, 3). Returns (B, C, n).
    """
    grouped = group_points(features, idx)                              # (B, C, n, 3)
    w = weight.unsqueeze(1)
    return (grouped[..., 0] * w[..., 0] + grouped[..., 1] * w[..., 1]
            + grouped[..., 2] * w[..., 2])
