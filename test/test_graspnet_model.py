"""The exact GraspNet: checkpoint loading, decode, export, and parity on the real example scene.

Tolerances (float32, CPU): raw outputs of torch / single ONNX / split runtime agree to 1e-4
absolute (measured ~3e-5: conv accumulation order differs between torch and onnxruntime).
Index outputs (seeds, top views) must agree exactly except for rare radius-boundary flips,
which are counted and bounded.
"""
import subprocess
import sys

import numpy as np
import pytest
import torch

from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.model.checkpoint import load_graspnet, read_state_dict
from graspnet_edge_ros.model.graspnet import GraspNet
from graspnet_edge_ros.model.views import generate_grasp_views, viewpoint_params_to_matrix
from graspnet_edge_ros.postprocess.decode import decode_grasps
from graspnet_edge_ros.postprocess.filters import fit_table_plane
from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner
from reference_decode import batch_viewpoint_params_to_matrix, pred_decode

RAW_ATOL = 1e-4
FLOAT_OUTPUTS = ("objectness_score", "view_score", "grasp_score_pred", "grasp_angle_cls_pred",
                 "grasp_width_pred", "grasp_tolerance_pred")


@pytest.fixture(scope="module")
def model(graspnet_checkpoint):
    return load_graspnet(graspnet_checkpoint)


@pytest.fixture(scope="module")
def torch_raw(model, example_cloud):
    with torch.inference_mode():
        end_points = model(torch.from_numpy(example_cloud.sampled)[None], crop_chunk_size=256)
    return {k: v.numpy() for k, v in end_points.items()}


@pytest.fixture(scope="module")
def split_raw(split_model_dir, example_cloud):
    runner = load_graspnet_runner(split_model_dir, "onnxruntime")
    return runner(example_cloud.sampled, skip_background_seeds=False)


# -- checkpoint loading ---------------------------------------------------------------------------

def test_shared_checkpoint_loads_strictly_with_conv1d_heads(graspnet_checkpoint, model):
    state = read_state_dict(graspnet_checkpoint)
    assert len(state) == 162
    assert state["view_estimator.vpmodule.conv1.weight"].shape == (256, 256, 1)       # stored Conv1d-shaped
    assert model.view_estimator.vpmodule.conv1.weight.shape == (256, 256, 1, 1)
    assert torch.equal(model.view_estimator.vpmodule.conv1.weight[..., 0], state["view_estimator.vpmodule.conv1.weight"])
    params = sum(p.numel() for p in model.parameters())
    assert params == 1_025_964
    assert set(model.state_dict()) == set(state)                 # no persistent extras (template views)


def test_official_training_layout_and_ddp_prefix_load(graspnet_checkpoint, tmp_path, model):
    state = read_state_dict(graspnet_checkpoint)
    official = tmp_path / "checkpoint-rs.tar"
    torch.save({"epoch": 18, "model_state_dict": state, "optimizer_state_dict": {}, "loss": 0.5}, official)
    ddp = tmp_path / "checkpoint_dist.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, ddp)
    for path in (official, ddp):
        loaded = load_graspnet(path)
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_mismatching_checkpoint_names_first_keys_and_shapes(graspnet_checkpoint, tmp_path):
    state = read_state_dict(graspnet_checkpoint)
    state.pop("grasp_generator.tolerance.bn2.running_var")
    state["view_estimator.backbone.sa1.mlp_module.layer0.conv.weight"] = torch.zeros(64, 6, 1, 1)
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ModelFormatError) as error:
        load_graspnet(path)
    message = str(error.value)
    assert "grasp_generator.tolerance.bn2.running_var" in message
    assert "extra.weight" in message
    assert "sa1.mlp_module.layer0.conv.weight: checkpoint (64, 6, 1, 1) vs model (64, 3, 1, 1)" in message


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_unreadable_or_missing_checkpoint_is_a_model_error(tmp_path, content):
    path = tmp_path / "model.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFormatError):
        load_graspnet(path)


# -- views and decode -----------------------------------------------------------------------------

def test_grasp_views_match_the_documented_fibonacci_values():
    views = generate_grasp_views(300)
    assert views.shape == (300, 3) and views.dtype == np.float32
    np.testing.assert_allclose(views[0], [0.0815816, 0, -0.9966667], atol=1e-6)
    np.testing.assert_allclose(views[1], [-0.1040187, -0.0952896, -0.99], atol=1e-6)
    np.testing.assert_allclose(views[299], [0.0213603, -0.0787356, 0.9966667], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(views, axis=1), 1.0, atol=1e-6)


