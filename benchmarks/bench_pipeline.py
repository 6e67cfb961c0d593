"""Per-stage latency of the whole pipeline on the 1280x720 example frame (split runtime, onnxruntime).

Stages: preprocess (back-projection + crop + sampling), model, decode, filters, collision, nms, poses.
Two cases: with the workspace mask, and unmasked (the whole frame up to max_depth_m, cropped by the
automatic workspace above the fitted table). Targets on this machine: preprocess <= 15 ms on the
unmasked frame; collision + NMS <= 30 ms for 1024 candidates (see bench_postprocess.py for the
1024-candidate comparison against straightforward references). The minimum is printed next to the
median: on a shared machine it is the better estimate of the cost on an idle one.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import example_frame, machine_line, print_table, shared_dir  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet
    from graspnet_edge_ros.pipeline import STAGES, GraspDetector

    color, depth, _, intrinsics, scale = example_frame()
    mask_path = shared_dir() / "data" / "graspnet_example" / "workspace_mask.png"
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        export_split(load_graspnet(shared_dir() / "models" / "graspnet_edge_grasp.pth"), tmp)
        for case, mask in (("masked", str(mask_path)), ("unmasked", "")):
            detector = GraspDetector(DetectorConfig.from_flat(model_path=tmp, workspace_mask_path=mask,
                                                              depth_scale=scale, num_threads=args.threads,
                                                              sampling_seed=0))
            detector.detect(color, depth, "16UC1", intrinsics)                      # warm-up (ORT)
            runs = [detector.detect(color, depth, "16UC1", intrinsics) for _ in range(args.repeat)]
            assert all(r.ok for r in runs), runs[0].reason
            cases[case] = runs
    rows = []
    for stage in STAGES:
        row = [stage]
        for runs in cases.values():
            values = [r.timings_ms.get(stage, 0.0) for r in runs]
            row += [f"{statistics.median(values):.1f}", f"{min(values):.1f}"]
        rows.append(row)
    row = ["total"]
    for runs in cases.values():
        totals = [sum(r.timings_ms.get(s, 0.0) for s in STAGES) for r in runs]
        row += [f"{statistics.median(totals):.1f}", f"{min(totals):.1f}"]
    rows.append(row)
    print(f"Pipeline on the example frame, 20000 points ({machine_line()}, {args.threads} threads)")
    print_table("Per-stage latency (ms)", ["stage", "masked median", "min", "unmasked median", "min"], rows)
    for case, runs in cases.items():
        counts = runs[-1].counts
        print(f"\n{case}: {runs[-1].cloud.num_valid} workspace points; {counts.get('decoded')} decoded -> "
              f"{counts.get('published')} published; counts {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
