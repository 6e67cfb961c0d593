"""Grasp candidates from a model runner: the model-specific part of ``GraspDetector``.

``GraspModelRunner`` is the interface every runner offers (GraspNetRunner, PlanarRunner and test
stand-ins). A candidate generator wraps one runner and owns what differs between the model
families: what the model reads (points or the RGB-D image), how many points to sample, the
options it takes from the config, how its output becomes 6-DoF rows, and the words for "nothing
found". ``candidates_for`` picks the generator from the runner's ``model_type``; the detector
around it has no model-specific branches.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from graspnet_edge_ros.camera import CameraIntrinsics, PreparedCloud, Workspace
from graspnet_edge_ros.config import DetectorConfig
from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.planar.lifting import LiftingOptions, lift_planar_grasps
from graspnet_edge_ros.planar.preprocess import crop_center_from_mask
from graspnet_edge_ros.planar.types import PLANAR_MODEL_TYPES
from graspnet_edge_ros.postprocess import filters
from graspnet_edge_ros.postprocess.decode import (DecodeConfig, decode_grasps, head_outcomes, object_seed_mask,
                                                 require_decode_inputs)
from graspnet_edge_ros.runtime.health import check_raw_outputs
from graspnet_edge_ros.support_plane import SupportPlane
from graspnet_edge_ros.timing import StageTimer

TABLE_FIT_POINTS = 5000  # planar models: the sample only feeds the support-plane fit


class GraspModelRunner(Protocol):
    """What ``GraspDetector`` needs of a model runner.

    Attributes:
        model_id: human-readable id (file name + short hash) published with every result.
        model_type: "graspnet", "grconvnet" or "affga" (``formats.MODEL_TYPES``): picks the candidate generator.
        num_points: the fixed point count the model needs, or None when any count (or no points) works.
        last_timings_ms: per-stage times of the last call (may be empty).

    Calling it runs the model: GraspNet ``runner(points, seed_gate=gate)`` -> raw outputs (official
    names; the runner may skip the grasp heads of the seeds ``gate`` rejects, see ``SeedGate``, or
    ignore it); planar ``runner(color_rgb, depth_m)`` -> ``PlanarGrasps`` in full-image pixels.
    """

    model_id: str
    model_type: str
    num_points: int | None
    last_timings_ms: dict[str, float]

    def __call__(self, *inputs, **options): ...


@dataclass(frozen=True)
class ImageFrame:
    """The image inputs of one frame next to the prepared cloud (what image models read)."""

    color: np.ndarray | None
    depth_m: np.ndarray
    intrinsics: CameraIntrinsics
    workspace: Workspace | None


class GraspNetCandidates:
    """GraspNet: sampled points -> raw outputs -> the official decode."""

    needs_image = False       # reads the sampled points only (detect_cloud is enough)
    top_down_only = False     # trained on every view
    samples_targets = True    # target objects get a denser sample (FPS spreads seeds by space)
    no_detection_reason = "the model found no object seeds in the workspace"

    def __init__(self, runner: GraspModelRunner):
        self.runner = runner
        # Runners written before the seed gate take only the points: the gate then runs after them.
        self._runner_takes_gate = accepts_keyword(runner, "seed_gate")

    def configure(self, config: DetectorConfig) -> None:
        """Nothing to pass on: the decode settings are read per frame."""

    def num_sampled_points(self, config: DetectorConfig) -> int:
        return config.camera.num_points if self.runner.num_points is None else self.runner.num_points

    def generate(self, config: DetectorConfig, cloud: PreparedCloud, frame: ImageFrame | None, timer: StageTimer,
                 counts: dict, context) -> tuple[GraspGroup, list]:
        """(decoded grasps, extra filter results) of one frame."""
        decode_config = DecodeConfig(config.decode.decode_width_clamp_m, config.decode.grasp_max_tolerance_m)
        gate = (SeedGate(context.head_free_filters, config.gripper.gripper_min_width_m, decode_config)
                if context.head_free_filters is not None else None)
        with timer("model"):
            raw = (self.runner(cloud.sampled, seed_gate=gate) if gate is not None and self._runner_takes_gate
                   else self.runner(cloud.sampled))
            check_raw_outputs(raw)
        record_model_timings(self.runner, timer)
        with timer("decode"):
            grasps = decode_grasps(raw, decode_config, seed_mask=None if gate is None else gate.seed_mask(raw))
        counts["decoded"] = len(grasps)
        if gate is not None:  # the skipped seeds' grasps count as decoded, and as rejected by their filter
            counts["decoded"] += gate.rejected_total
            counts["heads_skipped"] = gate.rejected_total
            counts.update({f"rejected_{reason}": count for reason, count in gate.rejected.items()})
        return grasps, []


class SeedGate:
    """Which object seeds can make a grasp that passes the filters: the rest need no grasp head.

    Before the grasp head runs, a seed's point and approach are known; its angle class, depth
    class, width and score are not. A seed is dropped when no (angle, depth) class at the
    gripper's minimum width passes the filters that read neither score nor width
    (``head_free_filters``: table, executability, approach cone, target; they never pass a grasp at a
    larger width that they reject at the minimum). What is published is then what it would be with every head
    computed; the split runtime skips those seeds' heads. That is 15 % of the object seeds on the
    masked example frame, and 80-95 % on rendered table scenes, where the network takes much of
    the table for objects (``benchmarks/bench_pipeline.py``: model 1.2-1.9x faster there).

    Per frame. Called by the runner (``runner(points, seed_gate=gate)``) or, for runners that
    compute every head, by ``seed_mask``; ``rejected`` counts dropped seeds per reason: the first
    filter rejecting every grasp of the seed, "unreachable_seed" when only filters together do.
    """

    def __init__(self, head_free_filters: Callable[[GraspGroup], list], min_width: float, decode_config: DecodeConfig):
        self.head_free_filters = head_free_filters
        self.min_width = min_width
        self.decode_config = decode_config
        self.rejected: dict[str, int] = {}

    def __call__(self, centers: np.ndarray, approaching: np.ndarray, num_angle: int, num_depth: int) -> np.ndarray:
        """(Ns,) bool, True = some grasp of the seed can pass. centers = fp2_xyz, approaching = -top view xyz."""
        self.rejected = {}
        if len(centers) == 0:
            return np.zeros(0, bool)
        outcomes = head_outcomes(centers, approaching, num_angle, num_depth, self.min_width, self.decode_config)
        results = self.head_free_filters(outcomes)
        keep_rows = np.logical_and.reduce([result.keep for result in results]) if results else \
            np.ones(len(outcomes), bool)
        passed = keep_rows.reshape(len(centers), -1).any(axis=1)
        undecided = ~passed
        for result in results:
            rejects_all = undecided & ~result.keep.reshape(len(centers), -1).any(axis=1)
            if rejects_all.any():
                self.rejected[result.reason] = int(rejects_all.sum())
                undecided &= ~rejects_all
        if undecided.any():
            self.rejected["unreachable_seed"] = int(undecided.sum())
        return passed

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def seed_mask(self, raw: dict) -> np.ndarray | None:
        """(S,) bool object seeds the gate passes, for a runner that computed every head; None when
        the runner applied the gate itself (``grasp_seed_gate``, which the decoder reads)."""
        if "grasp_seed_gate" in raw:
            return None
        require_decode_inputs(raw)
        object_seeds = object_seed_mask(np.asarray(raw["objectness_score"], np.float32)[0])
        num_angle, _, num_depth = np.asarray(raw["grasp_score_pred"]).shape[1:]
        passed = object_seeds.copy()
        passed[object_seeds] = self(np.asarray(raw["fp2_xyz"], np.float32)[0][object_seeds],
                                    -np.asarray(raw["grasp_top_view_xyz"], np.float32)[0][object_seeds],
                                    num_angle, num_depth)
        return passed


class PlanarCandidates:
    """GR-ConvNet / AFFGA-Net: RGB-D image -> pixel grasps -> 6-DoF rows (lifted with the depth)."""

    needs_image = True        # reads the RGB-D image; the sample only feeds the table fit
    top_down_only = True      # top-down networks
    samples_targets = False
    no_detection_reason = "no peak of the planar quality map reached planar_min_quality"

    def __init__(self, runner: GraspModelRunner):
        self.runner = runner
        self._crop_centre_cache: tuple[np.ndarray, tuple[float, float]] | None = None

    def configure(self, config: DetectorConfig) -> None:
        """The planar_* parameters become the runner's decode options."""
        self.runner.decode_options = dataclasses.replace(
            self.runner.decode_options, num_grasps=config.planar.planar_num_grasps,
            min_quality=None if config.planar.planar_min_quality < 0 else config.planar.planar_min_quality,
            width_scale=config.planar.planar_width_scale)

    def num_sampled_points(self, config: DetectorConfig) -> int:
        # The network reads the image; the sample only feeds the table fit, which uses 5000.
        return min(config.camera.num_points, TABLE_FIT_POINTS)

    def generate(self, config: DetectorConfig, cloud: PreparedCloud, frame: ImageFrame | None, timer: StageTimer,
                 counts: dict, context) -> tuple[GraspGroup, list]:
        """(lifted grasps, [workspace filter]): grasps outside the workspace are filtered, not dropped here."""
        if frame is None:
            raise InputError("a planar model needs the RGB-D image, not only points: call detect()")
        self._centre_crop(frame.workspace)
        with timer("model"):
            planar = self.runner(frame.color, frame.depth_m)
        record_model_timings(self.runner, timer)
        with timer("decode"):
            options = LiftingOptions(depth_window_px=config.planar.planar_depth_window_px,
                                     insertion_depth_m=config.planar.planar_insertion_depth_m)
            lifted = lift_planar_grasps(planar, frame.depth_m, frame.intrinsics, options)
        counts["decoded"] = len(planar)
        counts["rejected_no_depth"] = int(np.count_nonzero(~lifted.kept))
        # GraspNet's seeds come from workspace points; a planar grasp pixel may lie anywhere.
        rows, cols = np.asarray(planar.rows)[lifted.kept], np.asarray(planar.cols)[lifted.kept]
        z = lifted.grasps.translations[:, 2]
        keep = (z > config.camera.min_depth_m) & (z <= config.camera.max_depth_m)
        if frame.workspace is not None:
            keep &= inside_workspace(frame.workspace, rows, cols, lifted.grasps.translations)
        if context.auto_workspace and context.plane is not None:
            keep &= inside_auto_workspace(config, lifted.grasps.translations, context.plane)
        return lifted.grasps, [filters.FilterResult("workspace", keep)]

    def _centre_crop(self, workspace: Workspace | None) -> None:
        """Centre the network's crop on the workspace mask (the image centre without a mask)."""
        centre = None
        if workspace is not None and workspace.mask is not None:
            if self._crop_centre_cache is None or self._crop_centre_cache[0] is not workspace.mask:
                self._crop_centre_cache = (workspace.mask, crop_center_from_mask(workspace.mask))
            centre = self._crop_centre_cache[1]
        if self.runner.decode_options.crop_center_rc != centre:
            self.runner.decode_options = dataclasses.replace(self.runner.decode_options, crop_center_rc=centre)


