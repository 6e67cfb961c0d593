"""Hostile clients and faults against the node and the replay tool (issue 15), over DDS.

Reuses the graph plumbing of test_ros_node.py (GraphClient, the stand-in detector node) and the
bag builders of the replay tests. Every wait is a deadline on an observable condition.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_ros_node import (NODE_NAME, GraphClient, StandInDetector, frame_messages, key, node_under_test,  # noqa: F401
                           poll, ros, stamp, stand_in_node, tiny_frame, tiny_frame_streamer, wait_until)

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DIR = Path(__file__).resolve().parent


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TEST_DIR)] +
                                        [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


# --------------------------------------------------------------------------- service
def test_hostile_service_timeouts_are_clamped_or_refused_and_the_node_serves_on(stand_in_node):
    from graspnet_edge_ros.msg import GraspArray
    from graspnet_edge_ros.ros.params import MAX_SERVICE_TIMEOUT_S

    node, detector, client = stand_in_node
    detector.release.set()
    refused = client.call(client.detect(timeout_s=math.nan), 10.0)
    assert not refused.success and "NaN" in refused.message
    assert refused.result.status == GraspArray.STATUS_NO_VALID_INPUT
    # Target objects without an object mask topic: refused at once, not an empty "no grasp".
    from graspnet_edge_ros.srv import DetectGrasps
    refused = client.call(client.detect_client.call_async(DetectGrasps.Request(timeout_s=5.0,
                                                                               target_object_ids=[3])), 10.0)
    assert not refused.success and "object_mask_topic" in refused.message
    assert refused.result.status == GraspArray.STATUS_NO_VALID_INPUT
    # 1e10 s and inf used to overflow threading's wait and kill the node: now they are clamped.
    huge, infinite = client.detect(timeout_s=1e10), client.detect(timeout_s=math.inf)
    wait_until(lambda: len(node._requests) == 2, 10.0, "both calls to be pending")
    assert all(r.timeout_s == MAX_SERVICE_TIMEOUT_S for r in node._requests)
    time_msg, messages = tiny_frame(11.0)
    client.publish(messages)
    for future in (huge, infinite):
        response = client.call(future, 30.0)
        assert response.success and key(response.result.header.stamp) == key(time_msg), response.message
    # service_timeout_s has a range: rclpy refuses 1e10 before the node sees it.
    result = client.set_parameters(service_timeout_s=1e10)[0]
    assert not result.successful and "out of range" in result.reason
    assert client.get_parameter("service_timeout_s") == 10.0
    later, messages = tiny_frame(11.5)
    client.publish(messages)
    assert client.wait_for_result(later).status == GraspArray.STATUS_OK


def test_sixteen_concurrent_callers_are_answered_while_frames_stream(stand_in_node):
    node, detector, client = stand_in_node
    detector.release.set()
    period_s = node._settings.diagnostics_period_s
    publisher, stop, streamed = tiny_frame_streamer(client, 20.0, 0.1)
    with client.lock:
        diagnostics_before = len(client.diagnostics)
    started = time.monotonic()
    # Sixteen callers, each with its own client, all at once. Fast DDS hands every response of a
    # service to every client's reader and filters at take time: a burst of 16 answers needs a
    # client queue deeper than the default 10, or the oldest answers are overwritten.
    from rclpy.qos import QoSProfile

    from graspnet_edge_ros.srv import DetectGrasps

    callers = [client.node.create_client(DetectGrasps, f"/{node.get_name()}/detect_grasps",
                                         qos_profile=QoSProfile(depth=100)) for _ in range(16)]
    wait_until(lambda: all(c.service_is_ready() for c in callers), 30.0, "16 clients to see the service")
    # A first (refused at once) call per client: its answer proves the response path is matched too.
    for caller in callers:
        assert not client.call(caller.call_async(DetectGrasps.Request(timeout_s=math.nan)), 10.0).success
    calls = [caller.call_async(DetectGrasps.Request(timeout_s=30.0, max_grasps=1 + i % 2))
             for i, caller in enumerate(callers)]
    publisher.start()
    try:
        responses = [client.call(future, 40.0) for future in calls]
        # Keep streaming a little: the executor must stay free for frames and timers.
        time.sleep(1.0)
    finally:
        stop.set()
        publisher.join(5.0)
    elapsed = time.monotonic() - started
    for index, response in enumerate(responses):
        assert response.success, (index, response.message)
        assert key(response.result.header.stamp) in streamed
        assert len(response.result.grasps) == 1 + index % 2  # each caller's max_grasps
    with client.lock:
        diagnostics = len(client.diagnostics) - diagnostics_before
    assert diagnostics >= 0.6 * elapsed / period_s, (diagnostics, elapsed)
    assert node.statistics.frames_processed >= 0.5 * len(streamed), (node.statistics, len(streamed))
    assert not node._requests and not node._deferred


def test_parameter_ranges_and_paths_are_checked_at_runtime(stand_in_node):
    from graspnet_edge_ros.config import MAX_NUM_POINTS

    node, detector, client = stand_in_node
    descriptor = node.describe_parameter("num_points")
    assert descriptor.integer_range[0].to_value == MAX_NUM_POINTS
    assert node.describe_parameter("collision_voxel_size_m").floating_point_range[0].from_value == 0.001
    for name, value in (("num_points", 3_000_000), ("max_grasps", 10**6), ("nms_rotation_deg", 181.0)):
        result = client.set_parameters(**{name: value})[0]
        assert not result.successful and "out of range" in result.reason, (name, result.reason)
    result = client.set_parameters(workspace_mask_path="/nonexistent/mask.png")[0]
    assert not result.successful and "no readable file" in result.reason
    assert client.get_parameter("workspace_mask_path") == ""
    assert client.set_parameters(num_points=4096)[0].successful


# ----------------------------------------------------------------------- fault injection
class _FaultOnce:
    """A segment runner that misbehaves on the calls listed in ``faults`` (by call number)."""

    def __init__(self, segment, faults):
        self.segment, self.faults, self.calls = segment, dict(faults), 0

    def __call__(self, tensor):
        self.calls += 1
        fault = self.faults.get(self.calls)
        if fault == "raise":
            raise RuntimeError("injected backend failure")
        output = self.segment(tensor)
        if fault == "nan":
            output = np.full_like(output, np.nan)
        return output


@pytest.fixture
def faulty_real_node(ros, split_model_dir, shared_dir):
    """The node in this process with the real split model; the grasp head raises on frame 1, fp2 is NaN on frame 2."""
    from graspnet_edge_ros.pipeline import GraspDetector, load_model_runner

    mask = shared_dir / "data" / "graspnet_example" / "workspace_mask.png"
    overrides = {"warmup": False, "qos_reliability": "reliable", "diagnostics_period_s": 0.2,
                 "model_path": str(split_model_dir), "sampling_seed": 0, "workspace_mask_path": str(mask)}

    def factory(config):
        runner = load_model_runner(config)
        net = runner._timings_source  # the SplitGraspNet behind the runner
        net.runners["grasp_head_post"] = _FaultOnce(net.runners["grasp_head_post"], {1: "raise"})
        approach = _FaultOnce(net.runners["fp2_approach"], {2: "nan"})
        net.runners["fp2_approach"] = approach
        return GraspDetector(config, runner=runner)

    with node_under_test(ros, "faulty_real_node", overrides, factory, wait_s=60.0) as (node, client):
        yield node, client


def test_backend_failure_and_nan_segment_give_error_then_the_node_recovers(faulty_real_node, example_scene):
    from graspnet_edge_ros.msg import GraspArray

    node, client = faulty_real_node
    results = []
    for index, seconds in enumerate((30.0, 31.0, 32.0)):
        time_msg = stamp(seconds)
        client.publish(frame_messages(example_scene["color"], example_scene["depth"], example_scene["K"], time_msg))
        results.append(client.wait_for_result(time_msg))
    crashed, poisoned, recovered = results
    assert crashed.status == GraspArray.STATUS_ERROR and "injected backend failure" in crashed.status_reason
    assert poisoned.status == GraspArray.STATUS_ERROR and "non-finite" in poisoned.status_reason
    assert "objectness_score" in poisoned.status_reason  # names the output
    assert not crashed.grasps and not poisoned.grasps
    assert recovered.status == GraspArray.STATUS_OK and len(recovered.grasps) > 0, recovered.status_reason
    status = client.latest_diagnostics(lambda s, v: int(v["frames_processed"]) >= 3, 10.0, "diagnostics")
    assert status.level == status.WARN or "non-finite" in {kv.key: kv.value for kv in status.values}["last_error"]


# ------------------------------------------------------------------ start and shutdown
def test_failed_warm_up_stops_the_node_at_start(ros):
    from graspnet_edge_ros.errors import ModelError
    from graspnet_edge_ros.pipeline import DetectionResult
    from graspnet_edge_ros.ros.node import GraspDetectorNode

    class BrokenModel(StandInDetector):
        def detect_cloud(self, cloud):
            return DetectionResult("error", "ModelError: the model output 'objectness_score' holds 128 of 2048 "
                                            "non-finite values")

    context = ros.Context()
    ros.init(context=context)
    try:
        with pytest.raises(ModelError, match="warm-up frame failed.*objectness_score"):
            GraspDetectorNode("broken_warmup", context=context, detector_factory=BrokenModel)
    finally:
        context.try_shutdown()


def test_manifest_segment_mismatch_stops_the_node_with_one_line(ros, split_model_dir, tmp_path):
    from test_hostile_inputs import mismatched_split_dir

    model = mismatched_split_dir(split_model_dir, tmp_path / "split")
    done = subprocess.run([sys.executable, "-m", "graspnet_edge_ros.ros.node", "--ros-args",
                           "-p", f"model_path:={model}"], env=_env(), capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    lines = [line for line in output.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and "does not match the manifest" in lines[0], output
    assert "Traceback" not in output


SLOW_NODE_SCRIPT = """
import os, sys, time
domain = os.environ["ROS_DOMAIN_ID"]
from test_ros_node import StandInDetector  # its conftest import picks a domain of its own: restore ours
os.environ["ROS_DOMAIN_ID"] = domain
from graspnet_edge_ros.ros.node import main

