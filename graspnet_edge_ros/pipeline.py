"""``GraspDetector``: one RGB-D frame in, ranked collision-free grasp poses out (ROS-free).

Stages (each timed): preprocess (back-projection, workspace, sampling) -> model (raw outputs) ->
decode (official pred_decode) -> filters (score, width, approach cone, table) -> collision
(model-free, full workspace cloud) -> nms -> top-k -> poses (TCP convention). The node, the CLI
and the benchmarks all call this object.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from graspnet_edge_ros.camera import (CameraIntrinsics, PreparedCloud, Workspace, WorkspaceSelection, decode_depth,
                                      sample_cloud, select_workspace)
from graspnet_edge_ros.candidates import GraspModelRunner, ImageFrame, candidates_for, inside_auto_workspace
from graspnet_edge_ros.config import DetectorConfig
from graspnet_edge_ros.errors import ConfigError, GraspNetEdgeError, InputError
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.poses import TcpPoses, tcp_poses
from graspnet_edge_ros.postprocess import filters
from graspnet_edge_ros.postprocess.collision import ModelFreeCollisionDetector
from graspnet_edge_ros.postprocess.executability import GripperGeometry, executability_filters
from graspnet_edge_ros.postprocess.nms import grasp_nms
from graspnet_edge_ros.status import STATUS_ERROR, STATUS_NO_GRASP, STATUS_NO_VALID_INPUT, STATUS_OK  # noqa: F401
from graspnet_edge_ros.support_plane import PlaneFitOptions, SupportPlane, SupportPlaneTracker, fit_support_plane
from graspnet_edge_ros.targeting import check_labels, grasp_object_ids, present_labels, with_object_ids
from graspnet_edge_ros.timing import StageTimer
from graspnet_edge_ros.warmup import ensure_kernels_loaded

STAGES = ("preprocess", "support_plane", "model", "decode", "filters", "collision", "nms", "poses")


@dataclass
class DetectionResult:
    """What one frame produced. ``grasps`` are sorted by score (best first), camera frame.

    ``status`` is one of ok / no_valid_input / no_grasp / error; ``reason`` says why in words.
    ``counts`` tracks how many grasps each stage kept or removed.
    """

    status: str
    reason: str = ""
    grasps: GraspGroup = field(default_factory=GraspGroup.empty)
    poses: TcpPoses | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    cloud: PreparedCloud | None = None
    model_id: str = ""
    support_plane: SupportPlane | None = None
    plane_note: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


class GraspDetector:
    """Compose the stages around a model runner: GraspNet (points) or a planar network (images).

    The runner (``candidates.GraspModelRunner``) sits in a candidate generator
    (``self.candidates``, chosen by its ``model_type``) that owns everything model-specific.

    Examples:
        >>> detector = GraspDetector(DetectorConfig.from_flat(model_path="graspnet_split/"))  # doctest: +SKIP
        >>> result = detector.detect(color, depth, "16UC1", intrinsics)  # doctest: +SKIP
    """

    def __init__(self, config: DetectorConfig, runner: GraspModelRunner | None = None):
        self.config = config
        self.runner = runner if runner is not None else load_model_runner(config)
        self.candidates = candidates_for(self.runner)
        self.candidates.configure(config)
        self._mask_cache: tuple[str, np.ndarray] | None = None
        self._plane_tracker = SupportPlaneTracker()
        # Skip the grasp heads of seeds no grasp of which can pass the filters (``candidates.SeedGate``);
        # the published grasps are the same either way (benchmarks and tests compare the two).
        self.gate_seeds = True
        # Load the numba kernels from their on-disk cache now rather than in the first frame (about
        # 1 s on x86; compiles them when `graspnet-edge warmup` has not run since the install).
        ensure_kernels_loaded()
        mask_path = config.camera.workspace_mask_path
        if mask_path:
            try:  # read the mask now, not in the first frame
                self._mask_cache = (mask_path, load_mask(mask_path))
            except InputError:
                pass  # an unreadable mask is reported by every frame (status no_valid_input)

    def prime(self) -> None:
        """Run the model once on a synthetic table-top cloud (point models; image models: no-op).

        A split model's segments already ran once at load (``SplitGraspNet.warm_up``); this also
        sizes the runtime's own buffers and the single-file and torch models' first run: call it
        after construction when the first real frame's latency matters (the node runs a whole
        warm-up frame instead).
        """
        if self.candidates.needs_image:
            return
        from graspnet_edge_ros.warmup import synthetic_tabletop

        depth, intrinsics = synthetic_tabletop(240, 320)
        cloud = sample_cloud(select_workspace(depth, intrinsics, max_depth=3.0), self._num_sampled_points(), 0)
        self.runner(cloud.sampled)

    @property
    def model_id(self) -> str:
        return self.runner.model_id

    def reset_support_plane(self) -> None:
        """Forget the last good support plane (call between unrelated frames, e.g. other scenes)."""
        self._plane_tracker.reset()

    def update_config(self, config: DetectorConfig) -> None:
        """Swap tunables at runtime (model/backend fields must stay unchanged).

        Call it between frames: a frame prepared and run under one config (its seed gate) and
        finished under another may lack grasps the new filters would pass (the ROS node waits for
        its frames in flight before swapping).
        """
        self.config = config
        self.candidates.configure(config)

    # ---------------------------------------------------------------------------------------
    def detect(self, color: np.ndarray | None, depth: np.ndarray, depth_encoding: str,
               intrinsics: CameraIntrinsics, *, object_labels: np.ndarray | None = None,
               target_object_ids=None, support_plane: SupportPlane | None = None,
               up_hint: np.ndarray | None = None) -> DetectionResult:
        """Run every stage on one frame; never raises for bad input (see ``status``/``reason``).

        The same as ``finish(prepared, infer(prepared))`` with ``prepared = prepare(...)`` (same
        arguments): the node runs those three phases on different frames at once.

        Raises ConfigError only for a configuration no frame can satisfy: ``table_plane_frame`` set
        without a ``support_plane`` (see ``check_table_plane_frame``).

        Args:
            color: (H, W, 3) uint8 RGB registered to depth, or None (overlays only).
            depth: (H, W) raw depth image: uint16 ("16UC1"/"mono16", scaled by depth_scale) or
                float32 metres ("32FC1").
            intrinsics: of the depth image.
            object_labels: optional (H, W) integer instance labels aligned to the image (0 =
                background): every grasp's object_id becomes the label under its grasp point.
            target_object_ids: keep only grasps on these labels (None = the target_object_ids parameter).
            support_plane: the table plane in the camera frame for ``table_plane_mode: given``
                (e.g. transformed from the robot base by the node); None = the table_plane parameter,
                which then must be in the camera frame (``table_plane_frame`` empty).
            up_hint: camera-frame "up" (3,) for ``table_plane_mode: fit``, e.g. the z axis of
                ``table_plane_frame`` through TF (the node passes it): the fitted plane must lie
                within 60 deg of it, so a wall cannot be taken for the table whatever the camera's roll.
        """
        prepared = self.prepare(color, depth, depth_encoding, intrinsics, object_labels=object_labels,
                                target_object_ids=target_object_ids, support_plane=support_plane, up_hint=up_hint)
        return self.finish(prepared, self.infer(prepared))

    def prepare(self, color: np.ndarray | None, depth: np.ndarray, depth_encoding: str,
                intrinsics: CameraIntrinsics, *, object_labels: np.ndarray | None = None,
                target_object_ids=None, support_plane: SupportPlane | None = None,
                up_hint: np.ndarray | None = None) -> "PreparedFrame":
        """Phase 1 of ``detect`` (same arguments): decode depth, back-project, workspace, support
        plane, sampling. Updates the support-plane tracker, so frames must be prepared in their
        order; a frame that ends here (bad input, nothing to do) comes back ``settled``.
        """
        check_table_plane_frame(self.config, support_plane)
        timer = StageTimer()
        context = _FrameContext(intrinsics=intrinsics, up_hint=up_hint)
        cfg = self.config
        targets = tuple(cfg.targeting.target_object_ids if target_object_ids is None else target_object_ids)
        try:
            with timer("preprocess"):
                depth_m = decode_depth(depth, depth_encoding, cfg.camera.depth_scale)
                workspace = self._workspace(depth_m.shape)
                if object_labels is not None:
                    context.labels = check_labels(object_labels, depth_m.shape)
                context.targets = self._checked_targets(targets, context)
                selection = select_workspace(depth_m, intrinsics, color, workspace, cfg.camera.min_depth_m,
                                             cfg.camera.max_depth_m)
            with timer("support_plane"):
                self._find_support_plane(selection.cloud, context, support_plane)
            with timer("preprocess"):
                context.auto_workspace = cfg.camera.workspace_mode == "plane" or (
                    cfg.camera.workspace_mode == "auto" and workspace is None)
                selection = self._auto_workspace(selection, context)
                cloud = self._sample(selection, context)
        except InputError as exc:
            return PreparedFrame.of_result(DetectionResult(
                STATUS_NO_VALID_INPUT, str(exc), timings_ms=timer.ms, model_id=self.model_id,
                support_plane=context.plane, plane_note=context.plane_note, warnings=context.warnings), timer)
        except _NothingToDo as exc:
            return PreparedFrame.of_result(DetectionResult(
                STATUS_NO_GRASP, str(exc), timings_ms=timer.ms, model_id=self.model_id,
                support_plane=context.plane, plane_note=context.plane_note, warnings=context.warnings), timer)
        frame = ImageFrame(color, depth_m, intrinsics, workspace)
        return self._prepared(cloud, timer, frame, context)

    def infer(self, prepared: "PreparedFrame") -> "ModelOutput | None":
        """Phase 2 of ``detect``: the model and the decoder on a prepared frame.

        None when there is nothing to run (a settled frame) or the model failed: ``finish`` then
        returns the frame's status. Touches only the candidate generator and this frame (ONNX
        Runtime releases the GIL), so it may run while other frames are prepared or finished.
        """
        if prepared.settled:
            return None
        try:
            grasps, extra_filters = self._candidates(prepared.cloud, prepared.timer, prepared.result,
                                                     prepared.frame, prepared.context)
        except GraspNetEdgeError as exc:
            prepared.settle(exc)
            return None
        return ModelOutput(grasps, extra_filters)

    def finish(self, prepared: "PreparedFrame", model_output: "ModelOutput | None") -> DetectionResult:
        """Phase 3 of ``detect``: filters, collision check, NMS, top-k and poses -> the frame's result."""
        result = prepared.result
        if not prepared.settled and model_output is None:
            prepared.settle(GraspNetEdgeError("finish() was given no model output for a frame that needs one"))
        if not prepared.settled:
            try:
                self._post_process(model_output.grasps, model_output.extra_filters, prepared.cloud, prepared.timer,
                                   result, prepared.context)
            except GraspNetEdgeError as exc:
                prepared.settle(exc)
        result.timings_ms = dict(prepared.timer.ms)
        return result

    def detect_cloud(self, cloud: PreparedCloud, timer: StageTimer | None = None,
                     frame: ImageFrame | None = None) -> DetectionResult:
        """Run model and post-processing on an already prepared cloud (image models, see
        ``candidates.needs_image``, also need ``frame``).

        The support plane is fitted on ``cloud.cloud`` (or taken from the config); no workspace crop,
        object labels or targeting apply here.
        """
        check_table_plane_frame(self.config, None)
        timer = timer or StageTimer()
        context = _FrameContext(intrinsics=frame.intrinsics if frame is not None else None)
        try:
            with timer("support_plane"):
                self._find_support_plane(cloud.cloud, context, None)
        except InputError as exc:
            return DetectionResult(STATUS_NO_VALID_INPUT, str(exc), timings_ms=timer.ms, model_id=self.model_id)
        prepared = self._prepared(cloud, timer, frame, context)
        return self.finish(prepared, self.infer(prepared))

    def _prepared(self, cloud: PreparedCloud, timer: StageTimer, frame: ImageFrame | None,
                  context: "_FrameContext") -> "PreparedFrame":
        result = DetectionResult(STATUS_OK, cloud=cloud, model_id=self.model_id, timings_ms=timer.ms,
                                 support_plane=context.plane, plane_note=context.plane_note,
                                 warnings=context.warnings)
        return PreparedFrame(result, timer, context, cloud, frame)

    # --------------------------------------------------------------- support plane, workspace
    def _find_support_plane(self, points: np.ndarray, context: "_FrameContext",
                            given: SupportPlane | None) -> None:
        """Set context.plane (or None) and context.plane_note for this frame."""
        cfg = self.config
        if cfg.support_plane.table_plane_mode == "none":
            context.plane_note = "table_plane_mode is none"
            return
        if cfg.support_plane.table_plane_mode == "given":
            context.plane = (given if given is not None
                             else SupportPlane.from_coefficients(cfg.support_plane.table_plane))
            return
        options = PlaneFitOptions()
        if context.up_hint is not None:
            options = dataclasses.replace(options, up_hint=tuple(float(v) for v in context.up_hint))
        elif cfg.support_plane.table_plane_frame:
            context.warnings.append(f"table_plane_frame {cfg.support_plane.table_plane_frame!r} (the 'up' of the "
                                    "plane fit) is applied only by the ROS node, through TF")
        try:
            fitted, failure = fit_support_plane(points, options), ""
        except InputError as exc:
            fitted, failure = None, str(exc)
        context.plane, context.plane_note = self._plane_tracker.update(fitted, failure)

    def _auto_workspace(self, selection: WorkspaceSelection, context: "_FrameContext") -> WorkspaceSelection:
        """Keep the points above the support plane, in the height band and the plane's extent."""
        if not context.auto_workspace:
            return selection
        if context.plane is None:
            context.warnings.append(f"auto workspace not applied: {context.plane_note}")
            return selection
        keep = inside_auto_workspace(self.config, selection.cloud, context.plane)
        if not keep.any():
            cfg = self.config
            raise InputError(f"auto workspace empty: no point lies {cfg.camera.workspace_min_height_m:g} to "
                             f"{cfg.camera.workspace_max_height_m:g} m above the support plane within its extent")
        return selection.subset(keep)

    def _checked_targets(self, targets: tuple, context: "_FrameContext") -> tuple:
        if not targets:
            return ()
        if context.labels is None:
            raise InputError(f"target objects {list(targets)} need an object mask (object_mask_topic, --object-mask)")
        present = present_labels(context.labels)
        missing = [t for t in targets if t not in present]
        if len(missing) == len(targets):
            raise _NothingToDo(f"target object(s) {missing} not in the object mask (labels present: {present})")
        if missing:
            context.warnings.append(f"target object(s) {missing} not in the object mask")
        return tuple(t for t in targets if t in present)

    def _sample(self, selection: WorkspaceSelection, context: "_FrameContext") -> PreparedCloud:
        """The model input; with targets, denser on them (and only their neighbourhood, if asked).

        The returned cloud keeps every workspace point (collisions see the whole scene); only
        ``sampled`` changes. GraspNet's seeds come from farthest-point sampling, which spreads
        them by space, not density: a context crop is what concentrates them on the targets.
        """
        cfg = self.config
        if not context.targets or not self.candidates.samples_targets:
            return sample_cloud(selection, self._num_sampled_points(), self._seed())
        on_target = np.isin(context.labels.reshape(-1)[selection.pixel_ids], context.targets)
        if not on_target.any():
            raise _NothingToDo(f"target object(s) {list(context.targets)} have no valid depth in the workspace")
        region = np.ones(len(on_target), bool)
        if cfg.targeting.target_context_m > 0:
            target_points = selection.cloud[on_target]
            low = target_points.min(axis=0) - cfg.targeting.target_context_m
            high = target_points.max(axis=0) + cfg.targeting.target_context_m
            region = np.all((selection.cloud >= low) & (selection.cloud <= high), axis=1)
        sampled = sample_cloud(selection.subset(region), self._num_sampled_points(), self._seed(),
                               on_target[region], cfg.targeting.target_sampling_fraction)
        if region.all():
            return sampled
        indices = np.flatnonzero(region)[sampled.sampled_indices]
        full = sample_cloud(selection, 1, 0)  # every point and colour of the scene, for collisions
        return dataclasses.replace(full, sampled=sampled.sampled, sampled_indices=indices)

    # ----------------------------------------------------------------------------- the stages
    def _candidates(self, cloud: PreparedCloud, timer: StageTimer, result: DetectionResult,
                    frame: ImageFrame | None, context: "_FrameContext") -> tuple[GraspGroup, list]:
        context.head_free_filters = (functools.partial(self._head_free_filters, context)
                                     if self.gate_seeds and self._filters_read_geometry(context) else None)
        return self.candidates.generate(self.config, cloud, frame, timer, result.counts, context)

    def _post_process(self, grasps: GraspGroup, extra_filters: list, cloud: PreparedCloud, timer: StageTimer,
                      result: DetectionResult, context: "_FrameContext") -> None:
        cfg = self.config
        with timer("filters"):
            if context.labels is not None:
                grasps = with_object_ids(grasps, grasp_object_ids(grasps, context.labels, context.intrinsics))
            outcome = filters.apply_filters(grasps, extra_filters + self._target_filters(grasps.object_ids, context)
                                            + self._filter_results(grasps, context))
            grasps = outcome.grasps
        for reason, count in outcome.rejected.items():
            # Seeds the model skipped (every grasp they could make failed) are already counted.
            result.counts[f"rejected_{reason}"] = result.counts.get(f"rejected_{reason}", 0) + count
        with timer("collision"):
            collision = cfg.collision
            if collision.collision_thresh > 0 and len(grasps):
                detector = ModelFreeCollisionDetector(cloud.cloud, collision.collision_voxel_size_m,
                                                      collision.finger_width_m, collision.finger_length_m,
                                                      crop_to=grasps,
                                                      crop_approach_dist=collision.collision_approach_dist_m)
                colliding = detector.detect(grasps, collision.collision_approach_dist_m, collision.collision_thresh)
                result.counts["rejected_collision"] = int(colliding.sum())
                grasps = grasps[~colliding]
        with timer("nms"):
            if cfg.nms.nms_enabled and len(grasps):
                before = len(grasps)
                grasps = grasp_nms(grasps, cfg.nms.nms_translation_m, cfg.nms.nms_rotation_rad)
                result.counts["rejected_nms"] = before - len(grasps)
            grasps = grasps.sorted_by_score()[:cfg.filters.max_grasps]
        result.counts["published"] = len(grasps)
        result.grasps = grasps
        if len(grasps) == 0:
            result.status = STATUS_NO_GRASP
            result.reason = _no_grasp_reason(result.counts, self.candidates.no_detection_reason, context.plane_note)
            return
        with timer("poses"):
            result.poses = tcp_poses(grasps, cfg.poses.pose_convention, cfg.poses.tcp_offset_m,
                                     cfg.poses.pre_grasp_distance_m, cfg.poses.twin_policy)

    @staticmethod
    def _target_filters(object_ids: np.ndarray, context: "_FrameContext") -> list:
        return [filters.FilterResult("not_target", np.isin(object_ids, context.targets))] if context.targets else []

    def _filters_read_geometry(self, context: "_FrameContext") -> bool:
        """Whether any filter of ``_head_free_filters`` applies this frame: only those can reject a seed
        before its head runs (asked of the filters themselves, on no grasps)."""
        return bool(self._head_free_filters(context, GraspGroup.empty()))

    def _head_free_filters(self, context: "_FrameContext", grasps: GraspGroup) -> list:
        """The filters of ``_post_process`` but score and width, for the grasps a seed could make.

        Called with ``candidates.SeedGate``'s rows (each seed at every angle and depth class, at
        the gripper's minimum width, which the width filter always passes): each of these filters
        passes a grasp at the minimum width if it passes it at any larger one (the fingers, palm
        and fingertips only get lower with the width; the rest ignores it), so a seed none of whose
        rows passes makes no grasp that passes.
        """
        ids = None
        if context.targets:
            ids = (grasp_object_ids(grasps, context.labels, context.intrinsics) if context.labels is not None
                   else grasps.object_ids)
        return self._target_filters(ids, context) + self._filter_results(grasps, context, head_free=True)

    def _filter_results(self, grasps: GraspGroup, context: "_FrameContext", head_free: bool = False) -> list:
        """The filter results of ``grasps``; ``head_free``: only those that read neither score nor width."""
        cfg = self.config
        results = [] if head_free else [
            filters.score_filter(grasps, cfg.filters.min_score),
            filters.width_filter(grasps, cfg.gripper.gripper_max_width_m, cfg.gripper.width_margin_m,
                                 cfg.gripper.gripper_min_width_m),
        ]
        if cfg.filters.approach_max_angle_deg < 180:
            results.append(filters.approach_cone_filter(grasps, np.asarray(cfg.filters.approach_direction),
                                                        np.radians(cfg.filters.approach_max_angle_deg)))
        plane = context.plane
        if plane is not None:
            results.append(filters.table_height_filter(grasps, plane.normal, plane.offset,
                                                       cfg.filters.min_table_height_m))
        if cfg.gripper.executability_filter:
            if plane is None:
                # Without a plane nothing can be said about the gripper body: publish nothing
                # rather than grasps that may drive the hand into the table.
                results.append(filters.FilterResult("no_support_plane", np.zeros(len(grasps), bool)))
            else:
                results.extend(executability_filters(grasps, plane.normal, plane.offset,
                                                     GripperGeometry.from_config(cfg.gripper)))
        return results

    def _workspace(self, shape: tuple[int, int]) -> Workspace | None:
        cfg = self.config
        mask = None
        if cfg.camera.workspace_mask_path:
            if self._mask_cache is None or self._mask_cache[0] != cfg.camera.workspace_mask_path:
                self._mask_cache = (cfg.camera.workspace_mask_path, load_mask(cfg.camera.workspace_mask_path))
            mask = self._mask_cache[1]
        camera = cfg.camera
        box = ((tuple(camera.workspace_min_xyz), tuple(camera.workspace_max_xyz)) if camera.workspace_min_xyz
               else (None, None))
        if mask is None and box[0] is None:
            return None
        return Workspace(mask, *box)

    def _num_sampled_points(self) -> int:
        return self.candidates.num_sampled_points(self.config)

    def _seed(self) -> int | None:
        return None if self.config.camera.sampling_seed < 0 else self.config.camera.sampling_seed


