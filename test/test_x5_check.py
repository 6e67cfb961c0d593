"""x5-check: the X5 limits and operator placement (edge_deploy.md §2.2/§2.5) on real and crafted models."""
import pytest

from graspnet_edge_ros.cli import main
from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.x5.opcheck import BPU, check_onnx_model

SEGMENTS = ("sa1", "sa2", "sa3", "sa4", "fp1", "fp2_approach", "grasp_head", "crop_mlp", "grasp_head_post")


def test_every_split_segment_fits_the_x5_limits_with_every_op_on_the_bpu(split_model_dir, capsys):
    paths = [str(split_model_dir / f"{name}.onnx") for name in SEGMENTS]
    for path in paths:
        check = check_onnx_model(path, bpu_only=True)
        assert check.ok, check.format()
        assert {n.where for n in check.nodes} == {BPU}
        assert {n.op_type for n in check.nodes} <= {"Conv", "Relu", "MaxPool", "Concat", "Transpose"}
    assert main(["x5-check", "--bpu-only", *paths]) == 0
    out = capsys.readouterr().out
    assert out.count("OK:") == len(SEGMENTS) and "ERROR" not in out
    assert "Conv               BPU" in out and "MaxPool            BPU" in out


def test_the_single_file_export_is_refused(graspnet_checkpoint, tmp_path, capsys):
    from graspnet_edge_ros.export.onnx_export import export_single_file
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    path = export_single_file(load_graspnet(graspnet_checkpoint), tmp_path / "single.onnx", num_points=4096, opset=11)
    check = check_onnx_model(path)
    text = "\n".join(check.problems)
    assert not check.ok
    assert "Loop x1 is unsupported" in text                       # FPS as an ONNX Loop
    assert "input point_clouds is 3-D" in text                    # (1, N, 3), not 4-D
    assert "output grasp_top_view_inds is int64" in text
    assert main(["x5-check", str(path)]) == 4
    assert "FAILED" in capsys.readouterr().out


# -- crafted graphs: one violation each, next to a conforming twin -----------------------------
def _model(nodes, inputs, outputs, initializers=(), opset=11, ir_version=6):
    from onnx import helper

    graph = helper.make_graph(nodes, "crafted", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def _save(model, path):
    import onnx

    onnx.save(model, str(path))
    return path


def _conv_graph(input_shape=(1, 8, 16, 1), weight_shape=(4, 8, 1, 1), opset=11, ir_version=6, extra_outputs=0,
                output_type=None):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones(weight_shape, np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    for i in range(extra_outputs):
        nodes.append(helper.make_node("Relu", ["c"], [f"extra{i}"]))
        outputs.append(helper.make_tensor_value_info(f"extra{i}", TensorProto.FLOAT, None))
    if output_type is not None:
        nodes.append(helper.make_node("Cast", ["y"], ["y_cast"], to=output_type))
        outputs = [helper.make_tensor_value_info("y_cast", output_type, None)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))], outputs,
                  [weight], opset, ir_version)


def test_a_conforming_conv_graph_passes(tmp_path):
    check = check_onnx_model(_save(_conv_graph(), tmp_path / "ok.onnx"), bpu_only=True)
    assert check.ok, check.format()
    assert [(n.op_type, n.where) for n in check.nodes] == [("Conv", BPU), ("Relu", BPU)]


@pytest.mark.parametrize("kwargs, expected", [
    ({"input_shape": (1, 8, 16), "weight_shape": (4, 8, 1)}, "Conv1d-shaped"),
    ({"opset": 13}, "opset 13"),
    ({"ir_version": 8}, "IR version 8 > 7"),
    ({"input_shape": (1, 8, "N", 1)}, "dynamic dimensions"),
    ({"input_shape": (2, 8, 16, 1)}, "batch 2"),
    ({"extra_outputs": 32}, "33 outputs > 32"),
    ({"output_type": 7}, "is int64: make every output float32"),   # TensorProto.INT64
])
def test_limit_violations_fail(tmp_path, kwargs, expected):
    check = check_onnx_model(_save(_conv_graph(**kwargs), tmp_path / "bad.onnx"))
    assert not check.ok
    assert any(expected in p for p in check.problems), check.problems


@pytest.mark.parametrize("op, inputs, attrs, expected", [
    ("Einsum", ["x", "x"], {"equation": "abcd,abcd->abcd"}, "Einsum x1 is unsupported"),
    ("GatherND", ["x", "idx"], {}, "GatherND x1 is CPU"),
    ("ScatterND", ["x", "idx", "x"], {}, "ScatterND x1 is CPU"),
    ("Softplus", ["x"], {}, "Softplus x1 is unlisted"),
])
def test_unsupported_and_host_geometry_ops_fail(tmp_path, op, inputs, attrs, expected):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    idx = numpy_helper.from_array(np.zeros((1, 1, 4), np.int64), "idx")
    model = _model([helper.make_node(op, inputs, ["y"], **attrs)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [idx], opset=12 if op == "Einsum"
                   else 11)
    check = check_onnx_model(_save(model, tmp_path / f"{op}.onnx"))
    assert any(expected in p for p in check.problems), check.format()


def test_cpu_placement_is_a_warning_unless_bpu_only(tmp_path):
    from onnx import TensorProto, helper

    # ArgMax over 300 channels (the view argmax) is BPU only for C <= 64.
    model = _model([helper.make_node("ArgMax", ["x"], ["i"], axis=1), helper.make_node("Cast", ["i"], ["y"], to=1)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 300, 16, 1])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = _save(model, tmp_path / "argmax.onnx")
    lenient, strict = check_onnx_model(path), check_onnx_model(path, bpu_only=True)
    assert lenient.ok and any("ArgMax x1 is CPU" in w for w in lenient.warnings)
    assert not strict.ok and any("ArgMax x1 is CPU" in p for p in strict.problems)


def test_missing_or_corrupt_file(tmp_path, capsys):
    with pytest.raises(ModelFormatError, match="not found"):
        check_onnx_model(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(ModelFormatError, match="not an ONNX model"):
        check_onnx_model(junk)
    assert main(["x5-check", str(junk)]) == 4
    assert "model error" in capsys.readouterr().err
