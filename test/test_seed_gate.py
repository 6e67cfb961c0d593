"""The seed gate: object seeds none of whose grasps can pass the filters get no grasp head.

What is published must be exactly what it is with every head computed (the gate only saves work),
on the real capture and on rendered table scenes the gate was not tuned on, with and without a
target object; the per-reason counts must still add up.
"""
from __future__ import annotations

import numpy as np
import pytest

from graspnet_edge_ros.camera import CameraIntrinsics
from graspnet_edge_ros.candidates import SeedGate
from graspnet_edge_ros.config import DetectorConfig
from graspnet_edge_ros.model.views import generate_grasp_views
from graspnet_edge_ros.pipeline import GraspDetector, _FrameContext
from graspnet_edge_ros.postprocess.decode import DecodeConfig, head_outcomes
from graspnet_edge_ros.postprocess.filters import apply_filters
from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner
from graspnet_edge_ros.support_plane import SupportPlane


class _EveryHead:
    """A runner written before the seed gate (it takes the points only), over the split runner: every
    object seed's head is computed, as by the torch reference, so the detector gates after the model."""

    def __init__(self, runner):
        self._runner = runner
        self.model_id, self.model_type, self.num_points = runner.model_id, runner.model_type, runner.num_points
        self.last_timings_ms = {}

    def __call__(self, points):
        return self._runner(points)


class _Recording:
    """The split runner, keeping its last raw outputs."""

    def __init__(self, runner):
        self._runner = runner
        self.model_id, self.model_type, self.num_points = runner.model_id, runner.model_type, runner.num_points
        self.last_raw = None

    @property
    def last_timings_ms(self):
        return self._runner.last_timings_ms

    def __call__(self, points, **options):
        self.last_raw = self._runner(points, **options)
        return self.last_raw


def _detect(detector, frame, gated: bool):
    detector.gate_seeds = gated
    detector.reset_support_plane()
    return detector.detect(*frame["args"], **frame.get("kwargs", {}))


def _assert_same_published(gated, ungated, name: str):
    assert gated.status == ungated.status, name
    assert gated.grasps.array.shape == ungated.grasps.array.shape, name
    np.testing.assert_array_equal(gated.grasps.array, ungated.grasps.array, err_msg=name)
    # Every grasp is still accounted for: the skipped seeds' grasps are counted under a reason.
    assert gated.counts["decoded"] == ungated.counts["decoded"], name
    assert sum(v for k, v in gated.counts.items() if k.startswith("rejected_")) == \
        sum(v for k, v in ungated.counts.items() if k.startswith("rejected_")), name


@pytest.fixture(scope="module")
def split_runner(split_model_dir):
    return load_graspnet_runner(split_model_dir, "onnxruntime")


def _rendered_frames():
    from graspnet_edge_ros.sim.scenes import render_scene

    frames = []
    for seed, view in ((310, "oblique"), (311, "oblique"), (312, "topdown")):
        scene = render_scene(seed, view=view)
        args = (scene.color, scene.depth_mm, "16UC1", scene.intrinsics)
        labels = sorted(set(np.unique(scene.labels)) - {0})
        frames.append({"name": f"scene {seed} {view}", "args": args})
        frames.append({"name": f"scene {seed} {view}, target {labels[0]}", "args": args,
                       "kwargs": {"object_labels": scene.labels, "target_object_ids": [int(labels[0])]}})
    return frames


@pytest.fixture(scope="module")
def rendered_frames():
    return _rendered_frames()


def test_gated_heads_publish_what_every_head_publishes(split_runner, rendered_frames, example_scene, shared_dir):
    recording = _Recording(split_runner)
    detector = GraspDetector(DetectorConfig.from_flat(model_path="unused", sampling_seed=0), runner=recording)
    intrinsics = CameraIntrinsics.from_matrix(example_scene["K"], 1280, 720)
    example = {"name": "example capture, unmasked", "args": (example_scene["color"], example_scene["depth"], "16UC1",
                                                            intrinsics)}
    skipped_total = 0
    for frame in [example] + rendered_frames:
        # The example capture's depth is in 0.1 mm units; the rendered scenes' in mm.
        scale = 1.0 / example_scene["factor_depth"] if frame is example else 0.001
        detector.update_config(DetectorConfig.from_flat(model_path="unused", sampling_seed=0, depth_scale=scale))
        gated = _detect(detector, frame, True)
        raw = recording.last_raw
        ungated = _detect(detector, frame, False)
        assert "grasp_seed_gate" not in recording.last_raw
        _assert_same_published(gated, ungated, frame["name"])
        object_seeds = raw["objectness_score"][0, 1] > raw["objectness_score"][0, 0]
        skipped = int(np.count_nonzero(object_seeds & ~raw["grasp_seed_gate"][0]))
        # The skipped heads were never computed (NaN), and the counts say where they went.
        assert np.isnan(raw["grasp_score_pred"][0][:, object_seeds & ~raw["grasp_seed_gate"][0]]).all()
        skipped_total += skipped
    assert skipped_total > 0  # the gate did skip heads, so the comparison above could fail


