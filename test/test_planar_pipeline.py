"""Planar networks through the whole detector and the node: GR-ConvNet (shared trained weights) on
the real example scene, lifted to 6-DoF, filtered, collision-checked and published like GraspNet."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graspnet_edge_ros.camera import CameraIntrinsics, decode_depth
from graspnet_edge_ros.config import DetectorConfig
from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.pipeline import GraspDetector, resolve_model_type
from graspnet_edge_ros.postprocess.filters import fit_table_plane

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def grconvnet_checkpoint(shared_dir) -> Path:
    return shared_dir / "models" / "grconvnet3_cornell_rgbd_ch16.pt"


@pytest.fixture(scope="module")
def grconvnet_onnx(grconvnet_checkpoint, tmp_path_factory) -> Path:
    from graspnet_edge_ros.planar.export import export_planar_onnx, load_planar_model

    model_type, module = load_planar_model(grconvnet_checkpoint)
    return export_planar_onnx(module, model_type, tmp_path_factory.mktemp("planar") / "grconvnet.onnx")


@pytest.fixture(scope="module")
def mask_path(shared_dir) -> Path:
    return shared_dir / "data" / "graspnet_example" / "workspace_mask.png"


@pytest.fixture(scope="module")
def intrinsics(example_scene) -> CameraIntrinsics:
    height, width = example_scene["depth"].shape
    return CameraIntrinsics.from_matrix(example_scene["K"], width, height)


@pytest.fixture(scope="module")
def onnx_result(grconvnet_onnx, mask_path, example_scene, intrinsics):
    config = DetectorConfig.from_flat(model_path=str(grconvnet_onnx), workspace_mask_path=str(mask_path),
                                      sampling_seed=0)
    detector = GraspDetector(config)
    return detector, detector.detect(example_scene["color"], example_scene["depth"], "16UC1", intrinsics)


def project(points, k: CameraIntrinsics) -> np.ndarray:
    points = np.atleast_2d(points)
    return np.stack([k.fx * points[:, 0] / points[:, 2] + k.cx, k.fy * points[:, 1] / points[:, 2] + k.cy], axis=1)


def test_model_type_is_detected_from_the_file(grconvnet_checkpoint, grconvnet_onnx, split_model_dir):
    assert resolve_model_type(DetectorConfig.from_flat(model_path=str(grconvnet_checkpoint))) == "grconvnet"
    assert resolve_model_type(DetectorConfig.from_flat(model_path=str(grconvnet_onnx))) == "grconvnet"
    assert resolve_model_type(DetectorConfig.from_flat(model_path=str(split_model_dir))) == "graspnet"
    assert resolve_model_type(DetectorConfig.from_flat(model_path=str(split_model_dir), model_type="affga")) == "affga"


def test_a_model_type_that_contradicts_the_file_is_refused(grconvnet_onnx, split_model_dir):
    with pytest.raises(ModelFormatError):
        GraspDetector(DetectorConfig.from_flat(model_path=str(grconvnet_onnx), model_type="graspnet"))
    with pytest.raises(ModelFormatError):
        GraspDetector(DetectorConfig.from_flat(model_path=str(grconvnet_onnx), model_type="affga"))
    with pytest.raises(ModelFormatError):
        GraspDetector(DetectorConfig.from_flat(model_path=str(split_model_dir), model_type="grconvnet"))


def test_grconvnet_on_the_example_scene_gives_top_down_grasps_on_objects(onnx_result, example_scene, intrinsics):
    detector, result = onnx_result
    assert detector.candidates.needs_image and result.model_id.startswith("grconvnet:grconvnet.onnx@")
    assert result.status == "ok", result.reason
    counts = result.counts
    removed = sum(v for k, v in counts.items() if k.startswith("rejected_"))
    assert 1 <= counts["decoded"] <= detector.config.planar.planar_num_grasps
    # With a workspace mask the network's crop is centred on it, not on the image.
    mask_rows, mask_cols = np.nonzero(example_scene["workspace_mask"])
    expected_centre = ((mask_rows.min() + mask_rows.max()) / 2, (mask_cols.min() + mask_cols.max()) / 2)
    np.testing.assert_allclose(detector.runner.decode_options.crop_center_rc, expected_centre)
    assert counts["published"] == counts["decoded"] - removed >= 1
    assert {"model.prepare", "model.network", "model.decode", "decode", "collision", "poses"} <= set(result.timings_ms)

    grasps, poses = result.grasps, result.poses
    rotations = grasps.rotations
    np.testing.assert_allclose(np.einsum("nji,njk->nik", rotations, rotations), np.broadcast_to(np.eye(3), rotations.shape),
                               atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-5)
    np.testing.assert_allclose(rotations[:, :, 0], np.tile([0.0, 0.0, 1.0], (len(grasps), 1)), atol=1e-6)
    np.testing.assert_allclose(poses.approach, np.tile([0.0, 0.0, 1.0], (len(grasps), 1)), atol=1e-6)
    assert np.all((grasps.widths > 0.01) & (grasps.widths <= detector.config.gripper.gripper_max_width_m))

    # On objects: the grasp pixel is in the workspace and the surface it grasps stands clear of the table.
    depth_m = decode_depth(example_scene["depth"], "16UC1")
    pixels = np.rint(project(grasps.translations, intrinsics)).astype(int)
    assert np.all(example_scene["workspace_mask"][pixels[:, 1], pixels[:, 0]])
    normal, offset = fit_table_plane(result.cloud.cloud)
    heights = grasps.translations @ normal + offset
    assert np.all(heights >= 0.008), heights
    # and the lifted depth is the scene's depth there (within the window statistic's spread)
    scene_z = depth_m[pixels[:, 1], pixels[:, 0]]
    assert np.all(np.abs(scene_z - grasps.translations[:, 2]) < 0.03)


def test_without_filters_every_decoded_grasp_is_published_best_first(onnx_result, example_scene, intrinsics):
    detector, _ = onnx_result
    plain = detector.config.replace(collision_thresh=0.0, table_plane_mode="none", executability_filter=False,
                                    nms_enabled=False, planar_num_grasps=6)
    detector.update_config(plain)
    try:
        result = detector.detect(example_scene["color"], example_scene["depth"], "16UC1", intrinsics)
    finally:
        detector.update_config(detector.config.replace(**{k: DetectorConfig().value(k) for k in (
            "collision_thresh", "table_plane_mode", "executability_filter", "nms_enabled", "planar_num_grasps")}))
    assert result.status == "ok"
    assert result.counts["decoded"] == result.counts["published"] == 6
    assert np.all(np.diff(result.grasps.scores) <= 0)


def test_planar_grasps_outside_the_depth_range_are_dropped(onnx_result, example_scene, intrinsics):
    detector, reference = onnx_result
    limit = float(np.median(reference.grasps.translations[:, 2]))
    near = GraspDetector(detector.config.replace(max_depth_m=limit, collision_thresh=0.0, table_plane_mode="none",
                                                 executability_filter=False),
                         runner=detector.runner)
    result = near.detect(example_scene["color"], example_scene["depth"], "16UC1", intrinsics)
    assert result.counts["rejected_workspace"] >= 1
    assert np.all(result.grasps.translations[:, 2] <= limit)


def test_checkpoint_in_torch_and_onnx_give_the_same_grasps(grconvnet_checkpoint, onnx_result, mask_path,
                                                            example_scene, intrinsics):
    _, expected = onnx_result
    config = DetectorConfig.from_flat(model_path=str(grconvnet_checkpoint), workspace_mask_path=str(mask_path),
                            sampling_seed=0, backend="torch")
    result = GraspDetector(config).detect(example_scene["color"], example_scene["depth"], "16UC1", intrinsics)
    assert result.status == "ok" and len(result.grasps) == len(expected.grasps)
    np.testing.assert_allclose(result.grasps.array, expected.grasps.array, atol=1e-4)


def test_bad_frames_give_no_valid_input_with_a_reason(onnx_result, example_scene, intrinsics):
    detector, _ = onnx_result
    color, depth = example_scene["color"], example_scene["depth"]
    no_color = detector.detect(None, depth, "16UC1", intrinsics)
    assert no_color.status == "no_valid_input" and "colo" in no_color.reason.lower()
    small = CameraIntrinsics(100.0, 100.0, 50.0, 50.0, 100, 100)
    maskless = GraspDetector(detector.config.replace(workspace_mask_path=""), runner=detector.runner)
    tiny = maskless.detect(np.zeros((100, 100, 3), np.uint8), np.full((100, 100), 500, np.uint16), "16UC1", small)
    assert tiny.status == "no_valid_input" and "224" in tiny.reason
    holes = detector.detect(color, np.zeros_like(depth), "16UC1", intrinsics)
    assert holes.status == "no_valid_input" and "depth" in holes.reason
    cloud_only = detector.detect_cloud(onnx_result[1].cloud)
    assert cloud_only.status == "no_valid_input" and "planar" in cloud_only.reason


def test_robot_runtimes_import_no_torch(grconvnet_onnx, split_model_dir):
    """The node on a robot (split GraspNet or planar ONNX) must run without torch installed."""
    code = (
        "import sys, numpy as np\n"
        "from graspnet_edge_ros.camera import CameraIntrinsics\n"
        "from graspnet_edge_ros.config import DetectorConfig\n"
        "from graspnet_edge_ros.pipeline import GraspDetector\n"
        "depth = np.full((240, 320), 600, np.uint16); depth[80:160, 100:220] = 520\n"
        "color = np.full((240, 320, 3), 90, np.uint8)\n"
        "k = CameraIntrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)\n"
        "for path in sys.argv[1:]:\n"
        "    result = GraspDetector(DetectorConfig.from_flat(model_path=path)).detect(color, depth, '16UC1', k)\n"
        "    assert result.status in ('ok', 'no_grasp'), result.reason\n"
        "print('torch' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", code, str(split_model_dir), str(grconvnet_onnx)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_node_publishes_planar_grasps_from_a_bag(ros_interfaces, grconvnet_onnx, mask_path, shared_dir,
                                                 onnx_result, tmp_path):
    """`graspnet-edge replay` into the real node with the GR-ConvNet ONNX model: same grasps as offline."""
    from test_replay import explain, recorded_messages, run_replay

    from graspnet_edge_ros.ros import bags
    from graspnet_edge_ros.ros.conversions import grasp_group_from_msg

    capture = bags.RgbdCapture.from_directory(shared_dir / "data" / "graspnet_example")
    bags.write_capture_bag(tmp_path / "in", capture, num_frames=1, rate_hz=1.0, storage="mcap")
    record = tmp_path / "out.mcap"
    done = run_replay(tmp_path / "in", record, grconvnet_onnx, mask_path)
    assert done.returncode == 0, explain(done, record)
    results = recorded_messages(record)["/graspnet_edge_node/grasps"]
    assert len(results) == 1 and results[0].status == 0, explain(done, record)
    assert results[0].model_id.startswith("grconvnet:")
    expected = onnx_result[1].grasps
    np.testing.assert_allclose(grasp_group_from_msg(results[0]).array, expected.array, atol=1e-4)
