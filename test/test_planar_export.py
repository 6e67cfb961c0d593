"""Planar ONNX export (static, opset 11, metadata), PyTorch/onnxruntime parity, model-type detection,
the export CLI, and AFFGA-Net decoding of planted maps."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from graspnet_edge_ros.errors import ConfigError, InputError, ModelFormatError  # noqa: E402
from graspnet_edge_ros.planar.formats import detect_planar_model_type, read_onnx_signature  # noqa: E402
from graspnet_edge_ros.planar.runner import PlanarDecodeOptions, load_planar_runner  # noqa: E402

AFFGA_TEST_SIZE = 64    # same graph as at 320 (any multiple of 16), 1/25 of the compute


@pytest.fixture(scope="module")
def grconvnet_checkpoint(shared_dir):
    return shared_dir / "models" / "grconvnet3_cornell_rgbd_ch16.pt"


@pytest.fixture(scope="module")
def grconvnet_onnx(grconvnet_checkpoint, tmp_path_factory):
    from graspnet_edge_ros.planar.export import export_planar_onnx, load_planar_model

    model_type, model = load_planar_model(grconvnet_checkpoint)
    return export_planar_onnx(model, model_type, tmp_path_factory.mktemp("grconvnet") / "grconvnet.onnx")


@pytest.fixture(scope="module")
def affga_files(tmp_path_factory):
    """Random-weight AFFGA-Net (no trained weights are public): its state dict and its ONNX export."""
    from graspnet_edge_ros.planar.affga import AFFGANet
    from graspnet_edge_ros.planar.export import export_planar_onnx

    directory = tmp_path_factory.mktemp("affga")
    torch.manual_seed(0)
    model = AFFGANet().eval()
    checkpoint = directory / "affga_random.pth"
    torch.save({"model_state_dict": model.state_dict()}, checkpoint)
    path = export_planar_onnx(model, "affga", directory / "affga.onnx", input_size=AFFGA_TEST_SIZE)
    return model, checkpoint, path


@pytest.fixture(scope="module")
def scene_metres(example_scene):
    depth = example_scene["depth"].astype(np.float32) / np.float32(example_scene["factor_depth"])
    return example_scene["color"], depth


# -- export contract -----------------------------------------------------------------------------------------

def _graph_facts(path):
    model = onnx.load(str(path))
    shapes = {v.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
              for v in list(model.graph.input) + list(model.graph.output)}
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return model, shapes, opset, {p.key: p.value for p in model.metadata_props}


def test_grconvnet_onnx_is_static_opset11_with_metadata_and_matches_torch(grconvnet_onnx, grconvnet_checkpoint):
    from graspnet_edge_ros.planar.export import compare_with_onnxruntime
    from graspnet_edge_ros.planar.grconvnet import load_grconvnet

    model, shapes, opset, meta = _graph_facts(grconvnet_onnx)
    assert opset == 11 and model.ir_version <= 7
    assert shapes == {"input": (1, 4, 224, 224), "pos": (1, 1, 224, 224), "cos": (1, 1, 224, 224),
                      "sin": (1, 1, 224, 224), "width": (1, 1, 224, 224)}
    assert {n.op_type for n in model.graph.node} <= {"Conv", "ConvTranspose", "BatchNormalization", "Relu", "Add"}
    assert meta["graspnet_edge.model_type"] == "grconvnet"
    assert meta["graspnet_edge.input_size"] == "224" and meta["graspnet_edge.input_channels"] == "4"
    assert meta["graspnet_edge.channel_order"] == "depth,R,G,B" and meta["graspnet_edge.width_scale"] == "150.0"
    # The cheap wire-level reader sees the same signature as onnx.load.
    signature = read_onnx_signature(grconvnet_onnx)
    assert dict(signature.inputs + signature.outputs) == shapes and signature.metadata == meta
    example = torch.from_numpy(np.random.default_rng(3).normal(0, 0.5, (1, 4, 224, 224)).astype(np.float32))
    differences = compare_with_onnxruntime(load_grconvnet(grconvnet_checkpoint), grconvnet_onnx, example)
    assert set(differences) == {"pos", "cos", "sin", "width"}
    assert max(differences.values()) < 1e-4


def test_grconvnet_onnx_runner_gives_the_torch_grasps_on_the_real_scene(grconvnet_onnx, grconvnet_checkpoint,
                                                                        scene_metres):
    color, depth = scene_metres
    torch_runner = load_planar_runner(grconvnet_checkpoint)
    onnx_runner = load_planar_runner(grconvnet_onnx, intra_op_threads=2)
    assert onnx_runner.backend_name == "onnxruntime" and onnx_runner.model_type == "grconvnet"
    assert onnx_runner.model_id.startswith("grconvnet:grconvnet.onnx@") and len(onnx_runner.model_id.split("@")[1]) == 8
    reference, produced = torch_runner(color, depth), onnx_runner(color, depth)
    assert len(produced) == 10
    np.testing.assert_array_equal(produced.rows, reference.rows)
    np.testing.assert_array_equal(produced.cols, reference.cols)
    np.testing.assert_allclose(produced.angles_rad, reference.angles_rad, atol=1e-5)
    np.testing.assert_allclose(produced.widths_px, reference.widths_px, atol=1e-3)
    np.testing.assert_allclose(produced.scores, reference.scores, atol=1e-5)
    assert set(onnx_runner.last_timings_ms) == {"prepare", "network", "decode"}


def test_affga_onnx_keeps_bilinear_align_corners_static_and_matches_torch(affga_files):
    from graspnet_edge_ros.planar.export import compare_with_onnxruntime, inference_module

    model, _, path = affga_files
    graph, shapes, opset, meta = _graph_facts(path)
    size = AFFGA_TEST_SIZE
    assert opset == 11
    assert shapes == {"input": (1, 3, size, size), "able": (1, 1, size, size), "angle_bin": (1, 1, size, size),
                      "width": (1, 1, size, size)}
    ops = {n.op_type for n in graph.graph.node}
    assert "Shape" not in ops and "Gather" not in ops and "ArgMax" in ops   # constant upsampling scales
    resizes = [n for n in graph.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 6     # 3 decoder upsamplings + 3 output upsamplings
    for node in resizes:
        attributes = {a.name: a.s for a in node.attribute}
        assert attributes["mode"] == b"linear" and attributes["coordinate_transformation_mode"] == b"align_corners"
    assert meta["graspnet_edge.model_type"] == "affga" and meta["graspnet_edge.angle_bins"] == "120"
    assert meta["graspnet_edge.channel_order"] == "B,G,R" and meta["graspnet_edge.outputs"] == "able,angle_bin,width"
    module, _ = inference_module("affga", model, "argmax")
    example = torch.from_numpy(np.random.default_rng(1).uniform(-0.5, 0.5, (1, 3, size, size)).astype(np.float32))
    differences = compare_with_onnxruntime(module, path, example)
    assert differences["able"] < 1e-4 and differences["width"] < 1e-4
    assert differences["angle_bin"] <= 1e-3    # fraction of pixels whose argmax differs


def test_affga_logits_export_and_checkpoint_runner(affga_files, scene_metres, tmp_path):
    from graspnet_edge_ros.planar.export import export_planar_onnx

    model, checkpoint, argmax_path = affga_files
    color, _ = scene_metres
    # verify=False: the runner comparison below checks this file against the torch checkpoint anyway.
    logits_path = export_planar_onnx(model, "affga", tmp_path / "affga_logits.onnx", input_size=AFFGA_TEST_SIZE,
                                     angle_output="logits", verify=False)
    assert dict(read_onnx_signature(logits_path).outputs)["angle"] == (1, 120, AFFGA_TEST_SIZE, AFFGA_TEST_SIZE)
    options = PlanarDecodeOptions(min_quality=0.0, min_distance_px=4, num_grasps=5)
    runners = [load_planar_runner(path, decode=options) for path in (argmax_path, logits_path)]
    runners.append(load_planar_runner(checkpoint, input_size=AFFGA_TEST_SIZE, decode=options))
    assert [r.backend_name for r in runners] == ["onnxruntime", "onnxruntime", "torch"]
    results = [runner(color, None) for runner in runners]      # RGB-only model: depth may be None
    window = runners[0].crop_window(color.shape)
    for grasps in results:
        assert len(grasps) == 5 and np.all(np.diff(grasps.scores) <= 0)
        assert np.all((grasps.rows >= window.top + 4) & (grasps.rows < window.top + AFFGA_TEST_SIZE - 4))
        assert np.all((grasps.angles_rad >= 0) & (grasps.angles_rad < 2 * np.pi))
        assert np.all((grasps.widths_px > 0) & (grasps.widths_px < 200))
        np.testing.assert_array_equal(grasps.rows, results[0].rows)
        np.testing.assert_array_equal(grasps.cols, results[0].cols)
        np.testing.assert_allclose(grasps.angles_rad, results[0].angles_rad)


# -- decoding planted maps ------------------------------------------------------------------------------------

def _planted_affga_maps(size, peak_rc, angle_bin, width_px, bins=120):
    rows, cols = np.mgrid[:size, :size]
    distance2 = (rows - peak_rc[0]) ** 2 + (cols - peak_rc[1]) ** 2
    able = (6.0 * np.exp(-distance2 / 50.0) - 3.0).astype(np.float32)[None, None]   # logit 3 at the peak
    angle = np.zeros((1, bins, size, size), np.float32)
    angle[0, angle_bin] = 1.0
    width = np.full((1, 1, size, size), np.log(width_px / (200.0 - width_px)), np.float32)   # sigmoid x 200
    return able, angle, width


@pytest.mark.parametrize("angle_form", ["logits", "argmax"])
def test_affga_decode_recovers_a_planted_grasp_in_full_image_pixels(angle_form):
    from graspnet_edge_ros.planar.decode import decode_affga
    from graspnet_edge_ros.planar.preprocess import crop_window

    window = crop_window((480, 640), 320)
    assert (window.top, window.left) == (80, 160)    # the original's centre crop of a 640x480 image
    able, angle, width = _planted_affga_maps(320, (233, 187), angle_bin=37, width_px=60.0)
    angle_input = angle[0] if angle_form == "logits" else np.argmax(angle[0], axis=0).astype(np.int64)
    grasps = decode_affga(able[0], angle_input, width[0], angle_bins=120, offset_rc=(window.top, window.left),
                          num_grasps=5, min_quality=0.5, min_distance_px=2, width_scale=200.0)
    assert len(grasps) == 1
    assert (grasps.rows[0], grasps.cols[0]) == (233 + 80, 187 + 160)    # (313, 347) as in planar_spec B.5
    assert grasps.angles_rad[0] == pytest.approx(37 * 2 * np.pi / 120)
    assert grasps.widths_px[0] == pytest.approx(60.0, rel=1e-5)
    assert 0.9 < grasps.scores[0] < 1.0


def test_grconvnet_decode_recovers_a_planted_grasp():
    from graspnet_edge_ros.planar.decode import decode_grconvnet

    rows, cols = np.mgrid[:224, :224]
    pos = np.exp(-((rows - 90) ** 2 + (cols - 140) ** 2) / 200.0).astype(np.float32)
    theta = np.deg2rad(30.0)
    cos = np.full_like(pos, np.cos(2 * theta))
    sin = np.full_like(pos, np.sin(2 * theta))
    width = np.full_like(pos, 0.4)
    grasps = decode_grconvnet(pos, cos, sin, width, offset_rc=(248, 528), num_grasps=3, min_quality=0.2,
                              min_distance_px=20, width_scale=150.0)
    assert len(grasps) == 1 and (grasps.rows[0], grasps.cols[0]) == (338, 668)
    assert grasps.angles_rad[0] == pytest.approx(theta, abs=1e-6)
    assert grasps.widths_px[0] == pytest.approx(60.0, rel=1e-5)
    halved = decode_grconvnet(pos, cos, sin, width, offset_rc=(0, 0), num_grasps=3, min_quality=0.2,
                              min_distance_px=20, width_scale=112.0)
    assert halved.widths_px[0] == pytest.approx(0.4 * 112.0, rel=1e-5)


# -- detection, loading errors, CLI -----------------------------------------------------------------------------

def test_detect_planar_model_type(grconvnet_checkpoint, grconvnet_onnx, affga_files, graspnet_checkpoint,
                                  split_model_dir, tmp_path):
    _, affga_checkpoint, affga_onnx = affga_files
    assert detect_planar_model_type(grconvnet_checkpoint) == "grconvnet"
    assert detect_planar_model_type(grconvnet_onnx) == "grconvnet"
    assert detect_planar_model_type(affga_checkpoint) == "affga"
    assert detect_planar_model_type(affga_onnx) == "affga"
    assert detect_planar_model_type(graspnet_checkpoint) is None
    assert detect_planar_model_type(split_model_dir) is None
    assert detect_planar_model_type(split_model_dir / "sa1.onnx") is None
    assert detect_planar_model_type(split_model_dir / "grasp_head.onnx") is None
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 64)
    assert detect_planar_model_type(garbage) is None
    with pytest.raises(ModelFormatError, match="not found"):
        detect_planar_model_type(tmp_path / "missing.onnx")


def test_detecting_an_onnx_file_does_not_import_torch(affga_files):
    _, _, affga_onnx = affga_files
    code = ("import sys; from graspnet_edge_ros.planar.runner import detect_planar_model_type; "
            f"print(detect_planar_model_type({str(affga_onnx)!r})); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["affga", "False"]


def test_loading_errors_are_clear(grconvnet_checkpoint, graspnet_checkpoint, grconvnet_onnx, tmp_path):
    from graspnet_edge_ros.planar.affga import AFFGANet
    from graspnet_edge_ros.planar.export import export_planar_onnx

    with pytest.raises(ModelFormatError, match="holds a grconvnet model, not affga"):
        load_planar_runner(grconvnet_onnx, model_type="affga")
    with pytest.raises(ModelFormatError, match="not a GR-ConvNet or AFFGA-Net"):
        load_planar_runner(graspnet_checkpoint)
    with pytest.raises(ModelFormatError, match="not found"):
        load_planar_runner(tmp_path / "nothing.onnx")
    with pytest.raises(ConfigError, match="model_type"):
        load_planar_runner(grconvnet_checkpoint, model_type="ggcnn")
    with pytest.raises(ConfigError, match="opset >= 11"):
        export_planar_onnx(AFFGANet(), "affga", tmp_path / "a.onnx", input_size=64, opset=10)
    with pytest.raises(ConfigError, match="multiple of 16"):
        export_planar_onnx(AFFGANet(), "affga", tmp_path / "a.onnx", input_size=100)
    runner = load_planar_runner(grconvnet_onnx)
    assert runner.input_size == 224 and runner.input_channels == 4


def _cli(capsys, *args):
    from graspnet_edge_ros.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_cli_detects_planar_checkpoints_and_reports_misuse(grconvnet_checkpoint, tmp_path, capsys):
    output = tmp_path / "grconv.onnx"
    code, out, err = _cli(capsys, "export", "--checkpoint", grconvnet_checkpoint, "--output", output,
                          "--input-size", 320)
    assert code == 0, err
    assert "grconvnet" in out and "onnxruntime matches PyTorch" in out
    _, shapes, opset, meta = _graph_facts(output)
    assert opset == 11 and shapes["input"] == (1, 4, 320, 320) and shapes["pos"] == (1, 1, 320, 320)
    assert meta["graspnet_edge.model_type"] == "grconvnet" and meta["source_checkpoint"] == grconvnet_checkpoint.name
    code, _, err = _cli(capsys, "export", "--checkpoint", grconvnet_checkpoint, "--output", tmp_path / "x.onnx",
                        "--model-type", "affga")
    assert code == 4 and "holds a grconvnet model, not affga" in err
    code, _, err = _cli(capsys, "export", "--checkpoint", grconvnet_checkpoint, "--output", tmp_path / "d", "--split")
    assert code == 2 and "--split is for GraspNet" in err
    code, _, err = _cli(capsys, "export", "--checkpoint", grconvnet_checkpoint, "--output", tmp_path / "y.onnx",
                        "--opset", 9)
    assert code == 2 and "opset >= 11" in err


@pytest.mark.parametrize("kernel, padding", [(9, 4), (3, 0), (5, 1)])
def test_stride1_transpose_rewrite_is_the_same_function(kernel, padding):
    import torch

    from graspnet_edge_ros.planar.grconvnet import stride1_transpose_as_conv

    torch.manual_seed(kernel)
    layer = torch.nn.ConvTranspose2d(3, 5, kernel, stride=1, padding=padding)
    x = torch.randn(1, 3, 17, 23)
    with torch.no_grad():
        torch.testing.assert_close(stride1_transpose_as_conv(layer)(x), layer(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match="stride-1"):  # a ValueError too
        stride1_transpose_as_conv(torch.nn.ConvTranspose2d(3, 5, 4, stride=2))
