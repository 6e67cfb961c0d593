"""GraspNet forward pass on 20000 example-scene points: torch reference vs single ONNX vs split runtime.

Prints per-stage times of the split runtime and the end-to-end forward time of each variant with
ratios against the torch reference. The split runtime runs with both grasp-head layouts (shared_points:
the CPU default; per_depth: what the X5 BPU runs), interleaved call by call in the same process.
Usage: python benchmarks/bench_graspnet.py [--repeat K] [--skip-single]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import example_points, machine_line, median_ms, print_table, shared_dir  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-single", action="store_true", help="skip the single-file ONNX export/run")
    args = parser.parse_args(argv)

    import torch

    from graspnet_edge_ros.export.onnx_export import export_single_file, export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner
    from graspnet_edge_ros.runtime.split import SplitGraspNet

    torch.set_num_threads(args.threads)
    checkpoint = shared_dir() / "models" / "graspnet_edge_grasp.pth"
    points, _ = example_points()
    model = load_graspnet(checkpoint)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        torch_runner = load_graspnet_runner(checkpoint, "torch", num_threads=args.threads)
        torch_ms = median_ms(lambda: torch_runner(points), repeat=max(1, args.repeat // 2))
        results.append(["torch reference (checkpoint)", torch_ms])
        if not args.skip_single:
            onnx_path = export_single_file(model, Path(tmp) / "graspnet.onnx", num_points=len(points))
            single = load_graspnet_runner(onnx_path, "onnxruntime", intra_op_threads=args.threads)
            results.append(["single ONNX file, onnxruntime", median_ms(lambda: single(points), repeat=args.repeat)])
        export_split(model, Path(tmp) / "split")
        split = load_graspnet_runner(Path(tmp) / "split", "onnxruntime", intra_op_threads=args.threads)
        per_depth = SplitGraspNet.from_directory(Path(tmp) / "split", "onnxruntime", head_layout="per_depth",
                                                 intra_op_threads=args.threads)
        split(points), per_depth(points)  # warm-up
        samples = {"shared_points": [], "per_depth": []}
        stage_samples, per_depth_stages = [], []
        for _ in range(args.repeat):  # interleaved: both layouts see the same machine load
            for layout, net in (("shared_points", split), ("per_depth", per_depth)):
                start = time.perf_counter()
                net(points)
                samples[layout].append((time.perf_counter() - start) * 1e3)
            stage_samples.append(split.last_timings_ms)
            per_depth_stages.append(per_depth.last_timings_ms)
        split_ms = statistics.median(samples["shared_points"])
        results.append(["split: numba geometry + ORT segments", split_ms])
        results.append(["split, per_depth grasp head (X5 BPU layout)", statistics.median(samples["per_depth"])])

    print(f"GraspNet forward, 20000 points, example scene ({machine_line()}, {args.threads} threads)")
    print_table("End-to-end forward (median)", ["variant", "ms", "speed-up vs torch"],
                [[name, f"{ms:.0f}", f"{torch_ms / ms:.1f}x"] for name, ms in results])

    def median_stage(stages, names):
        return statistics.median(sum(s.get(name, 0.0) for name in names) for s in stages)

    rows = [[name, f"{median_stage(stage_samples, [name]):.1f}"] for name in stage_samples[0]]
    # The per_depth head's grouping is inside its cylinder_query; compare the whole head.
    head_stages = ("cylinder_query", "segment_crop_mlp", "crop_pool", "segment_grasp_head_post", "segment_grasp_head")
    shared_head, old_head = median_stage(stage_samples, head_stages), median_stage(per_depth_stages, head_stages)
    rows += [["grasp head, shared_points (cylinder_query .. grasp_head_post)", f"{shared_head:.1f}"],
             ["grasp head, per_depth layout (cylinder_query + grasp_head)", f"{old_head:.1f}"]]
    print_table("Split runtime per stage (median ms)", ["stage", "ms"], rows)
    print(f"\ngrasp head: shared_points {shared_head:.0f} ms vs per_depth {old_head:.0f} ms "
          f"({old_head / shared_head:.1f}x, same run)")
    print(f"\nsplit runtime: {split_ms:.0f} ms (target < 350 ms), {torch_ms / split_ms:.1f}x the torch reference "
          f"(target >= 8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
