"""Training pieces on hand-checkable cases: view/angle/depth index mapping, score transform, losses,
and the tolerance generator (against the official loop written out literally)."""
import math

import numpy as np
import pytest
import torch

from graspnet_edge_ros.model.views import generate_grasp_views, viewpoint_params_to_matrix
from graspnet_edge_ros.train.checkpoint import fit_optimizer_state, official_state_dict
from graspnet_edge_ros.train.labels import (assign_views, generate_grasp_targets, grasp_score_labels,
                                            nearest_indices)
from graspnet_edge_ros.train.loss import graspnet_loss, huber_loss
from graspnet_edge_ros.train.tolerance import RADII, tolerance_labels
from graspnet_edge_ros.train.trainer import bn_momentum, learning_rate

V, A, D = 300, 12, 4
VIEWS = torch.from_numpy(generate_grasp_views(V))


def rotation_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float32)


def one_object_batch(pose: np.ndarray, points: np.ndarray, labels: np.ndarray, offsets: np.ndarray,
                     tolerance: np.ndarray) -> dict:
    as_t = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    return {"object_poses_list": [[as_t(pose)]], "grasp_points_list": [[as_t(points)]],
            "grasp_labels_list": [[as_t(labels)]], "grasp_offsets_list": [[as_t(offsets)]],
            "grasp_tolerance_list": [[as_t(tolerance)]]}


def label_arrays(num_points: int):
    labels = np.zeros((num_points, V, A, D), np.float32)
    offsets = np.zeros((num_points, V, A, D, 3), np.float32)
    offsets[..., 0] = (np.arange(A) * np.pi / A)[None, None, :, None]
    offsets[..., 1] = ((np.arange(D) + 1) * 0.01)[None, None, None, :]
    offsets[..., 2] = 0.05
    return labels, offsets, np.zeros((num_points, V, A, D), np.float32)


# -- nearest neighbours and views ----------------------------------------------------------------

def test_nearest_indices_are_zero_based():
    references = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    queries = torch.tensor([[0.9, 0.1, 0], [0.1, 0.8, 0], [0.05, 0, 0], [2, 0, 0]])
    assert nearest_indices(queries, references).tolist() == [1, 2, 0, 1]


def test_assign_views_identity_and_rotation():
    assert assign_views(torch.eye(3), VIEWS).tolist() == list(range(V))
    rot = rotation_z(0.7)
    views = VIEWS.numpy().astype(np.float64)
    rotated = views @ rot.T.astype(np.float64)
    brute = [int(np.argmin(((rotated - v) ** 2).sum(axis=1))) for v in views]
    assert assign_views(torch.from_numpy(rot), VIEWS).tolist() == brute


def test_grasp_score_labels():
    friction = torch.tensor([0.1, 1.0, 0.0, -1.0, 0.5, 0.4])
    widths = torch.tensor([0.05, 0.05, 0.05, 0.05, 0.11, 0.1])
    out = grasp_score_labels(friction, widths, torch.tensor(1.0))
    expected = [math.log(10), 0.0, 0.0, 0.0, 0.0, math.log(2.5)]
    assert out.tolist() == pytest.approx(expected, abs=1e-6)


def test_targets_map_view_angle_depth_indices():
    points = np.array([[0.0, 0, 0], [0.1, 0, 0]], np.float32)
    pose = np.hstack([np.eye(3), [[0.0], [0.0], [0.5]]]).astype(np.float32)
    labels, offsets, tolerance = label_arrays(2)
    labels[0, 7, 3, 2] = 0.1                 # best grasp: view 7, angle 3 (45°), depth 2 (0.03 m)
    labels[0, 7, 5, 2] = 0.4
    labels[0, 20, 0, 0] = 1.0                # u_max = 1.0
    labels[0, 30, 1, 1] = 0.2
    offsets[0, 30, 1, 1, 2] = 0.12           # too wide: masked to 0
    tolerance[0, 7, 3, 2] = 0.02
    seeds = torch.tensor([[[0.001, 0, 0.5], [0.099, 0, 0.5], [0.0, 0.002, 0.5]]])
    top = torch.tensor([[7, 7, 20]])
    targets = generate_grasp_targets(seeds, top, one_object_batch(pose, points, labels, offsets, tolerance), VIEWS)

    ln10 = math.log(10)
    assert targets["grasp_point"][0, 0].tolist() == pytest.approx([0, 0, 0.5])
    assert targets["grasp_point"][0, 1].tolist() == pytest.approx([0.1, 0, 0.5])
    view_label = targets["view_label"][0]
    assert view_label[0, 7].item() == pytest.approx(ln10, abs=1e-6)
    assert view_label[0, 20].item() == pytest.approx(0.0, abs=1e-7)       # mu = u_max -> ln 1
    assert view_label[0, 30].item() == 0.0
    assert int(torch.count_nonzero(view_label[0])) == 1
    assert torch.count_nonzero(view_label[1]) == 0
    label0 = targets["grasp_label"][0, 0]
    assert label0[3, 2].item() == pytest.approx(ln10, abs=1e-6)
    assert label0[5, 2].item() == pytest.approx(math.log(2.5), abs=1e-6)
    assert int(torch.count_nonzero(label0)) == 2
    assert targets["grasp_tolerance"][0, 0, 3, 2].item() == pytest.approx(0.02)
    assert targets["grasp_offset"][0, 0, 3, 2].tolist() == pytest.approx([3 * math.pi / 12, 0.03, 0.05])
    expected_rot = viewpoint_params_to_matrix(-VIEWS[[7, 7, 20]].numpy(), np.zeros(3))
    assert np.allclose(targets["grasp_view_rot"][0].numpy(), expected_rot, atol=1e-6)


