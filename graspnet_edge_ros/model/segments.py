"""The learned parts of GraspNet as fixed-shape 4-D segments, for the split runtime.

Everything geometric (FPS, ball/cylinder queries, grouping, three-NN interpolation) runs between
segments in native CPU kernels; each segment is only 1x1 Conv2d / BatchNorm / ReLU / ReduceMax /
Concat, the op set the Horizon X5 BPU runs. Every segment has one float32 NCHW input named
``input`` and one float32 output named ``output``, batch 1. Segments do not depend on the number of
input points, so one export serves any ``num_points``.

Two layouts (``SPLIT_LAYOUTS``) differ only in where SA2..SA4 start:
- "grouped": each SA segment takes the grouped [normalised xyz, features] and runs its whole MLP
  (what the X5 kit converts and calibrates).
- "factored": the first SA2..SA4 layer is linear in [xyz, features], so the runtime applies it
  outside the segment: its feature half once per source point (numpy), its xyz half, bias and
  ReLU per group in a numba kernel; the segment takes those activations and runs the remaining
  layers. Same function, about a third fewer multiply-adds (the first layer sees 2048/1024/512
  points instead of 32768/8192/4096 groups); the weights of that layer ship in ``FIRST_LAYERS_FILE``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from graspnet_edge_ros.export.names import FACTORED_SA, SEGMENT_INPUT, SEGMENT_OUTPUT, SPLIT_LAYOUTS  # noqa: F401
from graspnet_edge_ros.model.config import GraspNetConfig
from graspnet_edge_ros.model.graspnet import GraspNet

INPUT_NAME = SEGMENT_INPUT
OUTPUT_NAME = SEGMENT_OUTPUT
# Seeds per grasp-head call. The head runs only on object seeds (the decoder drops the others),
# padded up to a multiple of this; 64 seeds x 4 depths = 256 rows keeps padding waste small.
DEFAULT_HEAD_CHUNK_SEEDS = 64


@dataclass(frozen=True)
class SegmentSpec:
    name: str
    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, int, int, int]
    description: str


def segment_specs(config: GraspNetConfig, head_chunk_seeds: int = DEFAULT_HEAD_CHUNK_SEEDS,
                  layout: str = "grouped") -> list[SegmentSpec]:
    """Segment names and fixed shapes, in execution order."""
    (n1, _, k1), (n2, _, k2), (n3, _, k3), (n4, _, k4) = config.sa_layers
    rows = head_chunk_seeds * config.num_depth
    if layout == "factored":
        sa_specs = [SegmentSpec(name, (1, 128, n, k), (1, 256, n, 1),
                                f"{name.upper()} MLP after its first layer (applied by the runtime) + max")
                    for name, n, k in (("sa2", n2, k2), ("sa3", n3, k3), ("sa4", n4, k4))]
    else:
        sa_specs = [SegmentSpec("sa2", (1, 131, n2, k2), (1, 256, n2, 1), "SA2 MLP + max"),
                    SegmentSpec("sa3", (1, 259, n3, k3), (1, 256, n3, 1), "SA3 MLP + max"),
                    SegmentSpec("sa4", (1, 259, n4, k4), (1, 256, n4, 1), "SA4 MLP + max")]
    return [
        SegmentSpec("sa1", (1, 3, n1, k1), (1, 128, n1, 1), "SA1 MLP + max over ball samples"),
        *sa_specs,
        SegmentSpec("fp1", (1, 512, n3, 1), (1, 256, n3, 1), "FP1 MLP on [interpolated, skip]"),
        SegmentSpec("fp2_approach", (1, 512, n2, 1), (1, 2 + config.num_view, n2, 1),
                    "FP2 MLP + ApproachNet: objectness (2) and view scores"),
        SegmentSpec("grasp_head", (1, 3, rows, config.crop_nsample), (1, 4 * config.num_angle, rows, 1),
                    "CloudCrop MLP + max + OperationNet + ToleranceNet; row = seed*4 + depth"),
    ]


class _FP2Approach(nn.Module):
    def __init__(self, model: GraspNet):
        super().__init__()
        self.fp2 = model.view_estimator.backbone.fp2
        self.vpmodule = model.view_estimator.vpmodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vpmodule(self.fp2(x))


class _AfterFirstLayer(nn.Module):
    """An SA layer without its first MLP layer: (B, C1, S, K) first-layer activations -> (B, C_out, S, 1)."""

    def __init__(self, set_abstraction: nn.Module):
        super().__init__()
        self.layers = nn.Sequential(*list(set_abstraction.mlp_module)[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.layers(x), dim=3, keepdim=True)


def segment_modules(model: GraspNet, layout: str = "grouped") -> dict[str, nn.Module]:
    """The model's own submodules (shared weights) keyed by segment name."""
    backbone = model.view_estimator.backbone
    sa = {name: getattr(backbone, name) for name in ("sa2", "sa3", "sa4")}
    if layout == "factored":
        sa = {name: _AfterFirstLayer(module) for name, module in sa.items()}
    return {
        "sa1": backbone.sa1,
        **sa,
        "fp1": backbone.fp1,
        "fp2_approach": _FP2Approach(model),
        "grasp_head": model.grasp_generator,
    }


def first_layer_weights(model: GraspNet) -> dict[str, np.ndarray]:
    """The first SA2..SA4 layer with its eval-mode BatchNorm folded in, for the "factored" layout.

    Keys ``{sa}.weight_xyz`` (C, 3), ``{sa}.weight_features`` (C, C_in), ``{sa}.bias`` (C,), float32;
    relu(W_xyz · xyz_norm + W_features · features + bias) is the layer's output.
    """
    backbone = model.view_estimator.backbone
    weights = {}
    with torch.no_grad():
        for name in FACTORED_SA:
            layer = getattr(backbone, name).mlp_module[0]
            bn = layer.bn.bn
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            weight = layer.conv.weight.double()[:, :, 0, 0] * scale[:, None]
            bias = bn.bias.double() - bn.running_mean.double() * scale
            weights[f"{name}.weight_xyz"] = weight[:, :3].float().numpy().copy()
            weights[f"{name}.weight_features"] = weight[:, 3:].float().numpy().copy()
            weights[f"{name}.bias"] = bias.float().numpy().copy()
    return weights
