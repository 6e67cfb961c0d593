#!/usr/bin/env python3
"""Check that the torch-free robot runtime gives the same grasps here as on the reference machine.

Runs on x86_64 (``--write-reference``) and inside the arm64 root under qemu (``--reference``):

1. the numba geometry kernels (FPS, ball query scan/grid, cylinder query scan/grid, cylinder
   group, three-NN, interpolation) against the brute-force numpy references of
   ``test/reference_ops.py`` on seeded random clouds and on the example cloud;
2. ``GraspDetector`` (split ONNX model through onnxruntime, seeded sampling, support plane,
   decode, filters, collision, NMS, poses) on the example capture, with everything it produced
   (sampled indices, FPS seeds, raw outputs, decoded grasps, published grasps and TCP poses)
   compared against the reference written by the same script on the other machine.

Each check prints ``PASS name: detail`` or ``FAIL name: detail``; the exit code is 1 when any
check failed, 2 for a usage error. Only library APIs are called: nothing of the pipeline is
re-implemented here.

    python scripts/arm64/runtime_check.py --model graspnet_split/ --example ../shared/data/graspnet_example \
        --write-reference reference_x86_64.npz
    python scripts/arm64/runtime_check.py --model graspnet_split/ --example ... --reference reference_x86_64.npz
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Cross-machine tolerances. Discrete results (sampled indices, FPS seeds, top views, which seeds are
# objects, counts, the number and order of grasps) must be equal. Float results come from the same
# wheels' x86 (AVX2/AVX-512) and arm64 (NEON) kernels, whose summation orders differ: onnxruntime's
# MLAS convolutions give ~1e-6 relative differences that grow through the 7 segments; the limits
# below are ~100x what a run showed (README, "aarch64 under emulation") and far below what a robot sees
# (0.1 mm, 0.01 deg).
TOLERANCES = {
    "raw_atol": 1e-3,          # raw network outputs (logits, scores, widths): absolute ...
    "raw_rtol": 1e-3,          # ... and relative
    "xyz_atol": 1e-6,          # point coordinates that are copies of the input (m)
    "score_atol": 1e-3,        # grasp score
    "width_atol": 1e-4,        # jaw width, m
    "translation_atol": 1e-4,  # grasp point / TCP / pre-grasp positions, m
    "rotation_atol": 2e-4,     # rotation matrix entries (~0.01 deg)
    "plane_atol": 1e-4,        # support-plane coefficients (unit normal, offset in m)
}
# Raw outputs that hold indices or copies of the input: compared exactly / with xyz_atol.
EXACT_RAW = ("fp2_inds", "grasp_top_view_inds")
XYZ_RAW = ("point_clouds", "fp2_xyz", "grasp_top_view_xyz")
SEED = 0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}" + (f": {self.detail}" if self.detail else "")


# ------------------------------------------------------------------------------------- environment
def environment() -> dict:
    import numba
    import onnxruntime
    import scipy

    return {"machine": platform.machine(), "python": platform.python_version(),
            "platform": platform.platform(), "numpy": np.__version__, "scipy": scipy.__version__,
            "numba": numba.__version__, "onnxruntime": onnxruntime.__version__,
            "torch_imported": "torch" in sys.modules}


# ----------------------------------------------------------------------------------------- kernels
def _random_cloud(rng, n: int, scale: float = 1.0) -> np.ndarray:
    cloud = np.column_stack([rng.uniform(-0.3, 0.3, n), rng.uniform(-0.2, 0.2, n),
                             rng.uniform(0.3, 0.9, n)]).astype(np.float32)
    return cloud * np.float32(scale)


def _random_frames(rng, count: int) -> np.ndarray:
    """(S, 3, 3) float32 orthonormal gripper frames, columns [approach, y0, approach x y0]."""
    a = rng.normal(size=(count, 3))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    y0 = np.column_stack([-a[:, 1], a[:, 0], np.zeros(count)])
    y0 /= np.linalg.norm(y0, axis=1, keepdims=True)
    return np.stack([a, y0, np.cross(a, y0)], axis=2).astype(np.float32)


def _equal(name: str, got, expected) -> Check:
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return Check(name, False, f"shape {got.shape} != {expected.shape}")
    bad = int(np.count_nonzero(got != expected))
    return Check(name, bad == 0, f"{expected.size} values identical" if bad == 0 else f"{bad} of {expected.size} differ")


def _close(name: str, got, expected, atol: float, rtol: float = 0.0) -> Check:
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        return Check(name, False, f"shape {got.shape} != {expected.shape}")
    nan_got, nan_expected = np.isnan(got), np.isnan(expected)
    if (nan_got != nan_expected).any():
        return Check(name, False, f"NaN pattern differs in {int((nan_got != nan_expected).sum())} values")
    finite = ~nan_expected
    diff = np.abs(got[finite] - expected[finite])
    limit = atol + rtol * np.abs(expected[finite])
    worst = float(diff.max()) if diff.size else 0.0
    bad = int(np.count_nonzero(diff > limit))
    detail = f"max |diff| {worst:.2e} (atol {atol:g}" + (f", rtol {rtol:g}" if rtol else "") + ")"
    if bad:
        detail += f", {bad} of {diff.size} out of tolerance"
    return Check(name, bad == 0, detail)


def kernel_checks(example_points: np.ndarray | None = None, seed: int = SEED) -> list[Check]:
    """The numba kernels against test/reference_ops.py (same machine, exact except float groupings)."""
    sys.path.insert(0, str(REPO / "test"))
    import reference_ops as ref

    from graspnet_edge_ros.geometry import native

    rng = np.random.default_rng(seed)
    checks = []
    cloud = _random_cloud(rng, 3000)
    cloud[:40] = rng.uniform(-0.015, 0.015, (40, 3)).astype(np.float32)  # inside FPS's skip ball
    checks.append(_equal("kernel fps (random, 3000 -> 256)",
                         native.furthest_point_sample(cloud, 256), ref.furthest_point_sample(cloud, 256)))
    if example_points is not None:
        checks.append(_equal("kernel fps (example cloud, 20000 -> 1024)",
                             native.furthest_point_sample(example_points, 1024),
                             ref.furthest_point_sample(example_points, 1024)))
    centers = np.concatenate([cloud[rng.choice(len(cloud), 120)], cloud[:8] + np.float32(5.0)])
    expected = ref.ball_query(cloud, centers, 0.04, 32)
    for method in ("scan", "grid"):
        checks.append(_equal(f"kernel ball_query {method}", native.ball_query(cloud, centers, 0.04, 32, method=method),
                             expected))
    small = cloud * np.float32(0.3)
    seeds = np.concatenate([small[rng.choice(len(small), 60)], small[:4] + np.float32(5.0)])
    frames = _random_frames(rng, len(seeds))
    hmax = [0.01, 0.02, 0.03, 0.04]
    expected = ref.cylinder_query(small, seeds, frames, 0.05, -0.02, hmax, 16)
    for method in ("scan", "grid"):
        checks.append(_equal(f"kernel cylinder_query {method}",
                             native.cylinder_query(small, seeds, frames, 0.05, -0.02, hmax, 16, method=method),
                             expected))
    checks.append(_close("kernel cylinder_group", native.cylinder_group(small, seeds, frames, expected),
                         ref.cylinder_group(small, seeds, frames, expected), atol=1e-6))
    unknown, known = cloud[:300], cloud[1000:1100]
    dist, idx = native.three_nn(unknown, known)
    ref_dist, ref_idx = ref.three_nn(unknown, known)
    checks.append(_equal("kernel three_nn indices", idx, ref_idx))
    checks.append(_close("kernel three_nn distances", dist, ref_dist, atol=1e-6))
    features = rng.normal(size=(16, len(known))).astype(np.float32)
    weights = native.interpolation_weights(dist)
    checks.append(_close("kernel interpolation_weights", weights, ref.interpolation_weights(ref_dist), atol=1e-6))
    checks.append(_close("kernel three_interpolate", native.three_interpolate(features, idx, weights),
                         ref.three_interpolate(features, ref_idx, ref.interpolation_weights(ref_dist)), atol=1e-5))
    return checks


# ------------------------------------------------------------------------------------ the pipeline
class _RecordingRunner:
    """The library's model runner, keeping the raw outputs of the last call (nothing else changes)."""

    def __init__(self, runner):
        self._runner = runner
        self.last_raw = None

    def __call__(self, points, skip_background_seeds: bool = True, seed_gate=None):
        self.last_raw = self._runner(points, skip_background_seeds, seed_gate)
        return self.last_raw

    def __getattr__(self, name):
        return getattr(self._runner, name)


