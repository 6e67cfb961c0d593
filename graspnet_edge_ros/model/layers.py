"""The learned building blocks of GraspNet, laid out so official state-dict keys load unchanged.

Every block works on 4-D NCHW tensors with 1x1 Conv2d (the Horizon BPU needs 4-D; a 1x1 Conv2d on
(B, C, L, 1) equals the official Conv1d on (B, C, L)). Checkpoint loading reshapes the official
Conv1d head weights [out, in, 1] to [out, in, 1, 1].
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


def max_over_group(features: torch.Tensor) -> torch.Tensor:
    """(B, C, S, K) -> (B, C, S, 1): the max over each group's K samples.

    Written as the official PointNet++ writes it (``max_pool2d`` with a [1, K] kernel), which exports
    as one MaxPool: ONNX Runtime runs it inside its blocked (NCHWc) layout and re-lays out only the
    pooled tensor, where a ReduceMax had the whole (C, S, K) activation re-laid out first (SA2 20.3 ->
    18.1 ms, SA1 2.7 -> 1.4 ms per call, same values; 2026-12-07). The BPU runs MaxPool too.
    """
    return F.max_pool2d(features, kernel_size=[1, int(features.shape[3])])


class _ConvBnRelu(nn.Module):
    """One SharedMLP layer: Conv2d 1x1 (no bias) -> BatchNorm2d -> ReLU.

    The BN sits in a Sequential child named ``bn`` so keys read ``layerK.bn.bn.weight``, as the
    official pointnet2 ``pytorch_utils`` wrapper stores them.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.Sequential(OrderedDict(bn=nn.BatchNorm2d(out_channels)))
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn(self.conv(x)))


class SharedMLP(nn.Sequential):
    """Chain of ``_ConvBnRelu`` named layer0..layerK (ReLU after every layer, the last included)."""

    def __init__(self, channels: list[int]):
        layers = OrderedDict(
            (f"layer{i}", _ConvBnRelu(channels[i], channels[i + 1])) for i in range(len(channels) - 1)
        )
        super().__init__(layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)


class ConvHead(nn.Module):
    """Official head layout: conv1/bn1/relu, conv2/bn2/relu, conv3 (biased 1x1 convs, no act at end).

    Used by ApproachNet (256->256->302->302), OperationNet (256->128->128->36) and
    ToleranceNet (256->128->128->12). Input/output are (B, C, L, 1).
    """

    def __init__(self, in_channels: int, hidden1: int, hidden2: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden1, 1)
        self.conv2 = nn.Conv2d(hidden1, hidden2, 1)
        self.conv3 = nn.Conv2d(hidden2, out_channels, 1)
        self.bn1 = nn.BatchNorm2d(hidden1)
        self.bn2 = nn.BatchNorm2d(hidden2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.conv3(x)


class SetAbstraction(nn.Module):
    """Holds the SA layer's MLP under the official key ``mlp_module``; geometry is done outside."""

    def __init__(self, channels: list[int], npoint: int, radius: float, nsample: int):
        super().__init__()
        self.npoint, self.radius, self.nsample = npoint, radius, nsample
        self.mlp_module = SharedMLP(channels)

    def forward(self, grouped: torch.Tensor) -> torch.Tensor:
        """(B, 3 + C, S, K) grouped [normalised xyz, features] -> (B, C_out, S, 1)."""
        return max_over_group(self.mlp_module(grouped))


class FeaturePropagation(nn.Module):
    """Holds the FP layer's MLP under the official key ``mlp``."""

    def __init__(self, channels: list[int]):
        super().__init__()
        self.mlp = SharedMLP(channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C_interp + C_skip, n, 1) -> (B, C_out, n, 1)."""
        return self.mlp(features)


class CloudCropMLP(nn.Module):
    """CloudCrop's MLP under the official key ``mlps``: (B, 3, R, 64) local xyz -> (B, 256, R, 1)."""

    def __init__(self, nsample: int = 64, channels: tuple[int, ...] = (3, 64, 128, 256)):
        super().__init__()
        self.nsample = nsample
        self.mlps = SharedMLP(list(channels))

    def forward(self, grouped_local_xyz: torch.Tensor) -> torch.Tensor:
        return max_over_group(self.mlps(grouped_local_xyz))
