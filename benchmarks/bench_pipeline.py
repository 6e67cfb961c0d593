"""Per-stage latency of the whole pipeline on the 1280x720 example frame (split runtime, onnxruntime).

Stages: preprocess (back-projection + crop + sampling), model, decode, filters, collision, nms, poses.
Targets on this machine: preprocess <= 30 ms; collision + NMS <= 30 ms for 1024 candidates
(see bench_postprocess.py for the 1024-candidate comparison against straightforward references).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import example_frame, machine_line, print_table, shared_dir, write_figures  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures here (run_all.py's summary)")
    args = parser.parse_args(argv)

    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet
    from graspnet_edge_ros.pipeline import STAGES, GraspDetector

    color, depth, _, intrinsics, scale = example_frame()
    mask_path = shared_dir() / "data" / "graspnet_example" / "workspace_mask.png"
    with tempfile.TemporaryDirectory() as tmp:
        export_split(load_graspnet(shared_dir() / "models" / "graspnet_edge_grasp.pth"), tmp)
        detector = GraspDetector(DetectorConfig(model_path=tmp, workspace_mask_path=str(mask_path),
                                                depth_scale=scale, num_threads=args.threads, sampling_seed=0))
        detector.detect(color, depth, "16UC1", intrinsics)                      # warm-up (numba, ORT)
        runs = [detector.detect(color, depth, "16UC1", intrinsics) for _ in range(args.repeat)]
    assert all(r.ok for r in runs), runs[0].reason
    rows = []
    for stage in STAGES:
        values = [r.timings_ms.get(stage, 0.0) for r in runs]
        rows.append([stage, f"{statistics.median(values):.1f}", f"{max(values):.1f}"])
    totals = [sum(r.timings_ms.get(s, 0.0) for s in STAGES) for r in runs]
    rows.append(["total", f"{statistics.median(totals):.1f}", f"{max(totals):.1f}"])
    print(f"Pipeline on the example frame, 20000 points ({machine_line()}, {args.threads} threads)")
    print_table("Per-stage latency (ms)", ["stage", "median", "max"], rows)
    counts = runs[-1].counts
    print(f"\ngrasps: {counts.get('decoded')} decoded -> {counts.get('published')} published; counts {counts}")
    total_ms = statistics.median(totals)
    write_figures(args.json, {"stages_ms_median": {row[0]: float(row[1]) for row in rows}, "counts": counts},
                  {"pipeline: total per frame": f"{total_ms:.0f} ms ({1e3 / total_ms:.1f} frames/s)",
                   "pipeline: model / rest": f"{rows[STAGES.index('model')][1]} / "
                                             f"{total_ms - float(rows[STAGES.index('model')][1]):.1f} ms"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