def load_example(example_dir: Path) -> dict:
    """The capture read with the CLI's own readers (colour, 16-bit depth, meta.mat intrinsics)."""
    from graspnet_edge_ros.files import read_color, read_depth, read_intrinsics

    depth, encoding = read_depth(example_dir / "depth.png")
    intrinsics, depth_scale = read_intrinsics(depth.shape, camera_info=example_dir / "meta.mat")
    return {"color": read_color(example_dir / "color.png"), "depth": depth, "encoding": encoding,
            "intrinsics": intrinsics, "depth_scale": depth_scale,
            "workspace_mask": example_dir / "workspace_mask.png"}


def run_example(model_dir: Path, example_dir: Path, seed: int = SEED, threads: int = 0) -> dict:
    """Everything GraspDetector produced on the example capture, as arrays (the comparison's input)."""
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.pipeline import GraspDetector, load_model_runner
    from graspnet_edge_ros.postprocess.decode import DecodeConfig, decode_grasps

    scene = load_example(example_dir)
    config = DetectorConfig.from_flat(model_path=str(model_dir), backend="onnxruntime", num_threads=threads,
                            sampling_seed=seed, depth_scale=scene["depth_scale"],
                            workspace_mask_path=str(scene["workspace_mask"]))
    runner = _RecordingRunner(load_model_runner(config))
    detector = GraspDetector(config, runner=runner)
    start = time.perf_counter()
    result = detector.detect(scene["color"], scene["depth"], scene["encoding"], scene["intrinsics"])
    seconds = time.perf_counter() - start
    raw = runner.last_raw
    obs = {"sampled_indices": np.asarray(result.cloud.sampled_indices, np.int64)}
    if raw is not None:
        obs.update({f"raw/{name}": np.asarray(value) for name, value in raw.items()})
        obs["decoded"] = decode_grasps(raw, DecodeConfig(config.decode.decode_width_clamp_m,
                                                         config.decode.grasp_max_tolerance_m)).array
    obs["grasps"] = result.grasps.array
    if result.poses is not None:
        poses = result.poses
        obs.update({"pose_positions": poses.positions, "pose_quaternions": poses.quaternions,
                    "pose_approach": poses.approach, "pose_pre_grasp_positions": poses.pre_grasp_positions})
    plane = result.support_plane
    obs["meta"] = {"status": result.status, "reason": result.reason, "counts": dict(result.counts),
                   "model_id": result.model_id, "seed": seed, "detect_seconds": round(seconds, 2),
                   "support_plane": None if plane is None else [float(v) for v in plane.coefficients],
                   "environment": environment()}
    return obs