def test_rotation_builder_matches_the_official_construction():
    rng = np.random.default_rng(3)
    towards = rng.normal(size=(64, 3)).astype(np.float32)
    towards[0] = [0, 0, 2.0]                                   # degenerate: horizontal axis vanishes
    angles = rng.uniform(0, np.pi, 64).astype(np.float32)
    ours = viewpoint_params_to_matrix(towards, angles)
    reference = batch_viewpoint_params_to_matrix(torch.from_numpy(towards), torch.from_numpy(angles)).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(ours), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours[:, :, 0], towards / np.linalg.norm(towards, axis=1, keepdims=True), atol=1e-6)


def _random_raw(seeds: int, object_seeds: int, rng) -> dict:
    objectness = rng.normal(size=(1, 2, seeds)).astype(np.float32)
    objectness[0, 1] = objectness[0, 0] - 1.0
    objectness[0, 1, rng.choice(seeds, object_seeds, replace=False)] += 3.0
    views = generate_grasp_views(300)
    return {
        "objectness_score": objectness,
        "fp2_xyz": rng.uniform(-0.3, 0.6, (1, seeds, 3)).astype(np.float32),
        "grasp_top_view_xyz": views[rng.integers(0, 300, (1, seeds))],
        **{name: rng.normal(scale=0.05, size=(1, 12, seeds, 4)).astype(np.float32)
           for name in ("grasp_score_pred", "grasp_angle_cls_pred", "grasp_width_pred", "grasp_tolerance_pred")},
    }


@pytest.mark.parametrize("object_seeds", [0, 1, 3, 40])
def test_decode_equals_the_official_pred_decode(object_seeds):
    raw = _random_raw(64, object_seeds, np.random.default_rng(object_seeds))
    ours = decode_grasps(raw)
    reference = pred_decode(raw)
    assert len(ours) == object_seeds == len(reference)
    np.testing.assert_allclose(ours.array, reference, atol=1e-6)


def test_decode_on_the_real_scene_equals_the_official_pred_decode(torch_raw):
    ours = decode_grasps(torch_raw)
    reference = pred_decode(torch_raw)
    assert len(ours) > 50
    np.testing.assert_allclose(ours.array, reference, atol=1e-6)
    assert ours.widths.max() <= 0.1 and ours.widths.min() >= 0
    assert np.isin(np.round(ours.depths.astype(np.float64), 4), [0.01, 0.02, 0.03, 0.04]).all()


# -- parity and plausibility on the real scene -----------------------------------------------------

def _assert_raw_parity(raw, reference, max_index_flips: int):
    assert np.array_equal(raw["fp2_xyz"], reference["fp2_xyz"])            # FPS is exact
    flips = int((raw["grasp_top_view_inds"] != reference["grasp_top_view_inds"]).sum())
    assert flips <= max_index_flips, f"{flips} top-view flips"
    for name in FLOAT_OUTPUTS:
        assert raw[name].shape == reference[name].shape, name
        np.testing.assert_allclose(raw[name], reference[name], atol=RAW_ATOL, err_msg=name)


def test_split_runtime_matches_the_torch_reference(split_raw, torch_raw):
    _assert_raw_parity(split_raw, torch_raw, max_index_flips=2)
    ours, reference = decode_grasps(split_raw), decode_grasps(torch_raw)
    assert len(ours) == len(reference)
    np.testing.assert_allclose(ours.array, reference.array, atol=1e-4)


def test_split_runtime_skips_only_what_the_decoder_drops(split_model_dir, example_cloud, torch_raw):
    runner = load_graspnet_runner(split_model_dir, "onnxruntime")
    fast = runner(example_cloud.sampled, skip_background_seeds=True)
    objects = torch_raw["objectness_score"][0, 1] > torch_raw["objectness_score"][0, 0]
    assert np.isnan(fast["grasp_score_pred"][0][:, ~objects]).all()
    assert np.isfinite(fast["grasp_score_pred"][0][:, objects]).all()
    np.testing.assert_allclose(decode_grasps(fast).array, decode_grasps(torch_raw).array, atol=1e-4)


