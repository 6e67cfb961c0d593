"""``graspnet_edge_node``: synchronised RGB-D + CameraInfo in, ranked 6-DoF grasps out.

Topics (defaults follow the RealSense driver; relative names resolve in the node's namespace; set
them with parameters or remap them):
  in   camera/color/image_raw, camera/aligned_depth_to_color/image_raw, camera/color/camera_info
  out  ~/grasps (GraspArray), ~/markers (MarkerArray), /diagnostics (DiagnosticArray)
  srv  ~/detect_grasps (DetectGrasps): the result of the next synchronised frame

Threads: the executor only matches messages, answers services and parameters; detection runs in
three threads, one per phase (prepare, model, finish; see ``frame_pipeline``), fed through a
one-slot mailbox, so the newest frame wins and the node stays responsive while a frame takes
seconds. With ``pipeline_frames`` (default) frame N+1 is prepared and frame N-1 finished while
the model works on frame N; without it one frame at a time goes through the three phases. A
parameter change waits until the frames in the model and finish phases are done (they keep the
configuration they were prepared with). A ~/detect_grasps call never holds an executor thread:
its response is deferred (registered, then sent by the worker when the next frame's result is
published, or by a steady timer at its deadline), so any number of concurrent callers are
answered while frames and diagnostics keep flowing. Request timeouts are clamped to
``params.MAX_SERVICE_TIMEOUT_S``; a NaN timeout is refused at once.

Nothing is ever invented: unusable input, no grasp, a failed TF lookup or an internal error
each give a GraspArray with its status, a reason and no grasps.
"""
from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass

from graspnet_edge_ros.thread_pools import prefer_sleeping_thread_pools

prefer_sleeping_thread_pools()  # before numpy and OpenMP load (see thread_pools)

from graspnet_edge_ros import NODE_NAME  # noqa: E402
from graspnet_edge_ros.dependencies import missing_dependency_message
from graspnet_edge_ros.topics import DIAGNOSTICS_TOPIC, GRASPS_TOPIC, MARKERS_TOPIC

try:
    import numpy as np
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
    from rclpy.clock import Clock, ClockType
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    from graspnet_edge_ros.camera import prepare_points
    from graspnet_edge_ros.errors import ConfigError, GraspNetEdgeError, ModelError
    from graspnet_edge_ros.grasps import GraspGroup
    from graspnet_edge_ros.pipeline import STATUS_ERROR, STATUS_NO_GRASP, STATUS_NO_VALID_INPUT, STATUS_OK
    from graspnet_edge_ros.status import status_name
    from graspnet_edge_ros.poses import tcp_poses
    from graspnet_edge_ros.ros import conversions, params
    from graspnet_edge_ros.ros.diagnostics import DiagnosticsReporter, NodeStatistics
    from graspnet_edge_ros.ros.frame_pipeline import FramePipeline
    from graspnet_edge_ros.ros.markers import grasp_markers
    from graspnet_edge_ros.ros.sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer, LatestMailbox
except ImportError as _missing:
    # `python -m graspnet_edge_ros.ros.node` on a robot without e.g. numba: one line, not a traceback
    # (the installed launcher does the same for its import of this module).
    if __name__ == "__main__" and missing_dependency_message(_missing, NODE_NAME):
        import sys

        print(missing_dependency_message(_missing, NODE_NAME), file=sys.stderr)
        sys.exit(1)
    raise

LOG_THROTTLE_S = 5.0
# A step back in stamps larger than this is a restarted bag or clock, not a reordered frame.
CLOCK_RESET_JUMP_NS = 1_000_000_000
# How often pending ~/detect_grasps calls are checked against their deadline.
REQUEST_DEADLINE_PERIOD_S = 0.05
OUTPUT_QUEUE_DEPTH = 10
SERVICE_QUEUE_DEPTH = 1000


class TransformUnavailableError(GraspNetEdgeError):
    """The camera -> target_frame transform cannot be had (tf2_ros missing, lookup failed)."""


@dataclass
class _Frame:
    seq: int
    color: object
    depth: object
    info: object
    mask: object = None  # instance-label image, when object_mask_topic is set


@dataclass
class _InFlight:
    """A frame on its way through the prepare, model and finish threads."""

    frame: _Frame
    start: float                # time.perf_counter() when its preparation began
    config: object = None       # the DetectorConfig and NodeSettings it is prepared with
    settings: object = None
    prepared: object = None     # the detector's PreparedFrame
    convert_ms: float = 0.0
    model_output: object = None
    waited_s: float = 0.0       # time spent in the slots between phases
    message: object = None      # the GraspArray of a frame that ended early (TF failure, internal error)


