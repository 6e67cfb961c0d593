"""Replay a ROS 2 bag into the graph and record what the grasp node publishes (no ``ros2`` CLI).

:func:`replay_bag` opens a bag (rosbag2 directory with MCAP or sqlite3 storage, or a bare .mcap /
.db3 file) with ``rosbags``, publishes every message as serialized CDR bytes
(``publisher.publish(bytes(raw))``: nothing is deserialized) at the recorded pace times
``rate``, and records the node's outputs (``~/grasps``, ``~/markers``, ``/diagnostics`` by
default) through raw subscriptions into an MCAP file, with this package's message types
registered from ``msg/*.msg``. It returns a :class:`ReplaySummary`: frames in, results out,
statuses, per-stage latency (from ``GraspArray.stage_latencies_ms``), end-to-end latency, dropped
frames (from the node's diagnostics) and wall time.

Order of events: wait until the node's output topics have publishers and our recorders are
matched to them, wait until the node subscribes to the bag's topics, play, then drain: stop once
the result for the last frame has arrived (the node only ever processes the newest frame, so
nothing else is pending), or once the node's diagnostics counters say every frame it received
was answered or dropped, or at a timeout that grows with the measured per-frame latency (a slow
node is waited for). With ``every_frame`` the next frame is published only after the node has
answered the previous one: one result per bag frame whatever the machine's speed (regression
runs). A ``stop`` event (set by the CLI on SIGINT/SIGTERM) ends playing or draining early; what
was recorded is still flushed and summarised.

This module plays and drains; its helpers each do one job: ``fastdds_profile`` (the player's
transport), ``typestore`` (message types), ``recorder`` (outputs -> MCAP + bookkeeping) and
``replay_summary`` (the summary, its table, JSON and overlay).

Only rclpy-dependent code lives in functions; importing this module needs no ROS.
"""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

from graspnet_edge_ros import NODE_NAME, topics
from graspnet_edge_ros.cdr import cdr_header
from graspnet_edge_ros.errors import ConfigError, InputError, ReplayError, ReplayInterrupted
from graspnet_edge_ros.ros.fastdds_profile import use_large_data_transport
from graspnet_edge_ros.ros.recorder import Recorder, matching_qos
from graspnet_edge_ros.ros.replay_summary import ReplaySummary, frame_ms
from graspnet_edge_ros.ros.stamps import stamp_fields
from graspnet_edge_ros.ros.typestore import (DIAGNOSTIC_ARRAY_TYPE, GRASP_ARRAY_TYPE, MARKER_ARRAY_TYPE,
                                             message_class, typestore_with_package_types)

DEFAULT_NODE_NAME = NODE_NAME
DEFAULT_FRAME_TOPIC = topics.absolute(topics.COLOR_TOPIC)
# After the publishers report their match: lets the reverse direction of discovery finish. Data sent
# before the node's reader has matched the writer is repaired only at the writer's next heartbeat
# (3 s by default in Fast DDS): with 0.3 s, a CI run on 2 loaded cores saw the first frame reach the
# node together with the second one, 2.5 s later, and the node kept only the newer (2026-12-08).
SETTLE_S = 1.0
OTHER_TOPICS_GRACE_S = 5.0
# Diagnostics counters count as final only if published this long after the last frame went out
# (frames still in transit would not be in them yet).
COUNTERS_SETTLE_S = 0.5
# A slow node gets this many times its slowest frame per frame still pending before drain gives up.
LATENCY_FACTOR = 3.0


def output_topics(node_name: str = DEFAULT_NODE_NAME, namespace: str = "") -> dict[str, str]:
    """The node's published topics this module records, with their types."""
    base = f"{namespace.rstrip('/')}/{node_name}" if namespace else f"/{node_name}"
    return {f"{base}/{topics.GRASPS_TOPIC}": GRASP_ARRAY_TYPE, f"{base}/{topics.MARKERS_TOPIC}": MARKER_ARRAY_TYPE,
            topics.DIAGNOSTICS_TOPIC: DIAGNOSTIC_ARRAY_TYPE}


def _wait(predicate, deadline: float, alive=None, poll_s: float = 0.05, stop=None) -> bool:
    while True:
        if predicate():
            return True
        if alive is not None and not alive():
            raise ReplayError("the node exited while the replay was waiting for it")
        if stop is not None and stop.is_set():
            raise ReplayInterrupted("interrupted while waiting for the node")
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