class SlowDetector(StandInDetector):
    def detect(self, *args, **options):
        print("DETECT STARTED", flush=True)
        time.sleep(3.0)
        self.release.set()
        return super().detect(*args, **options)

sys.exit(main(detector_factory=SlowDetector))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stopping_the_node_mid_frame_is_clean_and_unknown_parameters_are_named(ros, tmp_path, signum):
    name = f"slow_node_{signum.name.lower()}"
    topics = (f"/{name}/color", f"/{name}/depth", f"/{name}/info")
    log = tmp_path / "node.log"
    command = [sys.executable, "-c", SLOW_NODE_SCRIPT, "--ros-args", "-r", f"__node:={name}",
               "-p", "warmup:=false", "-p", f"color_topic:={topics[0]}", "-p", f"depth_topic:={topics[1]}",
               "-p", f"camera_info_topic:={topics[2]}", "-p", "max_grasp:=3"]
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=_env(), stdout=output, stderr=subprocess.STDOUT, cwd=TEST_DIR)
    context = ros.Context()
    ros.init(context=context)
    client = GraphClient(context, name, topics, best_effort=False)
    try:
        wait_until(lambda: "ready:" in log.read_text() or process.poll() is not None, 60.0, f"{name} to start")
        assert process.poll() is None, log.read_text()
        client.wait_for_node(60.0)
        text = log.read_text()
        assert "ignoring unknown parameter(s) 'max_grasp' (did you mean 'max_grasps'?)" in text, text
        # The node reads best effort: a frame sent right after matching may be lost, so resend.
        for attempt in range(30):
            client.publish(tiny_frame(40.0 + attempt)[1])
            if poll(lambda: "DETECT STARTED" in log.read_text(), 1.0):
                break
        wait_until(lambda: "DETECT STARTED" in log.read_text(), 1.0, "the node to start detecting")
        process.send_signal(signum)
        code = process.wait(30.0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        client.close()
        context.try_shutdown()
    text = log.read_text()
    assert code == 0, text
    for bad in ("Traceback", "RCLError", "context is invalid", "Exception"):
        assert bad not in text, text


# ------------------------------------------------------------------------------ replay
@pytest.fixture(scope="module")
def capture(shared_dir):
    from graspnet_edge_ros.ros.bags import RgbdCapture

    return RgbdCapture.from_directory(shared_dir / "data" / "graspnet_example")


def replay(bag, record, model, *extra, timeout=600):
    command = [sys.executable, "-m", "graspnet_edge_ros.cli", "replay", str(bag), "--model", str(model),
               "--record", str(record), "--node-log", str(record.with_suffix(".node.log")), *map(str, extra)]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=timeout)


