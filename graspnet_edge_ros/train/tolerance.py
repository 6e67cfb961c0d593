"""Tolerance labels of graspnet-baseline (``dataset/generate_tolerance_label.py``), vectorised.

For grasp point i and every (view, angle, depth) entry, the official script grows a ball of
radius r = 0, 0.001, ..., 0.050 m around the point, takes the label points with Euclidean
distance <= r (float32 distances, float64 radii), and computes pos_ratio = fraction with
0 < mu <= mu_thresh. Entries with pos_ratio >= pos_ratio_thresh get tolerance r (later radii
overwrite earlier ones); the loop stops at the first radius where no entry passes.

Here each point's neighbours within 0.05 m come from a cKDTree, are binned by the first radius
that contains them, and the positive counts are accumulated per bin, so every radius costs one
cumulative sum instead of a new ball. Results equal the official loop exactly.

CLI::

    python -m graspnet_edge_ros.train.tolerance --dataset-root ROOT [--output-dir ROOT/tolerance]
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from graspnet_edge_ros.errors import ConfigError, InputError

RADII = np.array([0.001 * x for x in range(51)], dtype=np.float64)   # the official RADIUS_LIST
DEFAULT_MU_THRESH = 0.55
DEFAULT_POS_RATIO_THRESH = 0.8
NUM_OBJECTS = 88


def tolerance_labels(points: np.ndarray, scores: np.ndarray, mu_thresh: float = DEFAULT_MU_THRESH,
                     pos_ratio_thresh: float = DEFAULT_POS_RATIO_THRESH) -> np.ndarray:
    """Tolerance of every grasp label of one object.

    Args:
        points: (Np, 3) grasp points in the model frame (metres).
        scores: (Np, V, A, D) minimum friction coefficients (<= 0 = invalid).

    Returns:
        (Np, V, A, D) float32 tolerances in metres (0 .. 0.05).
    """
    points = np.asarray(points)
    scores = np.asarray(scores)
    if points.ndim != 2 or points.shape[1] != 3 or scores.shape[:1] != points.shape[:1] or scores.ndim < 2:
        raise InputError(f"points (Np, 3) and scores (Np, ...) expected, got {points.shape} and {scores.shape}")
    num_points = len(points)
    entry_shape = scores.shape[1:]
    positive = ((scores > 0) & (scores <= mu_thresh)).reshape(num_points, -1)
    result = np.zeros((num_points, positive.shape[1]), dtype=np.float32)
    if num_points == 0:
        return result.reshape(scores.shape)
    tree = cKDTree(points.astype(np.float64))
    # Candidates with a small margin; the exact float32 distance decides below.
    candidates = tree.query_ball_point(points.astype(np.float64), r=RADII[-1] * 1.001 + 1e-9)
    for i, neighbours in enumerate(candidates):
        neighbours = np.asarray(neighbours, dtype=np.int64)
        # The official compute_point_distance: norm of float32 differences, compared with float64 r.
        dist = np.linalg.norm(points[i][None, :] - points[neighbours], axis=-1)
        keep = dist <= RADII[-1]
        neighbours, dist = neighbours[keep], dist[keep]
        first_radius = np.searchsorted(RADII, dist.astype(np.float64), side="left")   # first r with dist <= r
        order = np.argsort(first_radius, kind="stable")
        count = np.cumsum(np.bincount(first_radius, minlength=len(RADII)))           # (R,) points in ball, >= 1
        running = np.cumsum(positive[neighbours[order]], axis=0, dtype=np.int32)      # (n, E)
        ratio = running[count - 1] / count[:, None]                                    # (R, E) float64
        passes = ratio >= pos_ratio_thresh
        any_pass = passes.any(axis=1)
        stop = int(np.argmin(any_pass)) if not any_pass.all() else len(RADII)         # loop breaks here
        passes = passes[:stop]
        if stop == 0:
            continue
        # Largest radius (within the loop) at which the entry passed; 0 where it never did.
        last = stop - 1 - np.argmax(passes[::-1], axis=0)
        result[i] = np.where(passes.any(axis=0), RADII[last], 0.0).astype(np.float32)
    return result.reshape((num_points,) + entry_shape)


def generate_object(label_file: Path, output_file: Path, mu_thresh: float, pos_ratio_thresh: float) -> tuple[str, int, float]:
    """Read ``XXX_labels.npz``, write ``XXX_tolerance.npy`` (float32). Returns (name, Np, seconds)."""
    start = time.perf_counter()
    try:
        with np.load(label_file) as label:
            points, scores = label["points"], label["scores"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read grasp labels {label_file}: {exc}") from exc
    tolerance = tolerance_labels(points, scores, mu_thresh, pos_ratio_thresh)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    partial = output_file.with_suffix(".partial.npy")
    np.save(partial, tolerance)
    partial.replace(output_file)
    return label_file.name, len(points), time.perf_counter() - start


def tolerance_file(tolerance_dir: Path, object_index: int) -> Path:
    return Path(tolerance_dir) / f"{object_index:03d}_tolerance.npy"


def grasp_label_file(dataset_root: Path, object_index: int) -> Path:
    return Path(dataset_root) / "grasp_label" / f"{object_index:03d}_labels.npz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m graspnet_edge_ros.train.tolerance",
        description="Generate graspnet-baseline tolerance labels (grasp_label/XXX_labels.npz -> XXX_tolerance.npy).")
    parser.add_argument("--dataset-root", required=True, help="GraspNet-1Billion root (holds grasp_label/)")
    parser.add_argument("--output-dir", help="where XXX_tolerance.npy go (default: DATASET_ROOT/tolerance)")
    parser.add_argument("--objects", default="0-87", help="object indices, e.g. 0-87 or 0,3,5-9")
    parser.add_argument("--mu-thresh", type=float, default=DEFAULT_MU_THRESH)
    parser.add_argument("--pos-ratio-thresh", type=float, default=DEFAULT_POS_RATIO_THRESH)
    parser.add_argument("--workers", type=int, default=1, help="objects processed in parallel")
    parser.add_argument("--overwrite", action="store_true", help="recompute existing files")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (InputError, ConfigError) as exc:
        print(f"tolerance: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 3


def _run(args) -> int:
    from graspnet_edge_ros.train.indices import parse_index_list

    root = Path(args.dataset_root)
    if not (root / "grasp_label").is_dir():
        raise InputError(f"{root / 'grasp_label'} not found: --dataset-root must be the GraspNet-1Billion root")
    if not 0 < args.pos_ratio_thresh <= 1 or args.mu_thresh <= 0:
        raise ConfigError("--pos-ratio-thresh must be in (0, 1] and --mu-thresh > 0")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    output_dir = Path(args.output_dir) if args.output_dir else root / "tolerance"
    jobs = []
    for index in parse_index_list(args.objects, "--objects"):
        label = grasp_label_file(root, index)
        if not label.is_file():
            raise InputError(f"missing grasp label file: {label}")
        target = tolerance_file(output_dir, index)
        if target.is_file() and not args.overwrite:
            print(f"{target.name} exists, skipped (use --overwrite)")
            continue
        jobs.append((label, target, args.mu_thresh, args.pos_ratio_thresh))
    if args.workers == 1:
        results = (generate_object(*job) for job in jobs)
        for name, count, seconds in results:
            print(f"{name}: {count} points, {seconds:.1f} s")
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            for name, count, seconds in pool.map(generate_object, *zip(*jobs)) if jobs else []:
                print(f"{name}: {count} points, {seconds:.1f} s")
    print(f"tolerance labels in {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
