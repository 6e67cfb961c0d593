"""SGDN / AFFGA-Net (2021 generation, the one the TensorRT deployment runs) for inference.

Architecture follows liuchunsense/AFFGA-Net (Wang, Liu, Chang, Li, Li, IEEE TIE; no licence file
in that repository: this is a re-implementation from the layer description, no code copied).
ResNet-101 encoder (output stride 16, multi-grid layer4), HASP, three-head decoder; module names
match the original so its state dicts load strictly. Outputs are raw logits: able (N,1,S,S),
angle (N,K,S,S; K=120 bins over [0, 2*pi)), width (N,1,S,S; sigmoid x 200 = pixels).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.planar.formats import AFFGA_PICKLE_NAMES, DEFAULT_INPUT_SIZES
from graspnet_edge_ros.planar.legacy_pickle import PickledModule, load_state_dict_strictly, read_planar_state_dict

AFFGA_DEFAULT_INPUT_SIZE = DEFAULT_INPUT_SIZES["affga"]
AFFGA_ANGLE_BINS = 120
AFFGA_WIDTH_SCALE_PX = 200.0        # width labels were opening pixels / 200
AFFGA_SIZE_MULTIPLE = 16            # output stride of the encoder
AFFGA_PICKLE_CLASSES: dict[tuple[str, str], type] = {key: PickledModule for key in AFFGA_PICKLE_NAMES}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, dilation=dilation, padding=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _layer(inplanes: int, planes: int, dilations: list[int], stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * 4:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
    blocks = [Bottleneck(inplanes, planes, stride, dilations[0], downsample)]
    blocks += [Bottleneck(planes * 4, planes, 1, d) for d in dilations[1:]]
    return nn.Sequential(*blocks)


class ResNet101(nn.Module):
    """Output stride 16: strides 1/2/2/1; layer4 is the multi-grid unit with dilations 2, 4, 8."""

    def __init__(self, input_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _layer(64, 64, [1] * 3, 1)
        self.layer2 = _layer(256, 128, [1] * 4, 2)
        self.layer3 = _layer(512, 256, [1] * 23, 2)
        self.layer4 = _layer(1024, 512, [2, 4, 8], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        return self.layer4(self.layer3(self.layer2(low))), low


class HASPBranch(nn.Module):
    def __init__(self, inplanes: int, planes: int, kernel_size: int, dilation: int):
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation
        self.atrous_conv = nn.Conv2d(inplanes, planes, kernel_size, padding=padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


def _conv_bn_relu(cin: int, cout: int, kernel: int, dropout: float | None = None) -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return layers + ([nn.Dropout(dropout)] if dropout is not None else [])


class HASP(nn.Module):
    def __init__(self):
        super().__init__()
        self.hasp1_1 = HASPBranch(2048, 512, 1, 1)
        self.hasp1_2 = HASPBranch(2048, 256, 3, 6)
        self.hasp2_1 = HASPBranch(2048, 512, 3, 12)
        self.hasp2_2 = HASPBranch(2048, 256, 3, 18)
        self.conv_small = nn.Sequential(*_conv_bn_relu(768, 256, 1, 0.5))
        self.conv_big = nn.Sequential(*_conv_bn_relu(768, 256, 1, 0.5))
        self.conv_all = nn.Sequential(*_conv_bn_relu(1536, 256, 1, 0.5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b11, b12, b21, b22 = self.hasp1_1(x), self.hasp1_2(x), self.hasp2_1(x), self.hasp2_2(x)
        return (self.conv_small(torch.cat((b11, b12), 1)), self.conv_big(torch.cat((b21, b22), 1)),
                self.conv_all(torch.cat((b11, b12, b21, b22), 1)))


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn_relu(cin, 256, 3, 0.5), *_conv_bn_relu(256, hidden, 3, 0.1),
                         nn.ConvTranspose2d(hidden, hidden, 2, stride=2), nn.ReLU(), nn.Conv2d(hidden, cout, 1))


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, align_corners=True, to ``size`` (an integer multiple of x's size).

    Given as an integer scale factor so the exported Resize has constant scales instead of a
    Shape/Slice/Concat chain; with align_corners the sampling grid depends only on the sizes, so
    this equals the original's ``size=`` call.
    """
    height, width = int(x.shape[-2]), int(x.shape[-1])
    if size[0] % height or size[1] % width or size[0] // height != size[1] // width:
        raise ModelFormatError(f"cannot upsample {height}x{width} to {size[0]}x{size[1]} by an integer factor")
    return F.interpolate(x, scale_factor=float(size[0] // height), mode="bilinear", align_corners=True)


def _static_size(x: torch.Tensor) -> tuple[int, int]:
    # Python ints: a traced export sees constants.
    return int(x.shape[-2]), int(x.shape[-1])


class Decoder(nn.Module):
    """Three heads. conv_2, conv_hasp_mid and conv_hasp_big are never used by forward, but the
    published state dicts contain them, so they are declared for strict loading."""

    def __init__(self, angle_bins: int = AFFGA_ANGLE_BINS):
        super().__init__()
        self.conv_1 = nn.Sequential(*_conv_bn_relu(256, 48, 1))
        self.conv_2 = nn.Sequential(*_conv_bn_relu(512, 48, 1))
        self.conv_hasp_small = nn.Sequential(*_conv_bn_relu(304, 256, 3))
        self.conv_hasp_mid = nn.Sequential(*_conv_bn_relu(352, 256, 3))
        self.conv_hasp_big = nn.Sequential(*_conv_bn_relu(304, 256, 3))
        self.able_conv = _head(512, 128, 1)
        self.angle_conv = _head(304, 256, angle_bins)
        self.width_conv = _head(304, 128, 1)

    def forward(self, low: torch.Tensor, small: torch.Tensor, big: torch.Tensor, everything: torch.Tensor):
        low = self.conv_1(low)
        size = _static_size(low)
        small = self.conv_hasp_small(torch.cat((_upsample(small, size), low), 1))
        able_input = torch.cat((small, _upsample(big, size)), 1)
        shared = torch.cat((_upsample(everything, size), low), 1)
        return self.able_conv(able_input), self.angle_conv(shared), self.width_conv(shared)


class AFFGANet(nn.Module):
    """The 2021 AFFGA-Net ("DeepLab" class of the original): (N, Cin, S, S) -> able, angle, width logits.

    S must be a multiple of 16. The original hard-wires Cin = 3 (BGR).
    """

    def __init__(self, angle_bins: int = AFFGA_ANGLE_BINS, input_channels: int = 3):
        super().__init__()
        self.angle_bins, self.input_channels = angle_bins, input_channels
        self.backbone = ResNet101(input_channels)
        self.hasp = HASP()
        self.decoder = Decoder(angle_bins)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = _static_size(x)
        deep, low = self.backbone(x)
        able, angle, width = self.decoder(low, *self.hasp(deep))
        return _upsample(able, size), _upsample(angle, size), _upsample(width, size)


def affga_from_state_dict(state_dict: dict[str, torch.Tensor]) -> AFFGANet:
    """Build AFFGANet with the angle-bin and input-channel counts the weights imply, load strictly."""
    conv1 = state_dict.get("backbone.conv1.weight")
    angle = state_dict.get("decoder.angle_conv.10.weight")
    width = state_dict.get("decoder.width_conv.10.weight")
    if conv1 is None or angle is None or width is None:
        raise ModelFormatError("not an AFFGA-Net state dict: no 'backbone.conv1.weight' / "
                               f"'decoder.angle_conv.10.weight' (first keys: {list(state_dict)[:5]})")
    if width.shape[0] != 1:
        raise ModelFormatError(f"AFFGA-Net with {width.shape[0]} width channels is the 2023 PLGP variant "
                               "(width in metres per angle bin); only the 2021 generation is supported")
    model = AFFGANet(angle_bins=int(angle.shape[0]), input_channels=int(conv1.shape[1]))
    return load_state_dict_strictly(model, state_dict, "AFFGA-Net (2021)")


def load_affga(path: str | Path) -> AFFGANet:
    """AFFGANet in eval mode from a whole-module pickle of the 2021 release or a state-dict checkpoint."""
    return affga_from_state_dict(read_planar_state_dict(path, AFFGA_PICKLE_CLASSES, "AFFGA-Net"))


class AFFGAWithArgmax(nn.Module):
    """AFFGANet with the angle argmax in the graph: outputs able, angle_bin (N,1,S,S int64), width.

    Saves copying the K x S x S angle logits (49 MB per frame at K=120, S=320) off the accelerator.
    """

    def __init__(self, net: AFFGANet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        able, angle, width = self.net(x)
        return able, torch.argmax(angle, dim=1, keepdim=True), width
