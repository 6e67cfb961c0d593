"""Planar grasp networks per frame in onnxruntime on the example scene: prepare / network / decode.

GR-ConvNet uses the shared trained ch16 weights (224 centre crop, RGB-D); AFFGA-Net 2021 uses random
weights (no trained weights are public; the time does not depend on them) at its 320 input, with the
angle argmax in the graph. Usage: python benchmarks/bench_planar.py [--repeat K] [--threads T] [--skip-affga]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import example_frame, machine_line, print_table, shared_dir, write_figures  # noqa: E402

STAGES = ("prepare", "network", "decode")


def _time_runner(runner, color, depth, repeat: int) -> dict[str, float]:
    runner(color, depth)   # warm-up (session allocation, first-run kernels)
    samples = []
    for _ in range(repeat):
        runner(color, depth)
        samples.append(runner.last_timings_ms)
    return {stage: statistics.median(s[stage] for s in samples) for stage in STAGES}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-affga", action="store_true", help="skip AFFGA-Net (70M parameters, slow on CPU)")
    parser.add_argument("--json", help="write the figures here (run_all.py's summary)")
    args = parser.parse_args(argv)

    import torch

    from graspnet_edge_ros.camera import decode_depth
    from graspnet_edge_ros.planar.affga import AFFGANet
    from graspnet_edge_ros.planar.export import export_planar_onnx, load_planar_model
    from graspnet_edge_ros.planar.runner import load_planar_runner

    torch.set_num_threads(args.threads)
    color, depth_raw, _, _, scale = example_frame()
    depth = decode_depth(depth_raw, "16UC1", scale)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_type, model = load_planar_model(shared_dir() / "models" / "grconvnet3_cornell_rgbd_ch16.pt")
        path = export_planar_onnx(model, model_type, Path(tmp) / "grconvnet.onnx")
        runner = load_planar_runner(path, intra_op_threads=args.threads)
        rows.append(["GR-ConvNet ch16, 4x224x224 (trained)", _time_runner(runner, color, depth, args.repeat)])
        if not args.skip_affga:
            torch.manual_seed(0)
            path = export_planar_onnx(AFFGANet().eval(), "affga", Path(tmp) / "affga.onnx")
            runner = load_planar_runner(path, intra_op_threads=args.threads)
            rows.append(["AFFGA-Net 2021, 3x320x320 (random weights)",
                         _time_runner(runner, color, None, max(1, args.repeat // 2))])

    print(f"Planar networks per frame, example scene 1280x720 ({machine_line()}, {args.threads} threads, "
          f"onnxruntime)")
    print_table("Median per-frame time (ms)", ["model", *STAGES, "total"],
                [[name, *(f"{t[s]:.1f}" for s in STAGES), f"{sum(t.values()):.1f}"] for name, t in rows])
    write_figures(args.json, {name: t for name, t in rows},
                  {f"planar: {name}": f"{sum(t.values()):.0f} ms per frame" for name, t in rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
