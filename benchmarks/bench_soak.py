"""Soak test: >= 1000 frames at 30 Hz from a generated bag into the running node.

Builds a bag of the real 1280x720 example capture (graspnet-baseline doc/example_data; its licence
is copied beside the bag) with --frames frames at --rate-hz, starts the node as a child process
(trained model exported to a split directory, workspace mask, sampling_seed 0), plays the bag
at its recorded pace, and reports what the pipeline sustains: input rate, output rate, frames
dropped by the node (it only works on the newest frame), latencies, and the node's memory
(VmRSS from /proc/<pid>/status, sampled every 0.5 s) and CPU over the run. Terminates on its own:
frames / rate seconds of input plus a bounded drain.

    set +u; . scripts/env.sh; set -u
    python benchmarks/bench_soak.py                 # 1000 frames, 30 Hz, full resolution
    python benchmarks/bench_soak.py --frames 300 --downscale 2 --json soak.json
    python benchmarks/bench_soak.py --frames 600 --pipeline compare --rounds 2   # pipelining on vs off
    git worktree add /tmp/before <commit>
    python benchmarks/bench_soak.py --frames 600 --pipeline on --before /tmp/before --rounds 2  # vs that node
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine_line, print_table, shared_dir  # noqa: E402
import numpy as np  # noqa: E402  (after benchmarks.common: one BLAS thread, as in the CLI/node)

SAMPLE_PERIOD_S = 0.5


class ProcessSampler(threading.Thread):
    """Samples VmRSS (MB) and cumulative CPU seconds of one pid until stopped."""

    def __init__(self, pid: int, period_s: float = SAMPLE_PERIOD_S):
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.period_s = pid, period_s
        self.samples: list[tuple[float, float, float]] = []  # (monotonic s, RSS MB, CPU s)
        self.marks: dict[str, float] = {}
        self._halt = threading.Event()
        self._ticks = os.sysconf("SC_CLK_TCK")

    def sample(self) -> tuple[float, float, float] | None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        cpu_s = (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime
        entry = (time.monotonic(), rss_kb / 1024.0, cpu_s)
        self.samples.append(entry)
        return entry

    def mark(self, name: str) -> None:
        self.sample()
        self.marks[name] = time.monotonic()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.period_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5.0)

    def between(self, start: str, end: str) -> list[tuple[float, float, float]]:
        return [s for s in self.samples if self.marks[start] <= s[0] <= self.marks[end]]


def rss_at(samples, when: float) -> float:
    return min(samples, key=lambda s: abs(s[0] - when))[1]


def source_environment(source: Path) -> dict[str, str]:
    """The node's environment with ``source`` (another checkout of this package) in place of this tree."""
    import graspnet_edge_ros

    from graspnet_edge_ros.ros.replay_cli import node_environment

    env = node_environment()
    this_tree = str(Path(graspnet_edge_ros.__file__).resolve().parents[1])
    parts = [p for p in env["PYTHONPATH"].split(os.pathsep) if p and p != this_tree]
    env["PYTHONPATH"] = os.pathsep.join([str(source.resolve())] + parts)
    return env


def export_with(source: Path, checkpoint: Path, output: Path) -> Path:
    """Split export of ``checkpoint`` by the ``source`` checkout's own CLI (its format, its defaults)."""
    import subprocess

    if not (output / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "graspnet_edge_ros.cli", "export", "--checkpoint", str(checkpoint),
                        "--output", str(output), "--split"], env=source_environment(source), cwd=source,
                       check=True, stdout=subprocess.DEVNULL)
    return output


