"""The code, its tests, benchmarks, scripts and launch files need nothing newer than Python 3.10.

Python 3.10 is what ROS 2 Humble and the RDK X5's Ubuntu 22.04 run; the suite itself runs on
3.11 (Kilted/Jazzy wheels), so a 3.11+ feature would pass every other test here. vermin (pinned in
requirements*.txt) finds the minimum version of each construct, module, member and keyword.
"""
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET = "3.10"
VERMIN_ARGS = [f"-t={TARGET}-", "--no-tips", "--violations", "--eval-annotations"]


def checked_paths() -> list[Path]:
    scripts = sorted((REPO_ROOT / "scripts").rglob("*.py")) + sorted((REPO_ROOT / "scripts").glob("*.in"))
    launch = sorted((REPO_ROOT / "launch").glob("*.py"))
    assert scripts and launch
    return [REPO_ROOT / "graspnet_edge_ros", REPO_ROOT / "test", REPO_ROOT / "benchmarks",
            REPO_ROOT / "setup.py", *scripts, *launch]


def run_vermin(paths) -> subprocess.CompletedProcess:
    code = "import sys; from vermin import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *VERMIN_ARGS, *map(str, paths)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def test_nothing_needs_python_newer_than_3_10():
    done = run_vermin(checked_paths())
    assert done.returncode == 0, f"features newer than Python {TARGET}:\n{done.stdout}{done.stderr}"
    # the files were really analysed (a wrong path would also give exit code 0)
    assert "Analyzing" in done.stdout and "No files specified" not in done.stdout, done.stdout


def test_the_check_catches_newer_features(tmp_path):
    """What this check exists for; written so that Python 3.10's parser still reads it."""
    canary = tmp_path / "canary.py"
    canary.write_text(
        "import datetime\nimport itertools\nimport tomllib\nfrom enum import StrEnum\nfrom typing import Self\n\n\n"
        "class Box:\n    def me(self) -> Self:\n        return self\n\n\n"
        "def when():\n    return datetime.UTC, list(itertools.batched([1, 2, 3], 2)), StrEnum\n")
    done = run_vermin([canary])
    assert done.returncode == 1, done.stdout + done.stderr
    for feature in ("'tomllib' module", "'typing.Self' member", "'datetime.UTC' member",
                    "'itertools.batched' member", "'enum.StrEnum' member"):
        assert feature in done.stdout, (feature, done.stdout)


def test_the_cli_and_the_node_choose_one_openblas_thread_unless_the_user_did(tmp_path):
    """thread_pools: set before numpy loads in the CLI and node processes; a user's value wins."""
    import os
    import subprocess
    import sys

    script = ("import os, importlib, sys; importlib.import_module(sys.argv[1]); "
              "print(os.environ.get('OPENBLAS_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for module in ("graspnet_edge_ros.cli", "graspnet_edge_ros.thread_pools"):
        out = subprocess.run([sys.executable, "-c", script, module], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        expected = "1" if module.endswith("cli") else "None"  # importing the helper alone changes nothing
        assert out == [expected], (module, out)
    chosen = subprocess.run([sys.executable, "-c", script, "graspnet_edge_ros.cli"],
                            env={**env, "OPENBLAS_NUM_THREADS": "3"}, capture_output=True, text=True, check=True)
    assert chosen.stdout.split() == ["3"]
    late = subprocess.run([sys.executable, "-c", "import numpy; " + script, "graspnet_edge_ros.cli"], env=env,
                          capture_output=True, text=True, check=True)
    assert late.stdout.split() == ["None"]  # numpy already loaded: too late to matter, left alone


_NUMBA_PARALLEL_KERNEL = """
import numba, numpy as np
@numba.njit(parallel=True)
def total(values):
    s = 0.0
    for i in numba.prange(len(values)):
        s += values[i]
    return s
total(np.ones(64))
"""


def _openmp_spin_count(prelude: str, env: dict) -> int:
    """How long libgomp's idle workers spin after numba's parallel kernels, as libgomp itself prints it.

    (Its display says PASSIVE for its default policy too; the spin count tells them apart: 0 when
    passive, 300000 by default, ~3e10 when active.)
    """
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", prelude + _NUMBA_PARALLEL_KERNEL],
                          env={**env, "OMP_DISPLAY_ENV": "VERBOSE"}, capture_output=True, text=True, check=True)
    lines = [line for line in done.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    assert lines, f"no OpenMP display: numba is not on GNU libgomp here\n{done.stderr[-2000:]}"
    return int(lines[0].split("=", 1)[1].strip().strip("'"))


def test_numba_openmp_workers_sleep_after_their_kernels_in_the_cli_unless_the_user_chose():
    """thread_pools: libgomp's default (spinning) waits took the cores from the next ORT segment."""
    import ctypes.util
    import os

    if ctypes.util.find_library("gomp") is None:
        pytest.skip("no GNU libgomp: numba runs its own thread pool (workqueue/tbb) here")

    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_THREADING_LAYER")}
    env["NUMBA_THREADING_LAYER"] = "omp"
    assert _openmp_spin_count("import graspnet_edge_ros.cli\n", env) == 0
    assert _openmp_spin_count("import graspnet_edge_ros.cli\n", {**env, "OMP_WAIT_POLICY": "ACTIVE"}) > 300000
    # Without the CLI's choice libgomp spins, which is what made the pools collide.
    assert _openmp_spin_count("", env) > 0
    # An OpenMP runtime already loaded: too late to matter, the variable is left alone.
    late = ("import numba, numpy as np\n" + _NUMBA_PARALLEL_KERNEL +
            "import os, graspnet_edge_ros.thread_pools as t\n"
            "assert t.prefer_sleeping_thread_pools()['OMP_WAIT_POLICY'] is False\n"
            "assert 'OMP_WAIT_POLICY' not in os.environ\n")
    assert _openmp_spin_count(late, env) > 0
