"""The perception pipeline on the real example scene, its backends, and its handling of bad input."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from graspnet_edge_ros.camera import CameraIntrinsics
from graspnet_edge_ros.config import DetectorConfig, from_mapping
from graspnet_edge_ros.errors import ConfigError, ModelFormatError
from graspnet_edge_ros.pipeline import GraspDetector
from graspnet_edge_ros.postprocess.filters import fit_table_plane


@pytest.fixture(scope="module")
def intrinsics(example_scene):
    return CameraIntrinsics.from_matrix(example_scene["K"], 1280, 720)


@pytest.fixture(scope="module")
def mask_path(shared_dir):
    return str(shared_dir / "data" / "graspnet_example" / "workspace_mask.png")


@pytest.fixture(scope="module")
def detector(split_model_dir, mask_path):
    return GraspDetector(DetectorConfig.from_flat(model_path=str(split_model_dir), workspace_mask_path=mask_path,
                                        sampling_seed=0))


@pytest.fixture(scope="module")
def result(detector, example_scene, intrinsics):
    return detector.detect(example_scene["color"], example_scene["depth"], "16UC1", intrinsics)


def _fingertip_heights(grasps, normal, offset):
    tips = grasps.translations + grasps.depths[:, None] * grasps.approaches
    half = 0.5 * grasps.widths[:, None] * grasps.rotations[:, :, 1]
    return np.minimum((tips + half) @ normal, (tips - half) @ normal) + offset


def test_example_scene_gives_ranked_collision_free_grasps_on_objects(result):
    assert result.ok, result.reason
    grasps = result.grasps
    assert 10 <= len(grasps) <= 50
    assert np.all(np.diff(grasps.scores) <= 0)                                   # best first
    assert np.all((grasps.widths > 0) & (grasps.widths <= 0.1))
    normal, offset = fit_table_plane(result.cloud.cloud)
    centre_heights = grasps.translations @ normal + offset
    assert np.mean(centre_heights > 0.005) >= 0.8                                 # on objects
    # No gripper reaches into the table (the default table filter; 5 mm for plane-fit differences).
    assert _fingertip_heights(grasps, normal, offset).min() > -0.005
    assert result.counts["rejected_collision"] > 0 and result.counts["published"] == len(grasps)


def test_nms_leaves_no_two_grasps_within_both_thresholds(result, detector):
    grasps = result.grasps
    cfg = detector.config
    t = grasps.translations.astype(np.float64)
    r = grasps.rotations.astype(np.float64)
    for i in range(len(grasps)):
        for j in range(i + 1, len(grasps)):
            distance = np.linalg.norm(t[i] - t[j])
            trace = np.clip(np.trace(r[i] @ r[j].T), -1, 3)
            angle = math.acos((trace - 1) / 2)
            assert not (distance < cfg.nms.nms_translation_m and angle < cfg.nms.nms_rotation_rad), (i, j)


def test_poses_are_normalised_right_handed_tcp_frames(result):
    poses = result.poses
    np.testing.assert_allclose(np.linalg.norm(poses.quaternions, axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(poses.rotations), 1.0, atol=1e-9)
    # Default convention: TCP z = approach, x = closing.
    np.testing.assert_allclose(poses.rotations[:, :, 2], result.grasps.approaches, atol=1e-5)
    np.testing.assert_allclose(poses.rotations[:, :, 0], result.grasps.rotations[:, :, 1], atol=1e-5)
    backoff = np.linalg.norm(poses.positions - poses.pre_grasp_positions, axis=1)
    np.testing.assert_allclose(backoff, 0.1, atol=1e-9)


def test_every_backend_gives_the_grasps_of_the_torch_reference(graspnet_checkpoint, split_model_dir, mask_path,
                                                               example_scene, intrinsics, result, tmp_path):
    from graspnet_edge_ros.export.onnx_export import export_single_file
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    single = export_single_file(load_graspnet(graspnet_checkpoint), tmp_path / "graspnet.onnx")
    base = DetectorConfig.from_flat(workspace_mask_path=mask_path, sampling_seed=0)
    reference = GraspDetector(base.replace(model_path=str(graspnet_checkpoint), backend="torch")).detect(
        example_scene["color"], example_scene["depth"], "16UC1", intrinsics)
    single_result = GraspDetector(base.replace(model_path=str(single))).detect(
        example_scene["color"], example_scene["depth"], "16UC1", intrinsics)
    assert reference.ok and reference.model_id.startswith("graspnet:graspnet_edge_grasp.pth@")
    for other in (result, single_result):
        assert len(other.grasps) == len(reference.grasps)
        np.testing.assert_allclose(other.grasps.array, reference.grasps.array, atol=1e-4)


# -- bad input: a status and a reason, never an exception -----------------------------------------

def _frame(example_scene):
    return example_scene["color"], example_scene["depth"].copy()


@pytest.mark.parametrize("case, fragment", [
    ("wrong_encoding", "yuv422"),
    ("size_mismatch", "colour image must be"),
    ("zero_depth", "no valid depth"),
    ("nan_depth", "no valid depth"),
    ("empty_workspace", "workspace empty"),
])
def test_bad_frames_give_no_valid_input_with_a_reason(detector, example_scene, intrinsics, case, fragment):
    color, depth = _frame(example_scene)
    encoding = "16UC1"
    if case == "wrong_encoding":
        encoding = "yuv422"
    elif case == "size_mismatch":
        color = color[:480, :640]
    elif case == "zero_depth":
        depth[:] = 0
    elif case == "nan_depth":
        depth, encoding = np.full(depth.shape, np.nan, np.float32), "32FC1"
    elif case == "empty_workspace":
        depth = depth.astype(np.float32) * 0.001 + 5.0                            # beyond max_depth_m
        encoding = "32FC1"
    outcome = detector.detect(color, depth, encoding, intrinsics)
    assert outcome.status == "no_valid_input"
    assert fragment in outcome.reason
    assert len(outcome.grasps) == 0


def test_bad_intrinsics_are_rejected_with_the_value():
    from graspnet_edge_ros.errors import InputError

    with pytest.raises(InputError, match="fx"):
        CameraIntrinsics(-600.0, 600.0, 640.0, 360.0, 1280, 720)


def test_impossible_filters_give_no_grasp_not_an_invented_one(detector, example_scene, intrinsics):
    strict = GraspDetector(detector.config.replace(min_score=50.0), runner=detector.runner)
    outcome = strict.detect(example_scene["color"], example_scene["depth"], "16UC1", intrinsics)
    assert outcome.status == "no_grasp" and len(outcome.grasps) == 0 and outcome.poses is None
    assert "score" in outcome.reason


def test_missing_or_foreign_model_is_a_clear_model_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(ModelFormatError, match="not found"):
        GraspDetector(DetectorConfig.from_flat(model_path=str(tmp_path / "missing.onnx")))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ModelFormatError, match="without manifest.json"):
        GraspDetector(DetectorConfig.from_flat(model_path=str(tmp_path / "empty_dir")))
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), foreign)
    with pytest.raises(ModelFormatError, match="not a GraspNet export"):
        GraspDetector(DetectorConfig.from_flat(model_path=str(foreign)))


def test_config_rejects_unknown_and_out_of_range_values():
    with pytest.raises(ConfigError, match="did you mean 'max_grasps'"):
        from_mapping({"max_grasp": 3})
    with pytest.raises(ConfigError, match="pose_convention"):
        from_mapping({"pose_convention": "y_up"})
    with pytest.raises(ConfigError, match="min_depth_m"):
        from_mapping({"min_depth_m": 2.0, "max_depth_m": 1.0})
    # ROS typing on every path: a string is neither a number nor a boolean (no silent guesses).
    assert from_mapping({"max_grasps": 7, "nms_enabled": False}).filters.max_grasps == 7
    with pytest.raises(ConfigError, match="max_grasps must be an integer, got the string '7'"):
        from_mapping({"max_grasps": "7"})
    with pytest.raises(ConfigError, match="nms_enabled must be true or false, got the string 'false'"):
        from_mapping({"nms_enabled": "false"})


# -- detect CLI ------------------------------------------------------------------------------------

def test_detect_cli_writes_json_and_overlay(split_model_dir, shared_dir, tmp_path, result):
    data = shared_dir / "data" / "graspnet_example"
    out, overlay = tmp_path / "grasps.json", tmp_path / "overlay.png"
    completed = subprocess.run(
        [sys.executable, "-m", "graspnet_edge_ros.cli", "detect", "--color", str(data / "color.png"),
         "--depth", str(data / "depth.png"), "--camera-info", str(data / "meta.mat"),
         "--workspace-mask", str(data / "workspace_mask.png"), "--model", str(split_model_dir),
         "--seed", "0", "--output", str(out), "--overlay", str(overlay)],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "ok" and report["pose_convention"] == "z_approach_x_closing"
    assert [g["rank"] for g in report["grasps"]] == list(range(len(result.grasps)))
    np.testing.assert_allclose([g["score"] for g in report["grasps"]], result.grasps.scores, atol=1e-6)
    from PIL import Image

    assert Image.open(overlay).size == (1280, 720)


def test_detect_cli_reports_unreadable_image_without_traceback(split_model_dir, tmp_path):
    broken = tmp_path / "color.png"
    broken.write_bytes(b"not a png")
    completed = subprocess.run(
        [sys.executable, "-m", "graspnet_edge_ros.cli", "detect", "--color", str(broken), "--depth", str(broken),
         "--intrinsics", "600,600,320,240", "--model", str(split_model_dir), "--output", str(tmp_path / "g.json")],
        capture_output=True, text=True, timeout=120)
    assert completed.returncode == 3
    assert "cannot read colour image" in completed.stderr and "Traceback" not in completed.stderr
