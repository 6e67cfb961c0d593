"""Seconds per GraspNet training step on CPU (single process), split into its stages.

Uses the tiny generated GraspNet-1Billion-layout dataset of the tests (test/synthetic_graspnet.py),
so it needs no real data. Usage: python benchmarks/bench_train.py [--num-point 4096 20000] [--steps 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test"))

from benchmarks.common import machine_line, print_table  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-point", type=int, nargs="+", default=[4096, 20000])
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from graspnet_edge_ros.model.graspnet import GraspNet
    from graspnet_edge_ros.train.dataset import DatasetLayout, GraspNetDataset, collate
    from graspnet_edge_ros.train.labels import generate_grasp_targets
    from graspnet_edge_ros.train.loss import graspnet_loss
    from synthetic_graspnet import write_dataset

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        layout = DatasetLayout.create(write_dataset(Path(tmp) / "root", width=640, height=480), "realsense")
        model = GraspNet().train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for num_point in args.num_point:
            dataset = GraspNetDataset(layout, [0], [0, 1], num_point)
            times: dict[str, list[float]] = {k: [] for k in ("data", "backbone", "labels", "crop+heads", "backward",
                                                             "total")}
            for step in range(args.steps + 1):
                t0 = time.perf_counter()
                batch = collate([dataset[step % len(dataset)]])
                t1 = time.perf_counter()
                end_points = model.backbone_forward(batch["point_clouds"])
                t2 = time.perf_counter()
                targets = generate_grasp_targets(end_points["fp2_xyz"], end_points["grasp_top_view_inds"], batch,
                                                 model.template_views)
                t3 = time.perf_counter()
                head = model.grasp_generator(model.crop_inputs(batch["point_clouds"], targets["grasp_point"],
                                                               targets["grasp_view_rot"]))
                end_points.update(model.grasp_outputs(head, end_points["fp2_xyz"].shape[1]))
                loss, _ = graspnet_loss(end_points, targets, batch["objectness_label"])
                t4 = time.perf_counter()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                t5 = time.perf_counter()
                if step == 0:
                    continue                                  # warm-up (label files, allocator)
                for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
                    times[key].append(value)
            rows.append([num_point] + [f"{statistics.median(v):.2f}" for v in times.values()])
    print(f"\n{machine_line()} | torch {torch.__version__} | {args.threads} threads | batch 1")
    print_table("GraspNet training step on CPU (median seconds)", ["points"] + list(times), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
