"""GR-ConvNet (grconvnet3 family) for inference, and loading its published checkpoints.

Architecture follows skumra/robotic-grasping (Kumra, Joshi, Sahin, IROS 2020; BSD-3-Clause,
Copyright (c) 2019 Sulabh Kumra / RIT, (c) 2018 Douglas Morrison / ACRV-QUT). Re-implemented from
the layer description; module names match the original so its state dicts load strictly.
Outputs are the four raw maps (pos, cos, sin, width), each N x 1 x S x S, no activation.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from graspnet_edge_ros.errors import InputError, ModelFormatError
from graspnet_edge_ros.planar.formats import DEFAULT_INPUT_SIZES, GRCONVNET_PICKLE_NAMES
from graspnet_edge_ros.planar.legacy_pickle import PickledModule, load_state_dict_strictly, read_planar_state_dict

GRCONVNET_DEFAULT_INPUT_SIZE = DEFAULT_INPUT_SIZES["grconvnet"]
GRCONVNET_PICKLE_CLASSES: dict[tuple[str, str], type] = {key: PickledModule for key in GRCONVNET_PICKLE_NAMES}


class ResidualBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, plus the input (no ReLU after the sum, as in the original)."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(y)) + x


class GRConvNet3(nn.Module):
    """grconvnet3: channel plan C / 2C / 4C, five residual blocks, four 1-channel heads.

    Dropout of the original heads is omitted: it is the identity at inference and has no weights.
    """

    def __init__(self, input_channels: int = 4, channel_size: int = 32, output_channels: int = 1):
        super().__init__()
        c = channel_size
        self.input_channels, self.channel_size = input_channels, channel_size
        self.conv1 = nn.Conv2d(input_channels, c, kernel_size=9, stride=1, padding=4)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, 2 * c, kernel_size=4, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * c)
        self.conv3 = nn.Conv2d(2 * c, 4 * c, kernel_size=4, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(4 * c)
        for index in range(1, 6):
            setattr(self, f"res{index}", ResidualBlock(4 * c))
        self.conv4 = nn.ConvTranspose2d(4 * c, 2 * c, kernel_size=4, stride=2, padding=1, output_padding=1)
        self.bn4 = nn.BatchNorm2d(2 * c)
        self.conv5 = nn.ConvTranspose2d(2 * c, c, kernel_size=4, stride=2, padding=2, output_padding=1)
        self.bn5 = nn.BatchNorm2d(c)
        self.conv6 = nn.ConvTranspose2d(c, c, kernel_size=9, stride=1, padding=4)
        self.pos_output = nn.Conv2d(c, output_channels, kernel_size=2)
        self.cos_output = nn.Conv2d(c, output_channels, kernel_size=2)
        self.sin_output = nn.Conv2d(c, output_channels, kernel_size=2)
        self.width_output = nn.Conv2d(c, output_channels, kernel_size=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.res5(self.res4(self.res3(self.res2(self.res1(x)))))
        x = F.relu(self.bn4(self.conv4(x)))
        x = F.relu(self.bn5(self.conv5(x)))
        x = self.conv6(x)
        return self.pos_output(x), self.cos_output(x), self.sin_output(x), self.width_output(x)


def stride1_transpose_as_conv(layer: nn.ConvTranspose2d) -> nn.Conv2d:
    """The Conv2d equal to a stride-1 ConvTranspose2d (kernel flipped, in/out swapped).

    Why: runtimes run Conv far faster than ConvTranspose (onnxruntime: GR-ConvNet's 9x9 conv6 at
    225x225 is about a fifth of the network time as ConvTranspose), and Conv maps to more accelerators.
    """
    if layer.stride != (1, 1) or layer.groups != 1 or layer.dilation != (1, 1) or any(layer.output_padding):
        raise InputError("only stride-1, ungrouped, undilated ConvTranspose2d has a plain Conv2d equivalent")
    kernel_h, kernel_w = layer.kernel_size
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                     padding=(kernel_h - 1 - layer.padding[0], kernel_w - 1 - layer.padding[1]),
                     bias=layer.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(layer.weight.flip(-1, -2).transpose(0, 1))
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    return conv


def inference_copy(model: GRConvNet3) -> GRConvNet3:
    """An eval-mode copy with conv6 as the equivalent Conv2d (same outputs, faster; weights untouched)."""
    fast = copy.deepcopy(model).eval()
    fast.conv6 = stride1_transpose_as_conv(model.conv6)
    return fast


def grconvnet_from_state_dict(state_dict: dict[str, torch.Tensor]) -> GRConvNet3:
    """Build GRConvNet3 with the sizes the weights imply (input channels, channel size) and load strictly."""
    weight = state_dict.get("conv1.weight")
    head = state_dict.get("pos_output.weight")
    if weight is None or head is None or weight.dim() != 4:
        raise ModelFormatError("not a GR-ConvNet state dict: no 'conv1.weight' / 'pos_output.weight' "
                               f"(first keys: {list(state_dict)[:5]})")
    model = GRConvNet3(input_channels=int(weight.shape[1]), channel_size=int(weight.shape[0]),
                       output_channels=int(head.shape[0]))
    return load_state_dict_strictly(model, state_dict, "GR-ConvNet (grconvnet3)")


def load_grconvnet(path: str | Path) -> GRConvNet3:
    """GRConvNet3 in eval mode from a whole-module pickle (legacy or zip) or a state-dict checkpoint."""
    return grconvnet_from_state_dict(read_planar_state_dict(path, GRCONVNET_PICKLE_CLASSES, "GR-ConvNet"))
