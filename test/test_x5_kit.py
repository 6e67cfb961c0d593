"""x5-prepare / x5-quant-check on the real checkpoint and the real example capture.

The Horizon toolchain and the BPU cannot run here: the conversion script is run against a fake
``hb_mapper`` that does what edge_deploy.md §2.1-2.4 documents (checker/makertbin command lines,
all four YAML groups required, raw float32 calibration files read with numpy.fromfile and
reshaped to input_shape, ``<working_dir>/<prefix>.bin`` written), and the converted kit is loaded
through the hobot_dnn backend on the runtime fakes of test/fakes.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from graspnet_edge_ros.cli import main
from graspnet_edge_ros.errors import InputError, ModelFormatError
from graspnet_edge_ros.contract import SplitManifest
from graspnet_edge_ros.x5.frames import open_frame_source
from graspnet_edge_ros.x5.kit import calibration_dir, prepare_x5_kit, read_calibration_sample

NUM_SAMPLES = 3   # the real default is 100 (about 3.4 GB); the layout and contents do not depend on it
FAKES_DIR = Path(__file__).resolve().parent / "fakes"


@pytest.fixture(scope="module")
def capture_dir(shared_dir) -> Path:
    return shared_dir / "data" / "graspnet_example"


@pytest.fixture(scope="module")
def kit(graspnet_checkpoint, capture_dir, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("x5_kit")
    prepare_x5_kit(graspnet_checkpoint, directory, open_frame_source(capture_dir), num_samples=NUM_SAMPLES)
    return directory


@pytest.fixture(scope="module")
def ranges(kit):
    from graspnet_edge_ros.x5.quant import activation_ranges

    return activation_ranges(SplitManifest.load(kit))


# ------------------------------------------------------------------------------------- layout
def test_kit_has_checked_segments_yamls_and_calibration_per_segment(kit):
    manifest = SplitManifest.load(kit)
    assert manifest.segment_names == ["sa1", "sa2", "sa3", "sa4", "fp1", "fp2_approach", "grasp_head"]
    # What the BPU runs: the grouped backbone (whole SA MLPs, no first layers on the board's CPU), per_depth head.
    assert (manifest.layout, manifest.first_layers, manifest.head_layouts) == ("grouped", "", ["per_depth"])
    assert not (kit / "first_layers.npz").exists()
    for entry in manifest.segments:
        assert entry.files == {"onnxruntime": f"{entry.name}.onnx", "hobot_dnn": f"{entry.name}.bin"}
        config = yaml.safe_load((kit / f"hb_mapper_{entry.name}.yaml").read_text())
        assert set(config) == {"model_parameters", "input_parameters", "calibration_parameters",
                               "compiler_parameters"}
        model, inputs, calib = config["model_parameters"], config["input_parameters"], config["calibration_parameters"]
        assert model["march"] == "bayes-e" and (kit / model["onnx_model"]).is_file()
        assert model["output_model_file_prefix"] == entry.name
        assert inputs["input_type_train"] == inputs["input_type_rt"] == "featuremap"
        assert inputs["norm_type"] == "no_preprocess" and inputs["input_name"] == "input"
        assert tuple(int(d) for d in inputs["input_shape"].split("x")) == entry.input_shape
        assert calib["cal_data_type"] == "float32" and calib["preprocess_on"] is False
        files = sorted((kit / calib["cal_data_dir"]).iterdir())
        assert len(files) == NUM_SAMPLES
        for path in files:  # raw float32, exactly the input shape, nothing else
            assert path.stat().st_size == 4 * int(np.prod(entry.input_shape))
    # The head's output tail is int16 (one int8 scale would round widths/tolerances away).
    head = yaml.safe_load((kit / "hb_mapper_grasp_head.yaml").read_text())["model_parameters"]["node_info"]
    assert {name: value["OutputType"] for name, value in head.items()} == {
        "/operation/conv3/Conv": "int16", "/tolerance/conv3/Conv": "int16", "/Concat": "int16"}
    assert "node_info" not in yaml.safe_load((kit / "hb_mapper_sa1.yaml").read_text())["model_parameters"]
    script = (kit / "convert_x5.sh").read_text()
    assert os.access(kit / "convert_x5.sh", os.X_OK)
    assert "hb_mapper checker --model-type onnx --march bayes-e" in script
    assert "openexplorer/ai_toolchain_ubuntu_20_x5_cpu:v1.2.8" in script and "--shm-size 15g" in script


def test_calibration_files_are_what_the_segments_receive_in_the_real_pipeline(kit, example_scene, capture_dir):
    """Seed 0 on the example capture, re-run here with independently wrapped runners: identical tensors."""
    from graspnet_edge_ros.camera import CameraIntrinsics
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.pipeline import GraspDetector
    from graspnet_edge_ros.runtime.graspnet_runner import GraspNetRunner
    from graspnet_edge_ros.runtime.split import SplitGraspNet

    net = SplitGraspNet.from_directory(kit, "onnxruntime")
    seen = {name: [] for name in net.runners}
    for name, segment in list(net.runners.items()):
        net.runners[name] = lambda tensor, name=name, segment=segment: (seen[name].append(tensor.copy()),
                                                                        segment(tensor))[1]
    runner = GraspNetRunner("split", "onnxruntime", net, None, "test", timings_source=net)
    depth = example_scene["depth"]
    intrinsics = CameraIntrinsics.from_matrix(example_scene["K"], depth.shape[1], depth.shape[0])
    config = DetectorConfig.from_flat(sampling_seed=0, workspace_mask_path=str(capture_dir / "workspace_mask.png"),
                            depth_scale=1.0 / example_scene["factor_depth"])
    result = GraspDetector(config, runner=runner).detect(example_scene["color"], depth, "16UC1", intrinsics)
    assert result.ok and len(result.grasps) > 0
    manifest = SplitManifest.load(kit)
    for name in manifest.segment_names:
        recorded = read_calibration_sample(calibration_dir(kit, name) / f"{name}_0000.bin",
                                           manifest.segment(name).input_shape)
        np.testing.assert_array_equal(recorded, seen[name][0])   # run 0 takes the head's first chunk
    index = json.loads((kit / "calibration" / "calibration.json").read_text())
    assert [s["seed"] for s in index["samples"]] == list(range(NUM_SAMPLES))  # one frame: new seed per run
    # later runs resample the cloud: different tensors, same distribution (normalised ball offsets)
    sa1 = [read_calibration_sample(calibration_dir(kit, "sa1") / f"sa1_{i:04d}.bin", (1, 3, 2048, 64))
           for i in range(NUM_SAMPLES)]
    assert not np.array_equal(sa1[0], sa1[1])
    assert all(np.abs(s).max() <= 1.0 and np.abs(s).max() > 0.9 for s in sa1)
    chunks = [s["files"]["grasp_head"] for s in index["samples"]]
    assert len({c.split("(chunk ")[1].split(" of")[0] for c in chunks}) == NUM_SAMPLES  # different seed chunks


def test_manifest_needs_the_conversion_then_loads_on_the_bpu_runtime(kit, tmp_path, monkeypatch):
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner

    with pytest.raises(ModelFormatError, match=r"sa1\.bin not found.*run `bash convert_x5\.sh`"):
        load_graspnet_runner(kit, "hobot_dnn")
    converted = _convert_with_fake_toolchain(kit, tmp_path)
    manifest = SplitManifest.load(converted)
    for entry in manifest.segments:
        assert (converted / f"{entry.name}.bin").is_file()
        assert (converted / "hb_build" / entry.name / "hb_mapper_makertbin.log").is_file()
        assert (converted / "hb_build" / entry.name / "hb_mapper_checker.log").is_file()
        # the fake runtime's description of the compiled model: float32 featuremap in, float32 out
        Path(str(converted / f"{entry.name}.bin") + ".json").write_text(json.dumps({
            "name": entry.name,
            "inputs": [{"name": "input", "type": "float32", "shape": list(entry.input_shape)}],
            "outputs": [{"name": "output", "type": "float32", "shape": list(entry.output_shape), "sum_of": []}]}))
    fakes = ("hbm_runtime", "hobot_dnn", "hobot_dnn.pyeasy_dnn", "fake_bpu_model")
    for name in fakes:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(FAKES_DIR))
    try:
        from graspnet_edge_ros.runtime.split import SplitGraspNet

        runner = load_graspnet_runner(converted, "hobot_dnn")
        assert runner.kind == "split" and runner.backend_name == "hobot_dnn"
        net = SplitGraspNet.from_directory(converted, "hobot_dnn")
        engines = {name: segment.engine for name, segment in net.runners.items()}
        for entry in manifest.segments:
            assert engines[entry.name].runtime_name == "hbm_runtime"
            assert engines[entry.name].inputs[0].shape == entry.input_shape
            assert engines[entry.name].outputs[0].shape == entry.output_shape
    finally:
        for name in fakes:
            sys.modules.pop(name, None)


def test_conversion_script_stops_at_a_toolchain_error(kit, tmp_path):
    broken = tmp_path / "broken"
    _copy_kit(kit, broken, copy_calibration=True)
    first = sorted(calibration_dir(broken, "sa3").glob("*.bin"))[0]
    first.write_bytes(first.read_bytes()[:-4])  # one float short: hb_mapper cannot reshape it
    run = _run_script(broken, tmp_path)
    assert run.returncode != 0 and "Can't reshape" in run.stderr
    assert (broken / "sa2.bin").is_file() and not (broken / "sa3.bin").exists()


# ------------------------------------------------------------------------------ quantisation
def test_fake_quant_segment_matches_a_numpy_reference(kit, ranges):
    """fp1 = Conv-ReLU-Conv-ReLU: int8 input, per-channel int8 weights, int8 ReLU outputs."""
    import onnx
    from onnx import numpy_helper

    from graspnet_edge_ros.x5.quant import fake_quant_model, quantised_runners

    model = onnx.load(str(kit / "fp1.onnx"))
    fp1_ranges = ranges["fp1"]
    x = read_calibration_sample(calibration_dir(kit, "fp1") / "fp1_0001.bin", (1, 512, 512, 1))
    simulated = quantised_runners(SplitManifest.load(kit), ranges)["fp1"](x)

    def int8(values, peak):
        scale = np.float32(peak / 127)
        return np.clip(np.round(values / scale), -127, 127) * scale

    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    h = int8(x, fp1_ranges["input"])[0, :, :, 0]
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    relus = [n for n in model.graph.node if n.op_type == "Relu"]
    for conv, relu in zip(convs, relus):
        w = weights[conv.input[1]][:, :, 0, 0]
        step = np.abs(w).max(axis=1, keepdims=True) / 127
        h = np.maximum((np.round(w / step) * step) @ h + weights[conv.input[2]][:, None], 0)
        h = int8(h, fp1_ranges[relu.output[0]])
    np.testing.assert_allclose(simulated[0, :, :, 0], h, atol=1e-5)
    ops = [n.op_type for n in fake_quant_model(model, fp1_ranges).graph.node]
    assert ops.count("Round") == 3 and ops.count("Conv") == 2   # input + two ReLU outputs


def test_quant_report_on_the_example_scene_and_a_broken_calibration(kit, capture_dir, ranges):
    from graspnet_edge_ros.x5.quant import quant_check

    frames = open_frame_source(capture_dir)
    good = quant_check(kit, frames, num_seeds=2, ranges=ranges)
    bad = quant_check(kit, frames, num_seeds=2, ranges=ranges, range_scale=0.01)
    assert good.passed, good.format()
    assert min(good.segment_cosine.values()) >= 0.99
    assert good.top_k_match >= 0.5 and len(good.runs) == 2
    assert not bad.passed
    assert all(bad.segment_cosine[k] < good.segment_cosine[k] - 0.05 for k in good.segment_cosine)
    assert bad.top_k_match < good.top_k_match - 0.3
    data = good.to_json()
    assert data["translation_m"]["max"] < 0.03 and data["rotation_deg"]["max"] < 30  # matched = within NMS limits
    assert data["sampling_reference_match"] is not None


def test_quant_check_cli_writes_the_report_and_fails_on_a_broken_calibration(kit, capture_dir, capsys):
    assert main(["x5-quant-check", str(kit), "--frames", str(capture_dir), "--seeds", "1"]) == 0
    report = json.loads((kit / "quant_report.json").read_text())
    assert report["passed"] and set(report["segment_cosine"]) == set(SplitManifest.load(kit).segment_names)
    bad_path = kit / "bad_report.json"
    assert main(["x5-quant-check", str(kit), "--seeds", "1", "--range-scale", "0.01", "--report", str(bad_path)]) == 1
    assert json.loads(bad_path.read_text())["failures"]
    assert "FAILED" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ frames
def test_frames_from_bags_and_a_frame_directory_equal_the_capture(capture_dir, tmp_path):
    from PIL import Image

    from graspnet_edge_ros.ros.bags import RgbdCapture, write_capture_bag

    capture = RgbdCapture.from_directory(capture_dir)
    (reference,) = list(open_frame_source(capture_dir))
    np.testing.assert_array_equal(reference.depth, capture.depth)
    for storage in ("mcap", "sqlite3"):
        bag = tmp_path / f"bag_{storage}"
        write_capture_bag(bag, capture, num_frames=3, storage=storage)
        source = open_frame_source(bag, max_frames=2)
        frames = list(source)
        assert source.count == len(frames) == 2 and "of 3 frame(s)" in source.description
        for frame in frames:
            np.testing.assert_array_equal(frame.color, capture.color)
            np.testing.assert_array_equal(frame.depth, capture.depth)
            np.testing.assert_allclose(frame.intrinsics.matrix, capture.K)
            assert frame.encoding == "16UC1"
    layout = tmp_path / "frames"
    (layout / "color").mkdir(parents=True)
    (layout / "depth").mkdir()
    Image.fromarray(capture.color).save(layout / "color" / "000.png")
    Image.fromarray(capture.depth).save(layout / "depth" / "000.png")
    k = capture.K
    (layout / "camera_info.yaml").write_text(f"k: {k.reshape(-1).tolist()}\ndepth_scale: 0.001\n")
    (frame,) = list(open_frame_source(layout))
    np.testing.assert_array_equal(frame.depth, capture.depth)
    np.testing.assert_allclose(frame.intrinsics.matrix, capture.K)
    assert frame.depth_scale == 0.001


def test_bad_frame_sources_are_clear_errors(kit, capture_dir, tmp_path):
    from PIL import Image

    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.ros.bags import RgbdCapture, write_capture_bag
    from graspnet_edge_ros.x5.kit import record_calibration

    with pytest.raises(InputError, match="not found"):
        open_frame_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a rosbag2"):
        open_frame_source(tmp_path / "empty")
    bag = tmp_path / "bag"
    write_capture_bag(bag, RgbdCapture.from_directory(capture_dir), num_frames=1, topics={"color": "/rgb"})
    with pytest.raises(InputError, match=r"topics \['/camera/color/image_raw'\] not in the bag"):
        open_frame_source(bag)
    assert open_frame_source(bag, topics={"color": "/rgb"}).count == 1
    assert main(["x5-prepare", "--checkpoint", "x.pth", "--output", str(tmp_path / "k"),
                 "--calibration-source", str(tmp_path / "empty")]) == 3
    # frames without any valid depth: no calibration, and the reason is named
    blank = tmp_path / "blank"
    (blank / "color").mkdir(parents=True)
    (blank / "depth").mkdir()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(blank / "color" / "a.png")
    Image.fromarray(np.zeros((48, 64), np.uint16)).save(blank / "depth" / "a.png")
    (blank / "camera_info.yaml").write_text("k: [50, 0, 32, 0, 50, 24, 0, 0, 1]\n")
    with pytest.raises(InputError, match="no usable frame.*no valid depth"):
        record_calibration(tmp_path / "calib", SplitManifest.load(kit), open_frame_source(blank), 2, DetectorConfig())


# ------------------------------------------------------------------------------ fake toolchain
FAKE_HB_MAPPER = textwrap.dedent('''\
    """Fake hb_mapper (OE X5 v1.2.8 command lines, edge_deploy.md §2.1-2.4); paths relative to the cwd."""
    import argparse, pathlib, sys
    import numpy as np, onnx, yaml

    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["checker", "makertbin"])
    parser.add_argument("--model-type", required=True, choices=["onnx", "caffe"])
    parser.add_argument("--march")
    parser.add_argument("--model")
    parser.add_argument("--config")
    args = parser.parse_args()
    if args.command == "checker":
        if args.march != "bayes-e":
            sys.exit(f"unsupported march {args.march}")
        onnx.load(args.model)
        pathlib.Path("hb_mapper_checker.log").write_text("checker ok\\n")
        sys.exit(0)
    config = yaml.safe_load(open(args.config))
    missing = {"model_parameters", "input_parameters", "calibration_parameters", "compiler_parameters"} - set(config)
    if missing:
        sys.exit(f"missing yaml groups {sorted(missing)}")
    model, inputs, calib = config["model_parameters"], config["input_parameters"], config["calibration_parameters"]
    if model["march"] != "bayes-e" or calib["cal_data_type"] != "float32":
        sys.exit("bad march or cal_data_type")
    onnx.load(model["onnx_model"])
    shape = tuple(int(d) for d in inputs["input_shape"].split("x"))
    files = sorted(pathlib.Path(calib["cal_data_dir"]).iterdir())
    if not files:
        sys.exit("no calibration data")
    for path in files:
        data = np.fromfile(path, dtype=np.float32)
        if data.size != int(np.prod(shape)):
            sys.exit(f"Can't reshape {data.size} in {shape}")
        data.reshape(shape)
    out = pathlib.Path(model["working_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / (model["output_model_file_prefix"] + ".bin")).write_bytes(b"HBM fake model")
    pathlib.Path("hb_mapper_makertbin.log").write_text("makertbin ok\\n")
''')


def _copy_kit(kit: Path, target: Path, copy_calibration: bool = False) -> None:
    """The kit in ``target``: ONNX files and (unless copied) calibration data as symlinks."""
    target.mkdir()
    for path in kit.iterdir():
        if path.suffix == ".onnx" or (path.name == "calibration" and not copy_calibration):
            (target / path.name).symlink_to(path)
        elif path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    if copy_calibration:
        for source in (kit / "calibration").rglob("*"):
            destination = target / "calibration" / source.relative_to(kit / "calibration")
            if source.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(source.read_bytes())
    (target / "convert_x5.sh").chmod(0o755)


def _run_script(directory: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "toolchain_bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "hb_mapper"
    tool.write_text(f"#!{sys.executable}\n" + FAKE_HB_MAPPER)
    tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(directory / "convert_x5.sh")], env=env, capture_output=True, text=True,
                          timeout=300)


def _convert_with_fake_toolchain(kit: Path, tmp_path: Path) -> Path:
    converted = tmp_path / "converted"
    _copy_kit(kit, converted)
    run = _run_script(converted, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "done: 7 .bin files" in run.stdout
    return converted
