"""The node's detection phases on consecutive frames at once (``pipeline_frames``).

* ``FramePipeline`` alone (no ROS): admission, one-slot hand-offs, close;
* the node class in this process with the real detector and model on real frames: the published
  GraspArrays equal the ROS-free detector's results on the same frames in the same order (the
  support-plane tracker sees them in order), with and without pipelining, a ~/detect_grasps call
  made while frames stream is answered with the next frame, and phases of different frames did
  (pipelining) or did not (without it) run at the same time;
* a stand-in detector with the three phases, held on demand: a parameter change waits until
  the frames in the model and finish phases are done, concurrent callers are all answered, and
  stopping the node while frames are in every phase does not hang.
"""
import threading
import time

import numpy as np
import pytest

from test_ros_node import (GraphClient, StandInDetector, assert_matches_offline, frame_messages, key,  # noqa: F401
                           node_under_test, poll, ros, stamp, tiny_frame, tiny_frame_streamer, wait_until)

RESULT_TIMEOUT_S = 120.0


# ---------------------------------------------------------------------- FramePipeline alone
def run_in_thread(function, *args):
    """(thread, list that receives the return value) for a blocking call."""
    box = []
    thread = threading.Thread(target=lambda: box.append(function(*args)), daemon=True)
    thread.start()
    return thread, box


def test_one_frame_at_a_time_admits_the_next_frame_only_when_the_previous_is_finished():
    from graspnet_edge_ros.ros.frame_pipeline import FramePipeline

    pipeline = FramePipeline()
    assert pipeline.admit(False)
    assert pipeline.to_model("frame 1", 0.01)
    waiting, admitted = run_in_thread(pipeline.admit, False)
    item, _ = pipeline.next_for_model()
    assert item == "frame 1"
    assert pipeline.to_finish(item, 0.05)
    assert pipeline.next_for_finish()[0] == "frame 1"
    waiting.join(0.2)
    assert waiting.is_alive() and not admitted  # frame 1 is still being finished
    pipeline.finished()
    waiting.join(5.0)
    assert admitted == [True] and pipeline.frames_in_flight == 0


def test_pipelined_admission_prepares_the_next_frame_just_before_the_model_is_free():
    from graspnet_edge_ros.ros.frame_pipeline import FramePipeline

    pipeline = FramePipeline()
    assert pipeline.admit(True) and pipeline.to_model("frame 1", 0.4)
    waiting, admitted = run_in_thread(pipeline.admit, True)
    waiting.join(0.2)
    assert not admitted  # frame 1 still waits in the model's slot
    assert pipeline.next_for_model()[0] == "frame 1"
    waiting.join(0.2)
    assert not admitted  # the model has never been timed: wait for it to be free
    assert pipeline.to_finish("frame 1", 0.5)
    waiting.join(5.0)
    assert admitted == [True]
    # A 0.5 s model and a 0.4 s preparation: the next frame is admitted while the model works ...
    assert pipeline.to_model("frame 2", 0.4)
    assert pipeline.next_for_model()[0] == "frame 2" and pipeline.next_for_finish()[0] == "frame 1"
    assert pipeline.frames_in_flight == 2  # frame 1 finishing, frame 2 in the model: both at once
    assert pipeline.admit(True)
    # ... but with a model that takes 10 s, the next frame waits for its turn ...
    pipeline.model_s = 10.0
    waiting, admitted = run_in_thread(pipeline.admit, True)
    waiting.join(0.3)
    assert waiting.is_alive() and not admitted
    # ... which comes when the model hands its frame on.
    pipeline.finished()
    assert pipeline.to_finish("frame 2", 10.0)
    waiting.join(5.0)
    assert admitted == [True]


def test_close_wakes_every_phase():
    from graspnet_edge_ros.ros.frame_pipeline import FramePipeline

    pipeline = FramePipeline()
    assert pipeline.to_model("frame 1", 0.01)
    calls = [run_in_thread(pipeline.admit, False), run_in_thread(pipeline.next_for_finish),
             run_in_thread(pipeline.wait_idle)]
    time.sleep(0.1)
    pipeline.close()
    for thread, box in calls:
        thread.join(5.0)
        assert not thread.is_alive()
    assert [box[0] for _, box in calls] == [False, None, False]
    assert pipeline.next_for_model() is None and not pipeline.to_model("late", 0.0)