class _NothingToDo(GraspNetEdgeError):
    """The frame is fine but nothing asked for can be in it (e.g. the target object is absent)."""


@dataclass
class PreparedFrame:
    """One frame between the phases of ``GraspDetector.detect`` (prepare -> infer -> finish).

    Holds the result being built and the frame's stage timer; one thread works on it at a time.
    ``settled``: the result is final (bad input, nothing to do, a failed model): infer and finish
    pass it through.
    """

    result: DetectionResult
    timer: StageTimer
    context: "_FrameContext | None" = None
    cloud: PreparedCloud | None = None
    frame: ImageFrame | None = None
    settled: bool = False

    @classmethod
    def of_result(cls, result: DetectionResult, timer: StageTimer | None = None) -> "PreparedFrame":
        """A frame whose result is already known (e.g. its messages could not be converted)."""
        return cls(result, timer if timer is not None else StageTimer(), settled=True)

    def settle(self, error: GraspNetEdgeError) -> None:
        """End the frame with ``error``: no_valid_input for bad input, error for anything else."""
        if isinstance(error, InputError):
            self.result.status, self.result.reason = STATUS_NO_VALID_INPUT, str(error)
        else:
            self.result.status, self.result.reason = STATUS_ERROR, f"{type(error).__name__}: {error}"
        self.settled = True


