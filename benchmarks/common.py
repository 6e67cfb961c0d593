"""Shared helpers of the benchmark scripts: locating ../shared, the example scene, timing."""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

from graspnet_edge_ros.thread_pools import prefer_sleeping_thread_pools

prefer_sleeping_thread_pools()  # as in the CLI and the node, before numpy and OpenMP load

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    path = Path(os.environ.get("GRASPNET_EDGE_SHARED", REPO.parent / "shared"))
    if not (path / "models").is_dir():
        raise SystemExit(f"benchmarks need the shared material at {path} (set GRASPNET_EDGE_SHARED)")
    return path


def example_frame():
    """(color RGB uint8, depth uint16 mm, workspace mask bool, CameraIntrinsics, depth scale)."""
    import scipy.io
    from PIL import Image

    from graspnet_edge_ros.camera import CameraIntrinsics

    data = shared_dir() / "data" / "graspnet_example"
    color = np.asarray(Image.open(data / "color.png").convert("RGB"))
    depth = np.asarray(Image.open(data / "depth.png"))
    mask = np.asarray(Image.open(data / "workspace_mask.png")) != 0
    meta = scipy.io.loadmat(data / "meta.mat")
    height, width = depth.shape
    intrinsics = CameraIntrinsics.from_matrix(meta["intrinsic_matrix"], width, height)
    return color, depth, mask, intrinsics, 1.0 / float(meta["factor_depth"].ravel()[0])


def example_points(num_points: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sampled model input (num_points, 3), full workspace cloud) of the example scene."""
    from graspnet_edge_ros.camera import Workspace, decode_depth, prepare_points

    _, depth, mask, intrinsics, scale = example_frame()
    cloud = prepare_points(decode_depth(depth, "16UC1", scale), intrinsics, workspace=Workspace(mask=mask),
                           num_points=num_points, seed=seed)
    return cloud.sampled, cloud.cloud


def median_ms(fn, repeat: int = 5, warmup: int = 1, clock=time.perf_counter) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = clock()
        fn()
        samples.append((clock() - start) * 1e3)
    return statistics.median(samples)


def machine_line() -> str:
    return (f"{time.strftime('%Y-%m-%d')} | {platform.processor() or platform.machine()} | "
            f"{os.cpu_count()} cores | Python {platform.python_version()}")


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(header)]
    print(f"\n### {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |")


def write_figures(path: str | None, figures: dict, headline: dict) -> None:
    """Write a benchmark's figures as JSON (``--json``; ``run_all.py`` collects them).

    ``headline``: {label: value as text}, this benchmark's rows of run_all's summary table.
    """
    if not path:
        return
    import json

    Path(path).write_text(json.dumps({"machine": machine_line(), "headline": headline, "figures": figures},
                                     indent=2, default=str) + "\n")


def split_model_or_export(model: str | None, directory) -> str:
    """``model`` (a split directory), or the shared checkpoint exported as one into ``directory``."""
    if model is not None:
        return model
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    exported = str(Path(directory) / "graspnet_split")
    export_split(load_graspnet(shared_dir() / "models" / "graspnet_edge_grasp.pth"), exported)
    return exported