# ---------------------------------------------------------------------------------- replay
def replay_bag(bag, record: str | Path | None = None, *, rate: float = 1.0,
               node_name: str = DEFAULT_NODE_NAME, topics: dict[str, str] | None = None,
               frame_topic: str | None = None, start_timeout_s: float = 60.0, drain_timeout_s: float = 60.0,
               quiet_s: float | None = None, alive=None, log=print, clock: bool = False,
               large_data: bool = True, on_play=None, every_frame: bool = False,
               stop: threading.Event | None = None, reliable_inputs: bool = False) -> ReplaySummary:
    """Play ``bag`` into the running node and record its outputs (see the module docstring).

    Args:
        bag: rosbag2 directory (mcap or sqlite3) or a bare .mcap/.db3 file.
        record: output path; ``*.mcap`` = one MCAP file, anything else = a rosbag2 directory
            (MCAP storage); None = do not write (the summary is still computed).
        rate: playback speed factor (1 = recorded pace, 0.5 = half speed); must be > 0.
        topics: {topic: type} to record; default :func:`output_topics` of ``node_name``.
            The first GraspArray topic among them must get a publisher within ``start_timeout_s``.
        frame_topic: topic whose messages count as frames (default the colour image, else the
            first Image topic of the bag).
        quiet_s: drain stops this long after the last result (default: 3 s or 3x the slowest
            frame seen, whichever is longer).
        alive: callable returning False once the node process has died (aborts the replay).
        clock: also publish /clock (rosgraph_msgs/Clock) with bag time, for use_sim_time nodes.
        large_data: give this process's Fast DDS participant a 32 MB shared-memory segment (see
            ``use_large_data_transport``); without it best-effort subscribers get no HD images.
        on_play: called once, without arguments, right before the first message is published.
        every_frame: publish a frame only after the node answered the previous one (waiting at
            most ``drain_timeout_s`` or LATENCY_FACTOR x the slowest frame, whichever is longer).
        stop: when set (SIGINT/SIGTERM in the CLI), stop playing/draining; the summary says so.
        reliable_inputs: the node reads its inputs reliably, so every frame reaches it, some late
            (Fast DDS repairs lost fragments of large images after its heartbeat period): draining
            waits until its counters say it received every frame played (or the timeout).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import Reader

    from graspnet_edge_ros.ros.rclpy_compat import publisher_count

    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigError(f"rate must be a positive number, got {rate}")
    bag = Path(bag)
    if not bag.exists():
        raise InputError(f"bag not found: {bag}")
    topics = dict(topics or output_topics(node_name))
    grasp_topic = next((t for t, kind in topics.items() if kind == GRASP_ARRAY_TYPE), None)
    if grasp_topic is None:
        raise ConfigError("the recorded topics must include a GraspArray topic")
    log = log or (lambda *_: None)
    started = time.monotonic()
    typestore = typestore_with_package_types()

    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        raise InputError(f"cannot open bag {bag}: {exc}") from exc

    if large_data:
        use_large_data_transport()
    context = rclpy.Context()
    rclpy.init(context=context)
    recorder = None
    recorded = None
    executor = None
    spin_thread = None
    try:
        recorder = Recorder(typestore, Path(record) if record else None, node_name)
        node = rclpy.create_node(f"graspnet_edge_replay_{os.getpid()}", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spin_thread = threading.Thread(target=executor.spin, name="replay-spin", daemon=True)
        spin_thread.start()

        # 1. the node's outputs: wait for its GraspArray publisher, then subscribe QoS-compatibly
        deadline = time.monotonic() + start_timeout_s
        if not _wait(lambda: node.get_publishers_info_by_topic(grasp_topic), deadline, alive, stop=stop):
            raise ReplayError(f"no publisher on {grasp_topic} after {start_timeout_s:.0f} s; is the node running "
                              f"(same ROS_DOMAIN_ID={_domain()}, node name {node_name!r})?")
        subscriptions = {}
        for topic, msgtype in topics.items():
            publishers = node.get_publishers_info_by_topic(topic)
            recorder.add_topic(topic, msgtype)
            subscriptions[topic] = node.create_subscription(
                message_class(msgtype), topic,
                lambda raw, _topic=topic, _type=msgtype: recorder.on_message(_topic, _type, raw),
                matching_qos(publishers), raw=True)
        if not _wait(lambda: publisher_count(subscriptions[grasp_topic], node) > 0, deadline, alive, stop=stop):
            raise ReplayError(f"the recorder did not match the publisher of {grasp_topic} "
                              f"within {start_timeout_s:.0f} s")

        # 2. inputs: one publisher per bag connection; wait for the node's subscriptions
        connections = [c for c in reader.connections if c.msgtype]
        publishers = {}
        for conn in connections:
            if conn.topic not in publishers:
                qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.VOLATILE)
                publishers[conn.topic] = node.create_publisher(message_class(conn.msgtype), conn.topic, qos)
        clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, "/clock", 10)
        image_topics = [c.topic for c in connections if c.msgtype == "sensor_msgs/msg/Image"]
        frame_topic = frame_topic or (DEFAULT_FRAME_TOPIC if DEFAULT_FRAME_TOPIC in publishers else
                                      (image_topics[0] if image_topics else None))
        if frame_topic not in publishers:
            raise InputError(f"{bag}: no frame topic (looked for {frame_topic or 'an Image topic'}; "
                             f"bag topics: {sorted(publishers)})")
        # the node subscribes to its inputs together: once the frame topic is matched, give the
        # others a short grace period (a bag may carry topics nobody listens to, e.g. /tf_static)
        if not _wait(lambda: publishers[frame_topic].get_subscription_count() > 0, deadline, alive, stop=stop):
            raise ReplayError(f"nobody subscribes to {frame_topic} after {start_timeout_s:.0f} s")
        _wait(lambda: all(p.get_subscription_count() > 0 for p in publishers.values()),
              min(deadline, time.monotonic() + OTHER_TOPICS_GRACE_S), alive, stop=stop)
        unmatched = sorted(t for t, p in publishers.items() if p.get_subscription_count() == 0)
        if unmatched:
            log(f"replay: no subscriber on {', '.join(unmatched)}; playing them anyway")
        time.sleep(SETTLE_S)

        # 3. play, honouring the recorded log times
        log(f"replay: playing {bag} at {rate:g}x into {node_name}")
        input_stamps: list[int] = []
        published_at: dict[int, float] = {}
        count = 0
        if on_play is not None:
            on_play()
        play_start = time.monotonic()
        first_t = None
        last_check = play_start
        stop = stop or threading.Event()
        interrupted = ""
        header_topics = {c.topic for c in connections if c.msgtype in _HEADER_TYPES}
        for conn, t_ns, raw in reader.messages():
            if stop.is_set():
                interrupted = "stopped while playing"
                break
            if every_frame and input_stamps and conn.topic in header_topics \
                    and cdr_header(raw)[0] > input_stamps[-1]:
                # The next frame starts: wait for the previous one's answer, then shift the schedule.
                waited_from = time.monotonic()
                _await_answer(recorder, input_stamps[-1], drain_timeout_s, alive, stop)
                play_start += time.monotonic() - waited_from
            first_t = t_ns if first_t is None else first_t
            target = play_start + (t_ns - first_t) / 1e9 / rate
            delay = target - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            if clock_pub is not None:
                from rosgraph_msgs.msg import Clock
                from builtin_interfaces.msg import Time

                sec, nanosec = stamp_fields(t_ns)
                clock_pub.publish(Clock(clock=Time(sec=sec, nanosec=nanosec)))
            publishers[conn.topic].publish(bytes(raw))
            count += 1
            if conn.topic == frame_topic:
                stamp, _ = cdr_header(raw)
                input_stamps.append(stamp)
                published_at.setdefault(stamp, time.monotonic())
            if alive is not None and time.monotonic() - last_check > 0.5:
                last_check = time.monotonic()
                if not alive():
                    raise ReplayError(f"the node died during the replay after {len(input_stamps)} frames")
        play_end = time.monotonic()
        log(f"replay: {len(input_stamps)} frames published in {play_end - play_start:.1f} s; draining")

        # 4. drain: until the last frame is answered, results stop coming, or the timeout
        drain_reason = interrupted or _drain(recorder, input_stamps[-1] if input_stamps else None, play_end,
                                             drain_timeout_s, quiet_s, alive, stop,
                                             expect_received=len(input_stamps) if reliable_inputs else None)
        end = time.monotonic()
        with recorder.lock:
            results = list(recorder.results)
            e2e = [1e3 * (r.received_s - published_at[r.stamp_ns]) for r in results if r.stamp_ns in published_at]
            summary = ReplaySummary(
                bag=str(bag), record_path=None, frames_in=len(input_stamps), input_stamps_ns=input_stamps,
                results=results, wall_time_s=end - started, play_time_s=play_end - play_start,
                messages_published=count, diagnostics_received=recorder.diagnostics_count,
                markers_received=recorder.markers_count, dropped_frames=recorder.dropped,
                diagnostics=dict(recorder.diagnostics), e2e_latency_ms=e2e, drain_reason=drain_reason,
                every_frame=every_frame)
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if spin_thread is not None:
            spin_thread.join(timeout=5.0)
        context.try_shutdown()
        reader.close()
        if recorder is not None:
            try:
                recorded = recorder.close()
            except Exception:  # noqa: BLE001 - never mask the original error
                recorded = None
    summary.record_path = recorded
    return summary


_HEADER_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/CompressedImage")


def _latency_timeout(recorder: Recorder, base_s: float, frames: int = 1) -> float:
    """``base_s``, or LATENCY_FACTOR x the slowest frame seen per frame when that is longer."""
    slowest = max((frame_ms(r) for r in recorder.results), default=0.0) / 1e3
    return max(base_s, LATENCY_FACTOR * slowest * max(frames, 1))


def _await_answer(recorder: Recorder, stamp_ns: int, timeout_s: float, alive, stop) -> bool:
    """Block until a result stamped ``stamp_ns`` arrived (every-frame mode); False on timeout/stop."""
    start = time.monotonic()
    with recorder.lock:
        while not any(r.stamp_ns == stamp_ns for r in recorder.results[-50:]):
            if stop.is_set() or time.monotonic() - start > _latency_timeout(recorder, timeout_s):
                return False
            if alive is not None and not alive():
                raise ReplayError("the node died during the replay")
            recorder.lock.wait(timeout=0.1)
    return True


def _drain(recorder: Recorder, last_stamp: int | None, play_end: float, timeout_s: float,
           quiet_s: float | None, alive, stop: threading.Event | None = None, *,
           expect_received: int | None = None) -> str:
    """Wait for the node to finish what it received; returns why the wait ended.

    Done when the last frame is answered, or when the node's diagnostics counters (published
    after the last frame) account for every frame it received (processed + dropped + skipped).
    While they say frames are still in work, a slow node is waited for up to LATENCY_FACTOR x
    its slowest frame per pending frame (at least ``timeout_s``); without diagnostics, drain
    stops ``quiet_s`` after the last result. With ``expect_received`` (reliable inputs), the
    counters only end the wait once the node received that many frames.
    """
    answered_at = None
    with recorder.lock:
        while True:
            now = time.monotonic()
            results = recorder.results
            if stop is not None and stop.is_set():
                return "interrupted while draining"
            if last_stamp is not None and answered_at is None and any(r.stamp_ns == last_stamp for r in results):
                answered_at = now
            if answered_at is not None:
                # one more diagnostics message after the last result, so the drop counter is final
                if recorder.diagnostics_count == 0 or recorder.last_diag_s > answered_at or now - answered_at > 3.0:
                    return "last frame answered"
            counters = recorder.counters if recorder.counters_s > play_end + COUNTERS_SETTLE_S else None
            pending = None
            if counters is not None:
                pending = counters.get("frames_received", 0) - sum(
                    counters.get(k, 0) for k in ("frames_processed", "frames_dropped", "frames_skipped"))
                arrived = expect_received is None or counters.get("frames_received", 0) >= expect_received
                if answered_at is None and pending <= 0 and arrived:
                    return (f"every received frame answered or dropped (received {counters.get('frames_received')}, "
                            f"dropped {counters.get('frames_dropped', 0)})")
            in_flight = max(0, expect_received - counters.get("frames_received", 0)) \
                if expect_received is not None and counters is not None else 0
            deadline = play_end + _latency_timeout(recorder, timeout_s, (pending or 0) + in_flight + 1)
            if now >= deadline:
                return f"timeout after {deadline - play_end:.0f} s" + (
                    f" with {pending} frame(s) still in work" if pending else "")
            if recorder.counters is None:  # no diagnostics from this node: fall back to quiet time
                slowest = max((frame_ms(r) for r in results), default=0.0) / 1e3
                quiet = quiet_s if quiet_s is not None else max(3.0, LATENCY_FACTOR * slowest)
                last_activity = max([play_end] + [r.received_s for r in results[-1:]])
                if answered_at is None and now - last_activity > quiet:
                    return f"no result for {quiet:.1f} s (no diagnostics to tell whether the node is still working)"
            if alive is not None and not alive():
                return "node exited"
            recorder.lock.wait(timeout=0.1)


def _domain() -> str:
    return os.environ.get("ROS_DOMAIN_ID", "0 (unset)")