def save_observations(path: Path, obs: dict) -> None:
    arrays = {k: v for k, v in obs.items() if k != "meta"}
    np.savez_compressed(path, meta=np.array(json.dumps(obs["meta"])), **arrays)


def load_observations(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        obs = {k: data[k] for k in data.files if k != "meta"}
        obs["meta"] = json.loads(str(data["meta"]))
    return obs


# -------------------------------------------------------------------------------------- comparison
def _quaternion_close(name: str, got, expected, atol: float) -> Check:
    """Unit quaternions q and -q are one rotation: compare 1 - |<q, q'>| per grasp."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        return Check(name, False, f"shape {got.shape} != {expected.shape}")
    gap = 1.0 - np.abs(np.sum(got * expected, axis=1)) if len(got) else np.zeros(0)
    angle = 2.0 * np.degrees(np.arccos(np.clip(1.0 - gap, -1.0, 1.0))) if len(got) else np.zeros(0)
    worst = float(angle.max()) if angle.size else 0.0
    limit_deg = np.degrees(atol) * 2.0
    bad = int(np.count_nonzero(angle > limit_deg))
    return Check(name, bad == 0, f"max rotation gap {worst:.2e} deg (limit {limit_deg:.2e})"
                 + (f", {bad} out of tolerance" if bad else ""))


def _grasp_rows(prefix: str, got: np.ndarray, expected: np.ndarray, tol: dict) -> list[Check]:
    """Rank-wise comparison of two GraspGroup arrays (N, 17): count, score, width, R, t, object id."""
    if got.shape != expected.shape:
        return [Check(f"{prefix} count", False, f"{len(got)} grasps here, {len(expected)} in the reference")]
    checks = [Check(f"{prefix} count", True, f"{len(got)} grasps")]
    if not len(got):
        return checks
    checks.append(_close(f"{prefix} scores", got[:, 0], expected[:, 0], tol["score_atol"]))
    checks.append(_close(f"{prefix} widths", got[:, 1], expected[:, 1], tol["width_atol"]))
    checks.append(_close(f"{prefix} height/depth", got[:, 2:4], expected[:, 2:4], 1e-6))
    checks.append(_close(f"{prefix} rotations", got[:, 4:13], expected[:, 4:13], tol["rotation_atol"]))
    checks.append(_close(f"{prefix} translations", got[:, 13:16], expected[:, 13:16], tol["translation_atol"]))
    checks.append(_equal(f"{prefix} object ids", got[:, 16], expected[:, 16]))
    return checks


def compare(observed: dict, reference: dict, tol: dict | None = None) -> list[Check]:
    """Every check of this machine's run against the reference run (see TOLERANCES)."""
    tol = dict(TOLERANCES, **(tol or {}))
    meta, ref_meta = observed["meta"], reference["meta"]
    checks = [Check("status", meta["status"] == ref_meta["status"],
                    f"{meta['status']!r} (reference {ref_meta['status']!r})"),
              Check("stage counts", meta["counts"] == ref_meta["counts"],
                    json.dumps(meta["counts"]) if meta["counts"] == ref_meta["counts"]
                    else f"{json.dumps(meta['counts'])} != reference {json.dumps(ref_meta['counts'])}")]
    checks.append(_equal("sampled point indices (seeded sampling)", observed["sampled_indices"],
                         reference["sampled_indices"]))
    plane, ref_plane = meta["support_plane"], ref_meta["support_plane"]
    if plane is None or ref_plane is None:
        checks.append(Check("support plane", plane is None and ref_plane is None, f"{plane} vs {ref_plane}"))
    else:
        checks.append(_close("support plane", plane, ref_plane, tol["plane_atol"]))
    raw_names = sorted(k for k in reference if k.startswith("raw/"))
    missing = [k for k in raw_names if k not in observed]
    if missing or not raw_names:
        checks.append(Check("raw outputs present", False, f"missing {missing}" if missing else "no raw outputs"))
    for key in raw_names:
        if key in missing:
            continue
        name = key[len("raw/"):]
        if name in EXACT_RAW:
            label = "FPS seed indices (raw fp2_inds)" if name == "fp2_inds" else f"raw {name}"
            checks.append(_equal(label, observed[key], reference[key]))
        elif name in XYZ_RAW:
            checks.append(_close(f"raw {name}", observed[key], reference[key], tol["xyz_atol"]))
        else:
            checks.append(_close(f"raw {name}", observed[key], reference[key], tol["raw_atol"], tol["raw_rtol"]))
    if "decoded" in reference:
        checks += _grasp_rows("decoded", observed.get("decoded", np.zeros((0, 17))), reference["decoded"], tol)
    checks += _grasp_rows("published", observed["grasps"], reference["grasps"], tol)
    if "pose_positions" in reference and len(observed["grasps"]) == len(reference["grasps"]):
        if "pose_positions" not in observed:
            checks.append(Check("published poses present", False, "no TCP poses here"))
        else:
            checks.append(_close("published TCP positions", observed["pose_positions"],
                                 reference["pose_positions"], tol["translation_atol"]))
            checks.append(_close("published pre-grasp positions", observed["pose_pre_grasp_positions"],
                                 reference["pose_pre_grasp_positions"], tol["translation_atol"]))
            checks.append(_close("published approach vectors", observed["pose_approach"],
                                 reference["pose_approach"], tol["rotation_atol"]))
            checks.append(_quaternion_close("published TCP orientations", observed["pose_quaternions"],
                                            reference["pose_quaternions"], tol["rotation_atol"]))
    return checks


# -------------------------------------------------------------------------------------------- main
def report(checks: list[Check]) -> int:
    for check in checks:
        print(check.line(), flush=True)
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="split model directory (graspnet-edge export --split)")
    parser.add_argument("--example", required=True, type=Path, help="directory with color.png, depth.png, meta.mat, "
                        "workspace_mask.png")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write-reference", type=Path, help="write this machine's results here (.npz)")
    mode.add_argument("--reference", type=Path, help="compare against this reference (.npz)")
    parser.add_argument("--output", type=Path, help="also save this machine's results here (.npz)")
    parser.add_argument("--seed", type=int, default=SEED, help="sampling seed (default 0)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    parser.add_argument("--skip-kernels", action="store_true", help="only the pipeline comparison")
    args = parser.parse_args(argv)
    if args.reference is not None and not args.reference.is_file():
        print(f"runtime_check: reference not found: {args.reference}", file=sys.stderr)
        return 2

    env = environment()
    print(f"runtime_check on {env['machine']}: Python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, "
          f"numba {env['numba']}, onnxruntime {env['onnxruntime']} ({env['platform']})", flush=True)
    start = time.perf_counter()
    obs = run_example(args.model, args.example, args.seed, args.threads)
    meta = obs["meta"]
    print(f"example: status {meta['status']}, {len(obs['grasps'])} grasps, detect {meta['detect_seconds']} s "
          "(first call: includes numba compilation)", flush=True)
    checks = [Check("torch not imported (torch-free runtime)", not sys.modules.get("torch"),
                    "torch was imported" if sys.modules.get("torch") else "")]
    if not args.skip_kernels:
        example_points = obs["raw/point_clouds"][0] if "raw/point_clouds" in obs else None
        checks += kernel_checks(example_points, args.seed)
    if args.output:
        save_observations(args.output, obs)
    if args.write_reference:
        save_observations(args.write_reference, obs)
        checks.append(Check("reference written", meta["status"] == "ok" and len(obs["grasps"]) > 0,
                            f"{args.write_reference} ({len(obs['grasps'])} grasps, status {meta['status']})"))
    else:
        reference = load_observations(args.reference)
        ref_env = reference["meta"]["environment"]
        print(f"reference from {ref_env['machine']}: Python {ref_env['python']}, numpy {ref_env['numpy']}, "
              f"numba {ref_env['numba']}, onnxruntime {ref_env['onnxruntime']}", flush=True)
        checks += compare(obs, reference)
    code = report(checks)
    print(f"runtime_check took {time.perf_counter() - start:.1f} s on {env['machine']}")
    return code


if __name__ == "__main__":
    sys.exit(main())
