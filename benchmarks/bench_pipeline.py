"""Per-stage latency of the whole pipeline on the 1280x720 example frame (split runtime, onnxruntime).

Stages: preprocess (back-projection + crop + sampling), model, decode, filters, collision, nms, poses.
Two cases: with the workspace mask, and unmasked (the whole frame up to max_depth_m, cropped by the
automatic workspace above the fitted table). Targets on this machine: preprocess <= 15 ms on the
unmasked frame; collision + NMS <= 30 ms for 1024 candidates (see bench_postprocess.py for the
1024-candidate comparison against straightforward references). The minimum is printed next to the
median: on a shared machine it is the better estimate of the cost on an idle one.
Then the throughput of the detector's three phases (prepare, infer, finish) run one frame at a
time vs overlapped on consecutive frames in three threads, as the node does (pipeline_frames),
without ROS, on the masked frame: a backlog of frames, both ways alternately in one process,
identical results checked; once with the model on the CPU, once with the model off the CPU as on an
accelerator (RDK X5 BPU, GPU), simulated: the runner's real outputs for the frame, returned after
sleeping its measured time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import example_frame, machine_line, print_table, shared_dir, write_figures  # noqa: E402
import numpy as np  # noqa: E402  (after benchmarks.common: one BLAS thread, as in the CLI/node)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overlap-frames", type=int, default=8, help="frames per overlap run (0 = skip)")
    parser.add_argument("--overlap-rounds", type=int, default=2, help="runs per mode, alternating")
    parser.add_argument("--gate-scenes", type=int, default=3,
                        help="rendered table scenes for the seed-gate comparison (0 = skip it)")
    parser.add_argument("--json", help="write the figures here (run_all.py's summary)")
    args = parser.parse_args(argv)

    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet
    from graspnet_edge_ros.pipeline import STAGES, GraspDetector

    color, depth, _, intrinsics, scale = example_frame()
    mask_path = shared_dir() / "data" / "graspnet_example" / "workspace_mask.png"
    cases, overlap = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        export_split(load_graspnet(shared_dir() / "models" / "graspnet_edge_grasp.pth"), tmp)
        for case, mask in (("masked", str(mask_path)), ("unmasked", "")):
            detector = GraspDetector(DetectorConfig.from_flat(model_path=tmp, workspace_mask_path=mask,
                                                              depth_scale=scale, num_threads=args.threads,
                                                              sampling_seed=0))
            detector.detect(color, depth, "16UC1", intrinsics)                      # warm-up (ORT)
            # Keep each run's timings, not the run: a result holds its frame's cloud (10 MB unmasked), and
            # holding all of them made every frame's buffers fresh mappings whose pages fault in (~20 ms
            # more unmasked preprocess), which a caller that lets its results go never pays.
            timings, last = [], None
            for _ in range(args.repeat):
                last = detector.detect(color, depth, "16UC1", intrinsics)
                assert last.ok, last.reason
                timings.append(last.timings_ms)
            cases[case] = (timings, last)
            if case == "masked" and args.overlap_frames > 0:
                frames = [(color, depth, "16UC1", intrinsics)] * args.overlap_frames
                model_s = statistics.median(t["model"] for t in timings) / 1e3
                overlap["model on the CPU"] = compare_phases(detector, frames, args.overlap_rounds)
                off_cpu = GraspDetector(detector.config, runner=OffCpuRunner(detector.runner,
                                                                             last.cloud.sampled, model_s))
                overlap[f"model off the CPU (simulated, {model_s * 1e3:.0f} ms)"] = compare_phases(
                    off_cpu, frames, args.overlap_rounds)
        gate_rows = compare_seed_gate(tmp, args, mask_path) if args.gate_scenes > 0 else []
    rows = []
    for stage in STAGES:
        row = [stage]
        for timings, _ in cases.values():
            values = [t.get(stage, 0.0) for t in timings]
            row += [f"{statistics.median(values):.1f}", f"{min(values):.1f}"]
        rows.append(row)
    row = ["total"]
    for timings, _ in cases.values():
        totals = [sum(t.get(s, 0.0) for s in STAGES) for t in timings]
        row += [f"{statistics.median(totals):.1f}", f"{min(totals):.1f}"]
    rows.append(row)
    print(f"Pipeline on the example frame, 20000 points ({machine_line()}, {args.threads} threads)")
    print_table("Per-stage latency (ms)", ["stage", "masked median", "min", "unmasked median", "min"], rows)
    for case, (_, last) in cases.items():
        counts = last.counts
        print(f"\n{case}: {last.cloud.num_valid} workspace points; {counts.get('decoded')} decoded -> "
              f"{counts.get('published')} published; counts {counts}")
    figures = {"stages_ms_median_min": {row[0]: row[1:] for row in rows}}
    headline = {f"pipeline ({case}): total per frame": f"{row[1 + 2 * index]} ms (min {row[2 + 2 * index]})"
                for index, case in enumerate(cases) for row in rows[-1:]}
    headline["pipeline (unmasked): preprocess"] = f"{rows[0][3]} ms (min {rows[0][4]}; target <= 15 ms)"
    if overlap:
        reference = cases["masked"][1].grasps.array
        table, figures["overlap_frames_per_s"] = [], {}
        for case, by_mode in overlap.items():
            rates = {mode: statistics.median(args.overlap_frames / seconds for seconds, _ in mode_runs)
                     for mode, mode_runs in by_mode.items()}
            identical = all(np.array_equal(result.grasps.array, reference) for mode_runs in by_mode.values()
                            for _, results in mode_runs for result in results)
            ratio = rates[True] / rates[False]
            table.append([case, f"{rates[True]:.2f}", f"{rates[False]:.2f}", f"{ratio:.2f}x", identical])
            figures["overlap_frames_per_s"][case] = {"overlapped": rates[True], "one_at_a_time": rates[False],
                                                     "identical_results": identical}
            headline[f"pipeline: phases overlapped / one at a time, {case}"] = (
                f"{rates[True]:.2f} / {rates[False]:.2f} frames/s ({ratio:.2f}x)")
        print_table(f"Phases overlapped vs one frame at a time (frames/s; masked frame, {args.overlap_frames} "
                    f"frames waiting, median of {args.overlap_rounds} alternating runs each)",
                    ["model", "overlapped (3 threads)", "one at a time", "ratio", "same grasps"], table)
    if gate_rows:
        print_table("Seed gate: grasp heads only for seeds some grasp of which can pass the filters (model ms, "
                    f"median of {args.repeat} alternating runs; rendered scenes: whole frame, table in view)",
                    ["frame", "object seeds", "heads run", "model, gate on", "model, gate off", "ratio",
                     "same grasps"], gate_rows)
        figures["seed_gate"] = gate_rows
        same = all(row[6] for row in gate_rows)
        for label, rows in (("example frame, masked", gate_rows[:1]),
                            ("rendered table scenes, median", gate_rows[2::2]),
                            ("rendered scenes, one target object, median", gate_rows[3::2])):
            on, off = (statistics.median(float(row[column]) for row in rows) for column in (3, 4))
            headline[f"pipeline: model with / without the seed gate ({label})"] = (
                f"{on:.0f} / {off:.0f} ms ({off / on:.2f}x), same grasps in every frame: {same}")
    write_figures(args.json, figures, headline)
    return 0


def compare_seed_gate(model_dir: str, args, mask_path) -> list[list]:
    """Model time with the seed gate on and off, alternating, on the example frame (masked, unmasked)
    and on rendered table scenes (whole frame); published grasps compared."""
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.pipeline import GraspDetector
    from graspnet_edge_ros.sim.scenes import render_scene

    color, depth, _, intrinsics, scale = example_frame()
    frames = [("example, masked", (color, depth, "16UC1", intrinsics), {}, {"workspace_mask_path": str(mask_path),
                                                                            "depth_scale": scale}),
              ("example, unmasked", (color, depth, "16UC1", intrinsics), {}, {"depth_scale": scale})]
    for seed in range(500, 500 + args.gate_scenes):
        scene = render_scene(seed, view="oblique")
        frame = (scene.color, scene.depth_mm, "16UC1", scene.intrinsics)
        frames.append((f"rendered scene {seed}", frame, {}, {}))
        target = int(np.max(scene.labels))
        frames.append((f"rendered scene {seed}, object {target} only", frame,
                       {"object_labels": scene.labels, "target_object_ids": [target]}, {}))
    rows = []
    for name, frame, request, options in frames:
        detector = GraspDetector(DetectorConfig.from_flat(model_path=model_dir, num_threads=args.threads,
                                                          sampling_seed=0, **options))
        detector.detect(*frame, **request)
        runs = {True: [], False: []}
        for _ in range(args.repeat):
            for gated in (True, False):
                detector.gate_seeds = gated
                detector.reset_support_plane()
                runs[gated].append(detector.detect(*frame, **request))
        on, off = (statistics.median(r.timings_ms["model"] for r in runs[g]) for g in (True, False))
        same = all(np.array_equal(a.grasps.array, b.grasps.array) for a, b in zip(runs[True], runs[False]))
        counts = runs[True][-1].counts
        rows.append([name, counts.get("decoded", 0), counts.get("decoded", 0) - counts.get("heads_skipped", 0),
                     f"{on:.1f}", f"{off:.1f}", f"{off / on:.2f}x", same])
    return rows


class OffCpuRunner:
    """A runner whose model runs off the CPU (an accelerator): the real runner's outputs for the one
    benchmark frame, returned after sleeping the real runner's measured time (the CPU is free meanwhile)."""

    def __init__(self, runner, points, seconds: float):
        self._runner, self._raw, self._seconds = runner, runner(points), seconds
        self.last_timings_ms = dict(runner.last_timings_ms)

    def __getattr__(self, name):  # model_id, num_points, backend_name, ...
        return getattr(self._runner, name)

    def __call__(self, points, seed_gate=None):
        # Every head was recorded: the detector applies seed_gate after the model, as for the torch reference.
        time.sleep(self._seconds)
        return {name: value.copy() for name, value in self._raw.items()}


def compare_phases(detector, frames: list, rounds: int) -> dict:
    """{pipelined: [(seconds, results), ...]}, both modes alternately ``rounds`` times."""
    runs = {True: [], False: []}
    for _ in range(rounds):
        for pipelined in (True, False):
            detector.reset_support_plane()
            runs[pipelined].append(run_phases(detector, frames, pipelined))
    return runs


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