def test_shared_points_head_equals_the_per_depth_head(split_model_dir, example_cloud, split_raw, torch_raw):
    """The crop MLP once per distinct (seed, point), pooled per depth, gives the per-depth head's outputs."""
    from graspnet_edge_ros.runtime.split import SplitGraspNet

    shared = SplitGraspNet.from_directory(split_model_dir, "onnxruntime")
    per_depth = SplitGraspNet.from_directory(split_model_dir, "onnxruntime", head_layout="per_depth")
    assert (shared.head_layout, per_depth.head_layout) == ("shared_points", "per_depth")
    assert "grasp_head" not in shared.runners and "crop_mlp" not in per_depth.runners
    for skip in (False, True):
        new, old = shared(example_cloud.sampled, skip), per_depth(example_cloud.sampled, skip)
        assert set(new) == set(old)
        for name in old:
            assert np.array_equal(np.isnan(new[name]), np.isnan(old[name])), name
            np.testing.assert_allclose(new[name], old[name], atol=RAW_ATOL, err_msg=name)
        ours, reference = decode_grasps(new), decode_grasps(old)
        assert len(ours) == len(reference) > 100
        np.testing.assert_allclose(ours.array, reference.array, atol=1e-4)
    assert {"segment_crop_mlp", "crop_pool", "segment_grasp_head_post"} <= set(shared.last_timings_ms)
    assert "segment_grasp_head" in per_depth.last_timings_ms
    # split_raw (all seeds) ran the shared_points head: the official model agrees with it too
    np.testing.assert_allclose(split_raw["grasp_score_pred"], torch_raw["grasp_score_pred"], atol=RAW_ATOL)


def test_torch_segments_run_either_head_layout(model, example_cloud):
    from graspnet_edge_ros.model.segments import torch_segment_runners
    from graspnet_edge_ros.runtime.split import SplitGraspNet

    points = example_cloud.sampled[::4]
    raw = {layout: SplitGraspNet(*torch_segment_runners(model), head_layout=layout)(points)
           for layout in ("per_depth", "shared_points")}
    assert SplitGraspNet(*torch_segment_runners(model)).head_layout == "shared_points"
    scores = [raw[layout]["grasp_score_pred"] for layout in ("per_depth", "shared_points")]
    assert np.isfinite(scores[0]).any()
    np.testing.assert_allclose(scores[1], scores[0], atol=RAW_ATOL)
    np.testing.assert_allclose(decode_grasps(raw["shared_points"]).array, decode_grasps(raw["per_depth"]).array,
                               atol=1e-4)


def test_a_split_export_with_channels_major_crop_features_still_runs(split_model_dir, example_cloud, split_raw,
                                                                    tmp_path, caplog):
    """Exports before 2026-12-07: crop_mlp gives (1, C, P, 1); same raw outputs, one warning at load."""
    import json
    import logging
    import shutil

    import onnx

    from graspnet_edge_ros.contract import SplitManifest
    from graspnet_edge_ros.runtime.split import SplitGraspNet

    old = tmp_path / "channels_major"
    shutil.copytree(split_model_dir, old)
    crop = onnx.load(str(old / "crop_mlp.onnx"))
    transpose = crop.graph.node[-1]
    assert transpose.op_type == "Transpose" and crop.graph.output[0].name == transpose.output[0]
    producer = next(n for n in crop.graph.node if transpose.input[0] in n.output)
    producer.output[0] = crop.graph.output[0].name                            # the convolutions' NCHW output
    points, channels = [d.dim_value for d in crop.graph.output[0].type.tensor_type.shape.dim][1::2]
    for dim, value in zip(crop.graph.output[0].type.tensor_type.shape.dim, (1, channels, points, 1)):
        dim.dim_value = value
    crop.graph.node.remove(transpose)
    onnx.save(crop, str(old / "crop_mlp_nchw.onnx"))
    data = json.loads((old / "manifest.json").read_text())
    entry = next(s for s in data["segments"] if s["name"] == "crop_mlp")
    entry["files"] = {"onnxruntime": "crop_mlp_nchw.onnx"}
    (old / "manifest.json").write_text(json.dumps(data))
    # Same size, other layout: a manifest that does not say so is refused, not read transposed.
    with pytest.raises(ModelFormatError, match="crop_mlp.*different exports"):
        SplitGraspNet.from_directory(old, "onnxruntime")
    entry["output"]["shape"] = [1, channels, points, 1]
    (old / "manifest.json").write_text(json.dumps(data))
    manifest = SplitManifest.load(old)
    assert manifest.problems() == [] and not manifest.crop_features_points_major
    assert SplitManifest.load(split_model_dir).crop_features_points_major
    with caplog.at_level(logging.WARNING, logger="graspnet_edge_ros.runtime.split"):
        runner = SplitGraspNet.from_directory(old, "onnxruntime")
    assert runner.head_layout == "shared_points" and "re-export" in caplog.text
    raw = runner(example_cloud.sampled, skip_background_seeds=False)
    for name in FLOAT_OUTPUTS:
        np.testing.assert_array_equal(raw[name], split_raw[name], err_msg=name)


