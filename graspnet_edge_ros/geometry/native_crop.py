"""Numba kernels of the grasp head's shared-point layout: crop MLP once per (seed, point), then pool.

The official CloudCrop runs its point MLP on the 64 cylinder samples of each (seed, depth) and
max-pools them. A point's MLP feature depends only on its local coordinates in the seed's
gripper frame, which are the same for every depth class, and padded slots repeat a member (a
max does not change). So ``max over samples of depth d`` equals ``max over the distinct members
of depth d`` of features computed once per distinct (seed, point).

:func:`crop_union_layout` lays out each seed's union of members (over all depths) as columns of
fixed-size chunks, whole seeds per chunk, and describes each depth's member set as ranges of
columns, cut into pieces at every range end. With nested cylinders (hmax ascending) and
the official first-in-index-order rule, the columns are ordered so that each member set is a few
ranges. :func:`pool_crop_features` reduces a chunk's features once per piece (every column read
once), then each depth's pieces.
Exact for any ``idx``: the ranges are read off the columns, not assumed.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from graspnet_edge_ros.errors import InputError


class CropLayout(NamedTuple):
    """Where each seed's distinct crop points sit, and how each depth's members are read from them.

    Columns of a seed are cut into pieces at every member range's start and end, so each member
    range is a run of consecutive pieces: the features are reduced once per piece (every column
    once), then per range over its pieces, then per row over its ranges.
    """
    crop_input: np.ndarray      # (chunks, 3, P) float32 local xyz (metres), zero in unused columns
    chunk_seeds: np.ndarray     # (chunks + 1,) int64: seeds [chunk_seeds[c], chunk_seeds[c + 1]) are in chunk c
    piece_starts: np.ndarray    # (pieces,) int64 first column of each piece inside its chunk; each chunk's
                                # last piece is its padding (never read)
    chunk_pieces: np.ndarray    # (chunks + 1,) int64: chunk c owns pieces [chunk_pieces[c], chunk_pieces[c + 1])
    range_bounds: np.ndarray    # (2 * ranges,) int64 [first, end) piece (inside the chunk) of every member range
    row_ranges: np.ndarray      # (S * D + 1,) int64: row seed * D + depth owns ranges [row_ranges[r], row_ranges[r + 1])
    depths: int                 # D


@njit(cache=True, nogil=True)
def _layout_kernel(points, centers, rotations, idx, chunk_points):
    seeds, depths, nsample = idx.shape
    capacity = chunk_points - 1  # the last column stays padding: reduceat needs every bound < P
    crop = np.empty((max(seeds, 1), 3, chunk_points), np.float32)
    chunk_seeds = np.zeros(seeds + 1, np.int64)
    piece_starts = np.empty(seeds * (depths * nsample + 1) + seeds + 1, np.int64)
    chunk_pieces = np.zeros(seeds + 2, np.int64)
    bounds = np.empty(2 * seeds * depths * nsample, np.int64)
    row_ranges = np.zeros(seeds * depths + 1, np.int64)
    owner = np.full(points.shape[0], -1, np.int64)        # seed whose union holds the point
    column = np.zeros(points.shape[0], np.int64)          # its column (relative to the seed's start)
    member_tag = np.full(points.shape[0], -1, np.int64)   # last (seed, depth) that listed the point
    union = np.empty(depths * nsample, np.int64)
    marked = np.zeros(depths * nsample, np.bool_)
    cut = np.zeros(depths * nsample + 1, np.bool_)
    piece_of = np.zeros(depths * nsample + 1, np.int64)
    seed_ranges = np.empty((depths * nsample, 2), np.int64)
    chunk = 0
    fill = 0
    pieces = 0          # pieces so far (all chunks)
    chunk_first = 0     # first piece of the current chunk
    ranges = 0
    for s in range(seeds):
        # Union in order of first appearance: depth 0's members, then depth 1's new ones, ... With
        # nested cylinders each depth's members are then a prefix of each earlier group: few ranges.
        size = 0
        for d in range(depths):
            for m in range(nsample):
                p = idx[s, d, m]
                if owner[p] != s:
                    owner[p] = s
                    column[p] = size
                    union[size] = p
                    size += 1
        if fill + size > capacity:  # whole seeds per chunk: pad the rest of this one
            crop[chunk, :, fill:] = 0.0
            piece_starts[pieces] = fill
            pieces += 1
            chunk += 1
            chunk_seeds[chunk] = s
            chunk_pieces[chunk] = pieces
            chunk_first = pieces
            fill = 0
        r = rotations[s]
        for j in range(size):
            p = union[j]
            dx = points[p, 0] - centers[s, 0]
            dy = points[p, 1] - centers[s, 1]
            dz = points[p, 2] - centers[s, 2]
            for axis in range(3):  # same term order as cylinder_group: (p - c) as a row vector times R
                crop[chunk, axis, fill + j] = dx * r[0, axis] + dy * r[1, axis] + dz * r[2, axis]
        # Each depth's members as runs of marked columns (seed-relative); their ends cut the pieces.
        first_range = ranges
        count = 0
        for d in range(depths):
            tag = s * depths + d
            for m in range(nsample):
                p = idx[s, d, m]
                if member_tag[p] != tag:
                    member_tag[p] = tag
                    marked[column[p]] = True
            j = 0
            while j < size:
                if marked[j]:
                    seed_ranges[count, 0] = j
                    cut[j] = True
                    while j < size and marked[j]:
                        marked[j] = False
                        j += 1
                    seed_ranges[count, 1] = j
                    cut[j] = True
                    count += 1
                else:
                    j += 1
            row_ranges[tag + 1] = first_range + count
        next_piece = pieces - chunk_first
        for j in range(size + 1):
            if cut[j]:
                cut[j] = False
                piece_of[j] = next_piece
                if j < size:
                    piece_starts[pieces] = fill + j
                    pieces += 1
                    next_piece += 1
        for q in range(count):
            bounds[2 * (first_range + q)] = piece_of[seed_ranges[q, 0]]
            bounds[2 * (first_range + q) + 1] = piece_of[seed_ranges[q, 1]]
        ranges = first_range + count
        fill += size
    if seeds > 0:
        crop[chunk, :, fill:] = 0.0
        piece_starts[pieces] = fill
        pieces += 1
        chunk += 1
    chunk_seeds[chunk] = seeds
    chunk_pieces[chunk] = pieces
    return (crop[:chunk], chunk_seeds[:chunk + 1], piece_starts[:pieces], chunk_pieces[:chunk + 1],
            bounds[:2 * ranges], row_ranges)


def crop_union_layout(xyz, centers, rotations, idx, chunk_points: int) -> CropLayout:
    """Distinct crop points per seed in gripper-frame coordinates, packed into chunks of ``chunk_points``.

    Args:
        xyz: (N, 3) float32 points; centers: (S, 3) seeds; rotations: (S, 3, 3) gripper frames
            (columns = axes); idx: (S, D, K) indices from :func:`native.cylinder_query`.
        chunk_points: columns per chunk (the crop MLP segment's input width); > D * K.

    Returns:
        a :class:`CropLayout`; local coordinates are the same float32 values
        :func:`native.cylinder_group` gives for the same (seed, point).
    """
    points = np.ascontiguousarray(xyz, dtype=np.float32)
    query = np.ascontiguousarray(centers, dtype=np.float32)
    frames = np.ascontiguousarray(rotations, dtype=np.float32)
    indices = np.ascontiguousarray(idx, dtype=np.int32)
    if indices.ndim != 3 or query.shape != (indices.shape[0], 3) or frames.shape != (indices.shape[0], 3, 3):
        raise InputError(f"idx {indices.shape}, centers {query.shape} and rotations {frames.shape} must be "
                         "(S, D, K), (S, 3) and (S, 3, 3)")
    if indices.size and (indices.min() < 0 or indices.max() >= len(points)):
        raise InputError(f"idx out of range for {len(points)} points")
    if chunk_points <= indices.shape[1] * indices.shape[2]:
        raise InputError(f"chunk_points {chunk_points} must exceed one seed's {indices.shape[1]} x "
                         f"{indices.shape[2]} crop samples")
    return CropLayout(*_layout_kernel(points, query, frames, indices, int(chunk_points)), indices.shape[1])


@njit(cache=True, nogil=True)
def _pool_kernel(features, piece_starts, bounds, row_ranges, out, first_row):
    channels = features.shape[1]
    pieces = piece_starts.shape[0] - 1  # the last piece is the chunk's padding
    piece_max = np.empty((pieces, channels), np.float32)
    for i in range(pieces):  # every point once; each point's channels are contiguous (vectorised)
        best = piece_max[i]
        best[:] = features[piece_starts[i]]
        for j in range(piece_starts[i] + 1, piece_starts[i + 1]):
            point = features[j]
            for c in range(channels):
                if point[c] > best[c]:
                    best[c] = point[c]
    best = np.empty(channels, np.float32)
    for r in range(row_ranges.shape[0] - 1):
        best[:] = piece_max[bounds[2 * row_ranges[r]]]
        for q in range(row_ranges[r], row_ranges[r + 1]):
            for i in range(bounds[2 * q], bounds[2 * q + 1]):
                candidate = piece_max[i]
                for c in range(channels):
                    if candidate[c] > best[c]:
                        best[c] = candidate[c]
        out[:, first_row + r] = best


def pool_crop_features(features: np.ndarray, layout: CropLayout, chunk: int, out: np.ndarray) -> None:
    """Per-depth max of the member features of ``chunk``'s seeds into ``out[:, seed * D + depth]``.

    Serial on purpose: per chunk this is ~0.15 ms of work, and a parallel region costs a wake-up of
    numba's (sleeping, see ``thread_pools``) OpenMP workers each time. Per example frame: 2.7 ms
    alone and 2.3-2.8 ms in the forward, against 4.6-6.6 ms in parallel over channel blocks of the
    channels-major features (2026-12-07).

    Args:
        features: (P, C) float32 crop MLP output for ``layout.crop_input[chunk]``, points-major (a
            point's C features contiguous), as the crop_mlp segment gives it.
        out: (C, R) float32 C-contiguous, R >= all chunks' seeds x D: every chunk writes its own
            seeds' columns of the same array (one array type, so one compiled kernel).
    """
    depths = layout.depths
    first_seed, last_seed = layout.chunk_seeds[chunk], layout.chunk_seeds[chunk + 1]
    row_ranges = layout.row_ranges[first_seed * depths:last_seed * depths + 1]
    bounds = layout.range_bounds[2 * row_ranges[0]:2 * row_ranges[-1]]
    pieces = layout.piece_starts[layout.chunk_pieces[chunk]:layout.chunk_pieces[chunk + 1]]
    if (out.ndim != 2 or out.shape[0] != features.shape[1] or out.shape[1] < last_seed * depths
            or features.shape[0] <= pieces[-1] or out.dtype != np.float32 or not out.flags.c_contiguous):
        raise InputError(f"features {features.shape} and out {out.shape} ({out.dtype}) do not fit chunk {chunk}")
    _pool_kernel(np.ascontiguousarray(features, dtype=np.float32), pieces, bounds, row_ranges - row_ranges[0], out,
                 first_seed * depths)


@njit(cache=True, nogil=True)
def _points_major_kernel(features):
    channels, points = features.shape
    out = np.empty((points, channels), np.float32)
    for c0 in range(0, channels, 16):  # 16 x 16 tiles: both sides stay in cache lines
        for p0 in range(0, points, 16):
            for p in range(p0, min(p0 + 16, points)):
                for c in range(c0, min(c0 + 16, channels)):
                    out[p, c] = features[c, p]
    return out


def points_major(features: np.ndarray) -> np.ndarray:
    """(C, P) channels-major crop features (exports before 2026-12-07) -> (P, C) for :func:`pool_crop_features`.

    0.7 ms per 256 x 2048 chunk here; numpy's strided copy (``features.T.copy()``) took 1.5 ms.
    """
    return _points_major_kernel(np.ascontiguousarray(features, dtype=np.float32))


def warmup() -> None:
    """Compile (or load from the on-disk cache) the layout kernel on a tiny input."""
    points = np.array([[0.0, 0.0, 0.5], [0.01, 0.0, 0.5], [0.0, 0.01, 0.5]], np.float32)
    layout = crop_union_layout(points, points[:1], np.eye(3, dtype=np.float32)[None],
                               np.array([[[0, 1], [0, 2]]], np.int32), 5)
    pool_crop_features(points_major(np.ones((2, 5), np.float32)), layout, 0, np.empty((2, 4), np.float32))
