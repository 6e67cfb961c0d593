"""The int8 CPU path: ``export --split --quantize int8``, its report, and loading it like any split directory."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from graspnet_edge_ros.cli import main
from graspnet_edge_ros.config import DetectorConfig
from graspnet_edge_ros.errors import EXIT_INPUT, EXIT_OK, EXIT_USAGE
from graspnet_edge_ros.contract import SplitManifest

CALIBRATION_SAMPLES = 2  # the smallest set that still exercises strided min/max and the head's chunk turns


@pytest.fixture(scope="module")
def int8_export(graspnet_checkpoint, shared_dir, tmp_path_factory):
    """(directory, stdout) of the real checkpoint exported to int8, calibrated on the real example frame."""
    pytest.importorskip("torch", reason="exporting the model needs PyTorch")
    pytest.importorskip("onnxruntime.quantization")
    directory = tmp_path_factory.mktemp("int8") / "graspnet_int8"
    code = main(["export", "--checkpoint", str(graspnet_checkpoint), "--split", "--output", str(directory),
                 "--quantize", "int8", "--calibration-source", str(shared_dir / "data" / "graspnet_example"),
                 "--calibration-samples", str(CALIBRATION_SAMPLES)])
    assert code == EXIT_OK
    return directory


def test_int8_export_writes_quantised_segments_and_an_int8_manifest(int8_export, shared_dir):
    import onnx

    manifest = SplitManifest.load(int8_export)
    assert manifest.precision == "int8"
    # The default (factored) backbone: its first SA2..SA4 layers run in float32 in the runtime, copied as they are.
    assert manifest.layout == "factored" and (int8_export / manifest.first_layers).is_file()
    assert set(manifest.load_first_layers()) == {"sa2", "sa3", "sa4"}
    calibration = manifest.quantization["calibration"]
    assert calibration["samples_per_segment"] == CALIBRATION_SAMPLES
    assert "graspnet_example" in calibration["source"]
    for entry in manifest.segments:
        model = onnx.load(str(int8_export / entry.files["onnxruntime"]))
        ops = {node.op_type for node in model.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, entry.name
        int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert int8_weights, f"{entry.name}: no int8 weights"
        # The float pipeline feeds and reads float32, as for the fp32 export.
        assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # The grasp head's output tail stays float: its Concat is not fed by a DequantizeLinear.
    head = onnx.load(str(int8_export / manifest.segment("grasp_head_post").files["onnxruntime"]))
    assert manifest.quantization["float_nodes"]["grasp_head_post"]
    producers = {out: node.op_type for node in head.graph.node for out in node.output}
    output_node = next(n for n in head.graph.node if head.graph.output[0].name in n.output)
    assert output_node.op_type == "Concat"
    assert all(producers.get(i) == "Conv" for i in output_node.input)
    # Calibration data is not left behind (it is GBs for large sets).
    leftovers = [p for p in int8_export.rglob("*") if p.suffix == ".bin" or p.name == "calibration"]
    assert leftovers == []


def test_int8_set_abstractions_take_their_max_on_the_8_bit_values_with_the_same_result(int8_export):
    """quantize.float_output_tail leaves each SA segment's closing max quantised: exact, not an approximation.

    The same segment with its max moved back to float (MaxPool on the dequantised activations, the
    trailing QuantizeLinear/DequantizeLinear pair removed) gives the same output bit for bit.
    """
    import onnx
    import onnxruntime as ort

    manifest = SplitManifest.load(int8_export)
    rng = np.random.default_rng(7)
    for name in ("sa1", "sa2", "sa3", "sa4"):
        assert name not in manifest.quantization["float_nodes"] or not manifest.quantization["float_nodes"][name]
        model = onnx.load(str(int8_export / manifest.segment(name).files["onnxruntime"]))
        ops = [node.op_type for node in model.graph.node]
        pool = ops.index("MaxPool")
        assert ops[pool - 1:pool + 3] == ["DequantizeLinear", "MaxPool", "QuantizeLinear", "DequantizeLinear"], ops
        float_max = onnx.ModelProto()
        float_max.CopyFrom(model)
        nodes = list(float_max.graph.node)
        nodes[pool].output[0] = float_max.graph.output[0].name
        del float_max.graph.node[:]
        float_max.graph.node.extend(nodes[:pool + 1] + nodes[pool + 3:])
        shape = manifest.segment(name).input_shape
        # Inputs in the calibrated range: SA1 takes normalised xyz, SA2..SA4 first-layer ReLU outputs.
        x = (rng.uniform(-1, 1, shape) if name == "sa1" else rng.exponential(0.5, shape)).astype(np.float32)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        outputs = [ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
                   .run(None, {"input": x})[0] for m in (model, float_max)]
        assert outputs[0].shape == outputs[1].shape and np.array_equal(outputs[0], outputs[1]), name
        assert np.unique(outputs[0]).size > 10  # not a degenerate (all-zero or saturated) input


def test_int8_report_numbers_are_computed_and_in_range(int8_export):
    report = json.loads((int8_export / "int8_report.json").read_text())
    frames = [row["frame"] for row in report["per_frame"]]
    assert len(frames) == 2 and frames[0] == "graspnet_example" and "orbit" in frames[1]
    for row in report["per_frame"]:
        assert 0.0 <= row["top_k_agreement"] <= 1.0
        assert math.isfinite(row["score_drift_mean"]) and 0.0 <= row["score_drift_mean"] <= row["score_drift_max"]
        assert row["grasps_fp32"] >= 0 and row["grasps_int8"] >= 0
        assert row["runs"] >= 1
    assert 0.0 <= report["top_k_match"] <= 1.0
    assert set(report["segment_cosine"]) == {"sa1", "sa2", "sa3", "sa4", "fp1", "fp2_approach", "crop_mlp", "grasp_head_post"}
    assert all(-1.0 <= c <= 1.0 + 1e-6 for c in report["segment_cosine"].values())
    # Each run compares the top-k of the same sampled points: the counts add up.
    for run in report["runs"]:
        assert 0 <= run["matched"] <= run["top_k"] <= report["top_k"]
        assert len(run["score_diff"]) == run["matched"]


def test_int8_directory_runs_through_cli_detect(int8_export, shared_dir, tmp_path):
    scene = shared_dir / "data" / "graspnet_example"
    output = tmp_path / "grasps.json"
    code = main(["detect", "--color", str(scene / "color.png"), "--depth", str(scene / "depth.png"),
                 "--camera-info", str(scene / "meta.mat"), "--workspace-mask", str(scene / "workspace_mask.png"),
                 "--model", str(int8_export), "--seed", "0", "--output", str(output)])
    assert code == EXIT_OK
    result = json.loads(output.read_text())
    assert result["status"] == "ok" and len(result["grasps"]) > 0


def test_int8_directory_loads_through_the_node_loader(int8_export, example_cloud, split_model_dir):
    """The node builds ``GraspDetector(config)``, whose runner comes from ``load_model_runner``."""
    from graspnet_edge_ros.pipeline import load_model_runner

    runner = load_model_runner(DetectorConfig.from_flat(model_path=str(int8_export), num_threads=2))
    assert runner.kind == "split" and runner.backend_name == "onnxruntime"
    raw = runner(example_cloud.sampled)
    reference = load_model_runner(DetectorConfig.from_flat(model_path=str(split_model_dir)))(example_cloud.sampled)
    # Same FPS and geometry (float); the learned outputs are close to fp32, not equal.
    np.testing.assert_array_equal(raw["fp2_inds"], reference["fp2_inds"])
    objectness = raw["objectness_score"][0].argmax(0)
    assert (objectness == reference["objectness_score"][0].argmax(0)).mean() > 0.9


@pytest.mark.parametrize("extra, code, fragment", [
    (["--quantize", "int8", "--calibration-source", "SCENE"], EXIT_USAGE, "add --split"),
    (["--split", "--quantize", "int8"], EXIT_USAGE, "needs --calibration-source"),
    (["--split", "--quantize", "int8", "--calibration-source", "SCENE", "--calibration-samples", "0"], EXIT_USAGE,
     "--calibration-samples must be >= 1"),
    (["--split", "--quantize", "int8", "--calibration-source", "MISSING"], EXIT_INPUT, "frame source not found"),
    (["--split", "--sa1-groups-per-call", "-1"], EXIT_USAGE, "--sa1-groups-per-call must be >= 0"),
    (["--split", "--sa1-groups-per-call", "4096"], EXIT_USAGE, "sa1_chunk_groups must be in [1, 2048]"),
])
def test_int8_export_bad_options_are_one_line(graspnet_checkpoint, shared_dir, tmp_path, capsys, extra, code,
                                              fragment):
    pytest.importorskip("torch")
    scene = str(shared_dir / "data" / "graspnet_example")
    extra = [scene if a == "SCENE" else str(tmp_path / "missing") if a == "MISSING" else a for a in extra]
    output = tmp_path / ("out" if "--split" in extra else "out.onnx")
    assert main(["export", "--checkpoint", str(graspnet_checkpoint), "--output", str(output), *extra]) == code
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.onnx"))


def test_float_manifest_json_is_unchanged_by_the_precision_field(split_model_dir):
    data = json.loads((split_model_dir / "manifest.json").read_text())
    assert "precision" not in data and "quantization" not in data
    assert SplitManifest.load(split_model_dir).precision == "float32"
