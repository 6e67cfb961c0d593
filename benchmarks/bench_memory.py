"""Where the memory goes: resident memory (RSS) step by step, for each ONNX Runtime arena setting.

Each variant runs in a fresh child process that imports what the node imports (rclpy when
installed, numpy, scipy, numba, onnxruntime, the pipeline), builds the detector on the split model
(one onnxruntime session per segment), loads the numba kernels (``graspnet-edge warmup`` beforehand, so from the
on-disk cache) and runs --frames detections of the real 1280x720 example frame; it prints VmRSS after
each step, the Python-side peak of one frame (tracemalloc: numpy buffers) and whether torch was
imported. Then one process holds a detector per variant and alternates frames between them, so
their model latencies (wall and process CPU time) are compared on the same, possibly shared, machine.

    python benchmarks/bench_memory.py [--frames 10] [--model graspnet_split/]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (example_frame, machine_line, print_table, shared_dir,  # noqa: E402
                               split_model_or_export)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


VARIANTS = ("session", "shared", "off")  # OnnxRuntimeBackend's memory_arena; "shared" is the default


def _detector(model: str, memory_arena: str):
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.pipeline import GraspDetector
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner

    _, _, _, _, scale = example_frame()
    mask = shared_dir() / "data" / "graspnet_example" / "workspace_mask.png"
    config = DetectorConfig.from_flat(model_path=model, depth_scale=scale, num_threads=2, sampling_seed=0,
                                      workspace_mask_path=str(mask))
    runner = load_graspnet_runner(model, "onnxruntime", intra_op_threads=2, memory_arena=memory_arena)
    return GraspDetector(config, runner=runner)


def child(model: str, memory_arena: str, frames: int) -> dict:
    """One variant in this (fresh) process: [(step, RSS MB)], tracemalloc peak, torch imported."""
    steps = [("python", rss_mb())]

    def step(name: str) -> None:
        steps.append((name, rss_mb()))

    import numpy  # noqa: F401
    step("import numpy")
    import scipy.spatial  # noqa: F401
    step("import scipy (spatial, ndimage)")
    try:
        import rclpy  # noqa: F401
        step("import rclpy")
    except ImportError:
        pass
    import numba  # noqa: F401
    step("import numba (llvmlite)")
    import onnxruntime  # noqa: F401
    step("import onnxruntime")
    import graspnet_edge_ros.pipeline  # noqa: F401
    step("import the pipeline")
    color, depth, _, intrinsics, _ = example_frame()
    from graspnet_edge_ros.warmup import ensure_kernels_loaded

    ensure_kernels_loaded()
    step("numba kernels (loaded from the cache)")
    detector = _detector(model, memory_arena)
    step("the split model's onnxruntime sessions")
    import tracemalloc

    for index in range(frames):
        if index == frames - 1:
            tracemalloc.start()
        result = detector.detect(color, depth, "16UC1", intrinsics)
        assert result.ok, result.reason
        if index < 3 or index == frames - 1:
            step(f"frame {index + 1}")
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"steps": steps, "python_peak_mb": peak, "torch": "torch" in sys.modules}


def interleaved_latency(model: str, frames: int) -> dict[str, tuple[float, float]]:
    """{variant: (median model ms, median process CPU s per frame)}, alternating frame by frame
    (a session only uses the shared arena when it asks for it, so the variants coexist)."""
    color, depth, _, intrinsics, _ = example_frame()
    detectors = {name: _detector(model, name) for name in VARIANTS}
    times = {name: ([], []) for name in detectors}
    for index in range(frames + 1):
        for name, detector in detectors.items():
            start = time.process_time()
            result = detector.detect(color, depth, "16UC1", intrinsics)
            if index:  # the first frame of each is a warm-up
                times[name][0].append(result.timings_ms["model"])
                times[name][1].append(time.process_time() - start)
    return {name: (statistics.median(ms), statistics.median(cpu)) for name, (ms, cpu) in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--model", help="split directory (default: export the shared checkpoint)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.child, args.frames)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model = split_model_or_export(args.model, tmp)
        subprocess.run([sys.executable, "-m", "graspnet_edge_ros.cli", "warmup"], check=True,
                       stdout=subprocess.DEVNULL)
        reports = {}
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--child", variant, "--model", model,
                                  "--frames", str(args.frames)], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"the arena {variant!r} process failed:\n{out.stderr}", file=sys.stderr)
                return 1
            reports[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        latency = interleaved_latency(model, max(3, args.frames // 2))
    rows = []
    for index, (name, _) in enumerate(reports["shared"]["steps"]):
        row = [name]
        for variant in VARIANTS:
            steps = reports[variant]["steps"]
            now, before = steps[index][1], steps[max(index - 1, 0)][1]
            row.append(f"{now:.0f} (+{now - before:.0f})")
        rows.append(row)
    print(f"Memory of a detector process, split model, {args.frames} frames of the example scene ({machine_line()})")
    print_table("VmRSS in MB (step's increase)", ["step", *(f"arena {v}" for v in VARIANTS)], rows)
    shared = reports["shared"]
    print(f"\nPython-side peak of one frame (tracemalloc, numpy buffers): {shared['python_peak_mb']:.0f} MB; "
          f"torch imported: {shared['torch']}")
    print_table("Model latency, variants interleaved frame by frame in one process",
                ["arena", "model ms (median)", "process CPU s per frame (median)"],
                [[v, f"{latency[v][0]:.0f}", f"{latency[v][1]:.2f}"] for v in VARIANTS])
    return 0


if __name__ == "__main__":
    sys.exit(main())
