"""Hostile input and model faults in the ROS-free core and the CLI (issue 15).

Every case is a regression of a red-team finding: the input, the expected exit code or status,
and the one-line message. The CLI runs through ``main()`` in-process (fast) and, for a few cases,
as the user runs it (``python -m graspnet_edge_ros.cli``) to prove no traceback reaches stderr.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from graspnet_edge_ros import cli
from graspnet_edge_ros.errors import ConfigError, InputError, ModelError, ModelFormatError

REPO_ROOT = Path(__file__).resolve().parent.parent
EXIT_USAGE, EXIT_INPUT, EXIT_MODEL = 2, 3, 4


# --------------------------------------------------------------------------- helpers
def run_main(argv, capsys) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line(code: int, err: str, expected_code: int, fragment: str):
    lines = [line for line in err.splitlines() if line.strip() and "note:" not in line]
    assert code == expected_code, (code, err)
    assert len(lines) == 1 and lines[0].startswith("graspnet-edge: "), err
    assert fragment in lines[0], err
    assert "Traceback" not in err


@pytest.fixture
def frame_files(tmp_path):
    """A small valid colour PNG + 16-bit depth PNG (no model needed to read them)."""
    color = tmp_path / "color.png"
    depth = tmp_path / "depth.png"
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(color)
    Image.fromarray(np.full((48, 64), 500, np.uint16)).save(depth)
    return color, depth


def detect_args(color, depth, output, *extra, model="missing_model_dir"):
    return ["detect", "--color", color, "--depth", depth, "--model", model, "--output", output, *extra]


# ------------------------------------------------------------- camera info and depth files
def _yaml(text):
    return lambda path: path.write_text(text)


def _mat(**entries):
    return lambda path: scipy.io.savemat(path, entries)


K = [[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]
CAMERA_INFO_CASES = {
    "a string": ("info.yaml", _yaml("just a string\n"), "expected a mapping"),
    "a list": ("info.yaml", _yaml("- 1\n- 2\n"), "expected a mapping"),
    "an empty file": ("info.yaml", _yaml(""), "expected a mapping"),
    "text k": ("info.yaml", _yaml("k: hello\n"), "camera matrix must be 9 numbers"),
    "6-element k": ("info.yaml", _yaml("k: [1, 2, 3, 4, 5, 6]\n"), "9 numbers (3x3), got 6"),
    "no K": ("info.yaml", _yaml("width: 64\nheight: 48\n"), "no 'k', 'K'"),
    "not YAML": ("info.yaml", _yaml("k: [1, 2\n"), "cannot read camera info"),
    "binary garbage": ("info.yaml", lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "cannot read camera info"),
    "bad width": ("info.yaml", _yaml(f"k: {sum(K, [])}\nwidth: -3\n"), "width must be a positive integer"),
    "mat without K": (".mat", _mat(factor_depth=np.array([[1000.0]])), "no 'intrinsic_matrix'"),
    "mat factor_depth 0": (".mat", _mat(intrinsic_matrix=np.array(K), factor_depth=np.array([[0.0]])),
                           "factor_depth must be one positive number"),
    "mat factor_depth empty": (".mat", _mat(intrinsic_matrix=np.array(K), factor_depth=np.zeros((0, 0))),
                               "factor_depth must be one positive number"),
    "mat 2x2 K": (".mat", _mat(intrinsic_matrix=np.eye(2)), "9 numbers (3x3), got 4"),
    "not a mat": (".mat", lambda p: p.write_text("hello"), "cannot read"),
}


@pytest.mark.parametrize("case", list(CAMERA_INFO_CASES))
def test_malformed_camera_info_is_one_line_exit_3(case, frame_files, tmp_path, capsys):
    suffix, write, fragment = CAMERA_INFO_CASES[case]
    path = tmp_path / ("meta.mat" if suffix == ".mat" else suffix)
    write(path)
    color, depth = frame_files
    code, err = run_main(detect_args(color, depth, tmp_path / "g.json", "--camera-info", path), capsys)
    assert_one_line(code, err, EXIT_INPUT, fragment)


DEPTH_CASES = {
    "npy 1-D": (lambda p: np.save(p, np.ones(10, np.float32)), "depth.npy", "(H, W) image"),
    "npy empty file": (lambda p: p.write_bytes(b""), "depth.npy", "cannot read depth image"),
    "npy 3 channels": (lambda p: np.save(p, np.ones((4, 4, 3), np.float32)), "depth.npy", "(H, W) image"),
    "npy integer": (lambda p: np.save(p, np.ones((4, 4), np.int64)), "depth.npy", "float metres"),
    "npy object": (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "depth.npy",
                   "cannot read depth image"),
    "32-bit TIFF negative": (lambda p: Image.fromarray(np.full((48, 64), -5, np.int32)).save(p), "depth.tiff",
                             "negative"),
    "32-bit TIFF above 65535": (lambda p: Image.fromarray(np.full((48, 64), 65536, np.int32)).save(p),
                                "depth.tiff", "values above 65535"),
    "8-bit PNG": (lambda p: Image.fromarray(np.full((48, 64), 5, np.uint8)).save(p), "depth.png", "16-bit"),
}


@pytest.mark.parametrize("case", list(DEPTH_CASES))
def test_malformed_depth_is_one_line_exit_3(case, frame_files, tmp_path, capsys):
    write, name, fragment = DEPTH_CASES[case]
    path = tmp_path / name
    write(path)
    color, _ = frame_files
    code, err = run_main(detect_args(color, path, tmp_path / "g.json", "--intrinsics", "50,50,32,24"), capsys)
    assert_one_line(code, err, EXIT_INPUT, fragment)


OBJECT_MASK_CASES = {
    "npy empty file": (lambda p: p.write_bytes(b""), "labels.npy", "cannot read object mask"),
    "npy truncated": (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00"), "labels.npy", "cannot read object mask"),
    "npy object": (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "labels.npy",
                   "cannot read object mask"),
    "npy float": (lambda p: np.save(p, np.ones((48, 64), np.float32)), "labels.npy", "integer labels"),
    "png empty file": (lambda p: p.write_bytes(b""), "labels.png", "cannot read object mask"),
    "png truncated": (lambda p: p.write_bytes(_png_bytes()[:60]), "labels.png", "cannot read object mask"),
    "png RGB": (lambda p: Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(p), "labels.png",
                "single-channel"),
}


def _png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) % 7).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(OBJECT_MASK_CASES))
def test_malformed_object_mask_is_one_line_exit_3_before_the_model(case, frame_files, tmp_path, capsys):
    write, name, fragment = OBJECT_MASK_CASES[case]
    path = tmp_path / name
    write(path)
    color, depth = frame_files
    code, err = run_main(detect_args(color, depth, tmp_path / "g.json", "--intrinsics", "50,50,32,24",
                                     "--object-mask", path), capsys)
    assert_one_line(code, err, EXIT_INPUT, fragment)


def test_depth_of_shape_h_w_1_and_in_range_int32_are_read(frame_files, tmp_path):
    np.save(tmp_path / "d.npy", np.full((48, 64, 1), 0.5, np.float32))
    depth, encoding = cli.read_depth(tmp_path / "d.npy")
    assert depth.shape == (48, 64) and encoding == "32FC1"
    Image.fromarray(np.full((48, 64), 65535, np.int32)).save(tmp_path / "wide.tiff")
    depth, encoding = cli.read_depth(tmp_path / "wide.tiff")
    assert depth.dtype == np.uint16 and int(depth.max()) == 65535 and encoding == "16UC1"


def test_decode_depth_never_wraps_integer_depth():
    from graspnet_edge_ros.camera import decode_depth

    fits = np.array([[0, 1000, 65535]], np.int32)
    np.testing.assert_allclose(decode_depth(fits, "16UC1", 0.001), [[0.0, 1.0, 65.535]], rtol=1e-6)
    for bad, fragment in ((np.array([[70000]], np.int32), "1 values above 65535"),
                          (np.array([[-1]], np.int64), "1 negative"),
                          (np.array([[2**32 - 1]], np.uint32), "above 65535")):
        with pytest.raises(InputError, match=fragment):
            decode_depth(bad, "16UC1", 0.001)
    with pytest.raises(InputError, match="integer"):
        decode_depth(np.ones((2, 2), np.float32), "16UC1", 0.001)


# ------------------------------------------------------------------ parameter files
PARAMS_CASES = {
    "missing file": (None, EXIT_USAGE, "cannot read parameter file"),
    "malformed YAML": ("max_grasps: [1, 2\n", EXIT_USAGE, "not valid YAML"),
    "a list": ("- max_grasps\n", EXIT_USAGE, "expected a mapping"),
    "a huge integer": ("num_points: 100000000000000000000000000000\n", EXIT_USAGE, "num_points must be in"),
    "3 M points": ("num_points: 3000000\n", EXIT_USAGE, "num_points must be in [1, 100000]"),
    "a typo": ("max_grasp: 3\n", EXIT_USAGE, "did you mean 'max_grasps'"),
    # float32 grasp array: object ids above 2**24 are not exact (2**24 + 1 would read back as 2**24).
    "target id above 2^24": ("target_object_ids: [16777217]\n", EXIT_USAGE,
                             "target_object_ids values must be finite and in [1, 16777216]"),
    "boolean maybe": ("nms_enabled: maybe\n", EXIT_USAGE, "nms_enabled must be true or false"),
    "boolean as number": ("nms_enabled: 0\n", EXIT_USAGE, "nms_enabled must be true or false"),
    "NaN depth_scale": ("depth_scale: .nan\n", EXIT_USAGE, "depth_scale must be finite"),
    "ros layout, bad value": ("/**:\n  ros__parameters:\n    max_grasps: -1\n", EXIT_USAGE, "max_grasps"),
    "binary": (b"\x00\xff\xfe", EXIT_USAGE, "not valid YAML"),
}


@pytest.mark.parametrize("case", list(PARAMS_CASES))
def test_bad_params_file_is_one_line_before_any_work(case, frame_files, tmp_path, capsys):
    text, expected, fragment = PARAMS_CASES[case]
    path = tmp_path / "params.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    color, depth = frame_files
    code, err = run_main(detect_args(color, depth, tmp_path / "g.json", "--intrinsics", "50,50,32,24",
                                     "--params-file", path), capsys)
    assert_one_line(code, err, expected, fragment)


@pytest.mark.parametrize("extra, params, fragment", [
    (["--target-object", "2"], None, "--target-object needs --object-mask"),
    ([], "target_object_ids: [2]\n", "target_object_ids in"),
    ([], "table_plane_mode: given\ntable_plane_frame: base_link\ntable_plane: [0.0, 0.0, 1.0, 0.0]\n",
     "table_plane_frame 'base_link' is only applied by the ROS node"),
])
def test_settings_that_cannot_work_are_refused_before_the_model_loads(extra, params, fragment, frame_files,
                                                                      tmp_path, capsys):
    # The model path does not exist: a refusal after loading it would be exit 4, not 2.
    if params is not None:
        (tmp_path / "params.yaml").write_text(params)
        extra = [*extra, "--params-file", tmp_path / "params.yaml"]
    color, depth = frame_files
    code, err = run_main(detect_args(color, depth, tmp_path / "g.json", "--intrinsics", "50,50,32,24", *extra),
                         capsys)
    assert_one_line(code, err, EXIT_USAGE, fragment)


def test_params_file_in_the_node_layout_drops_node_only_keys_with_one_notice(tmp_path, capsys):
    from graspnet_edge_ros.config import DetectorConfig, from_mapping

    default_yaml = REPO_ROOT / "config" / "default.yaml"
    values = cli.detector_parameters(default_yaml)
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "ignoring node-only parameter(s)" in notice[0] and "color_topic" in notice[0]
    assert "color_topic" not in values and "max_grasps" in values
    from_mapping(values, DetectorConfig())  # everything left is a detector parameter
    both = tmp_path / "both.yaml"
    both.write_text("/**:\n  ros__parameters:\n    max_grasps: 7\n    use_sim_time: true\n"
                    "graspnet_edge_node:\n  ros__parameters:\n    min_score: 0.25\n"
                    "other_node:\n  ros__parameters:\n    max_grasps: 99\n")
    values = cli.detector_parameters(both)
    assert values == {"max_grasps": 7, "min_score": 0.25}
    with pytest.raises(ConfigError, match="did you mean 'max_grasps'"):
        both.write_text("graspnet_edge_node:\n  ros__parameters:\n    max_grasp: 3\n")
        from_mapping(cli.detector_parameters(both))


def test_node_only_parameter_list_matches_the_node_settings():
    from graspnet_edge_ros.ros.params import ROS_BUILTIN_PARAMETERS, NodeSettings

    assert cli.NODE_ONLY_PARAMETERS == frozenset(NodeSettings.__dataclass_fields__) | ROS_BUILTIN_PARAMETERS


def test_params_file_depth_scale_is_not_replaced_by_the_mat_factor(split_model_dir, shared_dir, tmp_path):
    data = shared_dir / "data" / "graspnet_example"
    params = tmp_path / "p.yaml"
    params.write_text("depth_scale: 0.002\n")  # twice the capture's 1 mm units: everything twice as far
    out = tmp_path / "g.json"
    done = subprocess.run(
        [sys.executable, "-m", "graspnet_edge_ros.cli", "detect", "--color", data / "color.png",
         "--depth", data / "depth.png", "--camera-info", data / "meta.mat", "--model", split_model_dir,
         "--params-file", params, "--seed", "0", "--max-grasps", "3", "--output", out],
        capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr
    assert "depth_scale 0.002 from" in done.stderr and "overrides 0.001" in done.stderr
    report = json.loads(out.read_text())
    assert report["status"] in ("ok", "no_grasp")
    depth_mm = np.asarray(Image.open(data / "depth.png"))
    nearest_scaled = depth_mm[depth_mm > 0].min() * 0.002  # 0.6 m at 2 mm units; objects are at 0.3-0.5 m in mm
    assert report["grasps"]
    assert min(g["position_m"][2] for g in report["grasps"]) > nearest_scaled - 0.05


def test_detect_takes_the_node_parameter_file(split_model_dir, shared_dir, tmp_path):
    """`graspnet-edge detect --params-file config/default.yaml` works (issue 16)."""
    data = shared_dir / "data" / "graspnet_example"
    out = tmp_path / "g.json"
    done = subprocess.run(
        [sys.executable, "-m", "graspnet_edge_ros.cli", "detect", "--color", data / "color.png",
         "--depth", data / "depth.png", "--camera-info", data / "meta.mat", "--model", split_model_dir,
         "--params-file", REPO_ROOT / "config" / "default.yaml", "--seed", "0", "--output", out],
        capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("ignoring node-only parameter(s)") == 1 and "Traceback" not in done.stderr
    assert json.loads(out.read_text())["status"] == "ok"


# --------------------------------------------------------------------- output paths
def _output_cases(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    return {"under a file": (a_file / "g.json", "is a file"), "in /proc": (Path("/proc/graspnet_g.json"), "cannot"),
            "a directory": (a_dir, "is a directory")}


@pytest.mark.parametrize("case", ["under a file", "in /proc", "a directory"])
@pytest.mark.parametrize("option", ["--output", "--overlay"])
def test_output_paths_are_checked_before_any_work(case, option, frame_files, tmp_path, capsys):
    path, fragment = _output_cases(tmp_path)[case]
    color, depth = frame_files
    good = tmp_path / "good.json"
    argv = detect_args(color, depth, path if option == "--output" else good, "--intrinsics", "50,50,32,24")
    if option == "--overlay":
        argv += ["--overlay", path]
    # The model does not exist: reaching it would be exit 4, so exit 2 proves the early check.
    code, err = run_main(argv, capsys)
    assert_one_line(code, err, EXIT_USAGE, option)
    assert fragment in err
    assert not good.exists()


# ------------------------------------------------------------------ manifests and models
def _manifest_case(mutate):
    def write(directory: Path, source: Path):
        data = json.loads((source / "manifest.json").read_text())
        data = mutate(data)
        (directory / "manifest.json").write_text(json.dumps(data))
    return write


def _drop_segment(data):
    data["segments"] = [s for s in data["segments"] if s["name"] != "fp1"]
    return data


MANIFEST_CASES = {
    "num_view 0": (_manifest_case(lambda d: {**d, "model": {**d["model"], "num_view": 0}}), "num_view must be >= 1"),
    "num_view -3": (_manifest_case(lambda d: {**d, "model": {**d["model"], "num_view": -3}}), "num_view must be >= 1"),
    "chunk 0": (_manifest_case(lambda d: {**d, "head_chunk_seeds": 0}), "head_chunk_seeds must be >= 1"),
    "chunk negative": (_manifest_case(lambda d: {**d, "head_chunk_seeds": -64}), "head_chunk_seeds must be >= 1"),
    "missing segment": (_manifest_case(_drop_segment), "segments ['fp1'] are missing"),
    "top-level list": (_manifest_case(lambda d: [d]), "expected a JSON object"),
    "num_view 299 (shape mismatch)": (_manifest_case(lambda d: {**d, "model": {**d["model"], "num_view": 299}}),
                                      "does not match the model constants"),
    "not JSON": (lambda directory, _: (directory / "manifest.json").write_text("{"), "unreadable manifest"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_broken_split_manifest_is_a_model_error_exit_4(case, split_model_dir, frame_files, tmp_path, capsys):
    write, fragment = MANIFEST_CASES[case]
    model = tmp_path / "split"
    model.mkdir()
    write(model, split_model_dir)
    color, depth = frame_files
    code, err = run_main(detect_args(color, depth, tmp_path / "g.json", "--intrinsics", "50,50,32,24",
                                     model=model), capsys)
    assert_one_line(code, err, EXIT_MODEL, fragment)


def mismatched_split_dir(split_model_dir: Path, target: Path) -> Path:
    """A split export whose manifest says 299 views (self-consistently) while the files have 300."""
    shutil.copytree(split_model_dir, target)
    data = json.loads((target / "manifest.json").read_text())
    data["model"]["num_view"] = 299
    for segment in data["segments"]:
        if segment["name"] == "fp2_approach":
            segment["output"]["shape"][1] = 2 + 299
    (target / "manifest.json").write_text(json.dumps(data))
    return target


def test_manifest_segment_mismatch_is_refused_at_load(split_model_dir, tmp_path):
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.pipeline import GraspDetector

    model = mismatched_split_dir(split_model_dir, tmp_path / "split")
    with pytest.raises(ModelFormatError, match="'fp2_approach'.*does not match the manifest"):
        GraspDetector(DetectorConfig.from_flat(model_path=str(model)))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    """A .pth whose pickle would run `touch marker` (os.system) when loaded with weights_only=False."""
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "extra": Payload()}, path)
    return path


def test_crafted_checkpoint_is_refused_without_running_code(tmp_path, frame_files, capsys):
    pytest.importorskip("torch")
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.model.checkpoint import read_state_dict
    from graspnet_edge_ros.pipeline import GraspDetector
    from graspnet_edge_ros.train.checkpoint import load_for_training

    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(tmp_path / "evil.pth", marker)
    with pytest.raises(ModelFormatError, match="refused to load .*system"):
        read_state_dict(evil)
    with pytest.raises(ModelFormatError, match="refused to load"):
        GraspDetector(DetectorConfig.from_flat(model_path=str(evil), backend="torch"))
    from graspnet_edge_ros.model.graspnet import GraspNet

    with pytest.raises(ModelFormatError, match="refused to load"):
        load_for_training(evil, GraspNet(), None)
    color, depth = frame_files
    code, err = run_main(detect_args(color, depth, tmp_path / "g.json", "--intrinsics", "50,50,32,24",
                                     model=evil), capsys)
    assert_one_line(code, err, EXIT_MODEL, "refused to load")
    assert not marker.exists(), "the pickled code ran"


def test_official_checkpoint_layout_with_numpy_scalars_loads_weights_only(graspnet_checkpoint, tmp_path):
    import torch

    from graspnet_edge_ros.model.checkpoint import read_state_dict, safe_torch_load

    state = read_state_dict(graspnet_checkpoint)  # the shared file: a bare state dict
    official = tmp_path / "checkpoint-rs.tar"
    torch.save({"epoch": 17, "model_state_dict": state, "loss": np.float64(0.25), "lr": np.float32(1e-3)}, official)
    payload = safe_torch_load(official)
    assert payload["epoch"] == 17 and float(payload["loss"]) == 0.25
    assert read_state_dict(official).keys() == state.keys()


# ----------------------------------------------------------------------- model health
def _scene_frame(example_scene):
    from graspnet_edge_ros.camera import CameraIntrinsics

    depth = example_scene["depth"]
    return (example_scene["color"], depth, "16UC1",
            CameraIntrinsics.from_matrix(example_scene["K"], depth.shape[1], depth.shape[0]))


class _FaultyRunner:
    """The real runner, with one raw output poisoned by ``poison(raw)`` on each call."""

    def __init__(self, runner, poison):
        self.runner, self.poison = runner, poison

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def __call__(self, points, **kwargs):
        raw = self.runner(points, **kwargs)
        self.poison(raw)
        return raw


def _nan_objectness(raw):
    raw["objectness_score"][0, :, :5] = np.nan


def _nan_head_at_object_seeds(raw):
    objectness = raw["objectness_score"][0]
    seeds = np.flatnonzero(objectness[1] > objectness[0])
    raw["grasp_score_pred"][0][:, seeds[:3]] = np.inf


@pytest.mark.parametrize("poison, output", [(_nan_objectness, "objectness_score"),
                                            (_nan_head_at_object_seeds, "grasp_score_pred")])
def test_non_finite_model_outputs_are_an_error_naming_the_output(split_model_dir, example_scene, poison, output):
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.pipeline import GraspDetector, load_model_runner

    config = DetectorConfig.from_flat(model_path=str(split_model_dir), sampling_seed=0)
    detector = GraspDetector(config, runner=_FaultyRunner(load_model_runner(config), poison))
    result = detector.detect(*_scene_frame(example_scene))
    assert result.status == "error" and len(result.grasps) == 0
    assert "ModelError" in result.reason and repr(output) in result.reason


def test_background_seed_rows_stay_nan_and_are_healthy(split_model_dir, example_cloud):
    """The split runtime leaves background seeds' head rows NaN on purpose: not a fault."""
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner
    from graspnet_edge_ros.runtime.health import check_raw_outputs

    raw = load_graspnet_runner(split_model_dir)(example_cloud.sampled)
    assert np.isnan(raw["grasp_score_pred"]).any()
    check_raw_outputs(raw)
    raw["fp2_xyz"][0, 0, 0] = np.nan
    with pytest.raises(ModelError, match="'fp2_xyz' holds 1 of"):
        check_raw_outputs(raw)


