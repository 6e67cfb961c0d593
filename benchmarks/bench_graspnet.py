"""GraspNet forward pass on 20000 example-scene points: torch reference vs single ONNX vs split runtime.

Prints per-stage times of the split runtime and the end-to-end forward time of each variant with
ratios against the torch reference. Usage: python benchmarks/bench_graspnet.py [--repeat K] [--skip-single]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (example_points, machine_line, median_ms, print_table, shared_dir,  # noqa: E402
                               write_figures)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-single", action="store_true", help="skip the single-file ONNX export/run")
    parser.add_argument("--json", help="write the figures here (run_all.py's summary)")
    args = parser.parse_args(argv)

    import torch

    from graspnet_edge_ros.export.onnx_export import export_single_file, export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner

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
        split_ms = median_ms(lambda: split(points), repeat=args.repeat)
        stage_samples = []
        for _ in range(args.repeat):
            split(points)
            stage_samples.append(split.last_timings_ms)
        results.append(["split: numba geometry + ORT segments", split_ms])
        # Further variants (e.g. a split int8 model) append [name, ms] to results here: the table,
        # the ratios against torch and run_all.py's summary (through --json) pick them up.

    print(f"GraspNet forward, 20000 points, example scene ({machine_line()}, {args.threads} threads)")
    print_table("End-to-end forward (median)", ["variant", "ms", "speed-up vs torch"],
                [[name, f"{ms:.0f}", f"{torch_ms / ms:.1f}x"] for name, ms in results])
    names = list(stage_samples[0])
    rows = [[name, f"{sorted(s.get(name, 0.0) for s in stage_samples)[len(stage_samples) // 2]:.1f}"]
            for name in names]
    print_table("Split runtime per stage (median ms)", ["stage", "ms"], rows)
    print(f"\nsplit runtime: {split_ms:.0f} ms (target < 350 ms), {torch_ms / split_ms:.1f}x the torch reference "
          f"(target >= 8x)")
    # Every row of the forward table (a variant added to ``results`` appears here too).
    write_figures(args.json, {"forward_ms": {name: round(ms, 1) for name, ms in results},
                              "split_stages_ms": {row[0]: float(row[1]) for row in rows}},
                  {f"forward: {name}": f"{ms:.0f} ms ({torch_ms / ms:.1f}x torch)" for name, ms in results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