def test_targets_follow_the_object_rotation():
    rot = rotation_z(1.1)
    pose = np.hstack([rot, [[0.0], [0.0], [0.5]]]).astype(np.float32)
    points = np.array([[0.02, 0.0, 0.0]], np.float32)
    labels, offsets, tolerance = label_arrays(1)
    camera_view = 42
    views = VIEWS.numpy().astype(np.float64)
    rotated = views @ rot.T.astype(np.float64)
    object_view = int(np.argmin(((rotated - views[camera_view]) ** 2).sum(axis=1)))
    labels[0, object_view, 6, 1] = 0.1
    labels[0, (object_view + 150) % V, 0, 0] = 1.0
    seeds = torch.from_numpy(rot @ points[0] + pose[:, 3]).reshape(1, 1, 3).float()
    targets = generate_grasp_targets(seeds, torch.tensor([[camera_view]]), one_object_batch(pose, points, labels,
                                                                                             offsets, tolerance), VIEWS)
    assert targets["view_label"][0, 0, camera_view].item() == pytest.approx(math.log(10), abs=1e-6)
    assert targets["grasp_label"][0, 0, 6, 1].item() == pytest.approx(math.log(10), abs=1e-6)
    expected = rot @ viewpoint_params_to_matrix(-views[[object_view]], np.zeros(1))[0]
    assert np.allclose(targets["grasp_view_rot"][0, 0].numpy(), expected, atol=1e-6)
    # The label rotation's approach is close to the camera-frame view it was matched to.
    assert float(targets["grasp_view_rot"][0, 0, :, 0] @ -VIEWS[camera_view]) > 0.95


def test_item_without_objects_gets_empty_labels():
    seeds = torch.rand(1, 4, 3)
    batch = {key: [[]] for key in ("object_poses_list", "grasp_points_list", "grasp_labels_list",
                                   "grasp_offsets_list", "grasp_tolerance_list")}
    targets = generate_grasp_targets(seeds, torch.zeros(1, 4, dtype=torch.long), batch, VIEWS)
    assert torch.equal(targets["grasp_point"], seeds)
    assert targets["view_label"].abs().sum() == 0 and targets["grasp_label"].abs().sum() == 0


# -- losses ---------------------------------------------------------------------------------------

def test_huber_loss_values():
    out = huber_loss(torch.tensor([0.5, 2.0, -3.0, 0.0]))
    assert out.tolist() == pytest.approx([0.125, 1.5, 2.5, 0.0])


