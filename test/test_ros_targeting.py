"""The node with an instance-label topic: object ids in the GraspArray, targets per call and per
parameter, the support plane in diagnostics, bad label images named (analytic tabletop scene)."""
import numpy as np
import pytest
from scenes import Box, render_tabletop
from test_ros_node import frame_messages, node_under_test, ros, stamp, wait_until  # noqa: F401 (ros: fixture)

from graspnet_edge_ros.ros.conversions import image_from_array

BOXES = [Box((-0.15, -0.05, 0.0), (-0.08, 0.03, 0.06), 1),
         Box((0.02, -0.02, 0.0), (0.07, 0.05, 0.12), 2, (60, 200, 60)),
         Box((0.12, 0.08, 0.0), (0.20, 0.14, 0.04), 3, (60, 60, 200))]
RESULT_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def scene():
    return render_tabletop(BOXES)


@pytest.fixture(scope="module")
def targeting_node(ros, split_model_dir):
    """(GraspDetectorNode with the real model and an object mask topic, GraphClient, mask publisher)."""
    from sensor_msgs.msg import Image

    name = "targeting_node"
    overrides = {"object_mask_topic": f"/{name}/labels", "model_path": str(split_model_dir), "sampling_seed": 0,
                 "target_context_m": 0.2, "warmup": False, "diagnostics_period_s": 0.2,
                 "qos_reliability": "reliable"}
    with node_under_test(ros, name, overrides, wait_s=60.0) as (node, client):
        mask_publisher = client.node.create_publisher(Image, f"/{name}/labels", 5)
        wait_until(lambda: mask_publisher.get_subscription_count() > 0, 30.0, "the label subscription")
        yield node, client, mask_publisher


def publish(client, mask_publisher, scene, seconds, labels=None, encoding="mono16"):
    time_msg = stamp(seconds)
    labels = scene.labels.astype(np.uint16) if labels is None else labels
    client.publish(frame_messages(scene.color, scene.depth_mm, scene.intrinsics.matrix, time_msg))
    mask_publisher.publish(image_from_array(labels, encoding, time_msg, "camera_color_optical_frame"))
    return time_msg


def test_grasps_carry_object_ids_and_calls_can_target_one_object(targeting_node, scene):
    node, client, mask_publisher = targeting_node
    result = client.wait_for_result(publish(client, mask_publisher, scene, 10.0), RESULT_TIMEOUT_S)
    assert result.status == result.STATUS_OK
    ids = {grasp.object_id for grasp in result.grasps}
    assert ids and ids <= {1, 2, 3}
    # The same ids as the library gives for this frame with the node's configuration.
    from graspnet_edge_ros.pipeline import GraspDetector

    offline = GraspDetector(node._config).detect(scene.color, scene.depth_mm, "16UC1", scene.intrinsics,
                                                 object_labels=scene.labels)
    assert [g.object_id for g in result.grasps] == offline.grasps.object_ids.astype(int).tolist()

    from graspnet_edge_ros.srv import DetectGrasps

    wanted = min(ids)
    future = client.detect_client.call_async(DetectGrasps.Request(timeout_s=60.0, target_object_ids=[wanted]))
    wait_until(lambda: node._requests, 30.0, "the call to reach the node")  # it waits for the next frame
    publish(client, mask_publisher, scene, 11.0)
    response = client.call(future, RESULT_TIMEOUT_S)
    assert response.success and response.result.grasps
    assert {g.object_id for g in response.result.grasps} == {wanted}
    assert [g.rank for g in response.result.grasps] == list(range(len(response.result.grasps)))
    future = client.detect_client.call_async(DetectGrasps.Request(timeout_s=60.0, target_object_ids=[42]))
    wait_until(lambda: node._requests, 30.0, "the call to reach the node")
    publish(client, mask_publisher, scene, 12.0)
    response = client.call(future, RESULT_TIMEOUT_S)
    assert response.result.status == response.result.STATUS_NO_GRASP and not response.result.grasps
    assert "[42]" in response.result.status_reason

    status = client.latest_diagnostics(lambda s, v: v.get("support_plane", "").startswith("fit"), 30.0,
                                       "the support plane in diagnostics")
    values = {kv.key: kv.value for kv in status.values}
    assert "rejected.approach_from_below" in values


