"""backend "auto" (the default): the runtime comes from the model file, so `model:=graspnet.pth` just works.

Every model kind resolves to its backend (checkpoint -> torch, .onnx -> onnxruntime, split
directory -> onnxruntime or, with its X5 .bin segments present, hobot_dnn, .bin/.hbm ->
hobot_dnn); an unknown kind is one line naming the kinds; the node's own parameter files and
launch files leave the choice to the model file.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from graspnet_edge_ros.backends.registry import resolve_backend
from graspnet_edge_ros.config import DetectorConfig, from_mapping
from graspnet_edge_ros.errors import ConfigError, ModelFormatError

REPO_ROOT = Path(__file__).resolve().parent.parent


def split_dir(tmp_path: Path, name: str, hobot_files_present: bool) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    segments = [{"name": s, "files": {"onnxruntime": f"{s}.onnx", "hobot_dnn": f"{s}.bin"}} for s in ("sa1", "sa2")]
    (directory / "manifest.json").write_text(json.dumps({"format": "graspnet_edge_split", "segments": segments}))
    for segment in segments:
        (directory / segment["files"]["onnxruntime"]).write_bytes(b"onnx")
        if hobot_files_present:
            (directory / segment["files"]["hobot_dnn"]).write_bytes(b"bin")
    return directory


@pytest.mark.parametrize("name, expected", [
    ("graspnet.pth", "torch"), ("grconvnet3.pt", "torch"), ("checkpoint.tar", "torch"), ("GraspNet.PTH", "torch"),
    ("graspnet.onnx", "onnxruntime"), ("graspnet_x5.bin", "hobot_dnn"), ("graspnet_s100.hbm", "hobot_dnn"),
])
def test_single_files_resolve_by_their_kind(tmp_path, name, expected):
    path = tmp_path / name
    path.write_bytes(b"x")
    assert resolve_backend(path, "auto") == expected
    assert resolve_backend(path, "") == expected and resolve_backend(path, None) == expected


def test_split_directories_run_on_the_bpu_only_with_their_bin_segments(tmp_path):
    assert resolve_backend(split_dir(tmp_path, "desktop_split", hobot_files_present=False), "auto") == "onnxruntime"
    assert resolve_backend(split_dir(tmp_path, "x5_kit", hobot_files_present=True), "auto") == "hobot_dnn"
    # An explicit backend wins (the X5 kit's ONNX segments on the CPU).
    assert resolve_backend(tmp_path / "x5_kit", "onnxruntime") == "onnxruntime"
    assert resolve_backend(tmp_path / "x5_kit", "ORT") == "onnxruntime"


def test_thread_options_follow_the_backend_the_model_resolves_to(tmp_path):
    from graspnet_edge_ros.runtime.graspnet_runner import thread_options

    checkpoint = a_file(tmp_path / "graspnet.pth")
    assert thread_options("auto", checkpoint, 3) == {"num_threads": 3}
    assert thread_options("", a_file(tmp_path / "graspnet.onnx"), 3) == {"intra_op_threads": 3}
    assert thread_options("ORT", checkpoint, 3) == {"intra_op_threads": 3}  # an explicit backend wins
    # The X5 kit runs on the BPU: no CPU thread option; its ONNX segments on the CPU get one.
    kit = split_dir(tmp_path, "x5_kit", hobot_files_present=True)
    assert thread_options("auto", kit, 3) == {} and thread_options("onnxruntime", kit, 3) == {"intra_op_threads": 3}
    assert thread_options("auto", checkpoint, 0) == {}


def a_file(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


def a_directory(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda p: a_file(p / "model.xyz"), "'model.xyz': unknown model kind"),
    (lambda p: a_directory(p / "weights"), "directory without manifest.json: unknown model kind"),
    (lambda p: p / "missing.pth", "model not found"),
    (lambda p: "", "model_path is empty"),
])
def test_unknown_or_missing_model_is_one_line(tmp_path, make, fragment):
    with pytest.raises(ModelFormatError) as error:
        resolve_backend(make(tmp_path), "auto")
    message = str(error.value)
    assert fragment in message and "\n" not in message
    if "unknown model kind" in message:  # says what would work
        assert ".pth/.pt/.tar (torch)" in message and ".onnx (onnxruntime)" in message and "manifest.json" in message


def test_backend_names_are_checked_with_a_suggestion():
    assert DetectorConfig().model.backend == "auto"
    for accepted in ("auto", "", "AUTO", "onnxruntime", "hobot_dnn", "torch", "ort"):
        assert from_mapping({"backend": accepted}).model.backend == accepted
    with pytest.raises(ConfigError, match="did you mean 'onnxruntime'"):
        from_mapping({"backend": "onnxruntim"})


def test_parameter_files_and_launch_files_leave_the_backend_to_the_model_file():
    for name in ("default.yaml", "rdk_x5.yaml"):
        values = yaml.safe_load((REPO_ROOT / "config" / name).read_text())["graspnet_edge_node"]["ros__parameters"]
        assert values["backend"] == "auto", name
    for name in ("graspnet_edge.launch.py", "rdk_x5.launch.py"):
        text = (REPO_ROOT / "launch" / name).read_text()
        assert '"backend": ("",' in text, name  # empty launch argument = the file's "auto"


def test_a_checkpoint_with_the_default_parameter_file_loads_with_torch(graspnet_checkpoint):
    """`ros2 launch ... model:=graspnet.pth` with config/default.yaml: the detector runs on torch."""
    pytest.importorskip("torch")
    from graspnet_edge_ros.cli import detector_parameters
    from graspnet_edge_ros.pipeline import load_model_runner

    values = detector_parameters(REPO_ROOT / "config" / "default.yaml")
    config = from_mapping({**values, "model_path": str(graspnet_checkpoint)})
    runner = load_model_runner(config)
    assert runner.backend_name == "torch" and runner.kind == "torch"


def test_a_split_export_with_the_default_parameter_file_loads_with_onnxruntime(split_model_dir):
    from graspnet_edge_ros.cli import detector_parameters
    from graspnet_edge_ros.pipeline import load_model_runner

    values = detector_parameters(REPO_ROOT / "config" / "default.yaml")
    runner = load_model_runner(from_mapping({**values, "model_path": str(split_model_dir)}))
    assert runner.backend_name == "onnxruntime" and runner.kind == "split"


def test_node_with_a_model_of_unknown_kind_stops_with_one_line(ros_interfaces, tmp_path):
    model = tmp_path / "graspnet.weights"
    model.write_bytes(b"x")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "graspnet_edge_ros.ros.node", "--ros-args", "--params-file",
                           str(REPO_ROOT / "config" / "default.yaml"), "-p", f"model_path:={model}"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 1 and "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "unknown model kind" in line]
    assert len(lines) == 1 and "'graspnet.weights'" in lines[0] and "(torch)" in lines[0], output