# -------------------------------------------------------- the node with the real detector
class PhaseRecorder:
    """Wraps a detector's phases, recording (phase, frame index, start, end) with perf_counter."""

    def __init__(self, detector, on_prepare=None):
        self.detector, self.on_prepare = detector, on_prepare
        self.intervals = []
        self.lock = threading.Lock()
        self._prepared = 0

    def __getattr__(self, name):  # config, model_id, runner, update_config, detect, ...
        return getattr(self.detector, name)

    def _timed(self, phase, index, function, *args, **options):
        start = time.perf_counter()
        try:
            return function(*args, **options)
        finally:
            with self.lock:
                self.intervals.append((phase, index, start, time.perf_counter()))

    def prepare(self, *args, **options):
        index, self._prepared = self._prepared, self._prepared + 1
        if self.on_prepare is not None:
            self.on_prepare(index)
        prepared = self._timed("prepare", index, self.detector.prepare, *args, **options)
        prepared.recorded_index = index
        return prepared

    def infer(self, prepared):
        return self._timed("infer", prepared.recorded_index, self.detector.infer, prepared)

    def finish(self, prepared, model_output):
        return self._timed("finish", prepared.recorded_index, self.detector.finish, prepared, model_output)

    def overlapping_frames(self) -> list:
        """Pairs of different frames that were in some phase at the same time."""
        with self.lock:
            intervals = list(self.intervals)
        return [(a[:2], b[:2]) for i, a in enumerate(intervals) for b in intervals[i + 1:]
                if a[1] != b[1] and a[2] < b[3] and b[2] < a[3]]


def scene_frames(example_scene) -> list:
    """Four different real frames: the capture, mirrored, and both 15 mm farther away."""
    color, depth, K = example_scene["color"], example_scene["depth"], np.array(example_scene["K"])
    width = depth.shape[1]
    mirrored_K = K.copy()
    mirrored_K[0, 2] = width - 1 - K[0, 2]
    frames = []
    for mirror in (False, True):
        c, d = (np.ascontiguousarray(color[:, ::-1]), np.ascontiguousarray(depth[:, ::-1])) if mirror else \
            (color.copy(), depth.copy())
        for shift_mm in (0, 15):
            farther = np.where(d > 0, d + shift_mm, 0).astype(np.uint16)
            frames.append((c, farther, mirrored_K if mirror else K))
    return frames


