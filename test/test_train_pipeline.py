"""Training end to end on a tiny generated dataset in the GraspNet-1Billion layout.

The dataset (test/synthetic_graspnet.py) is rendered from primitives with analytic labels; its
tolerance labels come from the package's generator. Two CPU processes train under torchrun
(gloo), a single process resumes, and the checkpoint goes through `graspnet-edge export`
(split and single file) and `infer-points`.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from scipy.spatial import cKDTree

from graspnet_edge_ros.errors import InputError
from graspnet_edge_ros.train.dataset import (DatasetLayout, GraspNetDataset, check_dataset, collate,
                                             workspace_mask)
from graspnet_edge_ros.train.trainer import main as train_main
from synthetic_graspnet import write_dataset

REPO = Path(__file__).resolve().parents[1]
NUM_POINT = 4096
# Scene 0 frames 0-1 feed one frame per rank; 3 DDP epochs + 1 resumed = 4 optimiser steps.
DDP_EPOCHS, RESUMED_EPOCHS = 3, 4


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("graspnet_1b") / "root", num_frames=2)


@pytest.fixture(scope="module")
def layout(dataset_root) -> DatasetLayout:
    return DatasetLayout.create(dataset_root, "realsense")


def child_env() -> dict:
    """ROS-free environment for child processes, one thread each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROS_", "AMENT_", "COLCON_", "RMW_"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env


# -- the generated files follow the official formats ----------------------------------------------

def test_dataset_files_follow_the_official_formats(dataset_root, layout):
    for model in (0, 1, 2):
        with np.load(layout.grasp_label_file(model)) as label:
            assert set(label.files) == {"points", "offsets", "collision", "scores"}
            points, offsets, scores = label["points"], label["offsets"], label["scores"]
            assert points.shape[1] == 3 and offsets.shape == (len(points), 300, 12, 4, 3)
            assert scores.shape == label["collision"].shape == (len(points), 300, 12, 4)
            valid = scores > 0
            assert 0.01 < valid.mean() < 0.5 and set(np.unique(scores[~valid])) == {-1.0}
            assert np.allclose(offsets[0, 0, :, 0, 0], np.arange(12) * np.pi / 12)
            assert np.allclose(offsets[0, 0, 0, :, 1], [0.01, 0.02, 0.03, 0.04])
        tolerance = np.load(layout.tolerance_file(model))
        assert tolerance.dtype == np.float32 and tolerance.shape == scores.shape
        assert 0 <= tolerance.min() and tolerance.max() <= np.float32(0.05) and tolerance.max() > 0
    ids = [int(v) for v in (dataset_root / "scenes/scene_0000/object_id_list.txt").read_text().split()]
    meta = scipy.io.loadmat(layout.frame_file(0, "meta", 0))
    assert meta["cls_indexes"].tolist() == [[i + 1 for i in ids]]
    assert meta["poses"].shape == (3, 4, len(ids)) and meta["factor_depth"].tolist() == [[1000.0]]
    with np.load(layout.collision_file(0)) as collision:
        assert collision.files == [f"arr_{i}" for i in range(len(ids))]
        assert collision["arr_0"].dtype == bool and collision["arr_0"].any()
    depth = np.asarray(Image.open(layout.frame_file(0, "depth", 0)))
    label = np.asarray(Image.open(layout.frame_file(0, "label", 0)))
    assert depth.dtype == np.uint16 and set(np.unique(label)) == {0, 1, 2, 3}
    assert np.load(layout.camera_dir(0) / "camera_poses.npy").shape == (2, 4, 4)


# -- loader -----------------------------------------------------------------------------------------

def test_loader_matches_segmentation_workspace_and_visibility(layout):
    dataset = GraspNetDataset(layout, [0], [0, 1], NUM_POINT, augment=False)
    item = dataset[1]
    cloud = item["point_clouds"]
    assert cloud.shape == (NUM_POINT, 3) and cloud.dtype == np.float32
    # Objectness = segmentation label of the pixel each point came from.
    meta = scipy.io.loadmat(layout.frame_file(0, "meta", 1))
    k = meta["intrinsic_matrix"]
    u = np.rint(cloud[:, 0] / cloud[:, 2] * k[0, 0] + k[0, 2]).astype(int)
    v = np.rint(cloud[:, 1] / cloud[:, 2] * k[1, 1] + k[1, 2]).astype(int)
    seg = np.asarray(Image.open(layout.frame_file(0, "label", 1)))
    assert np.array_equal(item["objectness_label"], (seg[v, u] > 0).astype(np.int64))
    assert 0.1 < item["objectness_label"].mean() < 0.9
    # Workspace: every point lies in the table-frame foreground box grown by 2 cm, and the table
    # outside that box was dropped.
    trans = np.load(layout.camera_dir(0) / "cam0_wrt_table.npy") @ np.load(layout.camera_dir(0) / "camera_poses.npy")[1]
    in_table = cloud @ trans[:3, :3].T + trans[:3, 3]
    assert np.abs(in_table[:, :2]).max() < 0.2
    assert len(item["object_poses_list"]) == 3
    for pose, points, labels in zip(item["object_poses_list"], item["grasp_points_list"], item["grasp_labels_list"]):
        camera_points = points @ pose[:, :3].T + pose[:, 3]
        distance, _ = cKDTree(cloud).query(camera_points)
        assert distance.max() < 0.01                          # invisible label points were removed
        assert labels.shape == (len(points), 300, 12, 4)