def run_soak(bag, resolution: str, model: Path, mask: Path, work: Path, args,
             pipeline_frames: bool | None, source: Path | None = None) -> dict | None:
    """Play ``bag`` into a fresh node (``pipeline_frames`` None = the node's default; ``source``: run the
    node of that checkout instead of this tree's, with its defaults); its figures, or None when the node died."""
    from graspnet_edge_ros.ros.replay import replay_bag
    from graspnet_edge_ros.ros.replay_cli import NodeProcess, node_command

    record = work / "soak_record.mcap"
    if record.exists():
        record.unlink()
    params = {"sampling_seed": "0", "workspace_mask_path": str(mask)}
    if pipeline_frames is not None:
        params["pipeline_frames"] = "true" if pipeline_frames else "false"
    command = node_command(model, params=params)
    env = source_environment(source) if source else None
    with NodeProcess(command, work / "node.log", env=env, cwd=source) as node:
        sampler = ProcessSampler(node.pid)
        sampler.start()
        sampler.mark("spawned")
        summary = replay_bag(bag, record, rate=1.0, alive=node.alive, start_timeout_s=120.0,
                             drain_timeout_s=60.0, on_play=lambda: sampler.mark("play"),
                             log=lambda text: print(text, flush=True))
        sampler.mark("drained")
        sampler.stop()
        code, how = node.stop()
    if node.died_early is not None:
        print(f"the node died during the soak (exit code {node.died_early}); see {work / 'node.log'}")
        return None

    run = sampler.between("play", "drained")
    rss_start, rss_end = rss_at(sampler.samples, sampler.marks["play"]), run[-1][1]
    rss_peak = max(s[1] for s in run)
    half = [s for s in run if s[0] >= run[0][0] + (run[-1][0] - run[0][0]) / 2]
    slope = np.polyfit([s[0] for s in half], [s[1] for s in half], 1)[0] * 60 if len(half) > 2 else float("nan")
    cpu = (run[-1][2] - run[0][2]) / max(run[-1][0] - run[0][0], 1e-9) * 100
    counters = summary.node_counters()
    stages = summary.stage_latency()
    e2e = summary.e2e_latency_ms
    figures = {
        "node": f"before: {source}" if source else "this tree",
        "pipeline_frames": "default" if pipeline_frames is None else pipeline_frames,
        "frames_in_bag": args.frames, "resolution": resolution,
        "bag_rate_hz": args.rate_hz, "frames_published": summary.frames_in,
        "input_rate_hz": round(summary.input_rate_hz, 2),
        "node_frames_received": counters.get("frames_received"),
        "results_out": summary.results_out, "output_rate_hz": round(summary.output_rate_hz, 2),
        "node_frames_dropped": summary.dropped_frames, "frames_without_result": summary.unanswered_frames,
        "statuses": dict(summary.statuses),
        "total_ms_median": round(stages.get("total", (float("nan"),))[0], 1),
        "model_ms_median": round(stages.get("model", (float("nan"),))[0], 1),
        "e2e_ms_median": round(float(np.median(e2e)), 1) if e2e else None,
        "e2e_ms_p95": round(float(np.percentile(e2e, 95)), 1) if e2e else None,
        "rss_mb_ready": round(rss_start, 1), "rss_mb_peak": round(rss_peak, 1), "rss_mb_end": round(rss_end, 1),
        "rss_mb_at_25_50_75_pct_of_play": " / ".join(
            f"{rss_at(run, run[0][0] + q * summary.play_time_s):.0f}" for q in (0.25, 0.5, 0.75)),
        "rss_growth_mb": round(rss_end - rss_start, 1), "rss_slope_mb_per_min_2nd_half": round(float(slope), 2),
        "node_cpu_percent": round(cpu, 0), "play_s": round(summary.play_time_s, 1),
        "wall_s": round(summary.wall_time_s, 1), "node_stop": f"{how}, exit {code}",
    }
    print()
    print(summary.table())
    return figures


COMPARED_FIGURES = ("output_rate_hz", "node_frames_received", "e2e_ms_median", "e2e_ms_p95", "total_ms_median",
                    "model_ms_median", "node_cpu_percent", "rss_mb_ready", "rss_mb_peak")


def compare_runs(groups: dict[str, list[dict]]) -> dict:
    """Medians of two groups of runs ({label: runs}, the first compared with the second) and the
    ratio of their output rates; {} when a group is empty."""
    (first, first_runs), (second, second_runs) = groups.items()
    if not first_runs or not second_runs:
        return {}

    def median(runs, name):
        values = [float(r[name]) for r in runs if r[name] is not None]  # diagnostics counters are strings
        return float(np.median(values)) if values else float("nan")

    comparison = {name: {first: round(median(first_runs, name), 2), second: round(median(second_runs, name), 2)}
                  for name in COMPARED_FIGURES}
    comparison["output_rate_ratio"] = round(median(first_runs, "output_rate_hz")
                                            / median(second_runs, "output_rate_hz"), 2)
    comparison["e2e_p50_added_ms"] = round(median(first_runs, "e2e_ms_median")
                                           - median(second_runs, "e2e_ms_median"), 1)
    comparison["rounds"] = len(second_runs)
    return comparison


