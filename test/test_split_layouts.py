"""Split layouts: the "factored" SA2-SA4 segments (first layer applied by the runtime) against the
"grouped" ones (whole SA MLPs, what the X5 kit converts), on the real example scene."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.geometry import native
from graspnet_edge_ros.postprocess.decode import decode_grasps
from graspnet_edge_ros.contract import DEFAULT_SA_CHUNK_CENTRES, SplitManifest
from graspnet_edge_ros.runtime.split import SplitGraspNet

pytest.importorskip("torch", reason="exporting the model needs PyTorch")


def edited_copy(source: Path, target: Path, edit_manifest=None, without: tuple = ()) -> Path:
    """A copy of the split directory ``source`` (files in ``without`` left out) whose manifest
    ``edit_manifest(data)`` changed in place: old or broken directories, made from a fresh one."""
    shutil.copytree(source, target, ignore=lambda _, names: [name for name in names if name in without])
    if edit_manifest is not None:
        data = json.loads((target / "manifest.json").read_text())
        edit_manifest(data)
        (target / "manifest.json").write_text(json.dumps(data))
    return target


@pytest.fixture(scope="module")
def grouped_dir(graspnet_checkpoint, tmp_path_factory):
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    directory = tmp_path_factory.mktemp("grouped_split")
    export_split(load_graspnet(graspnet_checkpoint), directory, layout="grouped")
    return directory


@pytest.fixture(scope="module")
def grouped_raw(grouped_dir, example_cloud):
    return SplitGraspNet.from_directory(grouped_dir)(example_cloud.sampled, skip_background_seeds=False)


def test_default_export_is_factored_and_the_x5_layout_is_grouped(split_model_dir, grouped_dir):
    factored, grouped = SplitManifest.load(split_model_dir), SplitManifest.load(grouped_dir)
    assert (factored.layout, grouped.layout) == ("factored", "grouped")
    assert (split_model_dir / factored.first_layers).is_file() and not grouped.first_layers
    assert factored.segment("sa2").input_shape == (1, DEFAULT_SA_CHUNK_CENTRES, 32, 128)  # channels last
    assert factored.sa_channels_last and not grouped.sa_channels_last
    assert grouped.segment("sa2").input_shape == (1, 131, 1024, 32)
    # The backbone layout is independent of the grasp head's: export --split writes both heads either way.
    assert factored.head_layouts == grouped.head_layouts == ["per_depth", "shared_points"]


def test_factored_layout_gives_the_grouped_outputs_and_the_same_grasps(split_model_dir, grouped_raw, example_cloud):
    factored_raw = SplitGraspNet.from_directory(split_model_dir)(example_cloud.sampled, skip_background_seeds=False)
    assert set(factored_raw) == set(grouped_raw)
    for name, expected in grouped_raw.items():
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(factored_raw[name], expected, atol=1e-4, rtol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(factored_raw[name], expected, err_msg=name)
    ours, reference = decode_grasps(factored_raw), decode_grasps(grouped_raw)
    assert len(reference) > 100
    np.testing.assert_allclose(ours.array, reference.array, atol=1e-4, rtol=0)


def test_directory_without_a_layout_entry_runs_as_grouped(grouped_dir, grouped_raw, example_cloud, tmp_path):
    """Split directories written before layouts existed have no "layout" key: they still load and run."""
    old = edited_copy(grouped_dir, tmp_path / "old_split", lambda data: data.pop("layout"))
    net = SplitGraspNet.from_directory(old)
    assert net.manifest.layout == "grouped" and net.first_layers is None
    raw = net(example_cloud.sampled, skip_background_seeds=False)
    for name, expected in grouped_raw.items():
        np.testing.assert_array_equal(raw[name], expected, err_msg=name)


def test_directory_from_before_both_layout_axes_runs_as_grouped_per_depth(grouped_dir, example_cloud, tmp_path):
    """No "layout", no "head_layouts", only the grasp_head segment: how split directories used to look."""
    def as_before_both_axes(data):
        del data["layout"], data["head_layouts"]
        data["segments"] = [s for s in data["segments"] if s["name"] not in ("crop_mlp", "grasp_head_post")]

    old = edited_copy(grouped_dir, tmp_path / "old_split", as_before_both_axes,
                      without=("crop_mlp.onnx", "grasp_head_post.onnx"))
    net = SplitGraspNet.from_directory(old)
    assert (net.manifest.layout, net.head_layout, net.first_layers) == ("grouped", "per_depth", None)
    raw = net(example_cloud.sampled, skip_background_seeds=False)
    expected = SplitGraspNet.from_directory(grouped_dir, head_layout="per_depth")(example_cloud.sampled,
                                                                                  skip_background_seeds=False)
    for name, value in expected.items():
        np.testing.assert_array_equal(raw[name], value, err_msg=name)


@pytest.mark.parametrize("change, message", [
    ({"layout": "tiled"}, "layout 'tiled'"),
    ({"first_layers": None}, "needs a 'first_layers'"),
    ({"first_layers": "missing.npz"}, "unreadable first-layer weights"),
])
def test_bad_layout_entries_are_model_format_errors(split_model_dir, tmp_path, change, message):
    def apply(data):
        for key, value in change.items():
            if value is None:
                del data[key]
            else:
                data[key] = value

    broken = edited_copy(split_model_dir, tmp_path / "broken", apply)
    with pytest.raises(ModelFormatError, match=message):
        SplitGraspNet.from_directory(broken)


def test_first_layer_weights_that_read_the_wrong_feature_width_are_refused_at_load(split_model_dir, tmp_path):
    """A first_layers.npz whose sa3 weights read 128 features (sa2 gives 256) fails at load, not in a frame."""
    broken = edited_copy(split_model_dir, tmp_path / "broken")
    manifest = SplitManifest.load(broken)
    with np.load(broken / manifest.first_layers) as data:
        arrays = dict(data)
    arrays["sa3.weight_features"] = arrays["sa3.weight_features"][:, :128]
    np.savez(broken / manifest.first_layers, **arrays)
    with pytest.raises(ModelFormatError, match="from 256 sa2 features"):
        SplitGraspNet.from_directory(broken)


def test_first_layer_kernel_equals_the_dense_layer_on_grouped_inputs(split_model_dir, example_cloud):
    """relu(W · [xyz_norm, features] + b) computed densely per group (float64) vs the factored kernel."""
    manifest = SplitManifest.load(split_model_dir)
    weight_xyz, weight_features, bias = manifest.load_first_layers()["sa2"]
    (n1, _, _), (n2, radius, nsample) = manifest.model.sa_layers[:2]
    points = example_cloud.sampled
    centres = points[native.furthest_point_sample(points, n1)]
    features = np.random.default_rng(0).uniform(0, 2, (weight_features.shape[1], n1)).astype(np.float32)
    idx = native.ball_query(centres, centres[:n2], radius, nsample)
    grouped_xyz = native.group_xyz(centres, centres[:n2], idx, radius)
    np.testing.assert_array_equal(grouped_xyz, (centres[idx] - centres[:n2, None]).transpose(2, 0, 1)
                                  / np.float32(radius))                   # the official float32 formula
    dense = np.concatenate([grouped_xyz, features[:, idx]]).astype(np.float64)
    weight = np.concatenate([weight_xyz, weight_features], axis=1).astype(np.float64)
    expected = np.maximum(np.einsum("ci,isk->csk", weight, dense) + bias[:, None, None], 0)
    out = np.full((len(bias), n2, nsample), np.nan, np.float32)
    got = native.group_first_layer(centres, centres[:n2], idx, radius, weight_features @ features, weight_xyz,
                                   bias, out=out)
    assert got is out
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


@pytest.fixture(scope="module")
def whole_sa1_dir(graspnet_checkpoint, tmp_path_factory):
    """The default export but with SA1 as one call over all its groups (as the X5 kit exports it)."""
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    directory = tmp_path_factory.mktemp("whole_sa1_split")
    export_split(load_graspnet(graspnet_checkpoint), directory, sa1_chunk_groups=None)
    return directory


def test_sa1_runs_only_the_groups_sa2_reads_with_the_same_outputs(split_model_dir, whole_sa1_dir, example_cloud):
    chunked, whole = SplitGraspNet.from_directory(split_model_dir), SplitGraspNet.from_directory(whole_sa1_dir)
    n1, _, k1 = whole.manifest.model.sa_layers[0]
    assert whole.manifest.segment("sa1").input_shape == (1, 3, n1, k1)
    chunk = chunked.manifest.sa1_chunk_groups
    assert chunked.manifest.segment("sa1").input_shape == (1, 3, chunk, k1) and chunk < n1
    sa1_calls = []
    run_sa1 = chunked.runners["sa1"]
    chunked.runners["sa1"] = lambda tensor: sa1_calls.append(tensor.copy()) or run_sa1(tensor)

    raw = chunked(example_cloud.sampled, skip_background_seeds=False)
    expected = whole(example_cloud.sampled, skip_background_seeds=False)
    for name, value in expected.items():
        np.testing.assert_allclose(raw[name], value, atol=1e-6, rtol=0, err_msg=name)
    np.testing.assert_array_equal(decode_grasps(raw).array, decode_grasps(expected).array)

    # Exactly the SA1 groups SA2's ball query reads ran (rounded up to whole calls), not all 2048.
    sa1_xyz = raw["point_clouds"][0][native.furthest_point_sample(example_cloud.sampled, n1)]
    (_, r2, k2) = whole.manifest.model.sa_layers[1]
    read = np.unique(native.ball_query(sa1_xyz, raw["fp2_xyz"][0], r2, k2))
    assert len(sa1_calls) == -(-len(read) // chunk) and len(sa1_calls) * chunk < n1 / 2
    grouped = np.concatenate([call[0] for call in sa1_calls], axis=1)[:, :len(read)]
    _, r1, _ = whole.manifest.model.sa_layers[0]
    centres = sa1_xyz[read]
    idx = native.ball_query(example_cloud.sampled, centres, r1, k1)
    np.testing.assert_array_equal(grouped, native.group_xyz(example_cloud.sampled, centres, idx, r1))


@pytest.mark.parametrize("centres_per_call, channels_last", [(None, True), (384, True), (256, False)])
def test_factored_sa_segments_in_other_calls_and_layouts_give_the_same_outputs(
        graspnet_checkpoint, split_model_dir, example_cloud, tmp_path, centres_per_call, channels_last):
    """The default export runs SA2/SA3 in calls of DEFAULT_SA_CHUNK_CENTRES centres (smaller ONNX Runtime
    activations), their input channels last. Whole segments (None), a size that leaves a padded last
    call (384: 3 SA2 calls, the last padded with 128 copies of the last centre) and the channels-first
    input of exports before 2026-12-08 give the same raw outputs, bit for bit."""
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    other_dir = tmp_path / "split"
    export_split(load_graspnet(graspnet_checkpoint), other_dir, sa_chunk_centres=centres_per_call,
                 sa_channels_last=channels_last, head_layouts=("shared_points",))
    default, other = SplitGraspNet.from_directory(split_model_dir), SplitGraspNet.from_directory(other_dir)
    assert other.manifest.sa_channels_last == channels_last
    calls = {name: [] for name in ("sa2", "sa3", "sa4")}
    for name, record in calls.items():
        run = other.runners[name]
        other.runners[name] = lambda tensor, _run=run, _record=record: _record.append(tensor.shape) or _run(tensor)
    expected = default(example_cloud.sampled)
    raw = other(example_cloud.sampled)
    for name, value in expected.items():
        np.testing.assert_array_equal(raw[name], value, err_msg=name)
    for name, (centres, _, nsample) in zip(calls, default.manifest.model.sa_layers[1:]):
        height = min(centres_per_call or centres, centres)
        shape = (1, height, nsample, 128) if channels_last else (1, 128, height, nsample)
        assert calls[name] == [shape] * -(-centres // height), name
        assert default.manifest.sa_chunk_centres(name) == min(DEFAULT_SA_CHUNK_CENTRES, centres)


def test_sa_segment_shapes_that_do_not_fit_the_model_are_refused(split_model_dir, grouped_dir, tmp_path):
    def widen_sa3(data):
        sa3 = next(entry for entry in data["segments"] if entry["name"] == "sa3")
        sa3["input"]["shape"][1] = sa3["output"]["shape"][2] = 1024

    with pytest.raises(ModelFormatError, match="'sa3' takes 1024 centres per call, SA has 512"):
        SplitManifest.load(edited_copy(split_model_dir, tmp_path / "wide", widen_sa3))

    def chunk_grouped_sa2(data):
        sa2 = next(entry for entry in data["segments"] if entry["name"] == "sa2")
        sa2["input"]["shape"][2] = sa2["output"]["shape"][2] = 256

    with pytest.raises(ModelFormatError, match="grouped layout takes 256 centres per call, it needs all 1024"):
        SplitManifest.load(edited_copy(grouped_dir, tmp_path / "grouped", chunk_grouped_sa2))

    def three_dimensional_sa4(data):
        sa4 = next(entry for entry in data["segments"] if entry["name"] == "sa4")
        sa4["output"]["shape"] = [1, 256, 256]

    with pytest.raises(ModelFormatError, match="'sa4' must take and give 4-D tensors"):
        SplitManifest.load(edited_copy(split_model_dir, tmp_path / "rank", three_dimensional_sa4))

    def ambiguous_sa2(data):  # 128 centres of 128 samples of 128 channels: either layout
        data["model"]["sa_layers"][1][2] = 128
        sa2 = next(entry for entry in data["segments"] if entry["name"] == "sa2")
        sa2["input"]["shape"] = [1, 128, 128, 128]
        sa2["output"]["shape"][2] = 128

    with pytest.raises(ModelFormatError, match="channels first or last cannot be told apart"):
        SplitManifest.load(edited_copy(split_model_dir, tmp_path / "ambiguous", ambiguous_sa2))


def test_sa1_segment_wider_than_sa1_is_refused(split_model_dir, tmp_path):
    def widen_sa1(data):
        sa1 = next(entry for entry in data["segments"] if entry["name"] == "sa1")
        sa1["input"]["shape"][2] = sa1["output"]["shape"][2] = 4096

    broken = edited_copy(split_model_dir, tmp_path / "split", widen_sa1)
    with pytest.raises(ModelFormatError, match="'sa1' input shape"):
        SplitManifest.load(broken)


def test_cli_export_sets_the_sa1_groups_per_call(graspnet_checkpoint, tmp_path):
    from graspnet_edge_ros.cli import main

    for value, groups in (("0", 2048), ("256", 256)):
        directory = tmp_path / f"split_{value}"
        assert main(["export", "--checkpoint", str(graspnet_checkpoint), "--split", "--split-layout", "grouped",
                     "--output", str(directory), "--sa1-groups-per-call", value]) == 0
        manifest = SplitManifest.load(directory)
        assert manifest.segment("sa1").input_shape == (1, 3, groups, 64) == (1, 3, manifest.sa1_chunk_groups, 64)
