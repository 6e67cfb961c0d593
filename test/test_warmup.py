"""`graspnet-edge warmup` fills numba's on-disk cache so that a fresh process compiles nothing.

Each step runs in its own process with an empty NUMBA_CACHE_DIR, as on a fresh install: warmup
must compile, and a later process that detects grasps on the real example frame (masked,
unmasked with the automatic workspace, and a targeted object) must load every kernel from the
cache (numba's per-dispatcher cache_misses stay 0).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DETECT_AND_COUNT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from graspnet_edge_ros.camera import CameraIntrinsics
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.files import read_color, read_depth, read_intrinsics
    from graspnet_edge_ros.pipeline import GraspDetector
    from graspnet_edge_ros.warmup import kernel_stats

    data, model = sys.argv[1], sys.argv[2]
    color = read_color(f"{data}/color.png")
    depth, encoding = read_depth(f"{data}/depth.png")
    intrinsics, scale = read_intrinsics(depth.shape, None, f"{data}/meta.mat")
    statuses = []
    for mask in (f"{data}/workspace_mask.png", ""):
        detector = GraspDetector(DetectorConfig.from_flat(model_path=model, workspace_mask_path=mask,
                                                          depth_scale=scale, sampling_seed=0, num_threads=2))
        statuses.append(detector.detect(color, depth, encoding, intrinsics).status)
    labels = np.zeros(depth.shape, np.int32)
    labels[300:420, 560:700] = 3
    targeted = GraspDetector(DetectorConfig.from_flat(model_path=model, depth_scale=scale, sampling_seed=0,
                                                      num_threads=2, target_object_ids=(3,), target_context_m=0.1))
    statuses.append(targeted.detect(color, depth, encoding, intrinsics, object_labels=labels).status)
    print(json.dumps({"statuses": statuses, **kernel_stats().__dict__}))
""")


def _run(args, cache_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """An empty numba cache directory after one `graspnet-edge warmup`, and what warmup printed."""
    cache = tmp_path_factory.mktemp("numba_cache")
    warm = _run(["-m", "graspnet_edge_ros.cli", "warmup"], cache)
    assert warm.returncode == 0, warm.stderr
    return cache, warm.stdout


def test_warmup_compiles_into_an_empty_cache(warm_cache):
    cache, output = warm_cache
    first_line = output.splitlines()[0]
    assert " compiled, 0 loaded from the cache" in first_line and ": 0 compiled" not in first_line, first_line
    assert any(cache.rglob("*.nbi")), "warmup wrote no numba index files"
    again = _run(["-m", "graspnet_edge_ros.cli", "warmup"], cache)
    assert again.returncode == 0, again.stderr
    assert ": 0 compiled," in again.stdout.splitlines()[0], again.stdout


def test_after_warmup_a_fresh_process_compiles_nothing(warm_cache, split_model_dir, shared_dir):
    detect = _run(["-c", DETECT_AND_COUNT, str(shared_dir / "data" / "graspnet_example"), str(split_model_dir)],
                  warm_cache[0])
    assert detect.returncode == 0, detect.stderr
    stats = json.loads(detect.stdout.strip().splitlines()[-1])
    assert stats["statuses"][:2] == ["ok", "ok"] and stats["statuses"][2] in ("ok", "no_grasp"), stats
    assert stats["signatures"] > 0 and stats["cache_misses"] == 0, stats
    assert stats["cache_hits"] == stats["signatures"], stats


def test_warmup_with_a_model_runs_a_synthetic_frame(warm_cache, split_model_dir):
    result = _run(["-m", "graspnet_edge_ros.cli", "warmup", "--model", str(split_model_dir), "--threads", "2"],
                  warm_cache[0])
    assert result.returncode == 0, result.stderr
    assert "model graspnet:" in result.stdout and "one synthetic frame" in result.stdout, result.stdout


def test_warmup_with_a_missing_model_is_one_line(tmp_path):
    result = _run(["-m", "graspnet_edge_ros.cli", "warmup", "--model", str(tmp_path / "nope")], tmp_path / "cache")
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("\n") == 1 and "model not found" in result.stderr, result.stderr


def test_warmup_rejects_negative_threads(tmp_path):
    result = _run(["-m", "graspnet_edge_ros.cli", "warmup", "--threads", "-1"], tmp_path / "cache")
    assert result.returncode == 2 and "--threads" in result.stderr, result.stderr


def test_set_up_left_the_install_space_compiled():
    """scripts/setup_env.sh ran warmup for the install space: what the node imports loads from the cache."""
    from conftest import install_space

    packages = sorted(install_space().glob(f"graspnet_edge_ros/lib/python3*/site-packages"))
    if not packages or not (packages[0] / "graspnet_edge_ros" / "warmup.py").is_file():
        pytest.skip("no current install space: run scripts/setup_env.sh")
    code = ("import json, graspnet_edge_ros.warmup as w; assert w.__file__.startswith(%r), w.__file__; "
            "print(json.dumps(w.load_kernels().__dict__))" % str(packages[0]))
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_CACHE_DIR"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                            env={**env, "PYTHONPATH": str(packages[0])}, cwd=packages[0])
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["signatures"] > 0 and stats["cache_misses"] == 0, stats