def test_workspace_mask_is_the_grown_foreground_box():
    cloud = np.zeros((1, 4, 3))
    cloud[0, :, 0] = [0.0, 0.05, 0.069, 0.071]
    seg = np.array([[1, 1, 0, 0]])
    assert workspace_mask(cloud, seg, np.eye(4)).tolist() == [[True, True, True, False]]


def test_collision_labels_zero_scores_and_tolerance(layout):
    dataset = GraspNetDataset(layout, [0], [0], NUM_POINT, augment=False, remove_invisible=False)
    item = dataset[0]
    with np.load(layout.grasp_label_file(0)) as label:
        all_points = label["points"]
    collision = dataset.collision_labels(0)[0]
    rows = cKDTree(all_points).query(item["grasp_points_list"][0])[1]
    hit = collision[rows]
    assert hit.any()
    assert np.all(item["grasp_labels_list"][0][hit] == 0) and np.all(item["grasp_tolerance_list"][0][hit] == 0)
    assert (item["grasp_labels_list"][0][~hit] > 0).any()


def test_augmentation_moves_cloud_and_poses_together(layout):
    plain = GraspNetDataset(layout, [0], [0], NUM_POINT, augment=False)
    augmented = GraspNetDataset(layout, [0], [0], NUM_POINT, augment=True)
    for epoch in range(4):
        plain.set_epoch(epoch)
        augmented.set_epoch(epoch)
        a, b = plain[0], augmented[0]
        transform, *_ = np.linalg.lstsq(a["point_clouds"].astype(np.float64), b["point_clouds"].astype(np.float64),
                                        rcond=None)
        transform = transform.T
        assert np.allclose(transform @ transform.T, np.eye(3), atol=1e-4)
        flipped = np.linalg.det(transform) < 0
        rotation = transform @ np.diag([-1.0 if flipped else 1.0, 1, 1])
        assert np.allclose(rotation[0], [1, 0, 0], atol=1e-4)            # a rotation about the camera x axis
        assert abs(np.degrees(np.arctan2(rotation[2, 1], rotation[1, 1]))) <= 30.0 + 1e-3
        for pose_a, pose_b in zip(a["object_poses_list"], b["object_poses_list"]):
            assert np.allclose(transform @ pose_a, pose_b, atol=1e-4)


def test_missing_files_are_named(layout, tmp_path):
    with pytest.raises(InputError, match=r"depth/0002\.png"):
        check_dataset(layout, [0], [0, 1, 2])
    empty = DatasetLayout.create(layout.root, "realsense", tmp_path)
    with pytest.raises(InputError, match=r"000_tolerance\.npy.*graspnet_edge_ros\.train\.tolerance"):
        check_dataset(empty, [0], [0])
    with pytest.raises(InputError, match=r"scene_0003/object_id_list\.txt"):
        check_dataset(layout, [0, 3], [0])


@pytest.mark.parametrize("extra, code, message", [
    (["--num-point", "1000"], 2, "--num-point must be >= 2048"),
    (["--scenes", "5-2"], 2, "--scenes"),
    (["--frames", "0-7"], 3, "missing .*depth/0002.png"),
    (["--sync-bn", "--device", "cpu"], 2, "--sync-bn needs CUDA"),
    (["--dist-backend", "nccl", "--device", "cpu"], 2, "nccl backend needs CUDA"),
    (["--resume", "/nonexistent/ckpt.tar"], 4, "checkpoint not found"),
])
def test_cli_rejects_bad_arguments(dataset_root, tmp_path, capsys, extra, code, message):
    argv = ["--dataset-root", str(dataset_root), "--camera", "realsense", "--scenes", "0", "--frames", "0-1",
            "--num-point", str(NUM_POINT), "--log-dir", str(tmp_path), *extra]
    assert train_main(argv) == code
    assert re.search(message, capsys.readouterr().err)


def test_cli_rejects_a_missing_root(tmp_path, capsys):
    assert train_main(["--dataset-root", str(tmp_path / "nope"), "--camera", "kinect"]) == 3
    assert "dataset root not found" in capsys.readouterr().err
    result = subprocess.run([sys.executable, "-m", "graspnet_edge_ros.train.tolerance", "--dataset-root",
                             str(tmp_path)], capture_output=True, text=True, env=child_env(), timeout=60)
    assert result.returncode == 3 and "grasp_label" in result.stderr


# -- distributed training, resume, export -----------------------------------------------------------

