"""GraspNet forward pass on 20000 example-scene points: torch reference vs single ONNX vs split runtime.

Prints per-stage times of the split runtime and the end-to-end forward time of each variant with
ratios against the torch reference. Usage: python benchmarks/bench_graspnet.py [--repeat K] [--skip-single]
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
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread everywhere and CPU time instead of wall time (a busy, shared machine)")
    args = parser.parse_args(argv)
    clock = time.perf_counter
    if args.cpu_time:
        import numba

        from graspnet_edge_ros.timing import StageTimer

        args.threads, clock = 1, time.process_time
        numba.set_num_threads(1)
        StageTimer.clock = staticmethod(clock)

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
        torch_ms = median_ms(lambda: torch_runner(points), repeat=max(1, args.repeat // 2), clock=clock)
        results.append(["torch reference (checkpoint)", torch_ms])
        if not args.skip_single:
            onnx_path = export_single_file(model, Path(tmp) / "graspnet.onnx", num_points=len(points))
            single = load_graspnet_runner(onnx_path, "onnxruntime", intra_op_threads=args.threads)
            results.append(["single ONNX file, onnxruntime",
                            median_ms(lambda: single(points), repeat=args.repeat, clock=clock)])
        # Both split layouts, calls interleaved so a busy machine slows them alike.
        splits = {}
        for layout in ("grouped", "factored"):
            export_split(model, Path(tmp) / layout, layout=layout)
            splits[layout] = load_graspnet_runner(Path(tmp) / layout, "onnxruntime", intra_op_threads=args.threads)
            splits[layout](points)
        samples = {layout: [] for layout in splits}
        stage_samples = {layout: [] for layout in splits}
        for _ in range(args.repeat):
            for layout, runner in splits.items():
                start = clock()
                runner(points)
                samples[layout].append((clock() - start) * 1e3)
                stage_samples[layout].append(runner.last_timings_ms)
        split_ms = {layout: statistics.median(values) for layout, values in samples.items()}
        results.append(["split, grouped layout (X5 kit segments)", split_ms["grouped"]])
        results.append(["split, factored layout (default export)", split_ms["factored"]])

    unit = "CPU time, " if args.cpu_time else ""
    print(f"GraspNet forward, 20000 points, example scene ({machine_line()}, {unit}{args.threads} threads)")
    print_table("End-to-end forward (median)", ["variant", "ms", "speed-up vs torch"],
                [[name, f"{ms:.0f}", f"{torch_ms / ms:.1f}x"] for name, ms in results])
    names = list(dict.fromkeys(name for layout in stage_samples for name in stage_samples[layout][0]))
    rows = [[name] + [f"{statistics.median(s.get(name, 0.0) for s in stage_samples[layout]):.1f}"
                      for layout in stage_samples] for name in names]
    print_table("Split runtime per stage (median ms)", ["stage", *stage_samples], rows)
    best = split_ms["factored"]
    print(f"\nsplit runtime (factored): {best:.0f} ms (target < 350 ms), {torch_ms / best:.1f}x the torch reference "
          f"(target >= 8x); grouped layout {split_ms['grouped']:.0f} ms ({torch_ms / split_ms['grouped']:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
