"""Bag replay end to end: bags built from the real example capture, played into the real node.

The node runs as a child process started by ``graspnet-edge replay`` (the CLI the user runs),
with the trained model exported to a split directory, ``sampling_seed=0`` and the workspace
mask; its output is recorded to MCAP and read back here. Frames are played slowly enough
(REPLAY_RATE) that the node never has two frames waiting, so every frame gets a result.
The example capture is graspnet-baseline's doc/example_data (licence beside it in ../shared).
"""
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
REPLAY_RATE = 0.4  # 1 Hz bags -> one frame every 2.5 s; a frame takes ~0.7-1.5 s on 2 cores
NUM_FRAMES = 3
CLI_TIMEOUT_S = 300
GRASPS_TOPIC = "/graspnet_edge_node/grasps"
MARKERS_TOPIC = "/graspnet_edge_node/markers"
STATUS_OK, STATUS_NO_VALID_INPUT = 0, 1
TOLERANCE = 1e-4


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def capture(shared_dir):
    from graspnet_edge_ros.ros.bags import RgbdCapture

    return RgbdCapture.from_directory(shared_dir / "data" / "graspnet_example")


@pytest.fixture(scope="module")
def mask_path(shared_dir) -> Path:
    return shared_dir / "data" / "graspnet_example" / "workspace_mask.png"


@pytest.fixture(scope="module")
def offline_result(capture, split_model_dir, mask_path):
    """The offline pipeline on the same frame with the node's settings (same seed, same mask)."""
    from graspnet_edge_ros.camera import CameraIntrinsics
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.pipeline import GraspDetector

    config = DetectorConfig.from_flat(model_path=str(split_model_dir), sampling_seed=0, workspace_mask_path=str(mask_path),
                            depth_scale=capture.depth_scale)
    intrinsics = CameraIntrinsics.from_matrix(capture.K, capture.width, capture.height)
    result = GraspDetector(config).detect(capture.color, capture.depth, "16UC1", intrinsics)
    assert result.status == "ok" and len(result.grasps) > 5, result.reason
    return result