def read_steps(log_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (log_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(dataset_root, tmp_path_factory):
    """torchrun 2 x CPU (gloo) for DDP_EPOCHS epochs, then one resumed single-process epoch."""
    log_dir = tmp_path_factory.mktemp("train_log")
    common = ["--dataset-root", str(dataset_root), "--camera", "realsense", "--scenes", "0", "--frames", "0-1",
              "--num-point", str(NUM_POINT), "--batch-size", "1", "--num-workers", "0", "--no-augment",
              "--log-dir", str(log_dir)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ddp = subprocess.run([*torchrun, "-m", "graspnet_edge_ros.train", *common, "--max-epoch", str(DDP_EPOCHS)],
                         capture_output=True, text=True, env=child_env(), timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    ddp_checkpoint = torch.load(log_dir / "checkpoint.tar", map_location="cpu", weights_only=False)
    resumed = subprocess.run([sys.executable, "-m", "graspnet_edge_ros.train", *common, "--frames", "0",
                              "--max-epoch", str(RESUMED_EPOCHS), "--resume", str(log_dir / "checkpoint.tar")],
                             capture_output=True, text=True, env=child_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"log_dir": log_dir, "ddp_stderr": ddp.stderr, "ddp_checkpoint": ddp_checkpoint,
            "resume_stderr": resumed.stderr}


def test_ddp_training_reduces_the_loss_and_resumes(trained):
    steps = read_steps(trained["log_dir"])
    assert [(s["epoch"], s["step"]) for s in steps] == [(e, 0) for e in range(RESUMED_EPOCHS)]
    losses = [s["loss/overall_loss"] for s in steps]
    assert all(np.isfinite(losses))
    # Overfitting two frames: the last two steps (one of them after the resume) are clearly lower.
    assert np.mean(losses[-2:]) < 0.85 * np.mean(losses[:2]), losses
    assert "resumed" in trained["resume_stderr"] and f"start epoch {DDP_EPOCHS}" in trained["resume_stderr"]
    assert "epoch 0:" in trained["ddp_stderr"] and "step" in trained["ddp_stderr"]     # rank-0 progress bar


def test_checkpoint_has_the_official_layout(trained):
    from graspnet_edge_ros.model.graspnet import GraspNet

    ddp = trained["ddp_checkpoint"]
    final = torch.load(trained["log_dir"] / "checkpoint.tar", map_location="cpu", weights_only=False)
    assert set(ddp) == set(final) == {"epoch", "model_state_dict", "optimizer_state_dict", "loss"}
    assert ddp["epoch"] == DDP_EPOCHS and final["epoch"] == RESUMED_EPOCHS
    state = final["model_state_dict"]
    assert len(state) == 162 and not any(k.startswith("module.") for k in state)
    assert state["view_estimator.vpmodule.conv3.weight"].shape == (302, 302, 1)
    assert int(state["view_estimator.vpmodule.bn1.num_batches_tracked"]) == RESUMED_EPOCHS
    adam = final["optimizer_state_dict"]
    assert len(adam["state"]) == len(list(GraspNet().parameters())) and adam["param_groups"][0]["lr"] == pytest.approx(1e-3)
    assert float(adam["state"][0]["step"]) == RESUMED_EPOCHS
    assert not torch.equal(state["grasp_generator.operation.conv3.weight"],
                           ddp["model_state_dict"]["grasp_generator.operation.conv3.weight"])
    assert np.isfinite(final["loss"])


def test_checkpoint_exports_and_runs(trained, layout, tmp_path):
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    checkpoint = trained["log_dir"] / "checkpoint.tar"
    cli = [sys.executable, "-m", "graspnet_edge_ros.cli"]
    split_dir, single = tmp_path / "split", tmp_path / "model.onnx"
    for args in (["--output", str(split_dir), "--split"], ["--output", str(single), "--num-points", str(NUM_POINT)]):
        result = subprocess.run([*cli, "export", "--checkpoint", str(checkpoint), *args], capture_output=True,
                                text=True, env=child_env(), timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    assert (split_dir / "manifest.json").is_file() and single.stat().st_size > 1e6
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner

    assert load_graspnet_runner(single, "onnxruntime").num_points == NUM_POINT

    points = GraspNetDataset(layout, [0], [0], NUM_POINT, augment=False)[0]["point_clouds"]
    np.save(tmp_path / "points.npy", points)
    with torch.inference_mode():
        reference = load_graspnet(checkpoint)(torch.from_numpy(points)[None])
    for model in (checkpoint, split_dir):
        dump = tmp_path / f"raw_{Path(model).stem}.npz"
        result = subprocess.run([*cli, "infer-points", "--points", str(tmp_path / "points.npy"), "--model", str(model),
                                 "--dump", str(dump), "--grasps", str(tmp_path / "grasps.npy")],
                                capture_output=True, text=True, env=child_env(), timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        with np.load(dump) as raw:
            assert np.allclose(raw["objectness_score"], reference["objectness_score"].numpy(), atol=1e-4)
            assert np.allclose(raw["grasp_score_pred"], reference["grasp_score_pred"].numpy(), atol=1e-4)
        assert np.load(tmp_path / "grasps.npy").shape[1] == 17