def compare_modes(runs: list[dict]) -> dict:
    """This tree's node with pipelining on vs off, over interleaved runs."""
    ours = [r for r in runs if r["node"] == "this tree"]
    return compare_runs({"pipelined": [r for r in ours if r["pipeline_frames"] is True],
                         "one_at_a_time": [r for r in ours if r["pipeline_frames"] is False]})


def compare_with_before(runs: list[dict]) -> dict:
    """This tree's node (its default settings) against the earlier checkout's, over interleaved runs."""
    before = [r for r in runs if r["node"] != "this tree"]
    comparison = compare_runs({"now": [r for r in runs if r["node"] == "this tree"
                                       and r["pipeline_frames"] in ("default", True)], "before": before})
    return {**comparison, "before": before[0]["node"]} if comparison else {}


def print_comparison(title: str, comparison: dict, headers: list[str], conclusion: str) -> None:
    rows = [[name] + list(value.values()) for name, value in comparison.items() if isinstance(value, dict)]
    print_table(f"{title}, medians of {comparison['rounds']} interleaved run(s) each ({machine_line()})",
                ["figure"] + headers, rows)
    print(f"\n{conclusion}")


def soak_headline(runs: list[dict], comparison: dict, before: dict | None = None) -> dict:
    """run_all.py's summary rows."""
    first = runs[0]
    label = f"soak {first['frames_in_bag']} frames {first['resolution']} at {first['bag_rate_hz']:g} Hz"
    rows = {}
    if before:
        rates = before["output_rate_hz"]
        rows = {f"{label}: results/s, this node / before": f"{rates['now']:.2f} / {rates['before']:.2f} "
                                                           f"({before['output_rate_ratio']:.2f}x)",
                f"{label}: latency p50 now / before": f"{before['e2e_ms_median']['now']:.0f} / "
                                                      f"{before['e2e_ms_median']['before']:.0f} ms",
                f"{label}: node RSS peak now / before": f"{before['rss_mb_peak']['now']:.0f} / "
                                                        f"{before['rss_mb_peak']['before']:.0f} MB"}
        first = next(r for r in runs if r["node"] == "this tree")
    if comparison:
        rates, p50, p95 = (comparison[k] for k in ("output_rate_hz", "e2e_ms_median", "e2e_ms_p95"))
        return {
            **rows,
            f"{label}: results/s, pipelining on / off": f"{rates['pipelined']:.2f} / {rates['one_at_a_time']:.2f} "
                                                        f"({comparison['output_rate_ratio']:.2f}x)",
            f"{label}: latency p50 on / off": f"{p50['pipelined']:.0f} / {p50['one_at_a_time']:.0f} ms",
            f"{label}: latency p95 on / off": f"{p95['pipelined']:.0f} / {p95['one_at_a_time']:.0f} ms",
            f"{label}: node RSS peak": f"{comparison['rss_mb_peak']['pipelined']:.0f} MB",
        }
    return {**rows, f"{label}: results/s": f"{first['output_rate_hz']:.2f}",
            f"{label}: latency p50 / p95": f"{first['e2e_ms_median']} / {first['e2e_ms_p95']} ms",
            f"{label}: node RSS ready / peak / end": f"{first['rss_mb_ready']:.0f} / {first['rss_mb_peak']:.0f} / "
                                                    f"{first['rss_mb_end']:.0f} MB"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--rate-hz", type=float, default=30.0, help="input frame rate of the bag")
    parser.add_argument("--downscale", type=int, default=1, help="1 = the real 1280x720 capture")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--model", help="split dir / .onnx / checkpoint (default: export the shared checkpoint)")
    parser.add_argument("--pipeline", choices=["default", "on", "off", "compare"], default="default",
                        help="the node's pipeline_frames: its default, on, off, or compare = on and off "
                             "alternately (--rounds times each) with the ratio of their output rates")
    parser.add_argument("--rounds", type=int, default=1, help="runs per mode (--pipeline compare, --before)")
    parser.add_argument("--before", metavar="CHECKOUT",
                        help="another checkout of this package (e.g. `git worktree add /tmp/before <commit>`): "
                             "its node, with a model its own CLI exports, runs in alternation with this tree's "
                             "and the ratio of their output rates is printed")
    parser.add_argument("--work-dir", help="keep the bag, recording and node log here (default: temp, removed)")
    parser.add_argument("--json", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    from graspnet_edge_ros.ros.bags import RgbdCapture, write_capture_bag

    shared = shared_dir().resolve()
    # Absolute paths: the --before node and its export run in the other checkout's directory.
    work = (Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="graspnet_soak_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = shared / "data" / "graspnet_example"
        capture = RgbdCapture.from_directory(data).downscaled(args.downscale)
        mask = data / "workspace_mask.png"
        if args.downscale > 1:
            from PIL import Image

            small = np.asarray(Image.open(mask))[::args.downscale, ::args.downscale]
            mask = work / "workspace_mask.png"
            Image.fromarray(small).save(mask)
        model = Path(args.model).resolve() if args.model else work / "graspnet_split"
        if not args.model and not model.is_dir():
            from graspnet_edge_ros.export.onnx_export import export_split
            from graspnet_edge_ros.model.checkpoint import load_graspnet

            export_split(load_graspnet(shared / "models" / "graspnet_edge_grasp.pth"), model)

        bag = work / f"soak_{args.frames}_{args.rate_hz:g}hz_{capture.width}x{capture.height}_{args.storage}"
        start = time.monotonic()
        if not bag.exists():
            write_capture_bag(bag, capture, num_frames=args.frames, rate_hz=args.rate_hz, storage=args.storage)
        bag_mb = sum(f.stat().st_size for f in bag.iterdir()) / 1e6
        print(f"bag: {args.frames} frames {capture.width}x{capture.height} at {args.rate_hz:g} Hz, "
              f"{bag_mb:.0f} MB, {args.storage} ({time.monotonic() - start:.1f} s to write)", flush=True)

        modes = {"default": [None], "on": [True], "off": [False], "compare": [True, False]}[args.pipeline]
        before = Path(args.before).resolve() if args.before else None
        before_model = export_with(before, shared / "models" / "graspnet_edge_grasp.pth",
                                   work / "before_split") if before else None
        round_runs = ([(before_model, None, before)] if before else []) + [(model, mode, None) for mode in modes]
        runs = []
        for run_model, pipeline_frames, source in round_runs * max(1, args.rounds):
            figures = run_soak(bag, f"{capture.width}x{capture.height}", run_model, mask, work, args,
                               pipeline_frames, source)
            if figures is None:
                return 1
            runs.append(figures)
            print_table(f"soak: {args.frames} frames at {args.rate_hz:g} Hz into the node ({figures['node']}), "
                        f"pipeline_frames {figures['pipeline_frames']} ({machine_line()})",
                        ["figure", "value"], [[k, v] for k, v in figures.items()])
        output = dict(runs[0]) if len(runs) == 1 else {"runs": runs}
        comparison = compare_modes(runs)
        if comparison:
            print_comparison("pipelining on vs off", comparison, ["pipeline_frames true", "false"],
                             f"output rate with pipelining: {comparison['output_rate_ratio']:.2f}x; median latency "
                             f"added: {comparison['e2e_p50_added_ms']:+.0f} ms")
            output["comparison"] = comparison
        against_before = compare_with_before(runs)
        if against_before:
            print_comparison(f"this node vs {against_before['before']}", against_before, ["now", "before"],
                             f"output rate against the earlier node: {against_before['output_rate_ratio']:.2f}x "
                             f"(issue 14: >= 1.3x)")
            output["against_before"] = against_before
        output["machine"] = machine_line()
        output["headline"] = soak_headline(runs, comparison, against_before)
        if args.json:
            Path(args.json).write_text(json.dumps(output, indent=2) + "\n")
        return 0
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
