"""Backends: the FORMATS registry, ONNX Runtime on small generated models, and the Horizon backend
against faithful fakes of hbm_runtime / pyeasy_dnn 3.0.6 (test/fakes; the BPU cannot run here)."""

import json
import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from graspnet_edge_ros.backends import FORMATS, TensorSpec, available_backends, load_backend_class, select_backend
from graspnet_edge_ros.backends.hobot_backend import HobotDnnBackend
from graspnet_edge_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
from graspnet_edge_ros.errors import BackendUnavailableError, ConfigError, InputError, ModelFormatError

FAKES_DIR = Path(__file__).resolve().parent / "fakes"
FAKE_MODULES = ("hbm_runtime", "hobot_dnn", "hobot_dnn.pyeasy_dnn", "hobot_dnn_rdkx5",
                "hobot_dnn_rdkx5.pyeasy_dnn", "fake_bpu_model", "fake_pyeasy_dnn")
RUNTIME_PACKAGES = ("hbm_runtime", "hobot_dnn", "hobot_dnn_rdkx5")


# ---------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------
def write_affine_onnx(path: Path, num_points="N") -> Path:
    """points (1, N, 3) float32 -> scaled = points*2+1 (1, N, 3), total = sum over points (1, 3)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["points", "two"], ["doubled"]),
            helper.make_node("Add", ["doubled", "one"], ["scaled"]),
            helper.make_node("ReduceSum", ["points", "axes"], ["total"], keepdims=0),
        ],
        "affine",
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, [1, num_points, 3])],
        [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [1, num_points, 3]),
         helper.make_tensor_value_info("total", TensorProto.FLOAT, [1, 3])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
                     helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
                     helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def affine_onnx(tmp_path_factory):
    return write_affine_onnx(tmp_path_factory.mktemp("onnx") / "affine.onnx")


def test_onnxruntime_runs_and_matches_numpy(affine_onnx):
    backend = OnnxRuntimeBackend(affine_onnx, intra_op_threads=1)
    assert backend.inputs == [TensorSpec("points", (1, None, 3), "float32")]
    assert [spec.name for spec in backend.outputs] == ["scaled", "total"]
    points = np.random.default_rng(0).normal(size=(1, 500, 3)).astype(np.float32)
    outputs = backend.run({"points": points})
    np.testing.assert_allclose(outputs["scaled"], points * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(outputs["total"], points.sum(axis=1), rtol=1e-5)
    assert outputs["scaled"].dtype == np.float32 and outputs["scaled"].flags.writeable
    # The caller owns the arrays: a later run does not change them.
    kept = outputs["scaled"].copy()
    backend.run({"points": np.zeros((1, 500, 3), np.float32)})
    np.testing.assert_array_equal(outputs["scaled"], kept)
    backend.warmup(2)
    assert "points: float32[1,?,3]" in backend.describe() and "CPUExecutionProvider" in backend.describe()


def test_onnxruntime_memory_arenas_give_the_same_outputs(affine_onnx):
    """Every memory_arena setting computes the same; "shared" sessions use one arena between them."""
    points = np.random.default_rng(1).normal(size=(1, 4000, 3)).astype(np.float32)
    backends = [OnnxRuntimeBackend(affine_onnx, intra_op_threads=1, memory_arena=arena)
                for arena in ("shared", "session", "off", "shared")]
    results = [backend.run({"points": points}) for backend in backends]
    for result in results[1:]:
        for name in ("scaled", "total"):
            np.testing.assert_array_equal(result[name], results[0][name])
    np.testing.assert_allclose(results[0]["scaled"], points * 2 + 1, rtol=1e-6)
    # run() hands onnxruntime's outputs over uncopied (fresh_outputs): with every arena setting, a
    # later run of the same session must leave them as they were.
    for backend, result in zip(backends, results):
        backend.run({"points": -points})
        np.testing.assert_allclose(result["scaled"], points * 2 + 1, rtol=1e-6)


def test_onnxruntime_input_validation(affine_onnx):
    backend = OnnxRuntimeBackend(affine_onnx)
    points = np.zeros((1, 10, 3), np.float32)
    with pytest.raises(InputError, match="dtype float64"):
        backend.run({"points": points.astype(np.float64)})
    with pytest.raises(InputError, match=r"shape \(1, 10, 4\)"):
        backend.run({"points": np.zeros((1, 10, 4), np.float32)})
    with pytest.raises(InputError, match=r"missing: \['points'\]"):
        backend.run({"cloud": points})
    with pytest.raises(InputError, match=r"unexpected: \['extra'\]"):
        backend.run({"points": points, "extra": points})
    non_contiguous = np.zeros((1, 3, 10), np.float32).transpose(0, 2, 1)
    assert backend.run({"points": non_contiguous})["scaled"].shape == (1, 10, 3)


def test_onnxruntime_checks_expected_shapes_at_load(affine_onnx):
    fixed = OnnxRuntimeBackend(affine_onnx, expected_inputs={"points": (1, 20000, 3)},
                               expected_outputs={"scaled": (1, None, 3)})
    assert fixed.inputs[0].shape == (1, 20000, 3)  # the dynamic dimension is pinned by the expectation
    with pytest.raises(InputError, match="shape"):
        fixed.run({"points": np.zeros((1, 10, 3), np.float32)})
    with pytest.raises(ModelFormatError, match="'points' has shape float32\\[1,\\?,3\\], expected \\[1, 20000, 4\\]"):
        OnnxRuntimeBackend(affine_onnx, expected_inputs={"points": (1, 20000, 4)})
    with pytest.raises(ModelFormatError, match=r"missing: \['point_clouds'\]"):
        OnnxRuntimeBackend(affine_onnx, expected_inputs={"point_clouds": (1, 20000, 3)})
    with pytest.raises(ModelFormatError, match=r"missing: \['grasp_score_pred'\]"):
        OnnxRuntimeBackend(affine_onnx, expected_outputs={"grasp_score_pred": (1, 12, 1024, 4)})
    with pytest.raises(ModelFormatError, match="'total' has shape"):
        OnnxRuntimeBackend(affine_onnx, expected_outputs={"total": (1, 3, 1)})


@pytest.mark.parametrize("content", [b"", b"this is not a protobuf \x00\xff\x13", b"\x08\x07" + bytes(range(256))])
def test_onnxruntime_corrupt_file_is_model_format_error(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match="broken.onnx"):
        OnnxRuntimeBackend(path)


def test_onnxruntime_missing_file(tmp_path):
    with pytest.raises(ModelFormatError, match="missing.onnx"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")


def test_onnxruntime_provider_fallback_warns_once(affine_onnx, caplog):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA; the fallback path cannot be observed")
    with caplog.at_level(logging.WARNING, logger="graspnet_edge_ros.backends.onnxruntime_backend"):
        backend = OnnxRuntimeBackend(affine_onnx, providers=["tensorrt", "cuda"])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "TensorrtExecutionProvider" in warnings[0].getMessage()
    assert backend.providers == ["CPUExecutionProvider"]
    np.testing.assert_allclose(backend.run({"points": np.ones((1, 2, 3), np.float32)})["scaled"], 3.0)


@pytest.mark.parametrize("options, fragment", [
    ({"providers": ["npu"]}, "unknown provider 'npu'"),
    ({"intra_op_threads": -1}, "intra_op_threads"),
    ({"inter_op_threads": 1.5}, "inter_op_threads"),
    ({"memory_arena": "pooled"}, "memory_arena must be one of"),
])
def test_onnxruntime_bad_options(affine_onnx, options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        OnnxRuntimeBackend(affine_onnx, **options)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
def test_camera_and_backend_modules_import_no_torch_ros_or_runtime():
    import subprocess

    code = ("import sys, graspnet_edge_ros.camera, graspnet_edge_ros.backends.onnxruntime_backend, "
            "graspnet_edge_ros.backends.hobot_backend; "
            "print(sorted(m for m in ('torch', 'rclpy', 'onnxruntime', 'hbm_runtime') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "[]"


def test_formats_table_is_consistent():
    names = [fmt.name for fmt in FORMATS]
    suffixes = [s for fmt in FORMATS for s in fmt.suffixes]
    assert len(set(names)) == len(names) and len(set(suffixes)) == len(suffixes)
    for fmt in FORMATS:
        backend_class = load_backend_class(fmt)  # class paths resolve
        assert backend_class.name == fmt.name and set(backend_class.suffixes) == set(fmt.suffixes)


def test_select_backend_by_suffix_and_name(affine_onnx):
    assert isinstance(select_backend(affine_onnx), OnnxRuntimeBackend)
    backend = select_backend(str(affine_onnx), prefer="ORT", intra_op_threads=1)
    assert isinstance(backend, OnnxRuntimeBackend)


def test_select_backend_errors(tmp_path, affine_onnx, bpu_runtimes):
    bpu_runtimes()  # no Horizon runtime importable, as on any non-X5 machine
    with pytest.raises(ModelFormatError, match="nothere.onnx"):
        select_backend(tmp_path / "nothere.onnx")
    unknown = tmp_path / "model.xyz"
    unknown.write_bytes(b"x")
    with pytest.raises(ModelFormatError, match=r"unknown model format.*\.onnx \(onnxruntime\)"):
        select_backend(unknown)
    with pytest.raises(ConfigError, match="did you mean 'onnxruntime'"):
        select_backend(affine_onnx, prefer="onnxruntim")
    with pytest.raises(ModelFormatError, match="backend 'hobot_dnn' cannot load 'affine.onnx'"):
        select_backend(affine_onnx, prefer="hobot")
    with pytest.raises(ConfigError, match="did you mean 'intra_op_threads'"):
        select_backend(affine_onnx, intra_threads=2)
    model_bin = tmp_path / "model.bin"
    model_bin.write_bytes(b"HBM")
    with pytest.raises(BackendUnavailableError, match="hobot-spdev"):
        select_backend(model_bin)
    report = available_backends()
    assert list(report) == [fmt.name for fmt in FORMATS]
    assert report["hobot_dnn"].startswith("unavailable:")
    assert report["onnxruntime"] == OnnxRuntimeBackend.version()


# ---------------------------------------------------------------------------------------------
# Horizon BPU backend against the fakes
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def bpu_runtimes(monkeypatch):
    """Call with the runtime packages to make importable from test/fakes; the others are blocked."""

    def install(*visible):
        assert set(visible) <= set(RUNTIME_PACKAGES)
        for name in FAKE_MODULES:
            monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.syspath_prepend(str(FAKES_DIR))
        for package in RUNTIME_PACKAGES:
            if package not in visible:
                monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail

    yield install
    for name in FAKE_MODULES:  # leave no fake behind for other tests
        sys.modules.pop(name, None)


NUM_POINTS = 8
TOY_SPEC = {
    "name": "toy",
    "inputs": [{"name": "points", "type": "float32", "layout": "NCHW", "shape": [1, NUM_POINTS, 3, 1]}],
    "outputs": [
        {"name": "scaled", "type": "float32", "layout": "NCHW", "shape": [1, NUM_POINTS, 3, 1],
         "sum_of": ["points"], "mul": 2.0, "add": 1.0},
        {"name": "scaled_s32", "type": "int32", "layout": "NCHW", "shape": [1, 3, NUM_POINTS, 1],
         "sum_of": ["points"], "mul": 2.0, "add": 1.0, "transpose": [0, 2, 1, 3], "scale": [0.01, 0.02, 0.04]},
        {"name": "scaled_s16_nhwc", "type": "int16", "layout": "NHWC", "shape": [1, NUM_POINTS, 1, 3],
         "sum_of": ["points"], "mul": 2.0, "add": 1.0, "transpose": [0, 1, 3, 2], "scale": [0.5, 0.25, 0.125]},
    ],
}


def write_fake_bin(directory: Path, spec: dict, name="toy.bin") -> Path:
    path = directory / name
    path.write_bytes(b"HBM fake model; the computation is in the .json sidecar")
    Path(str(path) + ".json").write_text(json.dumps(spec))
    return path


def toy_points(seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=(1, NUM_POINTS, 3, 1)).astype(np.float32)


def check_toy_outputs(outputs, points):
    expected = points * np.float32(2) + np.float32(1)  # (1, N, 3, 1)
    np.testing.assert_allclose(outputs["scaled"], expected, rtol=1e-6)
    nchw = expected.transpose(0, 2, 1, 3)  # channels on axis 1
    scale_nchw = np.array([0.01, 0.02, 0.04], np.float32).reshape(1, 3, 1, 1)
    assert np.all(np.abs(outputs["scaled_s32"] - nchw) <= scale_nchw / 2 + 1e-6)
    nhwc = expected.transpose(0, 1, 3, 2)  # channels last
    scale_nhwc = np.array([0.5, 0.25, 0.125], np.float32)
    assert np.all(np.abs(outputs["scaled_s16_nhwc"] - nhwc) <= scale_nhwc / 2 + 1e-6)
    assert all(array.dtype == np.float32 for array in outputs.values())


def test_fake_pyeasy_dnn_reproduces_the_input_quirks(tmp_path, bpu_runtimes):
    bpu_runtimes("hobot_dnn")
    from hobot_dnn import pyeasy_dnn

    model = pyeasy_dnn.load(str(write_fake_bin(tmp_path, TOY_SPEC)))[0]
    points = toy_points(1)
    expected = points * 2 + 1
    # A float32 array passed directly: only element-count bytes (a quarter) are copied.
    naive = model.forward(points)[0].buffer
    assert not np.allclose(naive, expected)
    np.testing.assert_allclose(naive.ravel()[: NUM_POINTS * 3 // 4], expected.ravel()[: NUM_POINTS * 3 // 4])
    # In a list, floats are value-cast to uint8.
    assert not np.allclose(model.forward([points])[0].buffer, expected)
    # The byte view is the recipe that works.
    first = model.forward(points.view(np.uint8))
    np.testing.assert_allclose(first[0].buffer, expected, rtol=1e-6)
    # Outputs alias one buffer set: the next forward overwrites what `first` shows.
    other = toy_points(2)
    model.forward(other.view(np.uint8))
    np.testing.assert_allclose(first[0].buffer, other * 2 + 1, rtol=1e-6)
    # .buffer is a fresh copy per access; .inputs/.outputs are rebuilt per access.
    tensor = first[0]
    assert tensor.buffer is not tensor.buffer
    assert model.outputs[0] is not model.outputs[0] and model.estimate_latency == 100
    # Quantised outputs come back raw: int32 that need scale_data.
    raw = first[1].buffer
    assert raw.dtype == np.int32 and first[1].properties.scale_data.size == 3


def test_fake_pyeasy_dnn_keeps_stale_inputs_when_fewer_are_passed(tmp_path, bpu_runtimes):
    bpu_runtimes("hobot_dnn")
    from hobot_dnn import pyeasy_dnn

    spec = {"name": "pair",
            "inputs": [{"name": "a", "type": "float32", "shape": [1, 4, 1, 1]},
                       {"name": "b", "type": "float32", "shape": [1, 4, 1, 1]}],
            "outputs": [{"name": "sum", "type": "float32", "shape": [1, 4, 1, 1], "sum_of": ["a", "b"]}]}
    path = write_fake_bin(tmp_path, spec, "pair.bin")
    model = pyeasy_dnn.load(str(path))[0]
    a, b = np.full((1, 4, 1, 1), 1.0, np.float32), np.full((1, 4, 1, 1), 10.0, np.float32)
    model.forward([a.view(np.uint8), b.view(np.uint8)])
    stale = model.forward([(a * 3).view(np.uint8)])[0].buffer  # b silently keeps its old value
    np.testing.assert_array_equal(stale, a * 3 + b)

    bpu_runtimes("hbm_runtime")
    # The backend always passes every input (run refuses a partial dict).
    backend = HobotDnnBackend(path)
    with pytest.raises(InputError, match=r"missing: \['b'\]"):
        backend.run({"a": a})
    np.testing.assert_array_equal(backend.run({"a": a * 3, "b": b * 0})["sum"], a * 3)


@pytest.mark.parametrize("visible, expected_module", [
    (("hbm_runtime", "hobot_dnn", "hobot_dnn_rdkx5"), "hbm_runtime"),
    (("hobot_dnn", "hobot_dnn_rdkx5"), "hobot_dnn.pyeasy_dnn"),
    (("hobot_dnn_rdkx5",), "hobot_dnn_rdkx5.pyeasy_dnn"),
])
def test_hobot_backend_gives_correct_results_on_each_runtime(tmp_path, bpu_runtimes, visible, expected_module):
    bpu_runtimes(*visible)
    backend = select_backend(write_fake_bin(tmp_path, TOY_SPEC), priority=10)
    assert isinstance(backend, HobotDnnBackend)
    assert backend.runtime_name == ("hbm_runtime" if expected_module == "hbm_runtime" else "pyeasy_dnn")
    assert expected_module in sys.modules
    assert backend.inputs == [TensorSpec("points", (1, NUM_POINTS, 3, 1), "float32")]
    assert [s.dtype for s in backend.outputs] == ["float32"] * 3
    first_points, second_points = toy_points(3), toy_points(4)
    first = backend.run({"points": first_points})
    second = backend.run({"points": second_points})
    check_toy_outputs(first, first_points)  # still right after the second forward: outputs were copied
    check_toy_outputs(second, second_points)
    with pytest.raises(InputError, match="shape"):
        backend.run({"points": np.zeros((1, NUM_POINTS, 3), np.float32)})
    assert backend.runtime_name in backend.describe() and backend.version().startswith(backend.runtime_name)


def test_hobot_backend_passes_scheduling_to_hbm_runtime(tmp_path, bpu_runtimes):
    bpu_runtimes("hbm_runtime")
    backend = HobotDnnBackend(write_fake_bin(tmp_path, TOY_SPEC), core_id=1, priority=200)
    sched = backend._runtime.sched_params["toy"]
    assert sched.priority == 200 and sched.bpu_cores == [0]
    with pytest.raises(ConfigError, match="core_id"):
        HobotDnnBackend(backend.model_path, core_id=3)
    with pytest.raises(ConfigError, match="priority"):
        HobotDnnBackend(backend.model_path, priority=256)


def s64_spec():
    spec = json.loads(json.dumps(TOY_SPEC))
    spec["outputs"].append({"name": "top_view_inds", "type": "int64", "layout": "NCHW",
                            "shape": [1, NUM_POINTS, 3, 1], "sum_of": ["points"], "mul": 100.0})
    return spec


def test_s64_output_is_garbage_in_pyeasy_and_refused_at_load(tmp_path, bpu_runtimes):
    path = write_fake_bin(tmp_path, s64_spec())
    bpu_runtimes("hobot_dnn")
    from hobot_dnn import pyeasy_dnn

    points = toy_points(5)
    raw = pyeasy_dnn.load(str(path))[0].forward(points.view(np.uint8))[3].buffer
    assert raw.dtype == np.int8 and not np.array_equal(raw, np.rint(points * 100).astype(np.int64))
    with pytest.raises(ModelFormatError, match="int64.*int8 garbage"):
        HobotDnnBackend(path)
    # hbm_runtime reads int64 outputs correctly, which is why it is preferred.
    bpu_runtimes("hbm_runtime", "hobot_dnn")
    outputs = HobotDnnBackend(path).run({"points": points})
    np.testing.assert_array_equal(outputs["top_view_inds"], np.rint(points.astype(np.float64) * 100))
    assert outputs["top_view_inds"].dtype == np.int64


def test_padded_output_is_wrong_in_pyeasy_and_refused_at_load(tmp_path, bpu_runtimes):
    spec = json.loads(json.dumps(TOY_SPEC))
    spec["outputs"][0]["aligned_shape"] = [1, NUM_POINTS, 3, 4]  # W padded from 1 to 4
    path = write_fake_bin(tmp_path, spec)
    bpu_runtimes("hobot_dnn")
    from hobot_dnn import pyeasy_dnn

    points = toy_points(6)
    raw = pyeasy_dnn.load(str(path))[0].forward(points.view(np.uint8))[0].buffer
    assert not np.allclose(raw, points * 2 + 1)
    with pytest.raises(ModelFormatError, match=r"padded \(alignedShape \[1, 8, 3, 4\]"):
        HobotDnnBackend(path)


def test_hobot_backend_refuses_unusable_models(tmp_path, bpu_runtimes):
    bpu_runtimes("hobot_dnn")
    image_input = json.loads(json.dumps(TOY_SPEC))
    image_input["inputs"][0]["type"] = "NV12"
    with pytest.raises(ModelFormatError, match="NV12"):
        HobotDnnBackend(write_fake_bin(tmp_path, image_input, "nv12.bin"))
    wrong_scale = json.loads(json.dumps(TOY_SPEC))
    wrong_scale["outputs"][1]["scale"] = [0.1, 0.2]
    with pytest.raises(ModelFormatError, match="2 values"):
        HobotDnnBackend(write_fake_bin(tmp_path, wrong_scale, "scale.bin"))
    no_sidecar = tmp_path / "corrupt.bin"
    no_sidecar.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelFormatError, match="corrupt.bin"):
        HobotDnnBackend(no_sidecar)
    with pytest.raises(ModelFormatError, match="missing.bin"):
        HobotDnnBackend(tmp_path / "missing.bin")


def test_hobot_backend_is_unavailable_without_a_runtime(bpu_runtimes):
    bpu_runtimes()
    assert not HobotDnnBackend.is_available()
    bpu_runtimes("hobot_dnn_rdkx5")
    assert HobotDnnBackend.is_available()


def test_hobot_backend_serialises_concurrent_runs(tmp_path, bpu_runtimes):
    bpu_runtimes("hobot_dnn")
    backend = HobotDnnBackend(write_fake_bin(tmp_path, TOY_SPEC))
    failures = []

    def worker(seed):
        points = toy_points(seed)
        for _ in range(200):
            outputs = backend.run({"points": points})
            if not np.allclose(outputs["scaled"], points * 2 + 1, rtol=1e-6):
                failures.append(seed)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so an unguarded forward/read pair would interleave
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
