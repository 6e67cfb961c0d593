"""graspnet_edge_node end to end over DDS (loopback, test-specific domain from conftest.py).

Two set-ups:
* the real node with the trained model, started as `python -m graspnet_edge_ros.ros.node` in a
  child process (module-scoped; the model and warm-up cost seconds), fed the example scene;
* the node class in this process with a stand-in detector that blocks on demand, for the
  threading, mailbox and TF-failure paths that must not depend on model timing.

Every wait is a deadline on an observable condition (discovery counts, received messages,
/diagnostics counters), never a blind sleep.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from conftest import import_ros_or_skip

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_NAME = "graspnet_edge_node"
CAMERA_FRAME = "camera_color_optical_frame"
STARTUP_TIMEOUT_S = 120.0   # child start-up: imports, model load, warm-up frame, discovery
RESULT_TIMEOUT_S = 60.0     # one 720p frame takes ~1 s here; generous for loaded CI machines
MAX_MARKERS = 5


def poll(predicate, timeout: float):
    """The first truthy value of ``predicate`` within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return None


def wait_until(predicate, timeout: float, what: str):
    """Like poll, but a timeout fails the test naming ``what``."""
    value = poll(predicate, timeout)
    if not value:
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
    return value


def stamp(seconds: float):
    from builtin_interfaces.msg import Time

    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def key(time_msg) -> tuple:
    return (time_msg.sec, time_msg.nanosec)


def camera_info(K, width: int, height: int, time_msg, frame_id: str = CAMERA_FRAME):
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=width, height=height, k=[float(v) for v in np.asarray(K).ravel()])
    info.header.stamp, info.header.frame_id = time_msg, frame_id
    return info


def frame_messages(color, depth, K, time_msg, depth_encoding="16UC1", frame_id=CAMERA_FRAME):
    """(colour Image, depth Image, CameraInfo) of one frame, all with ``time_msg``."""
    from graspnet_edge_ros.ros.conversions import image_from_array

    depth = np.asarray(depth)
    return (image_from_array(color, "rgb8", time_msg, frame_id),
            image_from_array(depth, depth_encoding, time_msg, frame_id),
            camera_info(K, depth.shape[1], depth.shape[0], time_msg, frame_id))


def small_K(width=64, height=48):
    return [[50.0, 0.0, width / 2], [0.0, 50.0, height / 2], [0.0, 0.0, 1.0]]