@pytest.fixture(scope="module")
def offline(split_model_dir, shared_dir, example_scene):
    """(config, runner, the ROS-free detector's results on scene_frames in order)."""
    from graspnet_edge_ros.camera import CameraIntrinsics
    from graspnet_edge_ros.config import DetectorConfig
    from graspnet_edge_ros.pipeline import GraspDetector

    config = DetectorConfig.from_flat(model_path=str(split_model_dir), sampling_seed=0,
                            workspace_mask_path=str(shared_dir / "data" / "graspnet_example" / "workspace_mask.png"))
    detector = GraspDetector(config)
    results = []
    for color, depth, K in scene_frames(example_scene):
        intrinsics = CameraIntrinsics.from_matrix(K, depth.shape[1], depth.shape[0])
        results.append(detector.detect(color, depth, "16UC1", intrinsics))
    assert [r.status for r in results] == ["ok"] * 4, [r.reason for r in results]
    # The frames differ, so a result paired with the wrong frame would be noticed.
    assert len({round(float(r.grasps.scores[0]), 4) for r in results}) > 1
    return config, detector.runner, results


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "one_at_a_time"])
def test_node_results_equal_the_detector_on_the_same_frames_and_a_call_gets_the_next_frame(
        ros, offline, example_scene, pipelined):
    from graspnet_edge_ros.pipeline import GraspDetector

    config, runner, expected = offline
    name = f"pipelining_{'on' if pipelined else 'off'}"
    preparing = [threading.Event() for _ in range(4)]
    recorders = []

    def factory(node_config):
        assert node_config == config
        recorders.append(PhaseRecorder(GraspDetector(node_config, runner=runner),
                                       on_prepare=lambda index: preparing[index].set()))
        return recorders[-1]

    overrides = {"warmup": False, "qos_reliability": "reliable", "pipeline_frames": pipelined,
                 "model_path": config.model.model_path, "sampling_seed": 0,
                 "workspace_mask_path": config.camera.workspace_mask_path}
    with node_under_test(ros, name, overrides, factory) as (node, client):
        stamps = [stamp(2000.0 + 0.5 * i) for i in range(4)]
        messages = [frame_messages(c, d, K, t) for (c, d, K), t in zip(scene_frames(example_scene), stamps)]
        call = None
        for index, frame in enumerate(messages):
            if index == 2:
                # Frame 1 is synchronised (its preparation started): the call waits for the next frame.
                call = client.detect(timeout_s=RESULT_TIMEOUT_S)
                wait_until(lambda: len(node._requests) == 1, 30.0, "the call to be registered")
            client.publish(frame)
            # The next frame is sent once this one has left the mailbox: none is dropped, and
            # with pipelining frame N+1 arrives while frame N is still in the pipeline.
            wait_until(preparing[index].is_set, RESULT_TIMEOUT_S, f"frame {index} to be taken")
        results = [client.wait_for_result(t, RESULT_TIMEOUT_S) for t in stamps]
        response = client.call(call, RESULT_TIMEOUT_S)

    assert node.statistics.frames_dropped == 0 and node.statistics.frames_processed == 4
    with client.lock:
        order = [key(m.header.stamp) for m in client.grasps]
    assert order == [key(t) for t in stamps]  # published in input order, one each
    for result, offline_result in zip(results, expected):
        assert result.status == result.STATUS_OK, result.status_reason
        assert_matches_offline(result, offline_result)
        stages = dict(zip(result.stage_names, result.stage_latencies_ms))
        assert {"convert", "preprocess", "support_plane", "model", "collision", "wait", "total"} <= set(stages)
        assert stages["total"] >= stages["model"] + stages["wait"] > 0
    assert response.success and key(response.result.header.stamp) == key(stamps[2]), response.message
    assert_matches_offline(response.result, expected[2])
    overlaps = recorders[0].overlapping_frames()
    if pipelined:
        assert overlaps, recorders[0].intervals
    else:
        assert not overlaps, overlaps


# ----------------------------------------------------------------- stand-in with phases
class PhasedStandIn(StandInDetector):
    """StandInDetector with prepare/infer/finish; each phase waits for its gate (open by default)."""

    def __init__(self, config):
        super().__init__(config)
        self.release.set()
        self.gates = {phase: threading.Event() for phase in ("prepare", "infer", "finish")}
        self.entered = {phase: threading.Semaphore(0) for phase in self.gates}
        for gate in self.gates.values():
            gate.set()
        self.lock = threading.Lock()
        self.busy = {phase: 0 for phase in self.gates}
        self.busy_at_update = []

    def update_config(self, config):
        with self.lock:
            self.busy_at_update.append({p: n for p, n in self.busy.items() if n and p != "prepare"})
        self.config = config

    def _phase(self, phase):
        with self.lock:
            self.busy[phase] += 1
        self.entered[phase].release()
        assert self.gates[phase].wait(30.0), f"the test never opened the {phase} gate"
        with self.lock:
            self.busy[phase] -= 1

    def prepare(self, color, depth, encoding, intrinsics, **options):
        from graspnet_edge_ros.pipeline import DetectionResult, PreparedFrame
        from graspnet_edge_ros.timing import StageTimer

        self._phase("prepare")
        return PreparedFrame(DetectionResult("ok", model_id=self.model_id), StageTimer())

    def infer(self, prepared):
        from graspnet_edge_ros.pipeline import ModelOutput

        self._phase("infer")
        return ModelOutput(self.grasps, [])

    def finish(self, prepared, model_output):
        from graspnet_edge_ros.poses import tcp_poses

        self._phase("finish")
        result = prepared.result
        result.grasps, result.poses, result.timings_ms = model_output.grasps, tcp_poses(model_output.grasps), {
            "model": 1.0}
        return result