def explain(done, record):
    log = record.with_suffix(".node.log")
    return (f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-2000:]}\n"
            f"node log:\n{log.read_text()[-2000:] if log.is_file() else '-'}")


def test_replay_refuses_unknown_param_before_starting_the_node(ros, capture, split_model_dir, tmp_path):
    from graspnet_edge_ros.ros import bags

    bags.write_capture_bag(tmp_path / "in", capture, num_frames=1, storage="mcap")
    done = replay(tmp_path / "in", tmp_path / "out.mcap", split_model_dir, "--param", "max_grasp=3", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "unknown parameter 'max_grasp'; did you mean 'max_grasps'?" in done.stderr
    assert "starting node" not in done.stdout and "Traceback" not in done.stderr
    done = replay(tmp_path / "in", tmp_path / "out.mcap", split_model_dir, "--param", "nms_enabled=maybe",
                  timeout=120)
    assert done.returncode == 2 and "nms_enabled must be true or false" in done.stderr, done.stderr


def _processes_with(fragment: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if fragment in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_sigterm_to_replay_stops_the_node_and_keeps_the_recording(ros, capture, split_model_dir, tmp_path):
    from graspnet_edge_ros.ros import bags
    from graspnet_edge_ros.ros.typestore import read_recording

    bags.write_capture_bag(tmp_path / "in", capture, num_frames=3, rate_hz=1.0, storage="mcap")
    record, summary = tmp_path / "out.mcap", tmp_path / "summary.json"
    node_name = f"hostile_sigterm_{os.getpid()}"
    command = [sys.executable, "-m", "graspnet_edge_ros.cli", "replay", str(tmp_path / "in"), "--model",
               str(split_model_dir), "--record", str(record), "--rate", "0.2", "--node-name", node_name,
               "--summary-json", str(summary), "--node-log", str(tmp_path / "node.log")]
    stdout = tmp_path / "replay.out"
    with open(stdout, "w") as out:
        process = subprocess.Popen(command, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        # Frames go out every 5 s: stop while the node works or waits between frames.
        wait_until(lambda: "playing" in stdout.read_text() or process.poll() is not None, 180.0, "playing")
        time.sleep(2.0)
        process.send_signal(signal.SIGTERM)
        code = process.wait(60.0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = stdout.read_text()
    assert code == 128 + signal.SIGTERM, text
    assert "node stopped (SIGINT" in text and "Traceback" not in text, text
    assert not _processes_with(node_name), "the node outlived the replay"
    report = json.loads(summary.read_text())
    assert report["interrupted"] == "SIGTERM received" and report["frames_in"] >= 1
    recorded = read_recording(record)  # flushed: a readable MCAP
    assert any(topic == "/diagnostics" for topic, _, _ in recorded)


@pytest.mark.parametrize("every_frame", [True, False])
def test_slow_torch_node_gets_every_frame_or_is_drained(ros, capture, graspnet_checkpoint, tmp_path, every_frame):
    """A 3-frame bag at 5 Hz into the slow torch reference: --every-frame answers all 3 frames;
    without it, drain waits until every received frame is answered or dropped."""
    from graspnet_edge_ros.ros import bags

    info = bags.write_capture_bag(tmp_path / "in", capture, num_frames=3, rate_hz=5.0, storage="mcap")
    record, summary = tmp_path / "out.mcap", tmp_path / "summary.json"
    extra = ["--every-frame"] if every_frame else []
    done = replay(tmp_path / "in", record, graspnet_checkpoint, "--backend", "torch", "--param", "sampling_seed=0",
                  "--param", "num_points=5000", "--param", f"depth_scale={capture.depth_scale}",
                  "--summary-json", summary, *extra)
    assert done.returncode == 0, explain(done, record)
    report = json.loads(summary.read_text())
    from graspnet_edge_ros.ros.typestore import read_recording

    results = [msg for topic, _, msg in read_recording(record) if topic.endswith("/grasps")]
    stamps = [msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec for msg in results]
    if every_frame:
        assert sorted(stamps) == info.stamps_ns, explain(done, record)
        assert report["every_frame"] and report["unanswered_frames"] == 0
    else:
        assert report["results_out"] + (report["dropped_frames"] or 0) == len(info.stamps_ns), report
        assert stamps[-1] == info.stamps_ns[-1]  # the newest frame is never dropped
        assert "no result" not in report["drain_reason"], report["drain_reason"]
    assert all(msg.status == 0 for msg in results), [msg.status_reason for msg in results]