def accepts_keyword(function, name: str) -> bool:
    """Whether ``function`` (any callable) can be called with the keyword argument ``name``."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return any(p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.kind is p.VAR_KEYWORD
               for p in parameters)


CandidateGenerator = GraspNetCandidates | PlanarCandidates
CANDIDATE_GENERATORS = {"graspnet": GraspNetCandidates, **{t: PlanarCandidates for t in PLANAR_MODEL_TYPES}}


def candidates_for(runner: GraspModelRunner) -> CandidateGenerator:
    """The candidate generator of ``runner.model_type``; ConfigError for a type no generator serves."""
    generator = CANDIDATE_GENERATORS.get(runner.model_type)
    if generator is None:
        raise ConfigError(f"runner model_type {runner.model_type!r} has no candidate generator "
                          f"(known: {', '.join(CANDIDATE_GENERATORS)})")
    return generator(runner)


def record_model_timings(runner: GraspModelRunner, timer: StageTimer) -> None:
    for name, value in runner.last_timings_ms.items():
        timer.ms[f"model.{name}"] = value


def inside_auto_workspace(config: DetectorConfig, points: np.ndarray, plane: SupportPlane) -> np.ndarray:
    """Keep-mask of points in the height band above ``plane`` and within its extent."""
    return plane.in_band(points, config.camera.workspace_min_height_m, config.camera.workspace_max_height_m,
                         config.camera.workspace_extent_margin_m)


def inside_workspace(workspace: Workspace, rows: np.ndarray, cols: np.ndarray,
                     translations: np.ndarray) -> np.ndarray:
    """Keep-mask of grasps whose pixel lies in the workspace mask and whose point lies in the box."""
    keep = np.ones(len(rows), bool)
    if workspace.mask is not None:
        mask = np.asarray(workspace.mask)
        height, width = mask.shape
        r = np.clip(np.rint(rows).astype(int), 0, height - 1)
        c = np.clip(np.rint(cols).astype(int), 0, width - 1)
        keep &= mask[r, c] != 0
    if workspace.min_xyz is not None:
        keep &= np.all((translations >= np.asarray(workspace.min_xyz)) & (translations <= np.asarray(workspace.max_xyz)), axis=1)
    return keep