def test_graspnet_loss_on_a_constructed_case():
    seeds = 2
    end_points = {
        "fp2_inds": torch.tensor([[0, 2]], dtype=torch.int32),
        "objectness_score": torch.zeros(1, 2, seeds),
        "view_score": torch.zeros(1, seeds, V),
        "grasp_score_pred": torch.zeros(1, A, seeds, D),
        "grasp_angle_cls_pred": torch.zeros(1, A, seeds, D),
        "grasp_width_pred": torch.zeros(1, A, seeds, D),
        "grasp_tolerance_pred": torch.zeros(1, A, seeds, D),
    }
    grasp_label = torch.zeros(1, seeds, A, D)
    grasp_label[0, 0, 4, 0] = 2.0            # seed 0, depth 0: target angle class 4
    grasp_label[0, 1, 2, 3] = 2.0            # seed 1 is background: masked out
    grasp_offset = torch.zeros(1, seeds, A, D, 3)
    grasp_offset[..., 2] = 0.05
    grasp_tolerance = torch.full((1, seeds, A, D), 0.01)
    targets = {"view_label": torch.zeros(1, seeds, V), "grasp_label": grasp_label, "grasp_offset": grasp_offset,
               "grasp_tolerance": grasp_tolerance}
    targets["view_label"][0, 0] = 1.0
    objectness_label = torch.tensor([[1, 1, 0]])
    total, stats = graspnet_loss(end_points, targets, objectness_label)

    grasp = 1.5 + math.log(12) + 0.125 + 0.02            # huber(2), CE of uniform logits, (0.05/0.1), (0.01/0.05)
    assert stats["loss/stage1_objectness_loss"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert stats["loss/stage1_view_loss"].item() == pytest.approx(1.0)
    assert stats["loss/stage2_grasp_score_loss"].item() == pytest.approx(1.5, rel=1e-5)
    assert stats["loss/stage2_grasp_angle_class_loss"].item() == pytest.approx(math.log(12), rel=1e-5)
    assert stats["loss/stage2_width_loss"].item() == pytest.approx(0.125, rel=1e-5)
    assert stats["loss/stage2_tolerance_loss"].item() == pytest.approx(0.02, rel=1e-4)
    assert total.item() == pytest.approx(math.log(2) + 1.0 + 0.2 * grasp, rel=1e-5)


def test_view_loss_without_object_seeds_is_zero_not_nan():
    end_points = {"fp2_inds": torch.tensor([[0]], dtype=torch.int32), "objectness_score": torch.zeros(1, 2, 1),
                  "view_score": torch.ones(1, 1, V), **{k: torch.zeros(1, A, 1, D) for k in (
                      "grasp_score_pred", "grasp_angle_cls_pred", "grasp_width_pred", "grasp_tolerance_pred")}}
    targets = {"view_label": torch.zeros(1, 1, V), "grasp_label": torch.zeros(1, 1, A, D),
               "grasp_offset": torch.zeros(1, 1, A, D, 3), "grasp_tolerance": torch.zeros(1, 1, A, D)}
    total, stats = graspnet_loss(end_points, targets, torch.zeros(1, 1, dtype=torch.long))
    assert math.isfinite(total.item()) and stats["loss/stage1_view_loss"].item() == 0.0


# -- schedules and checkpoint layout ---------------------------------------------------------------

def test_official_schedules():
    lrs = [learning_rate(e, 1e-3, [8, 12, 16], [0.1, 0.1, 0.1]) for e in (0, 7, 8, 11, 12, 16, 17)]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-6, 1e-6])
    assert [bn_momentum(e) for e in (0, 1, 2, 3, 4, 17)] == pytest.approx([0.5, 0.5, 0.25, 0.25, 0.125, 0.5 / 256])
    assert bn_momentum(40) == 0.001


def test_checkpoint_layout_has_conv1d_heads_and_optimizer_state_round_trips():
    from graspnet_edge_ros.model.graspnet import GraspNet

    model = GraspNet()
    state = official_state_dict(model)
    assert len(state) == 162
    assert state["view_estimator.vpmodule.conv1.weight"].shape == (256, 256, 1)
    assert state["grasp_generator.tolerance.conv3.weight"].shape == (12, 128, 1)
    assert state["grasp_generator.crop.mlps.layer0.conv.weight"].shape == (64, 3, 1, 1)
    names = [n for n, _ in model.named_parameters()]
    index = names.index("grasp_generator.operation.conv3.weight")
    stored = {"state": {index: {"step": torch.tensor(3.0), "exp_avg": torch.ones(36, 128, 1)}},
              "param_groups": []}
    fitted = fit_optimizer_state(stored, model)
    assert fitted["state"][index]["exp_avg"].shape == (36, 128, 1, 1)


# -- tolerance labels -----------------------------------------------------------------------------

def official_tolerance_loop(points, scores, mu_thresh=0.55, pos_ratio_thresh=0.8):
    """generate_tolerance_label.py's worker, written out literally (reference)."""
    dists = np.linalg.norm(points[:, np.newaxis, :] - points[np.newaxis, :, :], axis=-1)
    out = np.zeros(scores.shape, np.float32)
    for i in range(len(points)):
        tmp = np.zeros(scores.shape[1:], np.float32)
        for r in [0.001 * x for x in range(51)]:
            in_ball = scores[dists[i] <= r]
            pos_ratio = ((in_ball > 0) & (in_ball <= mu_thresh)).mean(axis=0)
            mask = pos_ratio >= pos_ratio_thresh
            if mask.sum() == 0:
                break
            tmp[mask] = r
        out[i] = tmp
    return out


def test_tolerance_hand_checked():
    points = np.array([[0.0, 0, 0], [0.0025, 0, 0], [0.02, 0, 0]], np.float32)
    scores = np.array([[0.2, 0.2], [0.3, 0.9], [0.9, 0.2]], np.float32)
    out = tolerance_labels(points, scores)
    expected = np.array([[0.019, 0.002], [0.017, 0.0], [0.0, 0.017]], np.float32)
    assert np.array_equal(out, expected)


def test_tolerance_equals_the_official_loop():
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 0.05, (40, 3)).astype(np.float32)
    points[5] = points[4]                                    # a duplicate point (distance 0)
    levels = np.array([-1.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.9], np.float32)
    scores = levels[rng.choice(len(levels), (40, 5, 3, 2), p=[0.1, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1])]
    expected = official_tolerance_loop(points, scores)
    out = tolerance_labels(points, scores)
    assert out.dtype == np.float32 and out.shape == scores.shape
    assert np.array_equal(out, expected)
    assert 0 < np.count_nonzero(out) < out.size and out.max() <= np.float32(RADII[-1])
    assert len(np.unique(out)) > 10                          # a case with many different radii
