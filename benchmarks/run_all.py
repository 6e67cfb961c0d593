"""Every benchmark in one run (``make bench``): a header, each benchmark's tables, then a summary.

Each benchmark prints its own tables (forward pass of torch reference / single ONNX / split
runtime with ratios and the split runtime per stage, the pipeline per stage, collision and NMS,
the geometry kernels, the planar networks, a short soak of the node with pipelining on and off)
and writes its headline figures as JSON (``--json``); the summary table at the end collects
them. About 7 min on this machine (most of it the torch reference).

    python benchmarks/run_all.py                  # make bench
    python benchmarks/run_all.py --full           # + the 4000-frame soak, pick success in
                                                  #   simulation and targeting (about 40 min more)
    python benchmarks/run_all.py --only bench_pipeline.py --json summary.json
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.common import machine_line, print_table  # noqa: E402

# (script, its arguments, what it measures). Order: model first, then the stages around it,
# then the node. bench_graspnet.py's forward table is where further variants (e.g. an int8
# split model) appear: every row it reports reaches the summary through its JSON.
BENCHMARKS = (
    ("bench_graspnet.py", [], "GraspNet forward: torch reference, single ONNX file, split runtime (+ per stage)"),
    ("bench_pipeline.py", [], "the whole pipeline per stage on the example frame"),
    ("bench_postprocess.py", [], "collision check and NMS against straightforward references"),
    ("bench_geometry.py", [], "numba geometry kernels against the torch ops"),
    ("bench_planar.py", [], "planar networks (GR-ConvNet, SGDN/AFFGA-Net)"),
    ("bench_cold_start.py", [], "the first frame of a fresh process vs a warm one"),
    ("bench_memory.py", [], "where the memory goes (imports, sessions, ONNX Runtime arenas)"),
    ("bench_soak.py", ["--frames", "300", "--pipeline", "compare"],
     "the node: 300 real 1280x720 frames at 30 Hz, pipelining on vs off, and the node before the speed work"),
)
# Long runs, only with --full.
FULL_BENCHMARKS = (
    ("bench_soak.py", ["--frames", "4000"], "the node: 4000-frame soak (memory, output rate)"),
    ("sim_pick.py", [], "pick success in simulation (50 scenes x 2 views x 3 parameter sets + GR-ConvNet)"),
    ("bench_targeting.py", ["--scenes", "8"], "grasps on one object: targeting settings"),
)
# The node of the commit before the speed and memory work (issue 14) runs beside this one in the
# soak (bench_soak.py --before), so "output rate against before" is a ratio of one run.
BEFORE_SPEED_WORK = "70b93da"
# Benchmarks without a --json option: their output is printed, their rows are not in the summary.
WITHOUT_JSON = {"sim_pick.py", "bench_targeting.py", "bench_cold_start.py", "bench_memory.py"}


def print_backends() -> None:
    """The format table's backends and whether they run here (what the figures below could use)."""
    sys.path.insert(0, str(HERE.parent))
    from graspnet_edge_ros.backends.registry import available_backends
    from graspnet_edge_ros.formats import FORMATS

    status = available_backends()
    print("backends (graspnet_edge_ros.formats):")
    for fmt in FORMATS:
        print(f"  {fmt.name:12s} {status[fmt.name].splitlines()[0][:100]}  [{fmt.describe()}]")


def before_checkout(commit: str, path: Path) -> Path | None:
    """A detached git worktree of ``commit`` at ``path`` (made once), or None with a note why not."""
    if path.exists():
        return path
    made = subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(path), commit],
                          capture_output=True, text=True)
    if made.returncode != 0:
        reason = (made.stderr.strip().splitlines() or ["git failed"])[-1]
        print(f"(no comparison with the node of {commit}: {reason}; a shallow clone lacks it: git fetch --unshallow)")
        return None
    return path


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for module in ("numpy", "numba", "onnxruntime", "torch"):
        try:
            parts.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            parts.append(f"{module} -")
    return ", ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also the long runs (4000-frame soak, simulation, "
                                                            "targeting)")
    parser.add_argument("--only", nargs="+", metavar="SCRIPT", help="run only these benchmark scripts")
    parser.add_argument("--json", help="write the summary (every benchmark's headline figures) here")
    parser.add_argument("--before", default=BEFORE_SPEED_WORK, metavar="COMMIT",
                        help=f"the soak also runs the node of this commit (a git worktree of it), default "
                             f"{BEFORE_SPEED_WORK} (before the speed and memory work); 'none' to skip")
    args = parser.parse_args(argv)

    plan = list(BENCHMARKS) + (list(FULL_BENCHMARKS) if args.full else [])
    if args.only:
        unknown = sorted(set(args.only) - {script for script, _, _ in plan})
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted({s for s, _, _ in plan})}")
        plan = [entry for entry in plan if entry[0] in args.only]
    print(f"# graspnet_edge_ros benchmarks\n\n{machine_line()}\n{versions()}\n"
          f"Timings are wall-clock medians on this machine; ratios are measured within one run.\n", flush=True)
    print_backends()

    failed, summary, durations = [], [], []
    with tempfile.TemporaryDirectory(prefix="graspnet_bench_") as tmp:
        for index, (script, extra, what) in enumerate(plan):
            print(f"\n\n## {' '.join([script, *extra])}\n\n{what}\n", flush=True)
            json_path = Path(tmp) / f"{index}_{Path(script).stem}.json"
            command = [sys.executable, str(HERE / script), *extra]
            if script == "bench_soak.py" and "compare" in extra and args.before != "none":  # not the long soak
                checkout = before_checkout(args.before, Path(tmp) / "before")
                command += ["--before", str(checkout)] if checkout else []
            if script not in WITHOUT_JSON:
                command += ["--json", str(json_path)]
            start = time.monotonic()
            code = subprocess.run(command).returncode
            durations.append([" ".join([script, *extra]), f"{time.monotonic() - start:.0f} s",
                              "ok" if code == 0 else f"failed (exit {code})"])
            if code != 0:
                failed.append(script)
            if json_path.is_file():
                headline = json.loads(json_path.read_text()).get("headline", {})
                summary.extend([script, label, value] for label, value in headline.items())

        if (Path(tmp) / "before").exists():
            subprocess.run(["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(Path(tmp) / "before")],
                           capture_output=True)
    print(f"\n\n## Summary ({machine_line()})")
    print_table("Headline figures", ["benchmark", "figure", "value"], summary or [["-", "no figures", "-"]])
    print_table("Runs", ["benchmark", "wall time", "result"], durations)
    if not args.full:
        print("\nLong runs (not part of make bench): python benchmarks/bench_soak.py --frames 4000, "
              "python benchmarks/sim_pick.py, python benchmarks/bench_targeting.py --scenes 8 "
              "(or python benchmarks/run_all.py --full).")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_line(), "versions": versions(),
                                               "summary": [dict(zip(("benchmark", "figure", "value"), row))
                                                           for row in summary],
                                               "failed": failed}, indent=2) + "\n")
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
