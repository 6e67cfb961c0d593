"""``graspnet_edge_node``: synchronised RGB-D + CameraInfo in, ranked 6-DoF grasps out.

Topics (defaults follow the RealSense driver; set them with parameters or remap them):
  in   /camera/color/image_raw, /camera/aligned_depth_to_color/image_raw, /camera/color/camera_info
  out  ~/grasps (GraspArray), ~/markers (MarkerArray), /diagnostics (DiagnosticArray)
  srv  ~/detect_grasps (DetectGrasps): the result of the next synchronised frame

Threads: the executor only matches messages, answers services and parameters; detection runs in
one worker thread fed through a one-slot mailbox, so the newest frame wins and the node stays
responsive while a frame takes seconds. Run it with a MultiThreadedExecutor (``main`` does): a
service call waits for a frame, which a single-threaded executor could never deliver meanwhile.

Nothing is ever invented: unusable input, no grasp, a failed TF lookup or an internal error
each give a GraspArray with its status, a reason and no grasps.
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from graspnet_edge_ros.camera import CameraIntrinsics, prepare_points
from graspnet_edge_ros.errors import ConfigError, GraspNetEdgeError, InputError
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.pipeline import (STATUS_ERROR, STATUS_NO_GRASP, STATUS_NO_VALID_INPUT, STATUS_OK,
                                        DetectionResult)
from graspnet_edge_ros.poses import tcp_poses
from graspnet_edge_ros.ros import conversions, params
from graspnet_edge_ros.ros.diagnostics import DiagnosticsReporter, NodeStatistics
from graspnet_edge_ros.ros.markers import grasp_markers
from graspnet_edge_ros.ros.sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer, LatestMailbox

NODE_NAME = "graspnet_edge_node"
LOG_THROTTLE_S = 5.0
# A step back in stamps larger than this is a restarted bag or clock, not a reordered frame.
CLOCK_RESET_JUMP_NS = 1_000_000_000
# Service calls block one executor thread each while they wait for a frame.
EXECUTOR_THREADS = 4
OUTPUT_QUEUE_DEPTH = 10


class TransformUnavailableError(GraspNetEdgeError):
    """The camera -> target_frame transform cannot be had (tf2_ros missing, lookup failed)."""


@dataclass
class _Frame:
    seq: int
    color: object
    depth: object
    info: object


@dataclass
class _PendingRequest:
    """A ~/detect_grasps call waiting for the first frame synchronised after ``after_seq``."""

    after_seq: int
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None


class _TargetFrameTransformer:
    """Camera -> target frame transforms from tf2_ros at the image stamp."""

    def __init__(self, node: Node):
        try:
            import tf2_ros
        except ImportError as exc:
            self._tf2_ros, self._buffer, self._import_error = None, None, exc
            return
        self._tf2_ros, self._import_error = tf2_ros, None
        self._buffer = tf2_ros.Buffer()
        # The executor's other threads fill the buffer while the worker waits in lookup_transform.
        self._listener = tf2_ros.TransformListener(self._buffer, node)

    def matrix(self, target: str, source: str, stamp, timeout_s: float) -> np.ndarray:
        """(4, 4) target <- source at ``stamp``; TransformUnavailableError says why not."""
        if self._buffer is None:
            raise TransformUnavailableError(
                f"target_frame {target!r} is set but tf2_ros is not importable ({self._import_error}); "
                "install tf2_ros (ros-<distro>-tf2-ros) or clear target_frame")
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            transform = self._buffer.lookup_transform(target, source, Time.from_msg(stamp),
                                                      timeout=Duration(seconds=timeout_s))
        except self._tf2_ros.TransformException as exc:
            raise TransformUnavailableError(
                f"no transform from {source!r} to {target!r} at the image stamp "
                f"{stamp.sec}.{stamp.nanosec:09d}: {exc}") from exc
        return conversions.transform_to_matrix(transform.transform)


def synthetic_warmup_frame(height: int = 120, width: int = 160):
    """(colour, depth in metres, intrinsics) of a box on a table, 0.5-0.6 m away."""
    depth = np.full((height, width), 0.6, np.float32)
    depth[height // 3:2 * height // 3, 3 * width // 8:5 * width // 8] = 0.52
    color = np.full((height, width, 3), 120, np.uint8)
    color[depth < 0.6] = (200, 60, 40)
    focal = 0.94 * width
    intrinsics = CameraIntrinsics(fx=focal, fy=focal, cx=width / 2, cy=height / 2, width=width, height=height)
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
        self._worker: threading.Thread | None = None
        try:
            self._start(detector_factory)
        except BaseException:
            # rclpy would otherwise destroy this half-built node again at context shutdown.
            self.destroy_node()
            raise

    def _start(self, detector_factory) -> None:
        self._config, self._settings = params.declare_parameters(self)
        if detector_factory is None:
            from graspnet_edge_ros.pipeline import GraspDetector

            detector_factory = GraspDetector
        self._detector = detector_factory(self._config)
        self._stats = NodeStatistics()
        self._lock = threading.Lock()  # guards the request list and the frame counters
        self._requests: list[_PendingRequest] = []
        self._frames_synced = 0
        self._newest_stamp_ns: int | None = None
        self._transformer: _TargetFrameTransformer | None = None
        if self._settings.warmup:
            self._warm_up()

        from diagnostic_msgs.msg import DiagnosticArray
        from visualization_msgs.msg import MarkerArray

        from graspnet_edge_ros.msg import GraspArray
        from graspnet_edge_ros.srv import DetectGrasps

        self._grasp_publisher = self.create_publisher(GraspArray, "~/grasps", OUTPUT_QUEUE_DEPTH)
        self._marker_publisher = self.create_publisher(MarkerArray, "~/markers", OUTPUT_QUEUE_DEPTH)
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QUEUE_DEPTH)
        if self._settings.target_frame:
            self._transformer = _TargetFrameTransformer(self)
        self._service = self.create_service(DetectGrasps, "~/detect_grasps", self._on_detect_grasps,
                                            callback_group=ReentrantCallbackGroup())
        self._sync_implementation = self._subscribe_inputs()
        self._diagnostics = DiagnosticsReporter(f"{self.get_name()}: grasp detection")
        # Steady clock: diagnostics keep coming with use_sim_time even when no /clock is published.
        self._diagnostics_timer = self.create_timer(self._settings.diagnostics_period_s, self._publish_diagnostics,
                                                    clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name="graspnet_detection", daemon=True)
        self._worker.start()
        s = self._settings
        self.get_logger().info(
            f"ready: backend {self.backend_name}, model {self.model_id}, mode {s.mode}; inputs {s.color_topic} + "
            f"{s.depth_topic} + {s.camera_info_topic} ({s.qos_reliability}, "
            f"{'exact' if s.exact_sync else f'slop {s.slop} s'}, {self._sync_implementation}); output "
            f"{self._grasp_publisher.topic_name} in {s.target_frame or 'the image frame'}")

    # ------------------------------------------------------------------------------ properties
    @property
    def model_id(self) -> str:
        return str(self._detector.model_id)

    @property
    def backend_name(self) -> str:
        runner = getattr(self._detector, "runner", None)
        return str(getattr(runner, "backend_name", "") or self._config.backend or "unknown")

    @property
    def statistics(self):
        """Snapshot of the counters (frames received, processed, dropped, ...)."""
        return self._stats.snapshot()

    # ------------------------------------------------------------------------------- start-up
    def _warm_up(self) -> None:
        """One synthetic frame through every stage (model, numba kernels, collision, NMS, poses)."""
        runner = getattr(self._detector, "runner", None)
        num_points = getattr(runner, "num_points", None) or self._config.num_points
        # The table and approach filters would reject the few synthetic grasps before the
        # collision check and NMS had run (and compiled) once.
        self._detector.update_config(self._config.replace(table_plane_mode="none", executability_filter=False,
                                                          approach_max_angle_deg=180.0, workspace_mode="off",
                                                          workspace_mask_path="", workspace_min_xyz=(),
                                                          workspace_max_xyz=()))
        start = time.perf_counter()
        try:
            if getattr(self._detector, "is_planar", False):
                # Planar networks take the image; 480x640 holds every network's crop.
                color, depth, intrinsics = synthetic_warmup_frame(480, 640)
                result = self._detector.detect(color, depth, "32FC1", intrinsics)
            else:
                result = self._detector.detect_cloud(synthetic_warmup_cloud(num_points))
        finally:
            self._detector.update_config(self._config)
        if "rejected_nms" not in result.counts:
            # NMS runs only on grasps that survive the collision check, which the synthetic scene
            # may not leave: compile its kernel on two fixed grasps instead.
            from graspnet_edge_ros.postprocess.nms import grasp_nms

            pair = GraspGroup.from_parts([0.9, 0.8], [0.05, 0.05], [0.02, 0.02], [np.eye(3)] * 2,
                                         [[0.0, 0.0, 0.5], [0.001, 0.0, 0.5]])
            grasp_nms(pair, self._config.nms_translation_m, self._config.nms_rotation_rad)
            tcp_poses(pair)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        if result.status == STATUS_ERROR:
            self.get_logger().error(f"warm-up frame failed after {elapsed_ms:.0f} ms: {result.reason}")
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
    def _on_synced_frame(self, color, depth, info) -> None:
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
        elif self._mailbox.put(_Frame(seq, color, depth, info)):
            self._stats.record_dropped()

    def _on_detect_grasps(self, request, response):
        settings, config = self._settings, self._config
        timeout_s = float(request.timeout_s) if request.timeout_s > 0 else settings.service_timeout_s
        max_grasps = int(request.max_grasps) or config.max_grasps
        with self._lock:
            pending = _PendingRequest(after_seq=self._frames_synced)
            self._requests.append(pending)
        pending.done.wait(timeout_s)
        with self._lock:
            if pending in self._requests:
                self._requests.remove(pending)
            frames_since = self._frames_synced - pending.after_seq
        if pending.result is None:
            response.success = False
            if frames_since:
                status = STATUS_ERROR
                response.message = (f"timed out after {timeout_s:.1f} s: a frame arrived but its detection did "
                                    "not finish in time (raise timeout_s or service_timeout_s)")
            else:
                status = STATUS_NO_VALID_INPUT
                response.message = (f"timed out waiting for a frame after {timeout_s:.1f} s: no synchronised "
                                    f"{settings.color_topic} + {settings.depth_topic} + {settings.camera_info_topic}")
            response.result = conversions.grasp_array(
                self.get_clock().now().to_msg(), settings.target_frame, status, response.message,
                model_id=self.model_id, pose_convention=config.pose_convention,
                pre_grasp_distance=config.pre_grasp_distance_m)
            return response
        result = conversions.truncated(pending.result, max_grasps)
        response.result = result
        response.success = result.status in (result.STATUS_OK, result.STATUS_NO_GRASP)
        total_ms = dict(zip(result.stage_names, result.stage_latencies_ms)).get(conversions.TOTAL_STAGE, 0.0)
        response.message = (f"{len(result.grasps)} grasps in {total_ms:.0f} ms" if result.status == result.STATUS_OK
                            else f"{_status_name(result.status)}: {result.status_reason}")
        return response

    def _on_set_parameters(self, parameters):
        from rcl_interfaces.msg import SetParametersResult

        changes = {parameter.name: parameter.value for parameter in parameters}
        try:
            config, settings = params.apply_changes(changes, self._config, self._settings)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if settings.target_frame and self._transformer is None:
            self._transformer = _TargetFrameTransformer(self)
        # The worker hands the new config to the detector between frames, never within one.
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
            pending_requests=pending))

    # --------------------------------------------------------------------------- worker side
    def _work(self) -> None:
        while True:
            frame = self._mailbox.take()
            if frame is None:
                return
            try:
                message, grasps, transform = self._process(frame)
            except Exception as exc:  # noqa: BLE001 - the worker must survive any bug in one frame
                self.get_logger().error(f"frame {frame.seq} failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=LOG_THROTTLE_S)
                message, grasps, transform = self._status_only(
                    frame.color.header, STATUS_ERROR, f"internal error: {type(exc).__name__}: {exc}"), None, None
            self._publish_result(message, grasps, transform)
            self._complete_requests(frame.seq, message)

    def _process(self, frame: _Frame):
        """Detect on one frame: (GraspArray, grasps drawn as markers or None, camera->frame_id transform)."""
        start = time.perf_counter()
        config, settings = self._config, self._settings
        if self._detector.config is not config:
            self._detector.update_config(config)
        convert_start = time.perf_counter()
        try:
            color = conversions.color_from_image(frame.color)
            depth, encoding = conversions.depth_from_image(frame.depth)
            intrinsics = conversions.intrinsics_from_camera_info(frame.info)
        except InputError as exc:
            convert_ms = (time.perf_counter() - convert_start) * 1e3
            result = DetectionResult(STATUS_NO_VALID_INPUT, str(exc), model_id=self.model_id)
        else:
            convert_ms = (time.perf_counter() - convert_start) * 1e3
            result = self._detector.detect(color, depth, encoding, intrinsics)
        timings = {"convert": convert_ms, **result.timings_ms}

        source_frame = frame.color.header.frame_id
        frame_id = settings.target_frame or source_frame
        status, reason, grasps, poses, transform = result.status, result.reason, result.grasps, result.poses, None
        if status == STATUS_OK and frame_id != source_frame:
            tf_start = time.perf_counter()
            try:
                transform = self._transformer_for_lookup().matrix(frame_id, source_frame, frame.color.header.stamp,
                                                                   settings.tf_timeout_s)
                poses = tcp_poses(grasps, config.pose_convention, config.tcp_offset_m,
                                  config.pre_grasp_distance_m, config.twin_policy, transform=transform)
            except GraspNetEdgeError as exc:
                status, reason, transform = STATUS_ERROR, str(exc), None
            timings["tf"] = (time.perf_counter() - tf_start) * 1e3
        if status != STATUS_OK:
            grasps, poses = GraspGroup.empty(), None
        message = conversions.grasp_array(
            frame.color.header.stamp, frame_id, status, reason, model_id=result.model_id or self.model_id,
            pose_convention=config.pose_convention, pre_grasp_distance=config.pre_grasp_distance_m,
            grasps=grasps, poses=poses, timings_ms=timings, total_ms=(time.perf_counter() - start) * 1e3)
        return message, grasps, transform

    def _transformer_for_lookup(self) -> _TargetFrameTransformer:
        if self._transformer is None:
            self._transformer = _TargetFrameTransformer(self)
        return self._transformer

    def _status_only(self, header, status: str, reason: str):
        config = self._config
        return conversions.grasp_array(header.stamp, self._settings.target_frame or header.frame_id, status, reason,
                                       model_id=self.model_id, pose_convention=config.pose_convention,
                                       pre_grasp_distance=config.pre_grasp_distance_m)

    def _publish_result(self, message, grasps, transform) -> None:
        """Publish a GraspArray (and, with grasps or an empty result, markers); log and count it."""
        self._grasp_publisher.publish(message)
        if grasps is not None and self._marker_publisher.get_subscription_count() > 0:
            self._marker_publisher.publish(grasp_markers(grasps, message.header.stamp, message.header.frame_id,
                                                         self._settings.max_markers, transform))
        status = _STATUS_NAMES[message.status]
        timings = dict(zip(message.stage_names, message.stage_latencies_ms))
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
            request.result = message
            request.done.set()

    def destroy_node(self) -> None:
        self._mailbox.close()
        worker = self._worker
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=30.0)
        super().destroy_node()


_STATUS_NAMES = {0: STATUS_OK, 1: STATUS_NO_VALID_INPUT, 2: STATUS_NO_GRASP, 3: STATUS_ERROR}


def _status_name(code: int) -> str:
    return _STATUS_NAMES.get(code, f"status {code}")


def main(args=None) -> int:
    """Entry point of ``graspnet_edge_node`` (``python -m graspnet_edge_ros.ros.node --ros-args ...``)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from rclpy.exceptions import ParameterException

    rclpy.init(args=args)
    try:
        node = GraspDetectorNode()
    except (GraspNetEdgeError, ParameterException) as exc:  # bad parameters or model: one line, exit 1
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {type(exc).__name__}: {exc}")
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
