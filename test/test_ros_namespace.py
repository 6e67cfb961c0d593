"""Names as ROS users expect: relative input topics in the node's namespace, remappable as usual.

The node class runs in this process with a stand-in detector (test_ros_node.StandInDetector) and
the default topic parameters; the test checks the graph (what the node subscribes, publishes and
serves) and a frame end to end through the namespaced names.
"""
import threading

import numpy as np
import pytest

from conftest import import_ros_or_skip
from test_ros_node import StandInDetector, frame_messages, key, small_K, stamp, wait_until

NAMESPACE = "/robot1"
NODE_NAME = "graspnet_edge_node"


@pytest.fixture
def ros():
    return import_ros_or_skip()


def start_node(ros, context, *, namespace=None, cli_args=None):
    from rclpy.parameter import Parameter

    from graspnet_edge_ros.ros.node import GraspDetectorNode

    detectors = []

    def factory(config):
        detectors.append(StandInDetector(config))
        detectors[-1].release.set()
        return detectors[-1]

    kwargs = {"namespace": namespace} if namespace else {}
    node = GraspDetectorNode(NODE_NAME, context=context, detector_factory=factory, cli_args=cli_args,
                             parameter_overrides=[Parameter("warmup", value=False)], **kwargs)
    return node


def names_by_node(observer, node_name: str, namespace: str):
    subscriptions = {name for name, _ in observer.get_subscriber_names_and_types_by_node(node_name, namespace)}
    publishers = {name for name, _ in observer.get_publisher_names_and_types_by_node(node_name, namespace)}
    services = {name for name, _ in observer.get_service_names_and_types_by_node(node_name, namespace)}
    return subscriptions, publishers, services


def test_defaults_are_relative_names():
    from graspnet_edge_ros.ros.params import NodeSettings

    settings = NodeSettings()
    for topic in (settings.color_topic, settings.depth_topic, settings.camera_info_topic):
        assert not topic.startswith("/") and topic.startswith("camera/"), topic


def test_namespace_puts_inputs_outputs_and_service_under_it(ros):
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import CameraInfo, Image

    from graspnet_edge_ros.msg import GraspArray

    context = ros.Context()
    ros.init(context=context)
    node = start_node(ros, context, namespace=NAMESPACE)
    observer = ros.create_node("namespace_observer", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    executor.add_node(observer)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert node.get_fully_qualified_name() == f"{NAMESPACE}/{NODE_NAME}"
        expected_inputs = {f"{NAMESPACE}/camera/color/image_raw", f"{NAMESPACE}/camera/aligned_depth_to_color/image_raw",
                           f"{NAMESPACE}/camera/color/camera_info"}
        private = f"{NAMESPACE}/{NODE_NAME}"

        def graph_ready():
            subscriptions, publishers, services = names_by_node(observer, NODE_NAME, NAMESPACE)
            return (expected_inputs <= subscriptions and {f"{private}/grasps", f"{private}/markers"} <= publishers
                    and f"{private}/detect_grasps" in services) and (subscriptions, publishers, services)

        subscriptions, publishers, services = wait_until(graph_ready, 30.0, "the namespaced names on the graph")
        # Nothing of the node's own left at the root (only the global /diagnostics and ROS's /rosout, /parameter_events).
        assert not any(name.startswith("/camera") for name in subscriptions), subscriptions
        assert {name for name in publishers if not name.startswith(NAMESPACE)} <= {
            "/diagnostics", "/rosout", "/parameter_events"}, publishers

        # End to end through the namespaced names.
        received = []
        observer.create_subscription(GraspArray, f"{private}/grasps", received.append, 10)
        publishers_in = [observer.create_publisher(t, f"{NAMESPACE}/{name}", 5) for t, name in (
            (Image, "camera/color/image_raw"), (Image, "camera/aligned_depth_to_color/image_raw"),
            (CameraInfo, "camera/color/camera_info"))]
        wait_until(lambda: all(p.get_subscription_count() > 0 for p in publishers_in), 30.0, "the node's inputs")
        time_msg = stamp(3.0)
        color, depth, info = frame_messages(np.zeros((6, 8, 3), np.uint8), np.full((6, 8), 500, np.uint16),
                                            small_K(8, 6), time_msg)
        for publisher, msg in zip(publishers_in, (color, depth, info)):
            publisher.publish(msg)
        result = wait_until(lambda: [m for m in received if key(m.header.stamp) == key(time_msg)], 30.0,
                            f"a GraspArray on {private}/grasps")[0]
        assert result.status == GraspArray.STATUS_OK and len(result.grasps) == 2
    finally:
        executor.shutdown()
        spinner.join(timeout=10)
        node.destroy_node()
        observer.destroy_node()
        context.try_shutdown()


def test_input_topics_remap_in_the_usual_way(ros):
    context = ros.Context()
    ros.init(context=context)
    node = start_node(ros, context, namespace=NAMESPACE, cli_args=[
        "--ros-args", "-r", "camera/color/image_raw:=/d435/color/image_raw",
        "-r", "camera/color/camera_info:=other/camera_info"])
    observer = ros.create_node("remap_observer", context=context)
    try:
        def subscriptions():
            names = names_by_node(observer, NODE_NAME, NAMESPACE)[0]
            return len([n for n in names if "image_raw" in n or "camera_info" in n]) == 3 and names

        names = wait_until(subscriptions, 30.0, "the remapped subscriptions")
        assert {"/d435/color/image_raw", f"{NAMESPACE}/other/camera_info",
                f"{NAMESPACE}/camera/aligned_depth_to_color/image_raw"} <= names, names
    finally:
        node.destroy_node()
        observer.destroy_node()
        context.try_shutdown()


def test_launch_namespace_argument_reaches_the_node(monkeypatch):
    from test_launch_files import LAUNCH_FILES, generated_node, load_launch_module

    for path in LAUNCH_FILES:
        module = load_launch_module(path, monkeypatch)
        _, node = generated_node(module, monkeypatch, namespace="left_arm")
        assert node.kwargs["namespace"] == "left_arm"
        # No launch argument carries an absolute input topic that the namespace would not reach.
        assert not any(str(default).startswith("/") for default, _ in module.ARGUMENTS.values())