class GraphClient:
    """The test's side of the graph: camera publishers, result subscribers, service and parameter clients.

    Spun by a SingleThreadedExecutor in a background thread; received messages are collected. The
    nodes under test (``executor_nodes``) spin apart, on a SingleThreadedExecutor thread of their
    own, as ``graspnet_edge_ros.ros.node.main`` spins the node. Not a MultiThreadedExecutor: with
    many calls pending (16 callers at once) it re-yields its unstarted tasks on every pass and holds
    the GIL, which starved the node's thread in the same process (its diagnostics timer fired 3
    times in 2.4 s instead of 12 in one CI run). The client's callbacks only collect, none waits.
    """

    def __init__(self, context, node_name: str, topics: tuple, executor_nodes=(), best_effort: bool = False):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import GetParameters, SetParameters
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from visualization_msgs.msg import MarkerArray

        from graspnet_edge_ros.msg import GraspArray
        from graspnet_edge_ros.srv import DetectGrasps

        self.node_name = node_name
        self.node = rclpy.create_node(f"test_client_{node_name}", context=context)
        self.lock = threading.Lock()
        self.grasps, self.markers, self.diagnostics = [], [], []
        color_topic, depth_topic, info_topic = topics
        types = (Image, Image, CameraInfo)
        best_effort_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.reliable_publishers = [self.node.create_publisher(t, name, 5) for t, name in zip(types, topics)]
        # Only where the node reads best effort: a reliable reader would log incompatible-QoS warnings.
        self.best_effort_publishers = [self.node.create_publisher(t, name, best_effort_qos)
                                       for t, name in zip(types, topics)] if best_effort else []
        self.grasp_subscription = self.node.create_subscription(
            GraspArray, f"/{node_name}/grasps", self._collect(self.grasps), 50)
        self.marker_subscription = self.node.create_subscription(
            MarkerArray, f"/{node_name}/markers", self._collect(self.markers), 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._collect_diagnostics, 50)
        self.detect_client = self.node.create_client(DetectGrasps, f"/{node_name}/detect_grasps")
        self.set_client = self.node.create_client(SetParameters, f"/{node_name}/set_parameters")
        self.get_client = self.node.create_client(GetParameters, f"/{node_name}/get_parameters")
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.node_executor = SingleThreadedExecutor(context=context)
        for node in executor_nodes:
            self.node_executor.add_node(node)
        self.threads = [threading.Thread(target=executor.spin, daemon=True)
                        for executor in (self.executor, self.node_executor)]
        for thread in self.threads:
            thread.start()

    def _collect(self, store):
        def callback(msg):
            with self.lock:
                store.append(msg)
        return callback

    def _collect_diagnostics(self, msg):
        with self.lock:
            self.diagnostics.extend(s for s in msg.status if s.name.startswith(self.node_name + ":"))

    def wait_for_node(self, timeout: float, publishers=None):
        publishers = publishers or self.reliable_publishers
        wait_until(lambda: all(p.get_subscription_count() > 0 for p in publishers)
                   and self.grasp_subscription.get_publisher_count() > 0
                   and self.marker_subscription.get_publisher_count() > 0
                   and self.detect_client.service_is_ready() and self.set_client.service_is_ready(),
                   timeout, f"{self.node_name} to appear on the graph")

    def publish(self, messages, best_effort: bool = False):
        publishers = self.best_effort_publishers if best_effort else self.reliable_publishers
        for publisher, msg in zip(publishers, messages):
            publisher.publish(msg)

    def results_for(self, time_msg) -> list:
        with self.lock:
            return [m for m in self.grasps if key(m.header.stamp) == key(time_msg)]

    def wait_for_result(self, time_msg, timeout: float = RESULT_TIMEOUT_S):
        return wait_until(lambda: self.results_for(time_msg), timeout, f"a GraspArray stamped {key(time_msg)}")[0]

    def wait_for_markers(self, time_msg, timeout: float = RESULT_TIMEOUT_S):
        def found():
            with self.lock:
                return [m for m in self.markers if m.markers and key(m.markers[0].header.stamp) == key(time_msg)]
        return wait_until(found, timeout, f"a MarkerArray stamped {key(time_msg)}")[0]

    def latest_diagnostics(self, predicate, timeout: float, what: str):
        def found():
            with self.lock:
                matching = [s for s in self.diagnostics if predicate(s, {kv.key: kv.value for kv in s.values})]
            return matching[-1] if matching else None
        return wait_until(found, timeout, what)

    def call(self, future, timeout: float):
        wait_until(future.done, timeout, "a service response")
        return future.result()

    def detect(self, timeout_s: float = 0.0, max_grasps: int = 0):
        from graspnet_edge_ros.srv import DetectGrasps

        return self.detect_client.call_async(DetectGrasps.Request(timeout_s=timeout_s, max_grasps=max_grasps))

    def set_parameters(self, **values) -> list:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        messages = [Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
        request = SetParameters.Request(parameters=messages)
        return self.call(self.set_client.call_async(request), 30.0).results

    def get_parameter(self, name: str):
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self.call(self.get_client.call_async(GetParameters.Request(names=[name])), 30.0)
        return parameter_value_to_python(response.values[0])

    def close(self):
        for executor, thread in zip((self.node_executor, self.executor), self.threads[::-1]):
            executor.shutdown()
            thread.join(timeout=10)
        self.node.destroy_node()


def node_topics(name: str) -> tuple[str, str, str]:
    """Colour, depth and CameraInfo topics of a node under test, under its own name."""
    return f"/{name}/color", f"/{name}/depth", f"/{name}/info"


@contextmanager
def node_under_test(ros, name: str, overrides: dict, detector_factory=None, best_effort: bool = False,
                    wait_s: float = 30.0):
    """(GraspDetectorNode, GraphClient): the node in a context of its own, reading ``node_topics(name)``,
    with ``overrides`` as parameters; the client is waited for; all torn down on exit."""
    from rclpy.parameter import Parameter

    from graspnet_edge_ros.ros.node import GraspDetectorNode

    topics = node_topics(name)
    parameters = {"color_topic": topics[0], "depth_topic": topics[1], "camera_info_topic": topics[2], **overrides}
    context = ros.Context()
    ros.init(context=context)
    node = GraspDetectorNode(name, context=context, detector_factory=detector_factory,
                             parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
    client = GraphClient(context, name, topics, executor_nodes=(node,), best_effort=best_effort)
    try:
        client.wait_for_node(wait_s)
        yield node, client
    finally:
        client.close()
        node.destroy_node()
        context.try_shutdown()


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def ros():
    return import_ros_or_skip()


@pytest.fixture(scope="module")
def scene_config(split_model_dir, shared_dir, example_scene):
    from graspnet_edge_ros.config import DetectorConfig

    # The scene's depth is in millimetres: the node's default depth_scale of 0.001 m must fit.
    assert example_scene["factor_depth"] == 1000.0
    return DetectorConfig.from_flat(model_path=str(split_model_dir), sampling_seed=0,
                          workspace_mask_path=str(shared_dir / "data" / "graspnet_example" / "workspace_mask.png"))


@pytest.fixture(scope="module")
def node_process(ros, scene_config, tmp_path_factory):
    """The real node in a child process (same ROS domain, loopback only, see conftest.py)."""
    log_path = tmp_path_factory.mktemp("node_log") / "graspnet_edge_node.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "graspnet_edge_ros.ros.node", "--ros-args",
               "-p", f"model_path:={scene_config.model.model_path}",
               "-p", f"workspace_mask_path:={scene_config.camera.workspace_mask_path}",
               "-p", f"sampling_seed:={scene_config.camera.sampling_seed}",
               "-p", f"max_markers:={MAX_MARKERS}", "-p", "diagnostics_period_s:=0.25",
               # 720p images (2.7 MB) reach a best-effort reader only with DDS tuning (Fast DDS drops
               # the fragments with its default shared-memory segment), so this node reads reliably;
               # the best-effort default is tested with small frames on the stand-in node below.
               "-p", "qos_reliability:=reliable"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    yield process, log_path
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def real_node(node_process, ros):
    """A GraphClient connected to the child node, once it is up."""
    process, log_path = node_process
    context = ros.Context()
    ros.init(context=context)
    from graspnet_edge_ros.ros.params import NodeSettings

    defaults = NodeSettings()
    client = GraphClient(context, NODE_NAME, (defaults.color_topic, defaults.depth_topic, defaults.camera_info_topic))
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (all(p.get_subscription_count() > 0 for p in client.reliable_publishers)
                   and client.grasp_subscription.get_publisher_count() > 0):
            if process.poll() is not None:
                pytest.fail(f"the node exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the node did not come up in {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()}")
            time.sleep(0.05)
        client.wait_for_node(STARTUP_TIMEOUT_S)
        yield client
    finally:
        client.close()
        context.try_shutdown()
    assert process.poll() is None, f"the node died during the tests:\n{log_path.read_text()}"


@pytest.fixture(scope="module")
def offline_result(scene_config, example_scene):
    """What the ROS-free GraspDetector finds on the example frame with the node's configuration."""
    from graspnet_edge_ros.camera import CameraIntrinsics
    from graspnet_edge_ros.pipeline import GraspDetector

    intrinsics = CameraIntrinsics.from_matrix(example_scene["K"], 1280, 720)
    result = GraspDetector(scene_config).detect(example_scene["color"], example_scene["depth"], "16UC1", intrinsics)
    assert result.status == "ok" and len(result.grasps) > MAX_MARKERS
    return result


@pytest.fixture(scope="module")
def first_frame(real_node, example_scene):
    """The example frame published once on reliable topics: (stamp, GraspArray, MarkerArray)."""
    time_msg = stamp(1000.25)
    real_node.publish(frame_messages(example_scene["color"], example_scene["depth"], example_scene["K"], time_msg))
    return time_msg, real_node.wait_for_result(time_msg), real_node.wait_for_markers(time_msg)


def diagnostic_values(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


def assert_matches_offline(grasp_array, offline, count=None):
    count = len(offline.grasps) if count is None else count
    assert len(grasp_array.grasps) == count
    positions = np.array([[g.pose.position.x, g.pose.position.y, g.pose.position.z] for g in grasp_array.grasps])
    quaternions = np.array([[g.pose.orientation.x, g.pose.orientation.y, g.pose.orientation.z, g.pose.orientation.w]
                            for g in grasp_array.grasps])
    np.testing.assert_allclose(positions, offline.poses.positions[:count], atol=1e-4)
    np.testing.assert_allclose(quaternions, offline.poses.quaternions[:count], atol=1e-4)
    np.testing.assert_allclose([g.score for g in grasp_array.grasps], offline.grasps.scores[:count], atol=1e-4)
    np.testing.assert_allclose([g.width for g in grasp_array.grasps], offline.grasps.widths[:count], atol=1e-4)


# ----------------------------------------------------------------------- the real node
def test_example_frame_gives_ranked_grasps_equal_to_the_offline_detector(first_frame, offline_result, scene_config):
    from graspnet_edge_ros.msg import GraspArray

    time_msg, result, _ = first_frame
    assert result.status == GraspArray.STATUS_OK, result.status_reason
    assert key(result.header.stamp) == key(time_msg) and result.header.frame_id == CAMERA_FRAME
    scores = [g.score for g in result.grasps]
    assert scores == sorted(scores, reverse=True)
    assert [g.rank for g in result.grasps] == list(range(len(result.grasps)))
    for grasp in result.grasps:
        q = grasp.pose.orientation
        assert np.linalg.norm([q.x, q.y, q.z, q.w]) == pytest.approx(1.0, abs=1e-6)
        assert scene_config.gripper.gripper_min_width_m <= grasp.width <= \
            scene_config.gripper.gripper_max_width_m - scene_config.gripper.width_margin_m + 1e-6
    assert result.model_id == offline_result.model_id and result.pose_convention == scene_config.poses.pose_convention
    assert result.pre_grasp_distance == pytest.approx(scene_config.poses.pre_grasp_distance_m)
    assert_matches_offline(result, offline_result)
    stages = list(result.stage_names)
    assert stages[-1] == "total" and {"convert", "preprocess", "model", "collision", "nms"} <= set(stages)
    assert any(name.startswith("model.") for name in stages)
    latencies = dict(zip(stages, result.stage_latencies_ms))
    assert latencies["total"] >= latencies["model"] > 0


def test_markers_start_with_deleteall_and_are_capped(first_frame):
    from visualization_msgs.msg import Marker

    time_msg, result, markers = first_frame
    assert markers.markers[0].action == Marker.DELETEALL
    drawn = markers.markers[1:]
    assert len(drawn) == 2 * MAX_MARKERS < 2 * len(result.grasps)
    assert sorted(m.id for m in drawn if m.type == Marker.LINE_LIST) == list(range(MAX_MARKERS))
    assert all(m.header.frame_id == CAMERA_FRAME and key(m.header.stamp) == key(time_msg) for m in drawn)


def small_frame(time_msg, color=None, depth=None, K=None, depth_encoding="16UC1"):
    """A 64x48 frame; every part can be replaced to make it malformed."""
    color = np.zeros((48, 64, 3), np.uint8) if color is None else color
    depth = np.full((48, 64), 500, np.uint16) if depth is None else depth
    return frame_messages(color, depth, small_K() if K is None else K, time_msg, depth_encoding)


def with_changed(messages, index: int, **fields):
    """``messages`` with attributes of message ``index`` replaced (to break one detail)."""
    for name, value in fields.items():
        setattr(messages[index], name, value)
    return messages


# name: (build(time_msg) -> (colour, depth, info), words expected in the status reason)
MALFORMED_FRAMES = {
    "zero depth": (lambda t: small_frame(t, depth=np.zeros((48, 64), np.uint16)), "no valid depth"),
    "NaN depth": (lambda t: small_frame(t, depth=np.full((48, 64), np.nan, np.float32), depth_encoding="32FC1"),
                  "no valid depth"),
    "wrong depth encoding": (lambda t: with_changed(small_frame(t), 1, encoding="8UC1"),
                             "unsupported depth encoding '8UC1'"),
    "colour/depth size mismatch": (lambda t: small_frame(t, depth=np.ones((24, 32), np.uint16), K=small_K(32, 24)),
                                   "colour image must be (24, 32, 3)"),
    "all-zero K": (lambda t: small_frame(t, K=np.zeros((3, 3))), "uncalibrated"),
    "data shorter than step x height": (lambda t: with_changed(small_frame(t), 0, data=bytes(64 * 47 * 3)),
                                        "data bytes"),
}


def test_malformed_frames_give_no_valid_input_and_the_node_lives_on(real_node, first_frame):
    """Every bad frame yields STATUS_NO_VALID_INPUT with its reason and no grasp."""
    from graspnet_edge_ros.msg import GraspArray

    base = 1001.0
    for index, (name, (build, expected)) in enumerate(MALFORMED_FRAMES.items()):
        time_msg = stamp(base + 0.2 * index)
        real_node.publish(build(time_msg))
        result = real_node.wait_for_result(time_msg)
        assert result.status == GraspArray.STATUS_NO_VALID_INPUT, (name, result.status, result.status_reason)
        assert expected in result.status_reason, (name, result.status_reason)
        assert len(result.grasps) == 0 and key(result.header.stamp) == key(time_msg)
    # A frame older than the newest one is rejected as out of order, not detected on.
    newest = base + 0.2 * (len(MALFORMED_FRAMES) - 1)
    old = stamp(newest - 0.5)
    real_node.publish(small_frame(old))
    result = real_node.wait_for_result(old)
    assert result.status == GraspArray.STATUS_NO_VALID_INPUT and "out of order" in result.status_reason
    assert real_node.get_parameter("mode") == "continuous"  # still answering


def test_parameter_updates_are_validated(real_node):
    results = real_node.set_parameters(max_grasps=0)
    assert not results[0].successful and "max_grasps" in results[0].reason
    results = real_node.set_parameters(model_path="/elsewhere/model.onnx")
    assert not results[0].successful and "restart required" in results[0].reason
    results = real_node.set_parameters(mode="sometimes")
    assert not results[0].successful and "mode" in results[0].reason
    assert real_node.get_parameter("max_grasps") == 50 and real_node.get_parameter("mode") == "continuous"


def test_on_demand_service_returns_the_next_frame_with_updated_parameters(real_node, example_scene, offline_result,
                                                                          first_frame):
    from graspnet_edge_ros.msg import GraspArray

    def frames(time_msg):
        return frame_messages(example_scene["color"], example_scene["depth"], example_scene["K"], time_msg)

    assert all(r.successful for r in real_node.set_parameters(mode="on_demand", max_grasps=3))
    try:
        # Without a request the frame is skipped, not detected on.
        ignored = stamp(1010.0)
        skipped_before = int(diagnostic_values(real_node.latest_diagnostics(
            lambda s, v: True, 10.0, "diagnostics"))["frames_skipped"])
        real_node.publish(frames(ignored))
        real_node.latest_diagnostics(lambda s, v: int(v["frames_skipped"]) > skipped_before, 30.0,
                                     "the on_demand node to skip a frame")
        default_call, short_call = real_node.detect(timeout_s=60.0), real_node.detect(timeout_s=60.0, max_grasps=2)
        real_node.latest_diagnostics(lambda s, v: v["pending_requests"] == "2", 30.0, "both requests to be pending")
        requested = stamp(1010.5)
        real_node.publish(frames(requested))
        default_response = real_node.call(default_call, RESULT_TIMEOUT_S)
        short_response = real_node.call(short_call, RESULT_TIMEOUT_S)
    finally:
        assert all(r.successful for r in real_node.set_parameters(mode="continuous", max_grasps=50))
    for response in (default_response, short_response):
        assert response.success and response.result.status == GraspArray.STATUS_OK, response.message
        assert key(response.result.header.stamp) == key(requested)
        assert "grasps in" in response.message
    assert_matches_offline(default_response.result, offline_result, count=3)  # max_grasps:=3 applied
    assert_matches_offline(short_response.result, offline_result, count=2)
    assert len(real_node.wait_for_result(requested).grasps) == 3  # also published on ~/grasps
    assert real_node.results_for(ignored) == []


def test_no_grasp_is_an_empty_array_with_its_status(real_node, example_scene, first_frame):
    from visualization_msgs.msg import Marker

    from graspnet_edge_ros.msg import GraspArray

    assert real_node.set_parameters(min_score=5.0)[0].successful  # above any GraspNet score
    try:
        time_msg = stamp(1020.0)
        real_node.publish(frame_messages(example_scene["color"], example_scene["depth"], example_scene["K"],
                                         time_msg))
        result = real_node.wait_for_result(time_msg)
        markers = real_node.wait_for_markers(time_msg)
    finally:
        assert real_node.set_parameters(min_score=0.0)[0].successful
    assert result.status == GraspArray.STATUS_NO_GRASP and len(result.grasps) == 0
    assert "rejected" in result.status_reason and "score" in result.status_reason
    assert [m.action for m in markers.markers] == [Marker.DELETEALL]  # clears the previous grippers


def test_service_times_out_cleanly_without_frames(real_node):
    from graspnet_edge_ros.msg import GraspArray

    started = time.monotonic()
    response = real_node.call(real_node.detect(timeout_s=0.5), 30.0)
    assert not response.success and "timed out waiting for a frame after 0.5 s" in response.message
    assert response.result.status == GraspArray.STATUS_NO_VALID_INPUT and len(response.result.grasps) == 0
    assert 0.5 <= time.monotonic() - started < 15.0


@pytest.mark.parametrize("arguments, message", [
    (["-p", "model_path:=/nonexistent/graspnet_split"], "ModelFormatError: model not found"),
    (["-p", "model_path:=/nonexistent/graspnet_split", "-p", "mode:=sometimes"], "mode must be one of"),
    (["-p", "max_grasps:=many"], "max_grasps"),
])
def test_bad_start_parameters_end_the_process_with_one_line(ros, arguments, message):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    completed = subprocess.run([sys.executable, "-m", "graspnet_edge_ros.ros.node", "--ros-args", *arguments],
                               env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1 and message in output, output
    assert "Traceback" not in output


# ------------------------------------------------------- in-process node, stand-in detector
class StandInDetector:
    """Returns two fixed grasps; blocks in detect() until ``release`` is set (to hold a frame)."""

    model_id = "stand-in"

    def __init__(self, config):
        from graspnet_edge_ros.grasps import GraspGroup

        self.config = config
        self.started = threading.Event()
        self.release = threading.Event()
        self.stamps_seen = []
        self.grasps = GraspGroup.from_parts([0.9, 0.4], [0.05, 0.04], [0.02, 0.02],
                                            [np.eye(3), np.eye(3)], [[0.0, 0.0, 0.5], [0.1, 0.0, 0.5]])

    def update_config(self, config):
        self.config = config

    def detect(self, color, depth, encoding, intrinsics, **options):
        from graspnet_edge_ros.pipeline import DetectionResult
        from graspnet_edge_ros.poses import tcp_poses

        self.started.set()
        assert self.release.wait(30.0), "the test never released the frame"
        return DetectionResult("ok", grasps=self.grasps, poses=tcp_poses(self.grasps), timings_ms={"model": 1.0},
                               model_id=self.model_id)


@pytest.fixture
def stand_in_node(ros, request, monkeypatch):
    """(GraspDetectorNode with a StandInDetector, its GraphClient); extra overrides via indirect params."""
    name = f"stand_in_{request.node.name.split('[')[0][-20:]}"
    options = dict(getattr(request, "param", {}))
    if options.pop("hide_tf2_ros", False):
        monkeypatch.setitem(sys.modules, "tf2_ros", None)  # `import tf2_ros` fails, as without tf2_ros
    detectors = []
    with node_under_test(ros, name, {"warmup": False, "diagnostics_period_s": 0.2, **options},
                         lambda c: detectors.append(StandInDetector(c)) or detectors[-1], best_effort=True) \
            as (node, client):
        try:
            yield node, detectors[0], client
        finally:
            detectors[0].release.set()


def tiny_frame(seconds: float):
    time_msg = stamp(seconds)
    return time_msg, frame_messages(np.zeros((6, 8, 3), np.uint8), np.full((6, 8), 500, np.uint16),
                                    small_K(8, 6), time_msg)


def tiny_frame_streamer(client, start_s: float, period_s: float):
    """(thread, stop event, streamed keys): the thread publishes a tiny frame every ``period_s``
    (stamps from ``start_s`` on) until ``stop`` is set; start and join it yourself."""
    import threading

    streamed, stop = [], threading.Event()

    def stream():
        seconds = start_s
        while not stop.is_set():
            time_msg, messages = tiny_frame(seconds)
            client.publish(messages)
            streamed.append(key(time_msg))
            seconds += period_s
            stop.wait(period_s)

    return threading.Thread(target=stream, daemon=True), stop, streamed


def test_best_effort_default_receives_reliable_and_best_effort_publishers(stand_in_node):
    from graspnet_edge_ros.msg import GraspArray

    node, detector, client = stand_in_node
    detector.release.set()
    client.wait_for_node(30.0, client.best_effort_publishers)
    assert client.get_parameter("qos_reliability") == "best_effort"
    reliable, messages = tiny_frame(3.0)
    client.publish(messages)
    assert client.wait_for_result(reliable).status == GraspArray.STATUS_OK
    best_effort, messages = tiny_frame(3.5)
    # Best effort may lose a sample sent right after matching: resend the same stamp once.
    for _attempt in range(2):
        client.publish(messages, best_effort=True)
        if poll(lambda: client.results_for(best_effort), 5.0):
            break
    assert client.wait_for_result(best_effort, timeout=1.0).status == GraspArray.STATUS_OK


def test_every_parameter_is_declared_with_its_description_and_default(stand_in_node):
    from graspnet_edge_ros.config import PARAMETERS
    from graspnet_edge_ros.ros.params import parameter_table

    node, _, client = stand_in_node
    table = parameter_table()
    descriptors = node.describe_parameters(list(table))
    for (name, (default, kind, description)), descriptor in zip(table.items(), descriptors):
        assert descriptor.description.startswith(description), name
        if name in PARAMETERS:
            value = node.get_parameter(name).value
            assert (tuple(value or ()) if kind in ("float_array", "int_array") else value) == default, name
    assert node.describe_parameter("workspace_min_xyz").dynamic_typing  # empty array: no ROS type
    assert "restart required" in node.describe_parameter("model_path").description


def test_executor_stays_responsive_and_the_newest_frame_wins(stand_in_node):
    node, detector, client = stand_in_node
    first, messages = tiny_frame(5.0)
    client.publish(messages)
    assert detector.started.wait(30.0)
    # The worker is stuck in detect(): parameters, services and timers must still be served.
    assert client.set_parameters(max_markers=3)[0].successful
    assert client.get_parameter("max_markers") == 3
    diagnostics_before = len(client.diagnostics)
    wait_until(lambda: len(client.diagnostics) > diagnostics_before, 10.0, "a diagnostics timer tick")
    dropped, newest = tiny_frame(5.1), tiny_frame(5.2)
    client.publish(dropped[1])
    wait_until(lambda: node.statistics.frames_received == 2, 10.0, "the second frame")
    client.publish(newest[1])
    wait_until(lambda: node.statistics.frames_received == 3, 10.0, "the third frame")
    assert node.statistics.frames_dropped == 1
    assert not client.results_for(first)  # still held in detect()
    detector.release.set()
    client.wait_for_result(newest[0])
    with client.lock:
        order = [key(m.header.stamp) for m in client.grasps]
    assert order == [key(first), key(newest[0])]  # frame 5.1 was replaced while waiting
    assert len(client.results_for(newest[0])[0].grasps) == 2


@pytest.mark.parametrize("stand_in_node", [{"target_frame": "base_link", "hide_tf2_ros": True}], indirect=True)
def test_target_frame_without_a_transform_is_an_error_without_grasps(stand_in_node):
    """Without tf2_ros the TF fallback runs (test_ros_tf.py); with no transform published, an error."""
    from graspnet_edge_ros.msg import GraspArray

    node, detector, client = stand_in_node
    detector.release.set()
    time_msg, messages = tiny_frame(7.0)
    client.publish(messages)
    result = client.wait_for_result(time_msg)
    assert result.status == GraspArray.STATUS_ERROR and "to 'base_link' at the image stamp" in result.status_reason
    assert len(result.grasps) == 0 and result.header.frame_id == "base_link"  # nothing in a wrong frame
    status = client.latest_diagnostics(lambda s, v: "'base_link'" in v["last_error"], 10.0,
                                       "the error in /diagnostics")
    assert status.level == status.WARN