@dataclass
class ModelOutput:
    """What ``GraspDetector.infer`` hands to ``finish``: decoded candidate grasps (camera frame)
    and the filters their source adds (image models: the workspace test of their pixels)."""

    grasps: GraspGroup
    extra_filters: list


@dataclass
class _FrameContext:
    """Per-frame facts the stages share: support plane, labels, targets."""

    intrinsics: CameraIntrinsics | None = None
    up_hint: np.ndarray | None = None
    plane: SupportPlane | None = None
    plane_note: str = ""
    labels: np.ndarray | None = None
    targets: tuple = ()
    auto_workspace: bool = False
    warnings: list = field(default_factory=list)
    # grasps -> [FilterResult] of the filters that do not read the grasp head (None: none applies).
    head_free_filters: Callable[[GraspGroup], list] | None = None


def check_table_plane_frame(config: DetectorConfig, support_plane: SupportPlane | None = None) -> None:
    """ConfigError when ``table_plane`` is said to be in another TF frame but nothing moved it here.

    Only the node transforms a given plane from ``table_plane_frame`` (it passes the result as
    ``support_plane``); elsewhere (CLI, sim-eval, library) the numbers would silently be used as a
    camera-frame plane.
    """
    plane = config.support_plane
    if plane.table_plane_mode == "given" and plane.table_plane_frame and support_plane is None:
        raise ConfigError(f"table_plane_frame {plane.table_plane_frame!r} is only applied by the ROS node "
                          "(through TF): outside the node give table_plane in the camera frame and leave "
                          "table_plane_frame empty")


