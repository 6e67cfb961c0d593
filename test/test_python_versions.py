"""The code, its tests, benchmarks, scripts and launch files need nothing newer than Python 3.10.

Python 3.10 is what ROS 2 Humble and the RDK X5's Ubuntu 22.04 run; the suite itself runs on
3.11 (Kilted/Jazzy wheels), so a 3.11+ feature would pass every other test here. vermin (pinned in
requirements*.txt) finds the minimum version of each construct, module, member and keyword.
"""
import subprocess
import sys
from pathlib import Path

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
    """blas_threads: set before numpy loads in the CLI and node processes; a user's value wins."""
    import os
    import subprocess
    import sys

    script = ("import os, importlib, sys; importlib.import_module(sys.argv[1]); "
              "print(os.environ.get('OPENBLAS_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for module in ("graspnet_edge_ros.cli", "graspnet_edge_ros.blas_threads"):
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