def test_a_split_export_from_before_the_shared_points_head_still_runs(split_model_dir, example_cloud, split_raw,
                                                                      tmp_path):
    """Directories exported before the shared_points layout list only grasp_head (and no head_layouts)."""
    import json
    import shutil

    from graspnet_edge_ros.contract import SplitManifest

    old = tmp_path / "old_split"
    shutil.copytree(split_model_dir, old)
    data = json.loads((old / "manifest.json").read_text())
    del data["head_layouts"]
    data["segments"] = [s for s in data["segments"] if s["name"] not in ("crop_mlp", "grasp_head_post")]
    (old / "manifest.json").write_text(json.dumps(data))
    (old / "crop_mlp.onnx").unlink()
    (old / "grasp_head_post.onnx").unlink()
    manifest = SplitManifest.load(old)
    assert manifest.head_layouts == ["per_depth"] and manifest.head_layout_for("onnxruntime") == "per_depth"
    runner = load_graspnet_runner(old, "onnxruntime")
    assert runner._timings_source.head_layout == "per_depth"
    raw = runner(example_cloud.sampled, skip_background_seeds=False)
    for name in FLOAT_OUTPUTS:
        np.testing.assert_allclose(raw[name], split_raw[name], atol=RAW_ATOL, err_msg=name)
    np.testing.assert_allclose(decode_grasps(raw).array, decode_grasps(split_raw).array, atol=1e-4)


def test_each_backend_gets_its_head_layout(split_model_dir, tmp_path):
    import dataclasses
    import json

    from graspnet_edge_ros.contract import SplitManifest
    from graspnet_edge_ros.x5.kit import with_bpu_files

    manifest = SplitManifest.load(split_model_dir)
    assert manifest.head_layouts == ["per_depth", "shared_points"]
    assert manifest.crop_chunk_points == manifest.segment("crop_mlp").input_shape[2] > 256
    assert manifest.head_layout_for("onnxruntime") == "shared_points"
    assert with_bpu_files(manifest).head_layout_for("hobot_dnn") == "per_depth"     # the BPU keeps grasp_head
    shared_only = dataclasses.replace(manifest, segments=tuple(e for e in manifest.segments if e.name != "grasp_head"))
    assert shared_only.problems() == []
    with pytest.raises(ModelFormatError, match="no grasp head that 'hobot_dnn' runs"):
        with_bpu_files(shared_only).head_layout_for("hobot_dnn")
    headless = dataclasses.replace(shared_only, segments=tuple(e for e in shared_only.segments
                                                               if e.name != "grasp_head_post"))
    assert any("no grasp head" in problem for problem in headless.problems())
    narrow = dataclasses.replace(manifest, segments=tuple(
        dataclasses.replace(e, input_shape=(1, 3, 256, 1), output_shape=(1, 256, 256, 1)) if e.name == "crop_mlp"
        else e for e in manifest.segments))
    assert any("needs more than one seed's 4 x 64 crop samples" in problem for problem in narrow.problems())
    # the manifest's head_layouts must match its segments
    data = json.loads((split_model_dir / "manifest.json").read_text())
    data["head_layouts"] = ["per_depth"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="head_layouts says"):
        SplitManifest.load(tmp_path)


def test_single_onnx_file_matches_the_torch_reference(model, example_cloud, torch_raw, tmp_path):
    from graspnet_edge_ros.export.onnx_export import export_single_file

    path = export_single_file(model, tmp_path / "graspnet.onnx", num_points=len(example_cloud.sampled))
    runner = load_graspnet_runner(path)
    assert runner.kind == "single" and runner.num_points == 20000
    _assert_raw_parity(runner(example_cloud.sampled), torch_raw, max_index_flips=2)