def test_target_parameter_and_bad_label_images(targeting_node, scene):
    node, client, mask_publisher = targeting_node
    assert all(r.successful for r in client.set_parameters(target_object_ids=[2]))
    try:
        result = client.wait_for_result(publish(client, mask_publisher, scene, 20.0), RESULT_TIMEOUT_S)
        assert result.status == result.STATUS_OK and {g.object_id for g in result.grasps} == {2}
        missing = client.wait_for_result(publish(client, mask_publisher, scene, 21.0,
                                                 labels=np.zeros_like(scene.labels, np.uint16)), RESULT_TIMEOUT_S)
        assert missing.status == missing.STATUS_NO_GRASP and "not in the object mask" in missing.status_reason
    finally:
        client.set_parameters(target_object_ids=[])
    wrong_size = client.wait_for_result(publish(client, mask_publisher, scene, 22.0,
                                                labels=scene.labels[:100].astype(np.uint16)), RESULT_TIMEOUT_S)
    assert wrong_size.status == wrong_size.STATUS_NO_VALID_INPUT and "aligned" in wrong_size.status_reason
    wrong_encoding = client.wait_for_result(publish(client, mask_publisher, scene, 23.0,
                                                    labels=scene.labels.astype(np.float32), encoding="32FC1"),
                                            RESULT_TIMEOUT_S)
    assert wrong_encoding.status == wrong_encoding.STATUS_NO_VALID_INPUT
    assert "not a label image" in wrong_encoding.status_reason


def test_uint8_and_int16_masks_and_a_missing_mask_named_in_timeouts_and_diagnostics(targeting_node, scene):
    node, client, mask_publisher = targeting_node
    # cv_bridge passthrough of a uint8 / int16 mask gives 8UC1 / 16SC1.
    for seconds, encoding, dtype in ((30.0, "8UC1", np.uint8), (31.0, "16SC1", np.int16)):
        result = client.wait_for_result(publish(client, mask_publisher, scene, seconds,
                                                labels=scene.labels.astype(dtype), encoding=encoding),
                                        RESULT_TIMEOUT_S)
        assert result.status == result.STATUS_OK, (encoding, result.status_reason)
        assert result.grasps and {g.object_id for g in result.grasps} <= {1, 2, 3}
    # Colour, depth and info without their label image never synchronise: the service timeout and
    # the diagnostics name the mask topic among the inputs.
    mask_topic = "/targeting_node/labels"
    future = client.detect(timeout_s=1.0)
    wait_until(lambda: node._requests, 30.0, "the call to reach the node")
    client.publish(frame_messages(scene.color, scene.depth_mm, scene.intrinsics.matrix, stamp(32.0)))
    response = client.call(future, 30.0)
    assert not response.success and "timed out waiting for a frame" in response.message
    assert f"+ {mask_topic}" in response.message
    assert all(r.successful for r in client.set_parameters(input_timeout_s=0.5))
    try:
        client.latest_diagnostics(lambda s, v: f"object mask ({mask_topic})" in s.message, 30.0,
                                  "diagnostics naming the mask topic")
    finally:
        client.set_parameters(input_timeout_s=5.0)


def test_target_ids_above_2_24_are_refused_by_the_node(targeting_node):
    node, client, _ = targeting_node
    refused = client.set_parameters(target_object_ids=[3, 2**24 + 1])
    assert not refused[0].successful and "[1, 16777216]" in refused[0].reason
    assert node._config.targeting.target_object_ids == ()
    accepted = client.set_parameters(target_object_ids=[2**24])
    try:
        assert accepted[0].successful and node._config.targeting.target_object_ids == (2**24,)
    finally:
        client.set_parameters(target_object_ids=[])