@pytest.fixture
def phased_node(ros, request):
    from rclpy.parameter import Parameter

    from graspnet_edge_ros.ros.node import GraspDetectorNode

    name = f"phased_{request.node.name.split('[')[0][-20:]}"
    topics = (f"/{name}/color", f"/{name}/depth", f"/{name}/info")
    overrides = {"color_topic": topics[0], "depth_topic": topics[1], "camera_info_topic": topics[2],
                 "warmup": False, "diagnostics_period_s": 0.2}
    detectors = []
    context = ros.Context()
    ros.init(context=context)
    node = GraspDetectorNode(name, context=context, detector_factory=lambda c: detectors.append(
        PhasedStandIn(c)) or detectors[-1], parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    client = GraphClient(context, name, topics, executor_nodes=(node,), best_effort=True)
    state = {"destroyed": False}
    try:
        client.wait_for_node(30.0)
        yield node, detectors[0], client, state
    finally:
        for gate in detectors[0].gates.values():
            gate.set()
        client.close()
        if not state["destroyed"]:
            node.destroy_node()
        context.try_shutdown()


def acquire(semaphore, what: str, timeout: float = 30.0):
    assert semaphore.acquire(timeout=timeout), f"timed out waiting for {what}"


def test_a_parameter_change_waits_for_the_frames_in_the_model_and_finish_phases(phased_node):
    node, detector, client, _ = phased_node
    detector.gates["infer"].clear()
    first, messages = tiny_frame(30.0)
    client.publish(messages)
    acquire(detector.entered["infer"], "frame 1 in the model phase")
    assert client.set_parameters(pre_grasp_distance_m=0.2)[0].successful
    second, messages = tiny_frame(30.1)
    client.publish(messages)
    # Frame 2 is taken, but the detector gets the new config only once frame 1 is through.
    wait_until(lambda: node.statistics.frames_received == 2, 10.0, "frame 2")
    time.sleep(0.3)
    assert detector.config.poses.pre_grasp_distance_m == pytest.approx(0.1) and not client.results_for(first)
    detector.gates["infer"].set()
    # Each frame is published with the configuration it was prepared with.
    assert client.wait_for_result(first).pre_grasp_distance == pytest.approx(0.1)
    assert client.wait_for_result(second).pre_grasp_distance == pytest.approx(0.2)
    assert detector.config.poses.pre_grasp_distance_m == pytest.approx(0.2)
    assert detector.busy_at_update == [{}]  # nothing in the model or finish phase at the change


def test_callers_are_answered_while_frames_stream_through_the_phases(phased_node):
    node, detector, client, _ = phased_node
    publisher, stop, streamed = tiny_frame_streamer(client, 50.0, 0.05)
    publisher.start()
    try:
        calls = []
        for index in range(6):
            calls.append(client.detect(timeout_s=30.0, max_grasps=1 + index % 2))
            time.sleep(0.15)
        responses = [client.call(future, 40.0) for future in calls]
    finally:
        stop.set()
        publisher.join(5.0)
    for index, response in enumerate(responses):
        assert response.success, response.message
        assert key(response.result.header.stamp) in streamed
        assert len(response.result.grasps) == 1 + index % 2
    assert not node._requests and not node._deferred
    assert node.statistics.frames_processed >= 1


def test_stopping_the_node_with_frames_in_every_phase_does_not_hang(phased_node):
    node, detector, client, state = phased_node
    for gate in detector.gates.values():
        gate.clear()
    stamps = []
    for index, phase in enumerate(("prepare", "infer", "finish")):
        time_msg, messages = tiny_frame(60.0 + index)
        stamps.append(time_msg)
        client.publish(messages)
        acquire(detector.entered["prepare"], f"frame {index} in prepare")
        if index < 2:
            detector.gates["prepare"].set()  # let it move on to the model phase
            acquire(detector.entered["infer"], f"frame {index} in the model phase")
            detector.gates["prepare"].clear()
            if index == 0:
                detector.gates["infer"].set()
                acquire(detector.entered["finish"], "frame 0 in the finish phase")
                detector.gates["infer"].clear()
    # frame 0 held in finish, frame 1 in the model, frame 2 in prepare
    assert detector.busy == {"prepare": 1, "infer": 1, "finish": 1}
    stopping, _ = run_in_thread(node.destroy_node)
    state["destroyed"] = True
    time.sleep(0.2)
    for gate in detector.gates.values():
        gate.set()
    started = time.monotonic()
    stopping.join(10.0)
    assert not stopping.is_alive(), "destroy_node hung"
    assert time.monotonic() - started < 10.0
    assert not any(worker.is_alive() for worker in node._workers)
    time.sleep(0.3)
    assert not any(client.results_for(t) for t in stamps)  # nothing published after the stop began