def test_trained_weights_find_grasps_on_the_objects(torch_raw, example_cloud):
    grasps = decode_grasps(torch_raw).sorted_by_score()
    normal, offset = fit_table_plane(example_cloud.cloud)
    heights = grasps.translations @ normal + offset
    # Most grasp points lie on objects standing on the table, not on the table itself.
    assert np.mean(heights > 0.005) > 0.8
    # The best grasps approach towards the table surface (from the camera side).
    top = grasps[:20]
    assert np.mean(top.approaches @ -normal > 0) >= 0.8


# -- export contract -------------------------------------------------------------------------------

def test_split_segments_fit_the_x5_bpu_constraints(split_model_dir):
    import onnx

    from graspnet_edge_ros.contract import SplitManifest

    manifest = SplitManifest.load(split_model_dir)
    assert manifest.segment_names == ["sa1", "sa2", "sa3", "sa4", "fp1", "fp2_approach", "grasp_head",
                                      "crop_mlp", "grasp_head_post"]
    for entry in manifest.segments:
        graph = onnx.load(str(split_model_dir / entry.files["onnxruntime"]))
        ops = {node.op_type for node in graph.graph.node}
        assert ops <= {"Conv", "Relu", "ReduceMax", "MaxPool", "Concat", "Reshape", "Transpose"}, (entry.name, ops)
        assert "BatchNormalization" not in ops                        # folded into the convolutions
        assert graph.ir_version <= 7
        assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [11]
        (value,) = graph.graph.input
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        assert len(dims) == 4 and dims[0] == 1 and dims == list(entry.input_shape)
        assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in graph.graph.output)


def test_random_weights_model_exports_and_runs(tmp_path):
    """Export is independent of the trained weights (a freshly built model exports too)."""
    from graspnet_edge_ros.export.onnx_export import export_split

    manifest = export_split(GraspNet().eval(), tmp_path / "split")
    runner = load_graspnet_runner(tmp_path / "split")
    points = np.random.default_rng(0).uniform([-0.2, -0.2, 0.4], [0.2, 0.2, 0.7], (3000, 3)).astype(np.float32)
    raw = runner(points, skip_background_seeds=False)
    assert raw["grasp_score_pred"].shape == (1, 12, 1024, 4)
    assert len(manifest.steps) > 5


# -- infer-points CLI ------------------------------------------------------------------------------

def test_infer_points_cli_dumps_official_raw_outputs_and_grasps(split_model_dir, example_cloud, tmp_path):
    points = tmp_path / "points.npy"
    np.save(points, example_cloud.sampled)
    dump, grasps_path = tmp_path / "raw.npz", tmp_path / "grasps.npy"
    completed = subprocess.run(
        [sys.executable, "-m", "graspnet_edge_ros.cli", "infer-points", "--points", str(points),
         "--model", str(split_model_dir), "--backend", "onnxruntime", "--dump", str(dump),
         "--grasps", str(grasps_path), "--repeat", "2"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "median forward" in completed.stdout
    raw = np.load(dump)
    expected = {"objectness_score": (1, 2, 1024), "view_score": (1, 1024, 300), "fp2_xyz": (1, 1024, 3),
                "grasp_top_view_inds": (1, 1024), "grasp_top_view_rot": (1, 1024, 3, 3),
                "grasp_score_pred": (1, 12, 1024, 4), "grasp_angle_cls_pred": (1, 12, 1024, 4),
                "grasp_width_pred": (1, 12, 1024, 4), "grasp_tolerance_pred": (1, 12, 1024, 4)}
    for name, shape in expected.items():
        assert raw[name].shape == shape, name
    assert np.isfinite(raw["grasp_score_pred"]).all()                   # --dump computes every seed
    grasps = GraspGroup.load_npy(grasps_path)
    assert grasps.array.shape[1] == 17 and len(grasps) > 0


@pytest.mark.parametrize("content, message", [("wrong_shape", "(N, 3)"), ("empty", "cannot read points")])
def test_infer_points_cli_reports_bad_points_without_traceback(split_model_dir, tmp_path, content, message):
    bad = tmp_path / "bad.npy"
    if content == "empty":
        bad.write_bytes(b"")
    else:
        np.save(bad, np.zeros((10, 4), np.float32))
    completed = subprocess.run(
        [sys.executable, "-m", "graspnet_edge_ros.cli", "infer-points", "--points", str(bad),
         "--model", str(split_model_dir)], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 3
    assert "Traceback" not in completed.stderr and message in completed.stderr