def test_nan_weights_give_error_and_exit_4_not_no_grasp(graspnet_checkpoint, split_model_dir, shared_dir, tmp_path):
    """A checkpoint with NaN weights, exported and run as the robot runs it: status error, exit 4."""
    import torch

    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    model = load_graspnet(graspnet_checkpoint)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "vpmodule" in name or "approach" in name:  # the approach/objectness head
                parameter.fill_(float("nan"))
                break
    broken = tmp_path / "nan_split"
    export_split(model, broken)
    data = shared_dir / "data" / "graspnet_example"
    done = subprocess.run(
        [sys.executable, "-m", "graspnet_edge_ros.cli", "detect", "--color", data / "color.png",
         "--depth", data / "depth.png", "--camera-info", data / "meta.mat", "--model", broken,
         "--seed", "0", "--output", tmp_path / "g.json"], capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == EXIT_MODEL, done.stdout + done.stderr
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["status"] == "error" and "non-finite" in report["reason"]
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------- other CLI commands
def test_infer_points_reads_npz(split_model_dir, example_cloud, tmp_path, capsys):
    points = tmp_path / "x.npz"
    np.savez(points, example_cloud.sampled)
    code = cli.main(["infer-points", "--points", str(points), "--model", str(split_model_dir)])
    assert code == 0, capsys.readouterr().err
    np.savez(points, a=example_cloud.sampled, b=example_cloud.sampled)
    code, err = run_main(["infer-points", "--points", points, "--model", split_model_dir], capsys)
    assert_one_line(code, err, EXIT_INPUT, "needs one named 'points'")


def test_export_without_torch_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails, as after pip install .[onnx]
    code, err = run_main(["export", "--checkpoint", tmp_path / "c.pth", "--output", tmp_path / "m.onnx"], capsys)
    assert_one_line(code, err, EXIT_MODEL, "pip install 'graspnet_edge_ros[torch]'")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


@pytest.mark.parametrize("argv, expected, fragment", [
    (["detect", "--color", "/nonexistent.png", "--depth", "/nonexistent.png", "--intrinsics", "1,2,3",
      "--model", "m", "--params-file", "/nonexistent.yaml", "--output", "/tmp/graspnet_edge_never.json"],
     EXIT_USAGE, "cannot read parameter file"),
    (["infer-points", "--points", "/nonexistent.npz", "--model", "m"], EXIT_INPUT, "cannot read points"),
    (["infer-points", "--points", "/dev/null", "--model", "m", "--repeat", "0"], EXIT_USAGE, "--repeat"),
])
def test_cli_as_the_user_runs_it_prints_one_line(argv, expected, fragment):
    done = subprocess.run([sys.executable, "-m", "graspnet_edge_ros.cli", *argv], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert done.returncode == expected, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and fragment in done.stderr, done.stderr


# ------------------------------------------------------------------- config bounds
def test_every_bounded_parameter_refuses_values_beyond_its_bounds():
    from graspnet_edge_ros.config import BOUNDS, DetectorConfig, from_mapping

    defaults = DetectorConfig()
    for name, (low, high) in BOUNDS.items():
        default = defaults.value(name)
        above = high + 1 if isinstance(default, int) else high * 2 + 1.0
        below = low - 1 if isinstance(default, int) else low - abs(low) - 1.0
        for value in (above, below):
            with pytest.raises(ConfigError, match=name):
                from_mapping({name: value})


def test_booleans_accept_only_true_or_false():
    from graspnet_edge_ros.config import from_mapping

    assert from_mapping({"nms_enabled": False}).nms.nms_enabled is False
    assert from_mapping({"nms_enabled": True}).nms.nms_enabled is True
    # ROS semantics: a string is not a boolean, not even "false" (ros2 param set refuses it too).
    for value in ("false", "true", "maybe", "yes", "1", 0, 1, None, [True]):
        with pytest.raises(ConfigError, match="nms_enabled must be true or false"):
            from_mapping({"nms_enabled": value})


def test_readme_lists_the_parameter_bounds():
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        from parameter_table import bounds_markdown
    finally:
        sys.path.pop(0)
    assert bounds_markdown() in (REPO_ROOT / "README.md").read_text()