def run_replay(bag: Path, record: Path, model: Path, mask: Path, *extra: str,
               rate: float = REPLAY_RATE) -> subprocess.CompletedProcess:
    """``python -m graspnet_edge_ros.cli replay`` as a user runs it (source tree first on the path)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    command = [sys.executable, "-m", "graspnet_edge_ros.cli", "replay", str(bag), "--model", str(model),
               "--rate", str(rate), "--record", str(record), "--param", "sampling_seed=0",
               "--param", f"workspace_mask_path={mask}", "--node-log", str(record.with_suffix(".node.log")),
               *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def recorded_messages(path: Path) -> dict[str, list]:
    from graspnet_edge_ros.ros.typestore import read_recording

    by_topic = defaultdict(list)
    for topic, _, msg in read_recording(path):
        by_topic[topic].append(msg)
    return by_topic


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def explain(process: subprocess.CompletedProcess, record: Path) -> str:
    log = record.with_suffix(".node.log")
    node_log = log.read_text()[-3000:] if log.is_file() else "(no node log)"
    return f"exit {process.returncode}\nstdout:\n{process.stdout[-4000:]}\nstderr:\n{process.stderr[-3000:]}\n" \
           f"node log:\n{node_log}"


# ------------------------------------------------------------------- bags (no ROS needed)
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_capture_bag_holds_the_capture_with_advancing_stamps(capture, tmp_path, storage):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from graspnet_edge_ros.ros import bags

    info = bags.write_capture_bag(tmp_path / "bag", capture, num_frames=3, rate_hz=2.0, storage=storage)
    typestore = get_typestore(Stores.ROS2_KILTED)
    seen = defaultdict(list)
    with Reader(tmp_path / "bag") as reader:
        assert {c.topic for c in reader.connections} == {bags.COLOR_TOPIC, bags.DEPTH_TOPIC, bags.INFO_TOPIC}
        assert (tmp_path / "bag" / f"bag.{'mcap' if storage == 'mcap' else 'db3'}").is_file()
        for conn, t_ns, raw in reader.messages():
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
            seen[conn.topic].append((t_ns, msg))
    stamps = [stamp_ns(msg) for _, msg in seen[bags.COLOR_TOPIC]]
    assert stamps == info.stamps_ns == [bags.DEFAULT_START_NS + i * 500_000_000 for i in range(3)]
    for topic in (bags.DEPTH_TOPIC, bags.INFO_TOPIC):
        assert [stamp_ns(msg) for _, msg in seen[topic]] == stamps
    _, color = seen[bags.COLOR_TOPIC][-1]
    _, depth = seen[bags.DEPTH_TOPIC][-1]
    _, camera = seen[bags.INFO_TOPIC][-1]
    assert (color.encoding, color.width, color.height, color.step) == ("rgb8", 1280, 720, 3840)
    assert np.array_equal(np.frombuffer(bytes(color.data), np.uint8).reshape(720, 1280, 3), capture.color)
    assert (depth.encoding, depth.step) == ("16UC1", 2560)
    assert np.array_equal(np.frombuffer(bytes(depth.data), np.uint16).reshape(720, 1280), capture.depth)
    assert {color.header.frame_id, depth.header.frame_id, camera.header.frame_id} == {bags.FRAME_ID}
    assert camera.distortion_model == "plumb_bob" and not np.any(camera.d) and len(camera.d) == 5
    np.testing.assert_array_equal(camera.k.reshape(3, 3), capture.K)
    np.testing.assert_array_equal(camera.p.reshape(3, 4)[:, :3], capture.K)
    np.testing.assert_array_equal(camera.r.reshape(3, 3), np.eye(3))
    assert bags.read_bag_frames(tmp_path / "bag") == info.frames
    notice = (tmp_path / "bag" / "README.txt").read_text()
    assert "graspnet-baseline" in notice and (tmp_path / "bag" / "LICENSE-graspnet-baseline.txt").is_file()


def test_malformed_bag_has_each_defect_between_good_frames(capture, tmp_path):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from graspnet_edge_ros.ros import bags

    info = bags.write_malformed_bag(tmp_path / "bad", capture, storage="mcap")
    typestore = get_typestore(Stores.ROS2_KILTED)
    frames = defaultdict(dict)
    with Reader(tmp_path / "bad") as reader:
        for conn, _, raw in reader.messages():
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
            frames[stamp_ns(msg)][conn.topic] = msg
    by_label = {f["label"]: frames[f["stamp_ns"]] for f in info.frames}
    assert len(by_label) == len(info.frames) == len(frames)
    assert by_label["depth_encoding_yuv422"][bags.DEPTH_TOPIC].encoding == "yuv422"
    wrong_step = by_label["depth_32fc1_wrong_step"][bags.DEPTH_TOPIC]
    assert wrong_step.encoding == "32FC1" and wrong_step.step < wrong_step.width * 4
    small = by_label["depth_size_mismatch"]
    assert (small[bags.DEPTH_TOPIC].width, small[bags.DEPTH_TOPIC].height) == (640, 480)
    assert (small[bags.COLOR_TOPIC].width, small[bags.COLOR_TOPIC].height) == (1280, 720)
    assert not np.any(by_label["depth_all_zero"][bags.DEPTH_TOPIC].data)
    assert not np.any(by_label["camera_info_zero_k"][bags.INFO_TOPIC].k)
    assert by_label["camera_info_negative_fx"][bags.INFO_TOPIC].k[0] < 0
    stamps = [f["stamp_ns"] for f in info.frames]
    late = [f["label"] for f in info.frames].index("stamp_out_of_order")
    assert stamps[late] < stamps[late - 1] and stamps[late - 1] - stamps[late] < 10**9
    expectations = [f["expect"] for f in info.frames]
    assert expectations[0] == expectations[-1] == "ok" and expectations.count("ok") >= 3
    assert set(expectations) == {"ok", "no_valid_input"}


def test_cli_help_lists_replay_without_rclpy():
    """`graspnet-edge --help` must work on machines without ROS: the replay module imports rclpy lazily."""
    code = ("import sys; sys.modules['rclpy'] = None\n"
            "from graspnet_edge_ros.cli import build_parser\n"
            "parser = build_parser(); parser.print_help()\n"
            "import graspnet_edge_ros.ros.replay, graspnet_edge_ros.ros.bags, graspnet_edge_ros.ros.recorder\n"
            "import graspnet_edge_ros.ros.replay_summary, graspnet_edge_ros.ros.typestore\n"
            "import graspnet_edge_ros.ros.fastdds_profile, graspnet_edge_ros.ros.stamps\n"
            "parser.parse_args(['replay', 'bag', '--model', 'm', '--record', 'out.mcap'])\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "replay" in done.stdout


def test_replay_node_reads_reliably_only_under_fast_dds_2_and_never_against_the_users_choice(monkeypatch):
    import importlib.metadata

    from graspnet_edge_ros.ros.fastdds_profile import best_effort_large_images_are_lossy
    from graspnet_edge_ros.ros.replay_cli import reliable_inputs_for_lossy_dds

    versions = {}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions[name])
    monkeypatch.delenv("RMW_IMPLEMENTATION", raising=False)
    for rclpy_version, lossy in (("3.3.16", True), ("7.1.5", True), ("9.1.2", False), ("10.0.1", False)):
        versions["rclpy"] = rclpy_version
        assert best_effort_large_images_are_lossy() == lossy, rclpy_version
        params = {"sampling_seed": "0"}
        notice = reliable_inputs_for_lossy_dds(params, {})
        assert ("qos_reliability:=reliable" in notice) == lossy
        assert params == ({"sampling_seed": "0", "qos_reliability": "reliable"} if lossy else {"sampling_seed": "0"})
    versions["rclpy"] = "7.1.5"
    # the user's choice wins, from --param or from the parameter file
    for params, file_params in (({"qos_reliability": "best_effort"}, {}), ({}, {"qos_reliability": "best_effort"})):
        before = dict(params)
        assert reliable_inputs_for_lossy_dds(params, file_params) == "" and params == before
    # another RMW: not measured, left alone
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_cyclonedds_cpp")
    assert not best_effort_large_images_are_lossy()
    # no rclpy metadata (e.g. a source build): ROS_DISTRO decides
    monkeypatch.delenv("RMW_IMPLEMENTATION")
    versions.clear()

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    for distro, lossy in (("jazzy", True), ("humble", True), ("kilted", False)):
        monkeypatch.setenv("ROS_DISTRO", distro)
        assert best_effort_large_images_are_lossy() == lossy, distro


def test_replay_profile_goes_to_the_variable_the_installed_fast_dds_reads(monkeypatch):
    import importlib.metadata

    from graspnet_edge_ros.ros import fastdds_profile

    monkeypatch.delenv("RMW_IMPLEMENTATION", raising=False)
    for rclpy_version, major in (("7.1.5", 2), ("9.1.2", 3)):
        monkeypatch.setattr(importlib.metadata, "version", lambda name, _v=rclpy_version: _v)
        for name in fastdds_profile.PROFILE_ENV.values():
            monkeypatch.delenv(name, raising=False)
        other = fastdds_profile.PROFILE_ENV[5 - major]
        monkeypatch.setenv(other, "/elsewhere.xml")  # read by the other Fast DDS only: does not count
        assert fastdds_profile.use_large_data_transport()
        path = os.environ[fastdds_profile.PROFILE_ENV[major]]
        assert fastdds_profile.HEARTBEAT_PERIOD_ELEMENT[major] in Path(path).read_text()
        assert not fastdds_profile.use_large_data_transport()  # now the user's (ours) is set: left alone
        assert os.environ[other] == "/elsewhere.xml"


PROFILE_PROBE = """
import os, sys
from graspnet_edge_ros.ros import fastdds_profile
major = int(sys.argv[1])
path = sys.argv[2]
with open(path, "w") as f:
    f.write(fastdds_profile.large_data_profile(major))