@dataclass
class _PendingRequest:
    """A ~/detect_grasps call waiting for the first frame synchronised after ``after_seq``.

    Its response goes out once both are known: the result (``filled``) and the request header,
    which rclpy hands over only after the service callback has returned.
    """

    after_seq: int
    request: object
    response: object
    timeout_s: float
    deadline: float  # time.monotonic()
    header: object = None
    claimed: bool = False  # a result or the timeout has been taken for this request
    filled: bool = False   # ... and written into ``response``


class _TargetFrameTransformer:
    """Camera -> target frame transforms at the image stamp: tf2_ros when importable, else
    ``tf_fallback`` (the same buffer interface, fed from /tf and /tf_static). Either way the
    answer goes through ``conversions.transform_to_matrix`` and ``poses.tcp_poses``."""

    def __init__(self, node: Node):
        self._buffer, self._import_error = None, None
        try:
            import tf2_ros
        except ImportError:
            tf2_ros = None
        try:
            if tf2_ros is not None:
                self.implementation = "tf2_ros"
                self._exception = tf2_ros.TransformException
                self._buffer = tf2_ros.Buffer()
                # The executor thread fills the buffer while a phase thread waits in lookup_transform.
                self._listener = tf2_ros.TransformListener(self._buffer, node)
            else:
                from graspnet_edge_ros.ros import tf_fallback

                self.implementation = "tf_fallback"
                self._exception = tf_fallback.TransformException
                self._buffer = tf_fallback.TransformBuffer()
                self._listener = tf_fallback.TransformListener(self._buffer, node)
        except ImportError as exc:  # tf2_msgs missing as well
            self._buffer, self._import_error = None, exc

    def matrix(self, target: str, source: str, stamp, timeout_s: float) -> np.ndarray:
        """(4, 4) target <- source at ``stamp``; TransformUnavailableError says why not."""
        if self._buffer is None:
            raise TransformUnavailableError(
                f"target_frame {target!r} is set but neither tf2_ros nor tf2_msgs is importable "
                f"({self._import_error}); install ros-<distro>-tf2-ros (rosdep) or clear target_frame")
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            transform = self._buffer.lookup_transform(target, source, Time.from_msg(stamp),
                                                      timeout=Duration(seconds=timeout_s))
        except self._exception as exc:
            raise TransformUnavailableError(
                f"no transform from {source!r} to {target!r} at the image stamp "
                f"{stamp.sec}.{stamp.nanosec:09d}: {exc}") from exc
        return conversions.transform_to_matrix(transform.transform)


def synthetic_warmup_frame(height: int = 120, width: int = 160):
    """(colour, depth in metres, intrinsics) of ``warmup.synthetic_tabletop``'s box on a table, the box red."""
    from graspnet_edge_ros.warmup import synthetic_tabletop

    depth, intrinsics = synthetic_tabletop(height, width)
    color = np.full((height, width, 3), 120, np.uint8)
    color[(depth > 0) & (depth < 0.6)] = (200, 60, 40)
    return color, depth, intrinsics


def synthetic_warmup_cloud(num_points: int):
    """A small box on a table: enough structure to run every stage of GraspNet once."""
    _, depth, intrinsics = synthetic_warmup_frame()
    return prepare_points(depth, intrinsics, num_points=num_points, seed=0)


