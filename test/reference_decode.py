"""Straightforward torch transcription of graspnet-baseline ``pred_decode`` (test reference only).

Written step by step from the documented official code (graspnet_spec.md §5.2, §6) so the numpy
decoder can be compared against it; the only deliberate change is ``torch.cross(..., dim=-1)``
(the official default-dim call picks the wrong axis when exactly three grasps are decoded).
"""
import numpy as np
import torch

GRASP_MAX_WIDTH = 0.1
GRASP_MAX_TOLERANCE = 0.05


def batch_viewpoint_params_to_matrix(batch_towards, batch_angle):
    axis_x = batch_towards
    ones = torch.ones(axis_x.shape[0], dtype=axis_x.dtype)
    zeros = torch.zeros(axis_x.shape[0], dtype=axis_x.dtype)
    axis_y = torch.stack([-axis_x[:, 1], axis_x[:, 0], zeros], dim=-1)
    mask_y = torch.norm(axis_y, dim=-1) == 0
    axis_y[mask_y, 1] = 1
    axis_x = axis_x / torch.norm(axis_x, dim=-1, keepdim=True)
    axis_y = axis_y / torch.norm(axis_y, dim=-1, keepdim=True)
    axis_z = torch.cross(axis_x, axis_y, dim=-1)
    sin, cos = torch.sin(batch_angle), torch.cos(batch_angle)
    r1 = torch.stack([ones, zeros, zeros, zeros, cos, -sin, zeros, sin, cos], dim=-1).reshape([-1, 3, 3])
    r2 = torch.stack([axis_x, axis_y, axis_z], dim=-1)
    return torch.matmul(r2, r1)


def pred_decode(raw: dict) -> np.ndarray:
    """Batch item 0 of numpy raw outputs -> (Ns, 17) float32, object seeds in seed order."""
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in raw.items()}
    objectness_score = t["objectness_score"][0].float()
    grasp_score = t["grasp_score_pred"][0].float()
    grasp_center = t["fp2_xyz"][0].float()
    approaching = -t["grasp_top_view_xyz"][0].float()
    grasp_angle_class_score = t["grasp_angle_cls_pred"][0]
    grasp_width = torch.clamp(1.2 * t["grasp_width_pred"][0], min=0, max=GRASP_MAX_WIDTH)
    grasp_tolerance = t["grasp_tolerance_pred"][0]

    grasp_angle_class = torch.argmax(grasp_angle_class_score, 0)
    grasp_angle = grasp_angle_class.float() / 12 * np.pi
    grasp_angle_class_ = grasp_angle_class.unsqueeze(0)
    grasp_score = torch.gather(grasp_score, 0, grasp_angle_class_).squeeze(0)
    grasp_width = torch.gather(grasp_width, 0, grasp_angle_class_).squeeze(0)
    grasp_tolerance = torch.gather(grasp_tolerance, 0, grasp_angle_class_).squeeze(0)

    grasp_depth_class = torch.argmax(grasp_score, 1, keepdim=True)
    grasp_depth = (grasp_depth_class.float() + 1) * 0.01
    grasp_score = torch.gather(grasp_score, 1, grasp_depth_class)
    grasp_angle = torch.gather(grasp_angle, 1, grasp_depth_class)
    grasp_width = torch.gather(grasp_width, 1, grasp_depth_class)
    grasp_tolerance = torch.gather(grasp_tolerance, 1, grasp_depth_class)

    objectness_mask = torch.argmax(objectness_score, 0) == 1
    grasp_score = grasp_score[objectness_mask]
    grasp_width = grasp_width[objectness_mask]
    grasp_depth = grasp_depth[objectness_mask]
    approaching = approaching[objectness_mask]
    grasp_angle = grasp_angle[objectness_mask]
    grasp_center = grasp_center[objectness_mask]
    grasp_tolerance = grasp_tolerance[objectness_mask]
    grasp_score = grasp_score * grasp_tolerance / GRASP_MAX_TOLERANCE

    ns = grasp_angle.size(0)
    rotation_matrix = batch_viewpoint_params_to_matrix(approaching.view(ns, 3), grasp_angle.view(ns)).view(ns, 9)
    grasp_height = 0.02 * torch.ones_like(grasp_score)
    obj_ids = -1 * torch.ones_like(grasp_score)
    return torch.cat([grasp_score, grasp_width, grasp_height, grasp_depth, rotation_matrix, grasp_center, obj_ids],
                     dim=-1).numpy()