def resolve_model_type(config: DetectorConfig) -> str:
    """``model_type``, or for "auto" the type the model file declares (GraspNet otherwise)."""
    if config.model.model_type != "auto":
        return config.model.model_type
    from graspnet_edge_ros.planar.runner import detect_planar_model_type

    return detect_planar_model_type(config.model.model_path) or "graspnet"


def load_model_runner(config: DetectorConfig):
    """The runner of ``model_path``: a GraspNetRunner or, for planar networks, a PlanarRunner."""
    from graspnet_edge_ros.formats import provider_options, resolve_backend, thread_options
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner

    # backend "" / "auto": the one the model file implies (ModelFormatError in one line for an unknown kind).
    backend = resolve_backend(config.model.model_path, config.model.backend)
    model_type = resolve_model_type(config)
    options = {**thread_options(backend, config.model.model_path, config.model.num_threads),
               **provider_options(backend, config.model.model_path, config.model.onnx_providers)}
    if model_type == "graspnet":
        return load_graspnet_runner(config.model.model_path, backend, **options)
    from graspnet_edge_ros.planar.runner import load_planar_runner

    return load_planar_runner(config.model.model_path, model_type, backend, **options)


def load_mask(path) -> np.ndarray:
    """(H, W) bool from a mask image (non-zero = keep); InputError if unreadable."""
    from PIL import Image

    try:
        return np.asarray(Image.open(path)) != 0
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read workspace mask {path}: {exc}") from exc


def _no_grasp_reason(counts: dict[str, int], no_detection_reason: str, plane_note: str = "") -> str:
    if counts.get("rejected_no_support_plane"):
        return (f"the executability filter could not run: {plane_note or 'no support plane'}; set "
                "table_plane_mode: given with the table plane, or executability_filter: false to publish "
                "unchecked grasps")
    if counts.get("decoded", 0) == 0:
        return no_detection_reason  # the candidate generator's words (no seeds / no quality peak)
    removed = ", ".join(f"{k[len('rejected_'):]}: {v}" for k, v in counts.items() if k.startswith("rejected_") and v)
    return f"all {counts['decoded']} decoded grasps were rejected ({removed})"
