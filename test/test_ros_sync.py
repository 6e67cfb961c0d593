"""The built-in approximate-time synchroniser and the latest-frame mailbox, without a ROS graph.

Messages are mock objects with ``header.stamp.sec/nanosec``, fed in chosen (and shuffled) orders,
in the style of message_filters' own test_approxsync.py.
"""
import random
import threading
from types import SimpleNamespace

import pytest

from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.ros.stamps import stamp_fields, stamp_nanoseconds
from graspnet_edge_ros.ros.sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer, LatestMailbox

COLOR, DEPTH, INFO = range(3)


def stamped(seconds: float, label: str = ""):
    nanoseconds = int(round(seconds * 1e9))
    stamp = SimpleNamespace(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), label=label)


def collecting(sync):
    emitted = []
    sync.register_callback(lambda *msgs: emitted.append(tuple(m.label for m in msgs)))
    return emitted


def test_stamp_nanoseconds_combines_seconds_and_nanoseconds():
    assert stamp_nanoseconds(SimpleNamespace(sec=3, nanosec=5)) == 3_000_000_005
    for ns in (0, 5, 1_700_000_000_123_456_789):  # and stamp_fields splits them back
        sec, nanosec = stamp_fields(ns)
        assert 0 <= nanosec < 1_000_000_000 and stamp_nanoseconds(SimpleNamespace(sec=sec, nanosec=nanosec)) == ns


def test_messages_within_slop_are_matched_once_in_input_order():
    sync = ApproximateTimeSynchronizer(3, queue_size=10, slop=0.05)
    emitted = collecting(sync)
    sync.add(DEPTH, stamped(10.02, "d"))
    sync.add(INFO, stamped(10.0, "i"))
    assert emitted == []  # colour still missing
    sync.add(COLOR, stamped(10.0, "c"))
    assert emitted == [("c", "d", "i")]
    assert sync.queued() == [0, 0, 0]  # matched messages leave the queues


def test_messages_beyond_slop_are_not_matched():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.05)
    emitted = collecting(sync)
    sync.add(COLOR, stamped(10.0, "c"))
    sync.add(DEPTH, stamped(10.06, "late"))
    sync.add(DEPTH, stamped(9.95, "exactly_slop"))  # a spread equal to slop is not "within"
    assert emitted == []
    sync.add(DEPTH, stamped(9.951, "d"))
    assert emitted == [("c", "d")]


def test_nearest_partner_is_chosen():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.05)
    emitted = collecting(sync)
    sync.add(DEPTH, stamped(1.00, "far"))
    sync.add(DEPTH, stamped(1.03, "near"))
    sync.add(COLOR, stamped(1.04, "c"))
    assert emitted == [("c", "near")]
    assert sync.queued() == [0, 1]


def test_queue_is_bounded_and_drops_the_oldest_stamp():
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop=0.01)
    emitted = collecting(sync)
    for index in range(5):
        sync.add(COLOR, stamped(index, f"c{index}"))
    assert sync.queued() == [3, 0]
    sync.add(DEPTH, stamped(0, "d0"))  # its partner c0 was dropped
    sync.add(DEPTH, stamped(1, "d1"))
    sync.add(DEPTH, stamped(4, "d4"))
    assert emitted == [("c4", "d4")]
    # A message older than everything in a full queue is dropped at once.
    sync.add(COLOR, stamped(5, "c5"))
    assert sync.queued()[0] == 3  # c2, c3, c5
    sync.add(COLOR, stamped(-1, "c-1"))
    sync.add(DEPTH, stamped(-1, "d-1"))
    sync.add(DEPTH, stamped(5, "d5"))
    assert emitted == [("c4", "d4"), ("c5", "d5")]


def test_out_of_order_arrival_still_matches_every_frame():
    """A 30 Hz camera whose three streams arrive shuffled: every frame is emitted exactly once."""
    rng = random.Random(7)
    frames = [i / 30.0 for i in range(40)]
    messages = []
    for index, t in enumerate(frames):
        messages.append((COLOR, stamped(t, f"c{index}")))
        messages.append((DEPTH, stamped(t + rng.uniform(-0.004, 0.004), f"d{index}")))
        messages.append((INFO, stamped(t, f"i{index}")))
    # Shuffle within windows of a few frames, like messages from three sockets.
    arrival = []
    for start in range(0, len(messages), 9):
        window = messages[start:start + 9]
        rng.shuffle(window)
        arrival.extend(window)
    sync = ApproximateTimeSynchronizer(3, queue_size=10, slop=0.01)
    emitted = collecting(sync)
    for index, msg in arrival:
        sync.add(index, msg)
    assert sorted(emitted) == sorted((f"c{i}", f"d{i}", f"i{i}") for i in range(len(frames)))


