"""Brute-force numpy references for the geometric operators, written from graspnet_spec.md §4.

Deliberately plain: one centre (or one FPS round) at a time, the CUDA kernels' own formulas
and comparisons (float32 arithmetic, the double literal 1e-3, strict `<`), no shared code with
graspnet_edge_ros.geometry. Slow; keep sizes moderate.
"""
import numpy as np


def furthest_point_sample(xyz: np.ndarray, npoint: int) -> np.ndarray:
    """Spec §4.1 round by round. xyz (N, 3) float32 -> (npoint,) int64.

    Exact ties go to the lowest index (the kernel's lane order can differ; spec §4.1).
    """
    xyz = np.asarray(xyz, dtype=np.float32)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    mag = x * x + y * y + z * z
    skipped = mag.astype(np.float64) <= 1e-3          # CUDA: float `mag <= 1e-3` (double literal)
    usable = np.flatnonzero(~skipped)
    temp = np.full(len(xyz), 1e10, dtype=np.float32)
    picks = [0]
    for _ in range(1, npoint):
        old = xyz[picks[-1]]
        d = (x - old[0]) * (x - old[0]) + (y - old[1]) * (y - old[1]) + (z - old[2]) * (z - old[2])
        temp[usable] = np.minimum(d[usable], temp[usable])
        if len(usable) == 0:
            picks.append(0)  # every lane keeps best = -1, besti = 0
            continue
        values = temp[usable]
        # strict `>` scan from best = -1: the first maximum wins
        picks.append(int(usable[np.flatnonzero(values == values.max())[0]]))
    return np.asarray(picks[:npoint], dtype=np.int64)


def _first_hits(inside: np.ndarray, nsample: int) -> np.ndarray:
    """CUDA slot filling: zeros; on the first hit fill every slot with it; then write in order."""
    slots = np.zeros(nsample, dtype=np.int64)
    count = 0
    for k in np.flatnonzero(inside):
        if count == 0:
            slots[:] = k
        slots[count] = k
        count += 1
        if count == nsample:
            break
    return slots


def ball_query(xyz: np.ndarray, centers: np.ndarray, radius: float, nsample: int) -> np.ndarray:
    """Spec §4.3. -> (S, nsample) int64."""
    xyz = np.asarray(xyz, dtype=np.float32)
    radius2 = np.float32(radius) * np.float32(radius)
    out = np.zeros((len(centers), nsample), dtype=np.int64)
    for s, (cx, cy, cz) in enumerate(np.asarray(centers, dtype=np.float32)):
        d2 = ((cx - xyz[:, 0]) * (cx - xyz[:, 0]) + (cy - xyz[:, 1]) * (cy - xyz[:, 1])
              + (cz - xyz[:, 2]) * (cz - xyz[:, 2]))
        out[s] = _first_hits(d2 < radius2, nsample)
    return out


def cylinder_query(xyz: np.ndarray, centers: np.ndarray, rotations: np.ndarray, radius: float,
                   hmin: float, hmax, nsample: int) -> np.ndarray:
    """Spec §4.7, one independent kernel call per hmax value. -> (S, D, nsample) int64."""
    xyz = np.asarray(xyz, dtype=np.float32)
    rot = np.asarray(rotations, dtype=np.float32).reshape(len(centers), 9)   # row-major r0..r8
    radius2 = np.float32(radius) * np.float32(radius)
    out = np.zeros((len(centers), len(hmax), nsample), dtype=np.int64)
    for d, upper in enumerate(hmax):
        for s, centre in enumerate(np.asarray(centers, dtype=np.float32)):
            r0, r1, r2, r3, r4, r5, r6, r7, r8 = rot[s]
            x = xyz[:, 0] - centre[0]
            y = xyz[:, 1] - centre[1]
            z = xyz[:, 2] - centre[2]
            x_rot = r0 * x + r3 * y + r6 * z
            y_rot = r1 * x + r4 * y + r7 * z
            z_rot = r2 * x + r5 * y + r8 * z
            inside = ((y_rot * y_rot + z_rot * z_rot < radius2)
                      & (x_rot > np.float32(hmin)) & (x_rot < np.float32(upper)))
            out[s, d] = _first_hits(inside, nsample)
    return out


def cylinder_group(xyz: np.ndarray, centers: np.ndarray, rotations: np.ndarray,
                   idx: np.ndarray) -> np.ndarray:
    """Official CylinderQueryAndGroup in float64: (xyz[idx] - c) as a row vector times R."""
    out = np.zeros(idx.shape + (3,))
    for s in range(idx.shape[0]):
        grouped = np.asarray(xyz, np.float64)[idx[s]] - np.asarray(centers[s], np.float64)
        out[s] = grouped @ np.asarray(rotations[s], np.float64)
    return out


def three_nn(unknown: np.ndarray, known: np.ndarray):
    """Spec §4.5 insertion scan. -> dist (n, 3) float32 Euclidean, idx (n, 3) int64."""
    unknown = np.asarray(unknown, dtype=np.float32)
    known = np.asarray(known, dtype=np.float32)
    dist = np.zeros((len(unknown), 3), dtype=np.float32)
    idx = np.zeros((len(unknown), 3), dtype=np.int64)
    for j, (ux, uy, uz) in enumerate(unknown):
        d2 = ((ux - known[:, 0]) * (ux - known[:, 0]) + (uy - known[:, 1]) * (uy - known[:, 1])
              + (uz - known[:, 2]) * (uz - known[:, 2]))
        best = [1e40, 1e40, 1e40]
        best_i = [0, 0, 0]
        for k, d in enumerate(d2.tolist()):
            if d < best[0]:
                best = [d, best[0], best[1]]
                best_i = [k, best_i[0], best_i[1]]
            elif d < best[1]:
                best = [best[0], d, best[1]]
                best_i = [best_i[0], k, best_i[1]]
            elif d < best[2]:
                best[2] = d
                best_i[2] = k
        dist[j] = np.sqrt(np.asarray(best, dtype=np.float64)).astype(np.float32)
        idx[j] = best_i
    return dist, idx


def interpolation_weights(dist: np.ndarray) -> np.ndarray:
    """PointnetFPModule weights in float64: (1/(d+1e-8)) / Σ (1/(d+1e-8))."""
    reciprocal = 1.0 / (np.asarray(dist, np.float64) + 1e-8)
    return reciprocal / reciprocal.sum(axis=1, keepdims=True)


def three_interpolate(features: np.ndarray, idx: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Spec §4.6 in float64, one output point at a time. -> (C, n)."""
    out = np.zeros((features.shape[0], len(idx)))
    for j in range(len(idx)):
        for i in range(3):
            out[:, j] += float(weight[j, i]) * features[:, idx[j, i]].astype(np.float64)
    return out


def group_points(features: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Spec §4.4 by loops: (C, N), (S, K) -> (C, S, K)."""
    out = np.zeros((features.shape[0],) + idx.shape, dtype=features.dtype)
    for s in range(idx.shape[0]):
        for k in range(idx.shape[1]):
            out[:, s, k] = features[:, idx[s, k]]
    return out