class GraspDetectorNode(Node):
    """The ROS 2 wrapper of ``GraspDetector`` (see the module docstring for its interface).

    Args:
        node_name: ROS node name.
        detector_factory: ``DetectorConfig -> detector`` (default ``GraspDetector``); tests pass
            a stand-in with the same ``detect``/``update_config``/``config``/``model_id``.
        **node_kwargs: passed to ``rclpy.node.Node`` (context, parameter_overrides, ...).

    Raises:
        ConfigError: a parameter is invalid. ModelFormatError / BackendUnavailableError: the
            model cannot be loaded.
    """

    def __init__(self, node_name: str = NODE_NAME, *, detector_factory=None, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self._mailbox = LatestMailbox()
        self._pipeline = FramePipeline()
        self._workers: list[threading.Thread] = []
        self._shutting_down = threading.Event()
        try:
            self._start(detector_factory)
        except BaseException:
            # rclpy would otherwise destroy this half-built node again at context shutdown.
            self.destroy_node()
            raise

    def _start(self, detector_factory) -> None:
        self._config, self._settings = params.declare_parameters(self)
        # rclpy keeps the overrides meant for this node (params file, -p) without declaring them.
        notice = params.unknown_parameter_notice(getattr(self, "_parameter_overrides", {}) or {})
        if notice:
            self.get_logger().warning(notice)
        if detector_factory is None:
            from graspnet_edge_ros.pipeline import GraspDetector

            detector_factory = GraspDetector
        self._detector = detector_factory(self._config)
        self._stats = NodeStatistics()
        self._lock = threading.Lock()  # guards the request list and the frame counters
        self._requests: list[_PendingRequest] = []
        self._deferred: dict[int, _PendingRequest] = {}  # id(response) -> request awaiting its header
        self._frames_synced = 0
        self._newest_stamp_ns: int | None = None
        self._transformer: _TargetFrameTransformer | None = None
        self._transformer_lock = threading.Lock()
        if self._settings.warmup:
            self._warm_up()

        from diagnostic_msgs.msg import DiagnosticArray
        from visualization_msgs.msg import MarkerArray

        from graspnet_edge_ros.msg import GraspArray
        from graspnet_edge_ros.srv import DetectGrasps

        self._grasp_publisher = self.create_publisher(GraspArray, f"~/{GRASPS_TOPIC}", OUTPUT_QUEUE_DEPTH)
        self._marker_publisher = self.create_publisher(MarkerArray, f"~/{MARKERS_TOPIC}", OUTPUT_QUEUE_DEPTH)
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, OUTPUT_QUEUE_DEPTH)
        if self._settings.target_frame:
            self._transformer_for_lookup()
        # The default service queue (depth 10) silently drops requests of a burst of callers.
        service_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=SERVICE_QUEUE_DEPTH,
                                 reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self._service = self.create_service(DetectGrasps, "~/detect_grasps", self._on_detect_grasps,
                                            qos_profile=service_qos, callback_group=ReentrantCallbackGroup())
        # rclpy sends what the callback returns; deferred responses are held back (see _send_or_defer).
        self._send_response_now = self._service.send_response
        self._service.send_response = self._send_or_defer
        self._sync_implementation = self._subscribe_inputs()
        self._diagnostics = DiagnosticsReporter(f"{self.get_name()}: grasp detection")
        # Steady clock: diagnostics keep coming with use_sim_time even when no /clock is published.
        self._diagnostics_timer = self.create_timer(self._settings.diagnostics_period_s, self._publish_diagnostics,
                                                    clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._request_timer = self.create_timer(REQUEST_DEADLINE_PERIOD_S, self._expire_requests,
                                                callback_group=MutuallyExclusiveCallbackGroup(),
                                                clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for target, name in ((self._prepare_frames, "graspnet_prepare"), (self._infer_frames, "graspnet_model"),
                             (self._finish_frames, "graspnet_finish")):
            self._workers.append(threading.Thread(target=target, name=name, daemon=True))
            self._workers[-1].start()
        s = self._settings
        color, depth, info, mask = (self._resolved(name) for name in (s.color_topic, s.depth_topic,
                                                                      s.camera_info_topic, s.object_mask_topic))
        self.get_logger().info(
            f"ready: backend {self.backend_name}, model {self.model_id}, mode {s.mode}; inputs {color} + "
            f"{depth} + {info}{' + ' + mask if s.object_mask_topic else ''} "
            f"({s.qos_reliability}, "
            f"{'exact' if s.exact_sync else f'slop {s.slop} s'}, {self._sync_implementation}); output "
            f"{self._grasp_publisher.topic_name} in {s.target_frame or 'the image frame'}")

    def _resolved(self, topic: str) -> str:
        """``topic`` expanded in the node's namespace and remapped, as the subscriptions see it."""
        if not topic:
            return topic
        try:
            return self.resolve_topic_name(topic)
        except Exception:  # noqa: BLE001 - older rclpy without resolve_topic_name: the name as given
            return topic

    # ------------------------------------------------------------------------------ properties
    @property
    def model_id(self) -> str:
        return str(self._detector.model_id)

    @property
    def backend_name(self) -> str:
        runner = getattr(self._detector, "runner", None)
        return str(getattr(runner, "backend_name", "") or self._config.model.backend or "unknown")

    @property
    def statistics(self):
        """Snapshot of the counters (frames received, processed, dropped, ...)."""
        return self._stats.snapshot()

    # ------------------------------------------------------------------------------- start-up
    def _warm_up(self) -> None:
        """One synthetic frame through every stage (model, numba kernels, collision, NMS, poses)."""
        # The candidate generator says what the model reads; stand-in detectors (tests) have none.
        candidates = getattr(self._detector, "candidates", None)
        num_points = candidates.num_sampled_points(self._config) if candidates else self._config.camera.num_points
        # The table and approach filters would reject the few synthetic grasps before the
        # collision check and NMS had run (and compiled) once.
        self._detector.update_config(self._config.replace(table_plane_mode="none", executability_filter=False,
                                                          approach_max_angle_deg=180.0, workspace_mode="off",
                                                          workspace_mask_path="", workspace_min_xyz=(),
                                                          workspace_max_xyz=()))
        start = time.perf_counter()
        try:
            if candidates is not None and candidates.needs_image:
                # Image models (the planar networks) read the image; 480x640 holds every network's crop.
                color, depth, intrinsics = synthetic_warmup_frame(480, 640)
                result = self._detector.detect(color, depth, "32FC1", intrinsics)
            else:
                result = self._detector.detect_cloud(synthetic_warmup_cloud(num_points))
        finally:
            self._detector.update_config(self._config)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        if result.status == STATUS_ERROR:
            # A model that fails on a clean synthetic frame would fail on every real one.
            raise ModelError(f"the warm-up frame failed after {elapsed_ms:.0f} ms: {result.reason}")
        else:
            self.get_logger().info(f"warm-up frame: {elapsed_ms:.0f} ms ({result.status}, "
                                   f"{len(result.grasps)} grasps)")

    def _input_qos(self) -> QoSProfile:
        reliability = (ReliabilityPolicy.RELIABLE if self._settings.qos_reliability == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._settings.qos_depth,
                          reliability=reliability, durability=DurabilityPolicy.VOLATILE)

    def _subscribe_inputs(self) -> str:
        """Colour, depth and info subscriptions feeding a synchroniser; returns which one."""
        from sensor_msgs.msg import CameraInfo, Image

        s, qos = self._settings, self._input_qos()
        group = MutuallyExclusiveCallbackGroup()
        topics = [(Image, s.color_topic), (Image, s.depth_topic), (CameraInfo, s.camera_info_topic)]
        if s.object_mask_topic:
            topics.append((Image, s.object_mask_topic))
        try:
            import message_filters
        except ImportError:
            message_filters = None
        if message_filters is not None:
            inputs = [message_filters.Subscriber(self, msg_type, topic, qos_profile=qos, callback_group=group)
                      for msg_type, topic in topics]
            sync = (message_filters.TimeSynchronizer(inputs, s.queue_size) if s.exact_sync
                    else message_filters.ApproximateTimeSynchronizer(inputs, s.queue_size, s.slop))
            sync.registerCallback(self._on_synced_frame)
            self._sync_parts = (inputs, sync)
            return "message_filters"
        sync = (ExactTimeSynchronizer(len(topics), s.queue_size) if s.exact_sync
                else ApproximateTimeSynchronizer(len(topics), s.queue_size, s.slop))
        sync.register_callback(self._on_synced_frame)
        inputs = [self.create_subscription(msg_type, topic, functools.partial(sync.add, index), qos,
                                           callback_group=group)
                  for index, (msg_type, topic) in enumerate(topics)]
        self._sync_parts = (inputs, sync)
        return "built-in synchroniser"

    # ------------------------------------------------------------------------ executor side
    def _on_synced_frame(self, color, depth, info, mask=None) -> None:
        stamp_ns = conversions.stamp_nanoseconds(color.header.stamp)
        with self._lock:
            newest = self._newest_stamp_ns
            out_of_order = newest is not None and newest - CLOCK_RESET_JUMP_NS <= stamp_ns <= newest
            if not out_of_order:
                self._newest_stamp_ns = stamp_ns
            self._frames_synced += 1
            seq = self._frames_synced
            wanted = self._settings.mode == "continuous" or bool(self._requests)
        self._stats.record_input()
        if out_of_order:
            self._stats.record_rejected()
            reason = (f"frame stamp {color.header.stamp.sec}.{color.header.stamp.nanosec:09d} is not newer than "
                      f"the previous frame's ({newest / 1e9:.9f}): out of order or repeated")
            self._publish_result(self._status_only(color.header, STATUS_NO_VALID_INPUT, reason), None, None)
        elif not wanted:
            self._stats.record_skipped()
        elif self._mailbox.put(_Frame(seq, color, depth, info, mask)):
            self._stats.record_dropped()

    def _on_detect_grasps(self, request, response):
        """Register the call and return at once; the response is sent later (see _finish_request)."""
        settings = self._settings
        requested = float(request.timeout_s)
        if math.isnan(requested):
            response.success = False
            response.message = "timeout_s is NaN: give seconds to wait (0 = service_timeout_s)"
            response.result = self._status_only_now(STATUS_NO_VALID_INPUT, response.message)
            return response
        if len(request.target_object_ids) and not self._mask_topic_name():
            response.success = False
            response.message = ("target_object_ids need instance labels: set object_mask_topic (a label image "
                                "aligned to the colour image)")
            response.result = self._status_only_now(STATUS_NO_VALID_INPUT, response.message)
            return response
        # <= 0: the parameter; above the maximum (inf included): the maximum.
        timeout_s = min(requested if requested > 0 else settings.service_timeout_s, params.MAX_SERVICE_TIMEOUT_S)
        with self._lock:
            pending = _PendingRequest(after_seq=self._frames_synced, request=request, response=response,
                                      timeout_s=timeout_s, deadline=time.monotonic() + timeout_s)
            self._requests.append(pending)
            self._deferred[id(response)] = pending
        return response

    def _send_or_defer(self, response, header) -> None:
        """rclpy's send_response: hold a registered call's response back until its result is in."""
        with self._lock:
            pending = self._deferred.pop(id(response), None)
            if pending is not None:
                pending.header = header
                ready = pending.filled
        if pending is None or ready:
            self._send(response, header)

    def _send(self, response, header) -> None:
        try:
            self._send_response_now(response, header)
        except Exception:  # noqa: BLE001 - the client or the context went away meanwhile
            if not self._shutting_down.is_set() and self.context.ok():
                raise

    def _expire_requests(self) -> None:
        now = time.monotonic()
        with self._lock:
            expired = [request for request in self._requests if request.deadline <= now]
            self._requests = [request for request in self._requests if request.deadline > now]
        for pending in expired:
            self._finish_request(pending, None)

    def _finish_request(self, pending: _PendingRequest, message) -> None:
        """Fill ``pending``'s response with ``message`` (None = timed out) and send it once its header is in."""
        with self._lock:
            if pending.claimed:
                return
            pending.claimed = True
            frames_since = self._frames_synced - pending.after_seq
        self._fill_response(pending, message, frames_since)
        with self._lock:
            pending.filled = True
            header = pending.header
        if header is not None:
            self._send(pending.response, header)

    def _fill_response(self, pending: _PendingRequest, message, frames_since: int) -> None:
        settings, response = self._settings, pending.response
        if message is None:
            response.success = False
            if frames_since:
                status = STATUS_ERROR
                response.message = (f"timed out after {pending.timeout_s:.1f} s: a frame arrived but its detection "
                                    "did not finish in time (raise timeout_s or service_timeout_s)")
            else:
                status = STATUS_NO_VALID_INPUT
                mask = self._mask_topic_name()
                response.message = (f"timed out waiting for a frame after {pending.timeout_s:.1f} s: no "
                                    f"synchronised {settings.color_topic} + {settings.depth_topic} + "
                                    f"{settings.camera_info_topic}" + (
                                        f" + {mask} (the object mask must carry the colour image's stamp)"
                                        if mask else ""))
            response.result = self._status_only_now(status, response.message)
            return
        # Per-request options are applied here, to this caller's copy of the frame's result.
        max_grasps = (int(pending.request.max_grasps) if pending.request.max_grasps > 0
                      else self._config.filters.max_grasps)
        result = message
        if len(pending.request.target_object_ids):
            result = conversions.on_objects(result, pending.request.target_object_ids)
        result = conversions.truncated(result, max_grasps)
        response.result = result
        response.success = result.status in (result.STATUS_OK, result.STATUS_NO_GRASP)
        total_ms = conversions.stage_timings(result).get(conversions.TOTAL_STAGE, 0.0)
        response.message = (f"{len(result.grasps)} grasps in {total_ms:.0f} ms" if result.status == result.STATUS_OK
                            else f"{status_name(result.status)}: {result.status_reason}")

    def _status_only_now(self, status: str, reason: str):
        config = self._config
        return conversions.grasp_array(
            self.get_clock().now().to_msg(), self._settings.target_frame, status, reason,
            model_id=self.model_id, pose_convention=config.poses.pose_convention,
            pre_grasp_distance=config.poses.pre_grasp_distance_m)

    def _on_set_parameters(self, parameters):
        from rcl_interfaces.msg import SetParametersResult

        changes = {parameter.name: parameter.value for parameter in parameters}
        try:
            config, settings = params.apply_changes(changes, self._config, self._settings)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if settings.target_frame:
            self._transformer_for_lookup()
        # The prepare thread hands the new config to the detector between frames, never within one.
        self._config, self._settings = config, settings
        ours = sorted(name for name in changes if name in params.declared_parameter_names())
        if ours:
            self.get_logger().info(f"parameters changed: {', '.join(ours)}")
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            pending = len(self._requests)
        self._diagnostics_publisher.publish(self._diagnostics.report(
            self._stats.snapshot(), self.get_clock().now().to_msg(), backend=self.backend_name,
            model_id=self.model_id, mode=self._settings.mode, input_timeout_s=self._settings.input_timeout_s,
            pending_requests=pending, mask_topic=self._mask_topic_name()))

    def _mask_topic_name(self) -> str:
        """The resolved object mask topic, or "" without one."""
        topic = self._settings.object_mask_topic
        return self._resolved(topic) if topic else ""

    # --------------------------------------------------------------------------- worker side
    def _prepare_frames(self) -> None:
        """Phase 1 thread: take the newest frame when the pipeline admits one, convert and prepare it."""
        while self._pipeline.admit(self._settings.pipeline_frames):
            frame = self._mailbox.take()
            if frame is None:
                return
            start = time.perf_counter()
            item = self._prepare(frame, start)
            if self._shutting_down.is_set() or not self._pipeline.to_model(item, time.perf_counter() - start):
                return

    def _infer_frames(self) -> None:
        """Phase 2 thread: the model (ONNX Runtime releases the GIL while its segments run)."""
        while (taken := self._pipeline.next_for_model()) is not None:
            item, waited_s = taken
            item.waited_s += waited_s
            model_s = None  # frames settled before the model must not pull its running average down
            if item.message is None and not item.prepared.settled:
                start = time.perf_counter()
                try:
                    item.model_output = self._detector.infer(item.prepared)
                except Exception as exc:  # noqa: BLE001 - the node must survive any bug in one frame
                    item.message = self._internal_error(item.frame, exc)
                model_s = time.perf_counter() - start
            if self._shutting_down.is_set() or not self._pipeline.to_finish(item, model_s):
                return

    def _finish_frames(self) -> None:
        """Phase 3 thread: post-processing, the GraspArray, publishing, answering ~/detect_grasps calls."""
        while (taken := self._pipeline.next_for_finish()) is not None:
            item, waited_s = taken
            item.waited_s += waited_s
            frame = item.frame
            try:
                message, grasps, transform = self._finish(item)
            except Exception as exc:  # noqa: BLE001 - the node must survive any bug in one frame
                message, grasps, transform = self._internal_error(frame, exc), None, None
            if self._shutting_down.is_set():
                return  # the context may already be gone: nothing can be published any more
            try:
                self._publish_result(message, grasps, transform)
            except Exception as exc:  # noqa: BLE001 - e.g. the context shut down mid-frame (Ctrl-C)
                if self._shutting_down.is_set() or not self.context.ok():
                    return
                self.get_logger().error(f"cannot publish frame {frame.seq}: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=LOG_THROTTLE_S)
            self._complete_requests(frame.seq, message)
            self._pipeline.finished()

    def _internal_error(self, frame: _Frame, exc: Exception):
        self.get_logger().error(f"frame {frame.seq} failed: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=LOG_THROTTLE_S)
        return self._status_only(frame.color.header, STATUS_ERROR, f"internal error: {type(exc).__name__}: {exc}")

    def _prepare(self, frame: _Frame, start: float) -> _InFlight:
        """Phase 1 of one frame: the detector's config for it, TF for the support plane, conversion, prepare."""
        item = _InFlight(frame, start)
        try:
            config, settings = self._config, self._settings
            if self._detector.config is not config:
                # Frames still in the model or finish phase keep the config they were prepared with.
                if not self._pipeline.wait_idle():
                    return item
                self._detector.update_config(config)
            item.config, item.settings = config, settings
            source_frame = frame.color.header.frame_id
            try:
                given_plane = self._given_support_plane(config, source_frame, frame.color.header.stamp)
                up_hint = self._table_up_hint(config, source_frame, frame.color.header.stamp)
            except GraspNetEdgeError as exc:
                item.message = self._status_only(frame.color.header, STATUS_ERROR, str(exc))
                return item
            item.prepared, item.convert_ms = conversions.prepare_on_messages(
                self._detector, frame.color, frame.depth, frame.info, frame.mask, given_plane, up_hint)
        except Exception as exc:  # noqa: BLE001 - the node must survive any bug in one frame
            item.message = self._internal_error(frame, exc)
        return item

    def _finish(self, item: _InFlight):
        """Phase 3 of one frame: (GraspArray, grasps drawn as markers or None, camera->frame_id transform)."""
        if item.message is not None:
            return item.message, None, None
        frame, config, settings, prepared = item.frame, item.config, item.settings, item.prepared
        result = prepared.result if prepared.settled else self._detector.finish(prepared, item.model_output)
        timings = {"convert": item.convert_ms, **result.timings_ms}
        self._stats.record_frame_details(
            "none" if result.support_plane is None else
            f"{result.support_plane.source} {[round(float(v), 4) for v in result.support_plane.coefficients]}",
            "; ".join(([result.plane_note] if result.plane_note else []) + list(result.warnings)),
            {k[len("rejected_"):]: v for k, v in result.counts.items() if k.startswith("rejected_")})

        source_frame = frame.color.header.frame_id
        frame_id = settings.target_frame or source_frame
        status, reason, grasps, poses, transform = result.status, result.reason, result.grasps, result.poses, None
        if status == STATUS_OK and frame_id != source_frame:
            tf_start = time.perf_counter()
            try:
                transform = self._transformer_for_lookup().matrix(frame_id, source_frame, frame.color.header.stamp,
                                                                   settings.tf_timeout_s)
                poses = tcp_poses(grasps, config.poses.pose_convention, config.poses.tcp_offset_m,
                                  config.poses.pre_grasp_distance_m, config.poses.twin_policy, transform=transform)
            except GraspNetEdgeError as exc:
                status, reason, transform = STATUS_ERROR, str(exc), None
            timings["tf"] = (time.perf_counter() - tf_start) * 1e3
        # Time between the phases (the slot before the model or before finish), part of "total".
        timings["wait"] = item.waited_s * 1e3
        if status != STATUS_OK:
            grasps, poses = GraspGroup.empty(), None
        message = conversions.grasp_array(
            frame.color.header.stamp, frame_id, status, reason, model_id=result.model_id or self.model_id,
            pose_convention=config.poses.pose_convention, pre_grasp_distance=config.poses.pre_grasp_distance_m,
            grasps=grasps, poses=poses, timings_ms=timings, total_ms=(time.perf_counter() - item.start) * 1e3)
        return message, grasps, transform

    def _given_support_plane(self, config, camera_frame: str, stamp):
        """``table_plane`` moved from ``table_plane_frame`` into the camera frame at ``stamp`` (or None
        when table_plane_frame is empty: the detector then takes table_plane as camera-frame numbers).

        ``config`` is the one handed to the detector for this frame (a parameter change between
        the two reads must not pair a new table_plane_frame with the old detector config)."""
        if config.support_plane.table_plane_mode != "given" or not config.support_plane.table_plane_frame:
            return None
        from graspnet_edge_ros.support_plane import SupportPlane

        # Passed on even in the camera frame itself, so the detector knows the frame was handled.
        plane = SupportPlane.from_coefficients(config.support_plane.table_plane)
        if config.support_plane.table_plane_frame == camera_frame:
            return plane
        return plane.transformed(self._camera_from(config.support_plane.table_plane_frame, camera_frame, stamp))

    def _table_up_hint(self, config, camera_frame: str, stamp):
        """For ``table_plane_mode: fit``: the z axis of ``table_plane_frame`` (e.g. base_link) in the
        camera frame at ``stamp``, the "up" the fitted plane must face (None without that frame)."""
        if config.support_plane.table_plane_mode != "fit" or not config.support_plane.table_plane_frame:
            return None
        if config.support_plane.table_plane_frame == camera_frame:
            return np.array([0.0, 0.0, 1.0])
        return self._camera_from(config.support_plane.table_plane_frame, camera_frame, stamp)[:3, 2]

    def _camera_from(self, frame: str, camera_frame: str, stamp) -> np.ndarray:
        """(4, 4) camera <- ``frame`` at the image stamp, through TF."""
        return self._transformer_for_lookup().matrix(camera_frame, frame, stamp, self._settings.tf_timeout_s)

    def _transformer_for_lookup(self) -> _TargetFrameTransformer:
        """The one TF buffer and listener, made on first need: the prepare thread (table_plane_frame),
        the finish thread (target_frame) and parameter changes may ask at the same time."""
        with self._transformer_lock:
            if self._transformer is None:
                self._transformer = _TargetFrameTransformer(self)
            return self._transformer

    def _status_only(self, header, status: str, reason: str):
        config = self._config
        return conversions.grasp_array(header.stamp, self._settings.target_frame or header.frame_id, status, reason,
                                       model_id=self.model_id, pose_convention=config.poses.pose_convention,
                                       pre_grasp_distance=config.poses.pre_grasp_distance_m)

    def _publish_result(self, message, grasps, transform) -> None:
        """Publish a GraspArray (and, with grasps or an empty result, markers); log and count it."""
        self._grasp_publisher.publish(message)
        if grasps is not None and self._marker_publisher.get_subscription_count() > 0:
            self._marker_publisher.publish(grasp_markers(grasps, message.header.stamp, message.header.frame_id,
                                                         self._settings.max_markers, transform))
        status = status_name(message.status)
        timings = conversions.stage_timings(message)
        self._stats.record_result(status, message.status_reason, timings)
        logger = self.get_logger()
        if status == STATUS_OK:
            logger.debug(f"{len(message.grasps)} grasps in {timings.get(conversions.TOTAL_STAGE, 0.0):.0f} ms")
        elif status == STATUS_NO_GRASP:
            logger.info(f"no grasp: {message.status_reason}", throttle_duration_sec=LOG_THROTTLE_S)
        elif status == STATUS_NO_VALID_INPUT:
            logger.warning(f"unusable frame: {message.status_reason}", throttle_duration_sec=LOG_THROTTLE_S)
        else:
            logger.error(f"detection failed: {message.status_reason}", throttle_duration_sec=LOG_THROTTLE_S)

    def _complete_requests(self, seq: int, message) -> None:
        with self._lock:
            ready = [request for request in self._requests if request.after_seq < seq]
            self._requests = [request for request in self._requests if request.after_seq >= seq]
        for request in ready:
            self._finish_request(request, message)

    def destroy_node(self) -> None:
        """Stop the phase threads (each finishes or abandons its frame without publishing), then the node."""
        self._shutting_down.set()
        self._mailbox.close()
        self._pipeline.close()
        deadline = time.monotonic() + 30.0
        for worker in self._workers:
            if worker.is_alive() and threading.current_thread() is not worker:
                worker.join(timeout=max(0.0, deadline - time.monotonic()))
        super().destroy_node()


def main(args=None, *, detector_factory=None) -> int:
    """Entry point of ``graspnet_edge_node`` (``python -m graspnet_edge_ros.ros.node --ros-args ...``).

    Exit codes: 0 after SIGINT/SIGTERM (also mid-frame), 1 when the node cannot start (bad
    parameters, a model that does not load or fails its warm-up frame), logged in one line.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from rclpy.exceptions import ParameterException

    from graspnet_edge_ros.memory import return_large_buffers

    return_large_buffers()  # frame-sized buffers go back to the OS: RSS stays flat (README, "Memory")
    rclpy.init(args=args)
    try:
        node = GraspDetectorNode(detector_factory=detector_factory)
    except (GraspNetEdgeError, ParameterException) as exc:  # bad parameters or model: one line, exit 1
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {type(exc).__name__}: {exc}")
        rclpy.try_shutdown()
        return 1
    except ImportError as exc:  # a dependency imported on first use (numba kernels, a runtime): one line
        message = missing_dependency_message(exc, NODE_NAME)
        if message is None:
            raise
        rclpy.logging.get_logger(NODE_NAME).fatal(message)
        rclpy.try_shutdown()
        return 1
    # One executor thread: every callback only hands work over (frames to the phase threads,
    # service calls to the request list), so none waits. rclpy's MultiThreadedExecutor re-yields a
    # task its pool has not started yet on every pass without waiting: at 30 Hz of 1280x720 input
    # on 2 cores its spin thread held the GIL ~85 % of the time, ~3500 passes/s, and the phase
    # threads ran 10x slower (README, "Soak").
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # rclpy < 9 (Jazzy, Humble): a SIGINT/SIGTERM that shuts the context down while the
        # executor builds its wait set raises RCLError instead (see ros/rclpy_compat.py).
        if rclpy.ok():
            raise
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
