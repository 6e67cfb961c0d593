"""ONNX Runtime execution providers: the ``onnx_providers`` parameter, ``--providers``, and the CPU fallback."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from graspnet_edge_ros.backends import onnxruntime_backend
from graspnet_edge_ros.cli import main
from graspnet_edge_ros.config import DetectorConfig, from_mapping
from graspnet_edge_ros.errors import EXIT_OK, EXIT_USAGE, ConfigError

LOGGER_NAME = "graspnet_edge_ros.backends.onnxruntime_backend"


@pytest.fixture
def cuda_missing(monkeypatch):
    """A provider that is known but not installed here; a fresh 'already reported' set for this test."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA; the fallback path cannot be observed")
    monkeypatch.setattr(onnxruntime_backend, "_REPORTED_MISSING", set())


def test_providers_parameter_takes_names_and_refuses_unknown_ones_and_other_types():
    assert DetectorConfig().model.onnx_providers == "cpu"
    assert from_mapping({"onnx_providers": "tensorrt,cuda"}).model.onnx_providers == "tensorrt,cuda"
    # ROS typing, like every string parameter: a list is refused on every path with one message
    with pytest.raises(ConfigError, match="onnx_providers must be a string, got the list"):
        from_mapping({"onnx_providers": ["tensorrt", "cuda"]})
    assert onnxruntime_backend.resolve_providers("tensorrt,cpu") == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnxruntime_backend.resolve_providers("openvino") == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert onnxruntime_backend.resolve_providers("") == ["CPUExecutionProvider"]  # empty = the default
    for bad in ("npu", "cuda,gpu"):
        with pytest.raises(ConfigError, match="onnx_providers: onnxruntime: unknown provider"):
            from_mapping({"onnx_providers": bad})
    with pytest.raises(ConfigError, match="onnx_providers must be a string, got the integer 3"):
        from_mapping({"onnx_providers": 3})


def test_node_refuses_a_bad_provider_and_a_change_at_runtime():
    from graspnet_edge_ros.ros.params import NodeSettings, apply_changes, overrides_from_strings, split_values

    # At start, declare_parameters validates the declared values exactly so: the node does not start.
    with pytest.raises(ConfigError, match="unknown provider 'npu'"):
        from_mapping(split_values({"onnx_providers": "npu", "mode": "continuous"})[0])
    assert overrides_from_strings({"onnx_providers": "cuda,cpu"}) == {"onnx_providers": "cuda,cpu"}
    with pytest.raises(ConfigError, match="restart required"):
        apply_changes({"onnx_providers": "cuda"}, DetectorConfig(), NodeSettings())


def test_missing_provider_falls_back_to_cpu_with_one_warning_for_all_segments(split_model_dir, example_cloud,
                                                                               cuda_missing, caplog):
    from graspnet_edge_ros.pipeline import load_model_runner

    points = example_cloud.sampled
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        cuda = load_model_runner(DetectorConfig.from_flat(model_path=str(split_model_dir), onnx_providers="cuda"))
        again = load_model_runner(DetectorConfig.from_flat(model_path=str(split_model_dir), onnx_providers="cuda"))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # 7 segments, two loads: one line per process.
    assert len(warnings) == 1 and "CUDAExecutionProvider" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    engines = [seg.engine for seg in cuda._call.runners.values()] + [seg.engine for seg in again._call.runners.values()]
    assert all(engine.providers == ["CPUExecutionProvider"] for engine in engines)
    cpu = load_model_runner(DetectorConfig.from_flat(model_path=str(split_model_dir)))
    expected, actual = cpu(points), cuda(points)
    for name, value in expected.items():  # fp32 on the same provider: identical outputs
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def test_cli_providers_option(split_model_dir, example_cloud, cuda_missing, tmp_path, capsys, caplog):
    points = tmp_path / "points.npy"
    np.save(points, example_cloud.sampled)
    assert main(["infer-points", "--points", str(points), "--model", str(split_model_dir), "--providers", "gpu"]) \
        == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "unknown provider 'gpu'" in err and len(err.splitlines()) == 1
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        assert main(["infer-points", "--points", str(points), "--model", str(split_model_dir),
                     "--providers", "cuda,cpu"]) == EXIT_OK
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_cli_detect_refuses_unknown_provider(split_model_dir, shared_dir, tmp_path, capsys):
    scene = shared_dir / "data" / "graspnet_example"
    code = main(["detect", "--color", str(scene / "color.png"), "--depth", str(scene / "depth.png"),
                 "--camera-info", str(scene / "meta.mat"), "--model", str(split_model_dir),
                 "--providers", "npu", "--output", str(tmp_path / "g.json")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and "unknown provider 'npu'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "g.json").exists()


def test_planar_onnx_sessions_take_the_providers(shared_dir, tmp_path, cuda_missing, caplog):
    """The planar runner's session gets the same option (one warning, CPU fallback)."""
    pytest.importorskip("torch")
    from graspnet_edge_ros.pipeline import load_model_runner
    from graspnet_edge_ros.planar.export import export_planar_onnx, load_planar_model

    model_type, model = load_planar_model(shared_dir / "models" / "grconvnet3_cornell_rgbd_ch16.pt")
    path = export_planar_onnx(model, model_type, tmp_path / "grconvnet.onnx")
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        runner = load_model_runner(DetectorConfig.from_flat(model_path=str(path), onnx_providers="cuda"))
    assert runner._engine.providers == ["CPUExecutionProvider"]
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
