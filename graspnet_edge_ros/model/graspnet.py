"""GraspNet-baseline (CVPR 2020) in plain PyTorch, with the official CUDA-operator semantics.

Inference only (``is_training=False`` in the official code). The learned blocks carry the official
state-dict keys; the geometry between them comes from ``graspnet_edge_ros.geometry.torch_ops``,
which reproduces the pointnet2 CUDA kernels exactly (FPS from index 0 with the near-origin skip,
strict-radius first-K ball/cylinder queries padded with the first hit, Euclidean three-NN).

The forward pass returns the official ``end_points`` names with the official shapes (batch B).
"""
from __future__ import annotations

import torch
from torch import nn

from graspnet_edge_ros.geometry import torch_ops
from graspnet_edge_ros.model.config import GraspNetConfig
from graspnet_edge_ros.model.layers import CloudCropMLP, ConvHead, FeaturePropagation, SetAbstraction
from graspnet_edge_ros.model.views import generate_grasp_views


def viewpoint_params_to_matrix_torch(towards: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Torch twin of ``views.viewpoint_params_to_matrix`` ((N,3), (N,) -> (N,3,3)), export friendly.

    Uses ``torch.where`` instead of masked assignment and an explicit cross product (the official
    ``torch.cross`` without ``dim`` picks the wrong axis when exactly three grasps are decoded).
    """
    ax, ay = towards[:, 0], towards[:, 1]
    zeros = torch.zeros_like(ax)
    y_vec = torch.stack([-ay, ax, zeros], dim=1)
    degenerate = (torch.linalg.vector_norm(y_vec, dim=1) == 0).unsqueeze(1)
    y_vec = torch.where(degenerate, torch.tensor([0.0, 1.0, 0.0], dtype=towards.dtype, device=towards.device), y_vec)
    x_axis = towards / torch.linalg.vector_norm(towards, dim=1, keepdim=True)
    y_axis = y_vec / torch.linalg.vector_norm(y_vec, dim=1, keepdim=True)
    z_axis = torch.stack([
        x_axis[:, 1] * y_axis[:, 2] - x_axis[:, 2] * y_axis[:, 1],
        x_axis[:, 2] * y_axis[:, 0] - x_axis[:, 0] * y_axis[:, 2],
        x_axis[:, 0] * y_axis[:, 1] - x_axis[:, 1] * y_axis[:, 0],
    ], dim=1)
    sin, cos = torch.sin(angles), torch.cos(angles)
    ones = torch.ones_like(angles)
    zero = torch.zeros_like(angles)
    rot_about_x = torch.stack([
        torch.stack([ones, zero, zero], dim=1),
        torch.stack([zero, cos, -sin], dim=1),
        torch.stack([zero, sin, cos], dim=1),
    ], dim=1)
    frame = torch.stack([x_axis, y_axis, z_axis], dim=2)
    return torch.matmul(frame, rot_about_x)


class Pointnet2Backbone(nn.Module):
    """SA1..SA4 + FP1, FP2 MLPs (keys ``view_estimator.backbone.*``)."""

    def __init__(self, config: GraspNetConfig):
        super().__init__()
        (n1, r1, k1), (n2, r2, k2), (n3, r3, k3), (n4, r4, k4) = config.sa_layers
        self.sa1 = SetAbstraction([3, 64, 64, 128], n1, r1, k1)
        self.sa2 = SetAbstraction([128 + 3, 128, 128, 256], n2, r2, k2)
        self.sa3 = SetAbstraction([256 + 3, 128, 128, 256], n3, r3, k3)
        self.sa4 = SetAbstraction([256 + 3, 128, 128, 256], n4, r4, k4)
        self.fp1 = FeaturePropagation([256 + 256, 256, 256])
        self.fp2 = FeaturePropagation([256 + 256, 256, 256])

    @property
    def set_abstractions(self) -> list[SetAbstraction]:
        return [self.sa1, self.sa2, self.sa3, self.sa4]


class ApproachNet(ConvHead):
    """``view_estimator.vpmodule``: (B,256,S,1) -> (B, 2 + num_view, S, 1)."""

    def __init__(self, num_view: int):
        super().__init__(256, 256, 2 + num_view, 2 + num_view)


class ViewEstimator(nn.Module):
    def __init__(self, config: GraspNetConfig):
        super().__init__()
        self.backbone = Pointnet2Backbone(config)
        self.vpmodule = ApproachNet(config.num_view)


class GraspGenerator(nn.Module):
    """CloudCrop MLP + OperationNet + ToleranceNet (keys ``grasp_generator.*``)."""

    def __init__(self, config: GraspNetConfig):
        super().__init__()
        self.crop = CloudCropMLP(config.crop_nsample)
        self.operation = ConvHead(256, 128, 128, 3 * config.num_angle)
        self.tolerance = ConvHead(256, 128, 128, config.num_angle)

    def forward(self, grouped_local_xyz: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, nsample) local crop coordinates -> (B, 4 * num_angle, R, 1).

        Channels: 0:12 score, 12:24 angle logits, 24:36 width, 36:48 tolerance.
        """
        return self.head(self.crop(grouped_local_xyz))

    def head(self, crop_features: torch.Tensor) -> torch.Tensor:
        """OperationNet + ToleranceNet: (B, 256, R, 1) max-pooled crop features -> (B, 4 * num_angle, R, 1)."""
        return torch.cat([self.operation(crop_features), self.tolerance(crop_features)], dim=1)


def group_sa_inputs(xyz: torch.Tensor, features: torch.Tensor | None, centers: torch.Tensor,
                    radius: float, nsample: int) -> torch.Tensor:
    """Official ``QueryAndGroup(use_xyz=True, normalize_xyz=True)``.

    Args:
        xyz: (B, N, 3) points; features: (B, C, N) or None; centers: (B, S, 3).

    Returns:
        (B, 3 + C, S, nsample): [(xyz[idx] - centre) / radius, features[idx]] (xyz first).
    """
    idx = torch_ops.ball_query(xyz, centers, radius, nsample)
    grouped_xyz = torch_ops.group_points(xyz.transpose(1, 2).contiguous(), idx)
    grouped_xyz = (grouped_xyz - centers.transpose(1, 2).unsqueeze(-1)) / radius
    if features is None:
        return grouped_xyz
    return torch.cat([grouped_xyz, torch_ops.group_points(features, idx)], dim=1)


def interpolate_features(unknown_xyz: torch.Tensor, known_xyz: torch.Tensor,
                         known_features: torch.Tensor) -> torch.Tensor:
    """Official FP interpolation: Euclidean three-NN, weights 1/(d+1e-8) normalised. -> (B, C, n)."""
    dist, idx = torch_ops.three_nn(unknown_xyz, known_xyz)
    reciprocal = 1.0 / (dist + 1e-8)
    weight = reciprocal / torch.sum(reciprocal, dim=2, keepdim=True)
    return torch_ops.three_interpolate(known_features, idx, weight)


class GraspNet(nn.Module):
    """GraspNet-baseline for inference. ``forward(point_clouds (B,N,3))`` -> official end_points.

    Examples:
        >>> net = GraspNet().eval()  # doctest: +SKIP
        >>> end_points = net(torch.rand(1, 20000, 3))  # doctest: +SKIP
    """

    def __init__(self, config: GraspNetConfig | None = None):
        super().__init__()
        self.config = config or GraspNetConfig()
        self.view_estimator = ViewEstimator(self.config)
        self.grasp_generator = GraspGenerator(self.config)
        # Not persistent: official checkpoints hold no buffers and load strictly.
        self.register_buffer("template_views",
                             torch.from_numpy(generate_grasp_views(self.config.num_view)),
                             persistent=False)

    # -- stage 1: backbone + approach -------------------------------------------------------
    def backbone_forward(self, point_clouds: torch.Tensor, fps_indices: torch.Tensor | None = None
                         ) -> dict[str, torch.Tensor]:
        """Run SA1..4, FP1, FP2 and ApproachNet. ``fps_indices`` (B, 2048) may be precomputed."""
        backbone = self.view_estimator.backbone
        sa1, sa2, sa3, sa4 = backbone.set_abstractions
        xyz = point_clouds
        if fps_indices is None:
            fps_indices = torch_ops.furthest_point_sample(xyz, sa1.npoint)
        sa1_xyz = torch_ops.gather_points(xyz.transpose(1, 2).contiguous(), fps_indices).transpose(1, 2)
        # Prefix property: FPS from index 0 on SA1's FPS-ordered set returns 0..npoint-1.
        sa2_xyz = sa1_xyz[:, :sa2.npoint]
        sa3_xyz = sa1_xyz[:, :sa3.npoint]
        sa4_xyz = sa1_xyz[:, :sa4.npoint]

        sa1_features = sa1(group_sa_inputs(xyz, None, sa1_xyz, sa1.radius, sa1.nsample)).squeeze(3)
        sa2_features = sa2(group_sa_inputs(sa1_xyz, sa1_features, sa2_xyz, sa2.radius, sa2.nsample)).squeeze(3)
        sa3_features = sa3(group_sa_inputs(sa2_xyz, sa2_features, sa3_xyz, sa3.radius, sa3.nsample)).squeeze(3)
        sa4_features = sa4(group_sa_inputs(sa3_xyz, sa3_features, sa4_xyz, sa4.radius, sa4.nsample)).squeeze(3)

        fp1_in = torch.cat([interpolate_features(sa3_xyz, sa4_xyz, sa4_features), sa3_features], dim=1)
        fp1_features = backbone.fp1(fp1_in.unsqueeze(3)).squeeze(3)
        fp2_in = torch.cat([interpolate_features(sa2_xyz, sa3_xyz, fp1_features), sa2_features], dim=1)
        fp2_features = backbone.fp2(fp2_in.unsqueeze(3))

        approach = self.view_estimator.vpmodule(fp2_features).squeeze(3)
        end_points = {
            "input_xyz": xyz,
            "fp2_xyz": sa2_xyz,
            "fp2_inds": fps_indices[:, :sa2.npoint],
            "fp2_features": fp2_features.squeeze(3),
        }
        end_points.update(self.approach_outputs(approach))
        return end_points

    def approach_outputs(self, approach: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 302, S) ApproachNet output -> objectness, view scores, top view index/xyz/rot."""
        objectness = approach[:, 0:2]
        view_score = approach[:, 2:].transpose(1, 2).contiguous()
        top_view_score, top_view_inds = torch.max(view_score, dim=2)
        top_view_xyz = self.template_views[top_view_inds]
        batch, seeds = top_view_inds.shape
        flat = top_view_xyz.reshape(-1, 3)
        top_view_rot = viewpoint_params_to_matrix_torch(-flat, torch.zeros_like(flat[:, 0]))
        return {
            "objectness_score": objectness,
            "view_score": view_score,
            "grasp_top_view_inds": top_view_inds,
            "grasp_top_view_score": top_view_score,
            "grasp_top_view_xyz": top_view_xyz,
            "grasp_top_view_rot": top_view_rot.reshape(batch, seeds, 3, 3),
        }

    # -- stage 2: crop + operation + tolerance ----------------------------------------------
    def crop_inputs(self, point_clouds: torch.Tensor, seed_xyz: torch.Tensor, seed_rot: torch.Tensor,
                    chunk_size: int | None = None) -> torch.Tensor:
        """Cylinder crops in the gripper frame: (B, 3, S * num_depth, nsample); row = seed*4 + depth."""
        cfg = self.config
        idx = torch_ops.cylinder_query(point_clouds, seed_xyz, seed_rot, cfg.cylinder_radius, cfg.hmin,
                                       list(cfg.hmax_list), cfg.crop_nsample, chunk_size=chunk_size)
        batch, seeds, depths, nsample = idx.shape
        local = torch_ops.cylinder_group(point_clouds, seed_xyz, seed_rot, idx)          # (B, S, D, K, 3)
        local = local.permute(0, 4, 1, 2, 3)                                             # (B, 3, S, D, K)
        return local.reshape(batch, 3, seeds * depths, nsample)

    def grasp_outputs(self, head: torch.Tensor, seeds: int) -> dict[str, torch.Tensor]:
        """(B, 48, S*D, 1) head output -> the four (B, 12, S, D) prediction tensors."""
        cfg = self.config
        head = head.reshape(head.shape[0], 4 * cfg.num_angle, seeds, cfg.num_depth)
        a = cfg.num_angle
        return {
            "grasp_score_pred": head[:, 0:a],
            "grasp_angle_cls_pred": head[:, a:2 * a],
            "grasp_width_pred": head[:, 2 * a:3 * a],
            "grasp_tolerance_pred": head[:, 3 * a:4 * a],
        }

    def forward(self, point_clouds: torch.Tensor, crop_chunk_size: int | None = None
                ) -> dict[str, torch.Tensor]:
        end_points = self.backbone_forward(point_clouds)
        grouped = self.crop_inputs(point_clouds, end_points["fp2_xyz"], end_points["grasp_top_view_rot"],
                                   chunk_size=crop_chunk_size)
        head = self.grasp_generator(grouped)
        end_points.update(self.grasp_outputs(head, end_points["fp2_xyz"].shape[1]))
        end_points["point_clouds"] = point_clouds
        return end_points