def test_a_runner_computing_every_head_is_gated_after_the_model(split_runner, rendered_frames):
    frame = rendered_frames[1]  # with a target
    config = DetectorConfig.from_flat(model_path="unused", sampling_seed=0)
    in_model = _detect(GraspDetector(config, runner=split_runner), frame, True)
    after_model = _detect(GraspDetector(config, runner=_EveryHead(split_runner)), frame, True)
    np.testing.assert_array_equal(in_model.grasps.array, after_model.grasps.array)
    assert in_model.counts == after_model.counts
    assert in_model.timings_ms["model.seed_gate"] > 0 and "model.seed_gate" not in after_model.timings_ms


def test_no_grasp_of_a_dropped_seed_passes_at_any_angle_depth_or_width(split_runner):
    """Fuzz: random seeds around a table; every grasp a dropped seed could decode to fails a filter."""
    rng = np.random.default_rng(7)
    detector = GraspDetector(DetectorConfig.from_flat(model_path="unused", gripper_min_width_m=0.01),
                             runner=split_runner)
    context = _FrameContext(plane=SupportPlane.from_coefficients([0.0, -0.5, -0.866, 0.6]))
    views = generate_grasp_views(300)
    count = 400
    plane_point = np.array([0.0, 0.3, 0.52])
    centers = (plane_point + rng.normal(scale=[0.15, 0.05, 0.05], size=(count, 3))).astype(np.float32)
    approaching = -views[rng.integers(0, len(views), count)].astype(np.float32)
    gate = SeedGate(lambda grasps: detector._head_free_filters(context, grasps), 0.01, DecodeConfig())
    passed = gate(centers, approaching, 12, 4)
    assert 0 < passed.sum() < count
    dropped = np.flatnonzero(~passed)
    for width in (0.01, 0.03, 0.1):
        grasps = head_outcomes(centers[dropped], approaching[dropped], 12, 4, width)
        grasps.array[:, 0] = 1.0  # any score passes min_score 0
        outcome = apply_filters(grasps, detector._filter_results(grasps, context))
        assert len(outcome.grasps) == 0
    assert sum(gate.rejected.values()) == len(dropped)


def test_gate_rows_are_the_decoders_rows_bit_for_bit():
    """Each decoded grasp equals its (angle, depth) row of head_outcomes in every geometry column,
    so a filter cannot decide differently on the two (a 1-ulp difference could flip a threshold)."""
    from graspnet_edge_ros.grasps import DEPTH, HEIGHT, ROTATION, TRANSLATION
    from graspnet_edge_ros.postprocess.decode import decode_grasps

    rng = np.random.default_rng(3)
    seeds, angles, depths = 200, 12, 4
    views = generate_grasp_views(300)
    top_view = views[rng.integers(0, len(views), seeds)].astype(np.float32)
    centers = rng.normal(scale=0.2, size=(seeds, 3)).astype(np.float32)
    angle_class = rng.integers(0, angles, (seeds, depths))
    angle_logits = np.zeros((angles, seeds, depths), np.float32)
    np.put_along_axis(angle_logits, angle_class[None], 1.0, axis=0)
    raw = {"objectness_score": np.stack([np.zeros(seeds), np.ones(seeds)])[None].astype(np.float32),
           "fp2_xyz": centers[None], "grasp_top_view_xyz": top_view[None],
           "grasp_score_pred": rng.uniform(size=(1, angles, seeds, depths)).astype(np.float32),
           "grasp_angle_cls_pred": angle_logits[None],
           "grasp_width_pred": rng.uniform(0, 0.08, (1, angles, seeds, depths)).astype(np.float32),
           "grasp_tolerance_pred": rng.uniform(0, 0.05, (1, angles, seeds, depths)).astype(np.float32)}
    decoded = decode_grasps(raw)
    outcomes = head_outcomes(centers, -top_view, angles, depths, 0.0)
    depth_class = np.rint(decoded.depths / 0.01).astype(int) - 1
    chosen_angle = angle_class[np.arange(seeds), depth_class]
    rows = outcomes.array[(np.arange(seeds) * angles + chosen_angle) * depths + depth_class]
    for columns in (ROTATION, TRANSLATION, DEPTH, HEIGHT):
        np.testing.assert_array_equal(rows[:, columns], decoded.array[:, columns])