os.environ[fastdds_profile.profile_env_variable()] = path
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("profile_probe")
node.create_publisher(String, "/profile_probe", 10)
node.destroy_node()
rclpy.shutdown()
"""


def test_replay_fast_dds_profile_loads_in_the_installed_fast_dds(ros_interfaces, tmp_path):
    """The player's profile (large shared-memory segment, 100 ms heartbeat) must parse in the Fast
    DDS of this distribution, from the variable it reads: an unknown element voids the whole file
    and Fast DDS only logs it. The other major version's spelling is the control: it must be
    reported, or this check could not fail."""
    from graspnet_edge_ros.ros.fastdds_profile import HEARTBEAT_PERIOD_ELEMENT, fast_dds_major

    installed = fast_dds_major()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               RMW_IMPLEMENTATION="rmw_fastrtps_cpp")
    for name in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        env.pop(name, None)
    reports = {}
    for major in HEARTBEAT_PERIOD_ELEMENT:
        done = subprocess.run([sys.executable, "-c", PROFILE_PROBE, str(major), str(tmp_path / f"fastdds{major}.xml")],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        reports[major] = done.stdout + done.stderr  # Fast DDS 2.x logs errors to stdout, 3.x to stderr
    assert "XMLPARSER" not in reports[installed], reports[installed]
    other = 5 - installed
    assert "XMLPARSER" in reports[other] and HEARTBEAT_PERIOD_ELEMENT[installed] not in reports[other], reports[other]


# ------------------------------------------------------------------ replay into the node
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_replay_gives_one_result_per_frame_equal_to_offline_pipeline(
        ros_interfaces, capture, split_model_dir, mask_path, offline_result, tmp_path, storage):
    from graspnet_edge_ros.postprocess.filters import fit_table_plane
    from graspnet_edge_ros.ros import bags
    from graspnet_edge_ros.ros.conversions import grasp_group_from_msg

    info = bags.write_capture_bag(tmp_path / "in", capture, num_frames=NUM_FRAMES, rate_hz=1.0, storage=storage)
    record = tmp_path / "out.mcap"
    extra = ("--overlay-dir", str(tmp_path / "overlays")) if storage == "mcap" else ()
    done = run_replay(tmp_path / "in", record, split_model_dir, mask_path, *extra)
    assert done.returncode == 0, explain(done, record)
    assert "results out" in done.stdout and "top 10 of" in done.stdout
    from graspnet_edge_ros.ros.fastdds_profile import best_effort_large_images_are_lossy

    # Fast DDS 2.x (Jazzy): the node was started with reliable inputs, and said so; Kilted: default
    assert ("reads its inputs reliably" in done.stdout) == best_effort_large_images_are_lossy(), done.stdout

    outputs = recorded_messages(record)
    results = outputs[GRASPS_TOPIC]
    # one result per frame, stamped like its input frame, in the image frame, all ok
    assert sorted(stamp_ns(r) for r in results) == info.stamps_ns, explain(done, record)
    assert {r.header.frame_id for r in results} == {bags.FRAME_ID}
    assert [r.status for r in results] == [STATUS_OK] * NUM_FRAMES, [r.status_reason for r in results]
    assert outputs[MARKERS_TOPIC], "no MarkerArray recorded"
    diagnostics = [{kv.key: kv.value for kv in status.values}
                   for array in outputs["/diagnostics"] for status in array.status]
    assert diagnostics and diagnostics[-1]["frames_dropped"] == "0"
    assert diagnostics[-1]["frames_processed"] == str(NUM_FRAMES)

    expected = offline_result.grasps
    normal, offset = fit_table_plane(offline_result.cloud.cloud)
    for result in results:
        grasps = result.grasps
        assert [g.rank for g in grasps] == list(range(len(grasps)))
        scores = np.array([g.score for g in grasps])
        assert np.all(np.diff(scores) <= 0)
        widths = np.array([g.width for g in grasps])
        assert np.all((widths > 0) & (widths <= 0.1 + 1e-6))
        centres = np.array([[g.pose.position.x, g.pose.position.y, g.pose.position.z] for g in grasps])
        heights = centres @ normal + offset
        assert np.mean(heights > 0.005) >= 0.8, f"grasp centres not above the table: {np.sort(heights)[:10]}"
        # identical to the offline pipeline with the same settings and seed
        assert len(grasps) == len(expected)
        np.testing.assert_allclose(scores, expected.scores, atol=TOLERANCE)
        np.testing.assert_allclose(centres, offline_result.poses.positions, atol=TOLERANCE)
        quats = np.array([[g.pose.orientation.x, g.pose.orientation.y, g.pose.orientation.z, g.pose.orientation.w]
                          for g in grasps])
        np.testing.assert_allclose(quats, offline_result.poses.quaternions, atol=TOLERANCE)
        rebuilt = grasp_group_from_msg(result)
        np.testing.assert_allclose(rebuilt.array, expected.array, atol=TOLERANCE)

    if storage == "mcap":
        from PIL import Image

        overlays = list((tmp_path / "overlays").glob("overlay_*.png"))
        assert len(overlays) == 1
        drawn = np.asarray(Image.open(overlays[0]).convert("RGB"))
        assert drawn.shape == capture.color.shape
        assert np.mean(np.any(drawn != capture.color, axis=2)) > 0.01


def test_malformed_bag_gives_error_statuses_and_node_survives(
        ros_interfaces, capture, split_model_dir, mask_path, tmp_path):
    from graspnet_edge_ros.ros import bags

    info = bags.write_malformed_bag(tmp_path / "bad", capture, rate_hz=1.0, storage="mcap")
    record = tmp_path / "out.mcap"
    # --every-frame: one answer per frame whatever the machine's speed. Played live, reliable
    # inputs on Jazzy (Fast DDS 2) sometimes deliver two repaired frames at once, and the node then
    # rightly keeps only the newer: a drop that says nothing about malformed frames.
    done = run_replay(tmp_path / "bad", record, split_model_dir, mask_path, "--every-frame")
    # exit 0: the node was alive until the CLI stopped it, and published results
    assert done.returncode == 0, explain(done, record)
    assert "node stopped (SIGINT" in done.stdout

    outputs = recorded_messages(record)
    by_stamp = defaultdict(list)
    for result in outputs[GRASPS_TOPIC]:
        by_stamp[stamp_ns(result)].append(result)
    keywords = {"depth_encoding_yuv422": "yuv422", "depth_32fc1_wrong_step": "step",
                "depth_size_mismatch": "640", "depth_all_zero": "depth", "camera_info_zero_k": "fx",
                "camera_info_negative_fx": "fx", "stamp_out_of_order": "order"}
    for frame in info.frames:
        results = by_stamp.get(frame["stamp_ns"], [])
        assert len(results) == 1, f"{frame['label']}: {len(results)} results\n{explain(done, record)}"
        result = results[0]
        assert result.header.frame_id == bags.FRAME_ID
        if frame["expect"] == "ok":
            assert result.status == STATUS_OK and result.grasps, f"{frame['label']}: {result.status_reason}"
        else:
            assert result.status == STATUS_NO_VALID_INPUT, f"{frame['label']}: status {result.status}"
            assert not result.grasps
            assert keywords[frame["label"]] in result.status_reason, f"{frame['label']}: {result.status_reason}"

    statuses = [status for array in outputs["/diagnostics"] for status in array.status]
    warnings = [s for s in statuses if int(s.level) == 1]
    assert warnings, "bad frames never turned the diagnostics to WARN"
    assert any({kv.key: kv.value for kv in s.values}.get("last_error") for s in warnings)
    last = {kv.key: kv.value for kv in statuses[-1].values}
    assert last["frames_rejected"] == "1" and last["frames_dropped"] == "0"
    assert int(last["frames_processed"]) == len(info.frames)


def test_node_takes_every_frame_of_a_30hz_hd_stream_while_it_detects(
        ros_interfaces, capture, split_model_dir, mask_path, tmp_path):
    """3 s of 1280x720 frames at 30 Hz, played at their pace while the node detects on the newest:
    its executor must still take every frame. rclpy's MultiThreadedExecutor, which the node used
    before, busy-spun under this load (it re-yields tasks its pool has not started), took 17-60 %
    of the frames and slowed detection ~10x (README, "The ROS 2 node")."""
    from graspnet_edge_ros.ros import bags

    frames = 90
    bags.write_capture_bag(tmp_path / "in", capture, num_frames=frames, rate_hz=30.0, storage="mcap")
    record = tmp_path / "out.mcap"
    done = run_replay(tmp_path / "in", record, split_model_dir, mask_path, rate=1.0)
    assert done.returncode == 0, explain(done, record)
    outputs = recorded_messages(record)
    assert outputs[GRASPS_TOPIC] and {r.status for r in outputs[GRASPS_TOPIC]} == {STATUS_OK}, explain(done, record)
    last = {kv.key: kv.value for kv in outputs["/diagnostics"][-1].status[0].values}
    from graspnet_edge_ros.ros.fastdds_profile import best_effort_large_images_are_lossy

    # Under Fast DDS 2 (Jazzy) the replay has the node read reliably, and its keep-last history
    # loses samples of its own (68 of 90 in one CI run); the old executor's loss shows on Kilted.
    share = 0.5 if best_effort_large_images_are_lossy() else 0.8
    assert int(last["frames_received"]) >= share * frames, f"{last}\n{explain(done, record)}"
    assert int(last["frames_processed"]) >= 2, last


def test_replay_fails_cleanly_when_the_node_cannot_start(ros_interfaces, capture, mask_path, tmp_path):
    from graspnet_edge_ros.ros import bags

    bags.write_capture_bag(tmp_path / "in", capture, num_frames=1, storage="mcap")
    not_a_model = tmp_path / "empty_model_dir"
    not_a_model.mkdir()
    record = tmp_path / "out.mcap"
    done = run_replay(tmp_path / "in", record, not_a_model, mask_path)
    assert done.returncode == 1, explain(done, record)
    assert "node DIED" in done.stdout and "ReplayError" in done.stderr, explain(done, record)
    assert "empty_model_dir" in record.with_suffix(".node.log").read_text()  # the node said what failed


def test_drain_with_reliable_inputs_waits_for_frames_still_in_flight():
    """Reliable inputs: a frame repaired late by DDS still arrives, so the node's counters
    ("received 2, all answered") end the drain only once it received every frame played."""
    import threading
    import time as clock

    from graspnet_edge_ros.ros import replay

    class Recorder:
        lock = threading.Condition()
        results = []
        diagnostics_count = 1
        last_diag_s = 0.0
        counters_s = clock.monotonic() + 10.0  # published after the end of play (+ settle)
        counters = {"frames_received": 2, "frames_processed": 2, "frames_dropped": 0, "frames_skipped": 0}

    def third_frame_arrives():
        clock.sleep(0.5)
        with Recorder.lock:
            Recorder.counters = {**Recorder.counters, "frames_received": 3, "frames_processed": 3}
            Recorder.lock.notify_all()

    play_end = clock.monotonic()
    reason = replay._drain(Recorder, None, play_end, 30.0, None, None)
    assert reason.startswith("every received frame answered") and "received 2" in reason
    threading.Thread(target=third_frame_arrives, daemon=True).start()
    started = clock.monotonic()
    reason = replay._drain(Recorder, None, play_end, 30.0, None, None, expect_received=3)
    assert "received 3" in reason and 0.4 < clock.monotonic() - started < 10.0
