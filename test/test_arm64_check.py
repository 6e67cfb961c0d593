"""scripts/arm64/runtime_check.py (the check behind `make test-arm64`) on this machine.

`make test-arm64` runs the check under qemu against a reference written on x86_64; that is too slow
for `make test`. Here its comparison runs against itself (two runs of the example must agree
exactly) and against references perturbed in each way a wrong port could differ, each of which
must fail the right check, while differences inside the tolerances must pass.
"""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "arm64" / "runtime_check.py"


@pytest.fixture(scope="module")
def rc():
    spec = importlib.util.spec_from_file_location("arm64_runtime_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example_dir(shared_dir) -> Path:
    return shared_dir / "data" / "graspnet_example"


@pytest.fixture(scope="module")
def reference(rc, split_model_dir, example_dir, tmp_path_factory):
    """One run of the example, saved and loaded back like the x86 reference of `make test-arm64`."""
    path = tmp_path_factory.mktemp("arm64") / "reference.npz"
    rc.save_observations(path, rc.run_example(split_model_dir, example_dir))
    return rc.load_observations(path)


def failed(checks) -> list[str]:
    return [c.name for c in checks if not c.ok]


def copy(obs: dict) -> dict:
    out = {k: np.array(v, copy=True) for k, v in obs.items() if k != "meta"}
    out["meta"] = {**obs["meta"], "counts": dict(obs["meta"]["counts"])}
    return out


def test_reference_holds_every_stage(reference):
    assert reference["meta"]["status"] == "ok"
    assert len(reference["grasps"]) > 0
    assert len(reference["decoded"]) >= len(reference["grasps"])
    assert reference["sampled_indices"].shape == (20000,)
    for name in ("fp2_inds", "objectness_score", "grasp_score_pred", "grasp_top_view_inds", "point_clouds"):
        assert f"raw/{name}" in reference
    assert reference["pose_quaternions"].shape == (len(reference["grasps"]), 4)
    assert reference["meta"]["environment"]["machine"]


def test_second_run_matches_the_reference_exactly(rc, reference, split_model_dir, example_dir):
    checks = rc.compare(rc.run_example(split_model_dir, example_dir), reference)
    assert failed(checks) == []
    names = [c.name for c in checks]
    for expected in ("sampled point indices (seeded sampling)", "FPS seed indices (raw fp2_inds)",
                     "raw grasp_score_pred", "decoded count", "published rotations", "published TCP orientations"):
        assert expected in names


def test_another_seed_is_caught(rc, reference, split_model_dir, example_dir):
    checks = rc.compare(rc.run_example(split_model_dir, example_dir, seed=1), reference)
    assert "sampled point indices (seeded sampling)" in failed(checks)
    assert "FPS seed indices (raw fp2_inds)" in failed(checks)


def _finite_index(array):
    return tuple(np.argwhere(np.isfinite(array))[0])


def perturb_sampled(obs):
    obs["sampled_indices"][[0, 1]] = obs["sampled_indices"][[1, 0]]


def perturb_fps(obs):
    obs["raw/fp2_inds"][0, 5] += 1


def perturb_raw_score(obs, amount):
    array = obs["raw/grasp_score_pred"]
    array[_finite_index(array)] += amount


def perturb_nan_pattern(obs):
    array = obs["raw/grasp_width_pred"]
    array[_finite_index(array)] = np.nan


def perturb_top_view(obs):
    obs["raw/grasp_top_view_inds"][0, 3] += 1


def perturb_translation(obs):
    obs["grasps"][0, 13] += 1e-3


def perturb_swap_ranks(obs):
    obs["grasps"][[0, 1]] = obs["grasps"][[1, 0]]


def perturb_drop_grasp(obs):
    obs["grasps"] = obs["grasps"][:-1]


def perturb_quaternion(obs):
    q = obs["pose_quaternions"][0]
    half = np.radians(1.0) / 2  # turn by 1 degree about z
    turn = np.array([0.0, 0.0, np.sin(half), np.cos(half)])
    x1, y1, z1, w1 = turn
    x2, y2, z2, w2 = q
    obs["pose_quaternions"][0] = [w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2, w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                                  w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2, w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2]


def perturb_status(obs):
    obs["meta"]["status"] = "no_grasp"


def perturb_counts(obs):
    obs["meta"]["counts"]["rejected_collision"] = obs["meta"]["counts"].get("rejected_collision", 0) + 1


def perturb_plane(obs):
    obs["meta"]["support_plane"] = [v + 1e-3 for v in obs["meta"]["support_plane"]]


@pytest.mark.parametrize("perturb,failing", [
    (perturb_sampled, "sampled point indices (seeded sampling)"),
    (perturb_fps, "FPS seed indices (raw fp2_inds)"),
    (lambda obs: perturb_raw_score(obs, 0.05), "raw grasp_score_pred"),
    (perturb_nan_pattern, "raw grasp_width_pred"),
    (perturb_top_view, "raw grasp_top_view_inds"),
    (perturb_translation, "published translations"),
    (perturb_swap_ranks, "published scores"),
    (perturb_drop_grasp, "published count"),
    (perturb_quaternion, "published TCP orientations"),
    (perturb_status, "status"),
    (perturb_counts, "stage counts"),
    (perturb_plane, "support plane"),
])
def test_perturbed_reference_fails_the_right_check(rc, reference, perturb, failing):
    perturbed = copy(reference)
    perturb(perturbed)
    assert failed(rc.compare(reference, perturbed)) != []
    assert failing in failed(rc.compare(reference, perturbed))


def test_differences_inside_the_tolerances_pass(rc, reference):
    """What arm64's other float summation order may change: small float noise, the quaternion's sign."""
    tol = rc.TOLERANCES
    noisy = copy(reference)
    rng = np.random.default_rng(0)
    network_outputs = [k for k in noisy if k.startswith("raw/") and noisy[k].dtype.kind == "f"
                       and k[len("raw/"):] not in rc.XYZ_RAW]
    assert "raw/grasp_score_pred" in network_outputs and "raw/objectness_score" in network_outputs
    for key in network_outputs:
        noisy[key] = noisy[key] + (rng.uniform(-0.5, 0.5, noisy[key].shape) * tol["raw_atol"]).astype(noisy[key].dtype)
    noisy["grasps"][:, 13:16] += 0.5 * tol["translation_atol"]
    noisy["pose_quaternions"][0] *= -1
    assert failed(rc.compare(noisy, reference)) == []


def test_kernel_checks_pass_here_and_catch_a_wrong_kernel(rc, monkeypatch):
    checks = rc.kernel_checks()
    assert len(checks) == 10 and failed(checks) == []  # without the example cloud: 10 kernel checks
    from graspnet_edge_ros.geometry import native

    real = native.ball_query

    def off_by_one(*args, **kwargs):
        idx = real(*args, **kwargs).copy()
        idx[0, -1] += 1
        return idx
    monkeypatch.setattr(native, "ball_query", off_by_one)
    assert failed(rc.kernel_checks()) == ["kernel ball_query scan", "kernel ball_query grid"]


def test_main_exit_codes(rc, reference, split_model_dir, example_dir, tmp_path, capsys):
    bad = copy(reference)
    perturb_translation(bad)
    rc.save_observations(tmp_path / "bad.npz", bad)
    args = ["--model", str(split_model_dir), "--example", str(example_dir), "--skip-kernels"]
    assert rc.main(args + ["--reference", str(tmp_path / "bad.npz")]) == 1
    out = capsys.readouterr().out
    assert "FAIL published translations" in out and "PASS published rotations" in out
    assert rc.main(args + ["--reference", str(tmp_path / "missing.npz")]) == 2


# -- the scripts around it (no root, no emulation needed) -------------------------------------------

RUNTIME_PACKAGES = {"numpy", "scipy", "numba", "onnxruntime", "pillow", "pyyaml"}


def wheel_set(name: str) -> dict[str, str]:
    import os
    import subprocess

    out = subprocess.run([str(REPO / "scripts" / "arm64" / "setup_root.sh"), "--print-wheels"], check=True,
                         capture_output=True, text=True, env={**os.environ, "ARM64_WHEELS": name}).stdout
    return dict(line.split("==") for line in out.split())


def test_pinned_arm64_wheels_are_requirements_txt_versions_of_the_whole_runtime():
    pinned = wheel_set("pinned")
    assert set(pinned) == RUNTIME_PACKAGES  # a renamed or dropped pin would leave the root without it
    requirements = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().split("\n")
                        if "==" in line and not line.startswith("#"))
    assert all(requirements[name] == version for name, version in pinned.items())


def test_x5_wheel_set_covers_the_runtime_and_differs_where_python_3_10_lags():
    x5, pinned = wheel_set("x5"), wheel_set("pinned")
    assert set(x5) == RUNTIME_PACKAGES
    assert {name for name in x5 if x5[name] != pinned[name]} == {"numpy", "scipy", "onnxruntime"}


def test_arm64_scripts_refuse_bad_arguments_before_touching_anything(tmp_path):
    import os
    import subprocess

    env = {**os.environ, "ARM64_WHEELS": "bogus"}
    for script in ("setup_root.sh", "test.sh"):
        done = subprocess.run([str(REPO / "scripts" / "arm64" / script)], env=env, capture_output=True, text=True)
        assert done.returncode == 2 and "pinned or x5" in done.stderr
    done = subprocess.run([str(REPO / "scripts" / "arm64" / "run.sh"), "--root", str(tmp_path), "--bind",
                           f"{tmp_path / 'missing'}:/x", "--", "true"], capture_output=True, text=True)
    assert done.returncode == 2 and "EXISTING_HOST_DIR" in done.stderr
    done = subprocess.run([str(REPO / "scripts" / "arm64" / "run.sh"), "--root", str(tmp_path), "--", "true"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "no arm64 root" in done.stderr
