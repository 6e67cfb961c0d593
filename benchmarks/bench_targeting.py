"""How many grasps land on a target object, with and without denser sampling on it.

Rendered pybullet tabletop scenes (``graspnet_edge_ros.sim``, oblique views with instance labels);
for every object of every scene, GraspNet (split ONNX runtime) is asked for grasps on that object
alone under several sampling settings. Prints the mean number of decoded candidates and of
published grasps on the target per (scene, object), and how many targets got at least one grasp.

    python benchmarks/bench_targeting.py [--scenes 6] [--model DIR|.pth]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from benchmarks.common import machine_line, shared_dir  # noqa: E402
import numpy as np  # noqa: E402  (after benchmarks.common: one BLAS thread, as in the CLI/node)
from graspnet_edge_ros.config import DetectorConfig  # noqa: E402
from graspnet_edge_ros.pipeline import GraspDetector  # noqa: E402

SETTINGS = (
    ("no targeting: grasps on the object among all", {}),
    ("target, uniform sampling, whole scene", {"target_sampling_fraction": 0.0, "target_context_m": 0.0}),
    ("target, 50 % of the input on it, whole scene", {"target_sampling_fraction": 0.5, "target_context_m": 0.0}),
    ("target, uniform, context crop 0.1 m (default)", {"target_sampling_fraction": 0.0, "target_context_m": 0.1}),
    ("target, 50 % + context crop 0.1 m", {"target_sampling_fraction": 0.5, "target_context_m": 0.1}),
)


def split_model(path: str | None) -> str:
    if path and not path.endswith(".pth"):
        return path
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    directory = Path(tempfile.mkdtemp(prefix="graspnet_split_"))
    export_split(load_graspnet(path or shared_dir() / "models" / "graspnet_edge_grasp.pth"), directory)
    return str(directory)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--first-seed", type=int, default=200)
    parser.add_argument("--model", help="split directory or .pth (default: the shared checkpoint, exported)")
    args = parser.parse_args(argv)
    from graspnet_edge_ros.sim.scenes import render_scene

    model = split_model(args.model)
    detectors = [(name, GraspDetector(DetectorConfig.from_flat(model_path=model, sampling_seed=0, **values)))
                 for name, values in SETTINGS]
    decoded = {name: [] for name, _ in SETTINGS}
    published = {name: [] for name, _ in SETTINGS}
    start = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.scenes):
        scene = render_scene(seed, view="oblique")
        for label in sorted(set(np.unique(scene.labels)) - {0}):
            for name, detector in detectors:
                detector.reset_support_plane()
                targets = None if name.startswith("no targeting") else [int(label)]
                result = detector.detect(scene.color, scene.depth_mm, "16UC1", scene.intrinsics,
                                         object_labels=scene.labels, target_object_ids=targets)
                on_target = int(np.count_nonzero(result.grasps.object_ids == label))
                if targets is None:
                    decoded[name].append(np.nan)
                else:
                    decoded[name].append(result.counts.get("decoded", 0) - result.counts.get("rejected_not_target", 0))
                published[name].append(on_target)
        print(f"scene {seed}: {len(set(np.unique(scene.labels)) - {0})} objects", flush=True)
    print(machine_line())
    print(f"{args.scenes} oblique scenes, {len(published[SETTINGS[0][0]])} (scene, object) targets, "
          f"{time.perf_counter() - start:.0f} s")
    print(f"{'setting':48s} {'decoded on target':>18s} {'published on target':>20s} {'targets with >= 1':>18s}")
    for name, _ in SETTINGS:
        values = np.asarray(published[name])
        mean_decoded = np.nanmean(decoded[name]) if not np.all(np.isnan(decoded[name])) else float("nan")
        print(f"{name:48s} {mean_decoded:18.1f} {values.mean():20.2f} {np.mean(values > 0) * 100:17.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
