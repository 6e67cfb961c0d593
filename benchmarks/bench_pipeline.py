"""Per-stage latency of the whole pipeline on the 1280x720 example frame (split runtime, onnxruntime).

Stages: preprocess (back-projection + crop + sampling), model, decode, filters, collision, nms, poses.
Then the throughput of the detector's three phases (prepare, infer, finish) run one frame at a
time vs overlapped on consecutive frames in three threads, as the node does (pipeline_frames),
without ROS: a backlog of frames, both ways alternately in one process, identical results checked.
Targets on this machine: preprocess <= 30 ms; collision + NMS <= 30 ms for 1024 candidates
(see bench_postprocess.py for the 1024-candidate comparison against straightforward references).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import example_frame, machine_line, print_table, shared_dir, write_figures  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overlap-frames", type=int, default=6, help="frames per overlap run (0 = skip)")
    parser.add_argument("--overlap-rounds", type=int, default=2, help="runs per mode, alternating")
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
        overlap = {True: [], False: []}
        for _ in range(args.overlap_rounds if args.overlap_frames > 0 else 0):
            for pipelined in (True, False):
                detector.reset_support_plane()
                seconds, results = run_phases(detector, [(color, depth, "16UC1", intrinsics)] * args.overlap_frames,
                                              pipelined)
                overlap[pipelined].append((seconds, results))
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
    figures = {"stages_ms_median": {row[0]: float(row[1]) for row in rows}, "counts": counts}
    headline = {"pipeline: total per frame": f"{total_ms:.0f} ms ({1e3 / total_ms:.1f} frames/s)",
                "pipeline: model / rest": f"{rows[STAGES.index('model')][1]} / "
                                          f"{total_ms - float(rows[STAGES.index('model')][1]):.1f} ms"}
    if overlap[True]:
        rates = {mode: statistics.median(args.overlap_frames / seconds for seconds, _ in mode_runs)
                 for mode, mode_runs in overlap.items()}
        reference = overlap[False][0][1]
        identical = all(np.array_equal(a.grasps.array, b.grasps.array) and a.status == b.status
                        for mode_runs in overlap.values() for _, results in mode_runs for a, b in zip(results, reference))
        print_table(f"Phases overlapped vs one frame at a time ({args.overlap_frames} frames waiting, median of "
                    f"{args.overlap_rounds} alternating runs each)", ["mode", "frames/s"],
                    [["prepare, infer, finish overlapped (3 threads)", f"{rates[True]:.2f}"],
                     ["one frame at a time", f"{rates[False]:.2f}"]])
        print(f"\noverlap: {rates[True] / rates[False]:.2f}x the throughput; identical results: {identical}")
        figures["overlap_frames_per_s"] = {"overlapped": rates[True], "one_at_a_time": rates[False],
                                           "identical_results": identical}
        headline["pipeline: phases overlapped vs one at a time"] = (
            f"{rates[True]:.2f} / {rates[False]:.2f} frames/s ({rates[True] / rates[False]:.2f}x)")
    write_figures(args.json, figures, headline)
    return 0


def run_phases(detector, frames: list, pipelined: bool) -> tuple[float, list]:
    """(seconds, results) of ``frames`` through prepare -> infer -> finish, in three threads handing
    frames on as the node does (ros/frame_pipeline.py), or one frame at a time."""
    from graspnet_edge_ros.ros.frame_pipeline import FramePipeline

    pipeline, results = FramePipeline(), [None] * len(frames)

    def prepare():
        for index, (color, depth, encoding, intrinsics) in enumerate(frames):
            pipeline.admit(pipelined)
            start = time.perf_counter()
            prepared = detector.prepare(color, depth, encoding, intrinsics)
            pipeline.to_model((index, prepared), time.perf_counter() - start)

    def infer():
        for _ in frames:
            (index, prepared), _ = pipeline.next_for_model()
            start = time.perf_counter()
            output = detector.infer(prepared)
            pipeline.to_finish((index, prepared, output), time.perf_counter() - start)

    def finish():
        for _ in frames:
            (index, prepared, output), _ = pipeline.next_for_finish()
            results[index] = detector.finish(prepared, output)
            pipeline.finished()

    start = time.perf_counter()
    threads = [threading.Thread(target=phase) for phase in (prepare, infer, finish)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, results


if __name__ == "__main__":
    sys.exit(main())