def test_an_older_frame_arriving_late_is_still_matched():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.02)
    emitted = collecting(sync)
    sync.add(COLOR, stamped(2.0, "c2"))
    sync.add(DEPTH, stamped(2.0, "d2"))
    sync.add(DEPTH, stamped(1.0, "d1"))
    sync.add(COLOR, stamped(1.0, "c1"))
    assert emitted == [("c2", "d2"), ("c1", "d1")]


def test_exact_synchroniser_needs_identical_stamps():
    sync = ExactTimeSynchronizer(2, queue_size=5)
    emitted = collecting(sync)
    sync.add(COLOR, stamped(1.0, "c"))
    sync.add(DEPTH, stamped(1.000001, "near"))
    assert emitted == []
    sync.add(DEPTH, stamped(1.0, "d"))
    assert emitted == [("c", "d")]


def test_headerless_messages_are_counted_not_matched():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop=0.1)
    emitted = collecting(sync)
    sync.add(COLOR, SimpleNamespace(label="no header"))
    assert sync.headerless_count == 1 and sync.queued() == [0, 0] and emitted == []


def test_a_raising_callback_does_not_leave_the_synchroniser_locked():
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop=0.1)

    def explode(*_):
        raise RuntimeError("callback bug")

    sync.register_callback(explode)
    sync.add(COLOR, stamped(1.0, "c"))
    with pytest.raises(RuntimeError):
        sync.add(DEPTH, stamped(1.0, "d"))
    sync.add(COLOR, stamped(2.0, "c2"))  # would deadlock if the lock were still held
    assert sync.queued() == [1, 0]


def test_invalid_arguments_are_rejected():
    with pytest.raises(ConfigError):  # a ValueError too
        ApproximateTimeSynchronizer(1, queue_size=5, slop=0.1)
    with pytest.raises(ConfigError):  # a ValueError too
        ApproximateTimeSynchronizer(2, queue_size=0, slop=0.1)
    with pytest.raises(ConfigError):  # a ValueError too
        ApproximateTimeSynchronizer(2, queue_size=5, slop=-1.0)


def test_mailbox_keeps_only_the_newest_item_and_reports_replacements():
    mailbox = LatestMailbox()
    assert mailbox.put("frame 1") is False
    assert mailbox.put("frame 2") is True  # frame 1 was never taken: dropped
    assert mailbox.take(timeout=0) == "frame 2"
    assert mailbox.take(timeout=0.01) is None
    assert mailbox.put("frame 3") is False


def test_mailbox_take_blocks_until_put_and_close_wakes_it():
    mailbox = LatestMailbox()
    taken = []
    worker = threading.Thread(target=lambda: taken.append(mailbox.take()))
    worker.start()
    mailbox.put("frame")
    worker.join(timeout=5)
    assert taken == ["frame"]

    waiting = threading.Thread(target=lambda: taken.append(mailbox.take()))
    waiting.start()
    mailbox.close()
    waiting.join(timeout=5)
    assert not waiting.is_alive() and taken == ["frame", None]
    assert mailbox.put("late") is False and mailbox.take(timeout=0) is None


def test_publisher_count_uses_matched_publishers_or_humbles_graph_count():
    """rclpy_compat.publisher_count: Subscription.get_publisher_count() where rclpy has it (>= 4),
    else the node's count of the topic's publishers (Humble's Subscription lacks the method)."""
    from graspnet_edge_ros.ros.rclpy_compat import publisher_count

    class Node:
        def __init__(self):
            self.asked = []

        def count_publishers(self, topic):
            self.asked.append(topic)
            return 2

    class HumbleSubscription:
        topic_name = "/graspnet_edge_node/grasps"

    class Subscription(HumbleSubscription):
        def get_publisher_count(self):
            return 1

    node = Node()
    assert publisher_count(Subscription(), node) == 1 and node.asked == []
    assert publisher_count(HumbleSubscription(), node) == 2 and node.asked == ["/graspnet_edge_node/grasps"]
