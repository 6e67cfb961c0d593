"""Time the geometric operators, native (numba) vs torch, on the example scene.

Prints one row per operator: median wall time over a few runs after one warm-up call.

    python benchmarks/bench_geometry.py [--num-points 20000] [--repeats 5]

The scene is read from ../shared beside the repository (or GRASPNET_EDGE_SHARED).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import example_points, median_ms, write_figures  # noqa: E402
import numpy as np  # noqa: E402  (after benchmarks.common: one BLAS thread, as in the CLI/node)
from graspnet_edge_ros.geometry import native  # noqa: E402
from graspnet_edge_ros.model.views import viewpoint_params_to_matrix  # noqa: E402

SA_LEVELS = [(2048, 0.04, 64), (1024, 0.10, 32), (512, 0.20, 16), (256, 0.30, 16)]
CROP_RADIUS, CROP_HMIN, CROP_HMAX, CROP_NSAMPLE = 0.05, -0.02, [0.01, 0.02, 0.03, 0.04], 64


def load_example_cloud(num_points: int, seed: int = 0) -> np.ndarray:
    """(num_points, 3) float32 camera-frame points sampled from the example workspace."""
    return example_points(num_points, seed)[0]


def approach_frames(towards: np.ndarray) -> np.ndarray:
    """(S, 3) approach vectors -> (S, 3, 3) float32 gripper frames at angle 0 (spec §5.2)."""
    return viewpoint_params_to_matrix(towards, np.zeros(len(towards), np.float32))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-points", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-torch", action="store_true", help="native timings only")
    parser.add_argument("--json", help="write the figures here (run_all.py's summary)")
    args = parser.parse_args(argv)

    cloud = load_example_cloud(args.num_points)
    native.warmup()
    fps = native.furthest_point_sample(cloud, SA_LEVELS[0][0])
    sa_xyz = cloud[fps]
    seeds = sa_xyz[:1024]
    frames = approach_frames(-np.random.default_rng(0).normal(size=(len(seeds), 3)))

    # (name, native call, (torch op, arrays, kwargs) or None).
    # SA-k queries the previous level's points; its centres are FPS prefixes.
    level_points = [cloud, sa_xyz, sa_xyz[:1024], sa_xyz[:512]]
    cases = [(f"FPS {len(cloud)} -> {SA_LEVELS[0][0]}", lambda: native.furthest_point_sample(cloud, 2048),
              ("furthest_point_sample", (cloud,), {"npoint": 2048}))]
    for level, ((npoint, radius, nsample), points) in enumerate(zip(SA_LEVELS, level_points), start=1):
        centers = sa_xyz[:npoint]
        cases.append((f"SA{level} ball query {npoint}x{nsample} r={radius} over {len(points)}",
                      lambda p=points, c=centers, r=radius, k=nsample: native.ball_query(p, c, r, k),
                      ("ball_query", (points, centers), {"radius": radius, "nsample": nsample})))
        if len(points) >= native.GRID_MIN_POINTS:  # show what the grid buys over the plain scan
            cases.append(("  same, native method='scan'",
                          lambda p=points, c=centers, r=radius, k=nsample:
                          native.ball_query(p, c, r, k, method="scan"), None))
    for name, n, m in (("FP1", 512, 256), ("FP2", 1024, 512)):
        cases.append((f"{name} three_nn {n} <- {m}", lambda n=n, m=m: native.three_nn(sa_xyz[:n], sa_xyz[:m]),
                      ("three_nn", (sa_xyz[:n], sa_xyz[:m]), {})))
    cases.append((f"cylinder query {len(seeds)}x4x{CROP_NSAMPLE} over {len(cloud)}",
                  lambda: native.cylinder_query(cloud, seeds, frames, CROP_RADIUS, CROP_HMIN, CROP_HMAX,
                                                CROP_NSAMPLE),
                  ("cylinder_query", (cloud, seeds, frames),
                   {"radius": CROP_RADIUS, "hmin": CROP_HMIN, "hmax": CROP_HMAX, "nsample": CROP_NSAMPLE})))
    cases.append(("  same, native method='scan'",
                  lambda: native.cylinder_query(cloud, seeds, frames, CROP_RADIUS, CROP_HMIN, CROP_HMAX,
                                                CROP_NSAMPLE, method="scan"), None))
    crop_idx = native.cylinder_query(cloud, seeds, frames, CROP_RADIUS, CROP_HMIN, CROP_HMAX, CROP_NSAMPLE)
    cases.append(("cylinder group (local coords)",
                  lambda: native.cylinder_group(cloud, seeds, frames, crop_idx),
                  ("cylinder_group", (cloud, seeds, frames, crop_idx), {})))

    torch_ops = None
    if not args.skip_torch:
        import torch

        from graspnet_edge_ros.geometry import torch_ops
    print(f"geometry operators, example scene, N = {len(cloud)}, {os.cpu_count()} CPUs, "
          f"median of {args.repeats} after warm-up")
    print(f"{'operator':<52} {'native ms':>10} {'torch ms':>10} {'torch/native':>13}")
    figures = {}
    for name, native_call, torch_case in cases:
        native_ms = median_ms(native_call, args.repeats)
        figures[name] = {"native_ms": round(native_ms, 3)}
        if torch_ops is None or torch_case is None:
            print(f"{name:<52} {native_ms:10.2f}")
            continue
        torch_name, arrays, kwargs = torch_case
        tensors = [torch.from_numpy(np.ascontiguousarray(a))[None] for a in arrays]
        torch_fn = getattr(torch_ops, torch_name)
        # torch FPS is a 2048-round Python loop; fewer runs keep the benchmark short
        repeats = min(args.repeats, 2) if torch_name == "furthest_point_sample" else args.repeats
        torch_ms = median_ms(lambda: torch_fn(*tensors, **kwargs), repeats)
        print(f"{name:<52} {native_ms:10.2f} {torch_ms:10.2f} {torch_ms / native_ms:12.1f}x")
        figures[name]["torch_ms"] = round(torch_ms, 3)
    headline = {}
    for name, timings in figures.items():
        if name.startswith(("FPS", "SA1", "cylinder query")):
            torch_text = f" (torch {timings['torch_ms']:.0f} ms)" if "torch_ms" in timings else ""
            headline[f"geometry: {name}"] = f"{timings['native_ms']:.1f} ms{torch_text}"
    write_figures(args.json, figures, headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
