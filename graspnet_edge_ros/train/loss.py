"""The official GraspNet losses (``models/loss.py``) and their logged metrics.

total = objectness CE + view MSE (object seeds, all views) + 0.2 x (score Huber + angle CE +
width Huber / GRASP_MAX_WIDTH + tolerance Huber / GRASP_MAX_TOLERANCE), the grasp terms at
the target angle a* = argmax over angles of the top-view label, masked to object seeds whose
target label exceeds THRESH_BAD, each a masked mean sum(l * m) / (sum(m) + 1e-6).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from graspnet_edge_ros.train.labels import GRASP_MAX_TOLERANCE, GRASP_MAX_WIDTH, THRESH_BAD, THRESH_GOOD

GRASP_LOSS_WEIGHT = 0.2


def huber_loss(error: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Official ``huber_loss``: 0.5 q² + delta (|e| − q), q = min(|e|, delta); elementwise."""
    abs_error = torch.abs(error)
    quadratic = torch.clamp(abs_error, max=delta)
    return 0.5 * quadratic ** 2 + delta * (abs_error - quadratic)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.sum(values * mask) / (mask.sum() + 1e-6)


def _safe_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of a selection, 0 when empty (the official ``.mean()`` gives NaN there)."""
    return values.mean() if values.numel() else values.sum()


def objectness_loss(objectness_score: torch.Tensor, seed_objectness: torch.Tensor, stats: dict) -> torch.Tensor:
    """CE over (B, 2, Ns) logits against the seeds' objectness labels (B, Ns)."""
    loss = F.cross_entropy(objectness_score, seed_objectness)
    pred = torch.argmax(objectness_score, 1)
    correct = (pred == seed_objectness).float()
    stats["stage1_objectness_acc"] = correct.mean()
    stats["stage1_objectness_prec"] = _safe_mean(correct[pred == 1])
    stats["stage1_objectness_recall"] = _safe_mean(correct[seed_objectness == 1])
    return loss


def view_loss(view_score: torch.Tensor, view_label: torch.Tensor, seed_objectness: torch.Tensor,
              stats: dict) -> torch.Tensor:
    """MSE over all views of object seeds."""
    mask = (seed_objectness > 0).unsqueeze(-1).expand_as(view_score)
    stats["stage1_pos_view_pred_count"] = ((view_score >= THRESH_GOOD) & mask).sum().float()
    return _safe_mean(F.mse_loss(view_score, view_label, reduction="none")[mask])


def grasp_loss(end_points: dict, targets: dict, seed_objectness: torch.Tensor, stats: dict) -> torch.Tensor:
    """Score, angle-class, width and tolerance terms at the target angle (official compute_grasp_loss)."""
    labels = targets["grasp_label"]                                   # (B, Ns, A, D)
    offsets = targets["grasp_offset"]                                 # (B, Ns, A, D, 3)
    num_angle = labels.shape[2]
    target_inds = torch.argmax(labels, dim=2, keepdim=True)          # (B, Ns, 1, D)
    target_labels = torch.gather(labels, 2, target_inds).squeeze(2)
    target_widths = torch.gather(offsets[..., 2], 2, target_inds).squeeze(2)
    target_tolerance = torch.gather(targets["grasp_tolerance"], 2, target_inds).squeeze(2)
    mask = ((seed_objectness > 0).unsqueeze(-1) & (target_labels > THRESH_BAD)).float()  # (B, Ns, D)

    pred_inds = target_inds.transpose(1, 2)                           # (B, 1, Ns, D)
    score = torch.gather(end_points["grasp_score_pred"], 1, pred_inds).squeeze(1)
    score_loss = _masked_mean(huber_loss(score - target_labels), mask)

    target_angle = target_inds.squeeze(2)                             # (B, Ns, D)
    angle_logits = end_points["grasp_angle_cls_pred"]                 # (B, A, Ns, D)
    angle_loss = _masked_mean(F.cross_entropy(angle_logits, target_angle, reduction="none"), mask)
    with torch.no_grad():
        diff = torch.abs(torch.argmax(angle_logits, 1) - target_angle)[mask.bool()]
        for degrees, steps in (("0", 0), ("15", 1), ("30", 2)):
            near = (diff <= steps) | (diff >= num_angle - steps) if steps else diff == 0
            stats[f"stage2_grasp_angle_class_acc/{degrees}_degree"] = _safe_mean(near.float())

    width = torch.gather(end_points["grasp_width_pred"], 1, pred_inds).squeeze(1)
    width_loss = _masked_mean(huber_loss((width - target_widths) / GRASP_MAX_WIDTH), mask)
    tolerance = torch.gather(end_points["grasp_tolerance_pred"], 1, pred_inds).squeeze(1)
    tolerance_loss = _masked_mean(huber_loss((tolerance - target_tolerance) / GRASP_MAX_TOLERANCE), mask)

    stats["loss/stage2_grasp_score_loss"] = score_loss
    stats["loss/stage2_grasp_angle_class_loss"] = angle_loss
    stats["loss/stage2_width_loss"] = width_loss
    stats["loss/stage2_tolerance_loss"] = tolerance_loss
    return score_loss + angle_loss + width_loss + tolerance_loss


def graspnet_loss(end_points: dict, targets: dict, objectness_label: torch.Tensor
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total official loss and the logged statistics (detached scalars).

    Args:
        end_points: model outputs (objectness_score, view_score, fp2_inds, grasp_*_pred).
        targets: ``labels.generate_grasp_targets`` output.
        objectness_label: (B, N) int64 labels of the input points.
    """
    stats: dict[str, torch.Tensor] = {}
    seed_objectness = torch.gather(objectness_label, 1, end_points["fp2_inds"].long())
    obj = objectness_loss(end_points["objectness_score"], seed_objectness, stats)
    view = view_loss(end_points["view_score"], targets["view_label"], seed_objectness, stats)
    grasp = grasp_loss(end_points, targets, seed_objectness, stats)
    total = obj + view + GRASP_LOSS_WEIGHT * grasp
    stats["loss/stage1_objectness_loss"] = obj
    stats["loss/stage1_view_loss"] = view
    stats["loss/overall_loss"] = total
    return total, {key: value.detach() for key, value in stats.items()}
