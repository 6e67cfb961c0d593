"""Run every benchmark in turn (``make bench``); each prints its own table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# bench_soak.py replays >= 1000 frames into the node; run it on its own (see README).
BENCHMARKS = ("bench_geometry.py", "bench_postprocess.py", "bench_graspnet.py", "bench_pipeline.py", "bench_planar.py",
              "bench_targeting.py", "bench_cold_start.py", "bench_memory.py", "sim_pick.py")


def print_backends() -> None:
    """The format table's backends and whether they run here (what the figures below could use)."""
    sys.path.insert(0, str(HERE.parent))
    from graspnet_edge_ros.backends.registry import available_backends
    from graspnet_edge_ros.formats import FORMATS

    status = available_backends()
    print("backends (graspnet_edge_ros.formats):")
    for fmt in FORMATS:
        print(f"  {fmt.name:12s} {status[fmt.name].splitlines()[0][:100]}  [{fmt.describe()}]")


def main() -> int:
    print_backends()
    failed = []
    for name in BENCHMARKS:
        print(f"\n===== {name} =====", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
