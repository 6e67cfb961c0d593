"""The learned parts of GraspNet as fixed-shape 4-D segments, for the split runtime.

Everything geometric (FPS, ball/cylinder queries, grouping, three-NN interpolation) runs between
segments in native CPU kernels; each segment is only 1x1 Conv2d / BatchNorm / ReLU / MaxPool /
Concat (and crop_mlp's closing Transpose), the op set the Horizon X5 BPU runs. Every segment has
one float32 NCHW input named ``input`` and one float32 output named ``output``, batch 1. Segments do not depend on the number of
input points, so one export serves any ``num_points``.

Two backbone layouts (``SPLIT_LAYOUTS``, manifest key ``layout``) differ only in where SA2..SA4 start:
- "grouped": each SA segment takes the grouped [normalised xyz, features] and runs its whole MLP
  (what the X5 kit converts and calibrates).
- "factored": the first SA2..SA4 layer is linear in [xyz, features], so the runtime applies it
  outside the segment: its feature half once per source point (numpy), its xyz half, bias and
  ReLU per group in a numba kernel; the segment takes those activations and runs the remaining
  layers. Same function, about a third fewer multiply-adds (the first layer sees 2048/1024/512
  points instead of 32768/8192/4096 groups); the weights of that layer ship in ``FIRST_LAYERS_FILE``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graspnet_edge_ros.contract import (CROP_FEATURES, FACTORED_SA, HEAD_LAYOUTS, SA1_FEATURES, SEGMENT_INPUT,
                                        SEGMENT_OUTPUT, SPLIT_LAYOUTS, SegmentEntry, SplitManifest, geometry_steps)
from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.model.config import GraspNetConfig
from graspnet_edge_ros.model.graspnet import GraspNet
from graspnet_edge_ros.model.layers import max_over_group

INPUT_NAME = SEGMENT_INPUT
OUTPUT_NAME = SEGMENT_OUTPUT
# Seeds per grasp-head call. The head runs only on object seeds (the decoder drops the others),
# padded up to a multiple of this; 64 seeds x 4 depths = 256 rows keeps padding waste small.
DEFAULT_HEAD_CHUNK_SEEDS = 64
# Distinct crop points per crop_mlp call (shared_points head), whole seeds per call. The example
# scene has ~35k over ~350 object seeds; 2048 keeps the zero padding of the last call small.
DEFAULT_CROP_CHUNK_POINTS = 2048


@dataclass(frozen=True)
class SegmentSpec:
    name: str
    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, int, int, int]
    description: str


def segment_specs(config: GraspNetConfig, head_chunk_seeds: int = DEFAULT_HEAD_CHUNK_SEEDS,
                  head_layouts: tuple[str, ...] = tuple(HEAD_LAYOUTS),
                  crop_chunk_points: int = DEFAULT_CROP_CHUNK_POINTS, layout: str = "grouped",
                  sa1_chunk_groups: int | None = None, sa_chunk_centres: int | None = None,
                  sa_channels_last: bool = True) -> list[SegmentSpec]:
    """Segment names and fixed shapes: the backbone (``layout``) in execution order, then each head layout's.

    ``sa_chunk_centres``: centres per sa2/sa3/sa4 call in the factored layout (at most each SA's);
    ``sa_channels_last``: their input is (1, S, K, 128), else (1, 128, S, K) (exports before 2026-12-08).
    """
    (n1, _, k1), (n2, _, k2), (n3, _, k3), (n4, _, k4) = config.sa_layers
    if sa1_chunk_groups is not None and not 1 <= sa1_chunk_groups <= n1:
        raise ConfigError(f"sa1_chunk_groups must be in [1, {n1}], got {sa1_chunk_groups}")
    if sa_chunk_centres is not None and sa_chunk_centres < 1:
        raise ConfigError(f"sa_chunk_centres must be >= 1, got {sa_chunk_centres}")
    g1 = sa1_chunk_groups or n1
    rows = head_chunk_seeds * config.num_depth
    head_out = 4 * config.num_angle
    heads = {
        "per_depth": [
            SegmentSpec("grasp_head", (1, 3, rows, config.crop_nsample), (1, head_out, rows, 1),
                        "CloudCrop MLP + max + OperationNet + ToleranceNet; row = seed*4 + depth"),
        ],
        "shared_points": [
            SegmentSpec("crop_mlp", (1, 3, crop_chunk_points, 1), (1, crop_chunk_points, 1, CROP_FEATURES),
                        "CloudCrop MLP per distinct (seed, point) crop sample, whole seeds per call; "
                        "points-major output (a point's features contiguous, for the pooling)"),
            SegmentSpec("grasp_head_post", (1, CROP_FEATURES, rows, 1), (1, head_out, rows, 1),
                        "OperationNet + ToleranceNet on the per-depth max of crop_mlp; row = seed*4 + depth"),
        ],
    }
    unknown = [head for head in head_layouts if head not in heads]
    if unknown or not head_layouts:
        raise ConfigError(f"head_layouts must name some of {list(heads)}, got {list(head_layouts)}")
    if layout not in SPLIT_LAYOUTS:
        raise ConfigError(f"layout must be one of {list(SPLIT_LAYOUTS)}, got {layout!r}")
    if layout == "factored":
        sa_specs = [SegmentSpec(name, (1, g, k, 128) if sa_channels_last else (1, 128, g, k), (1, 256, g, 1),
                                f"{name.upper()} MLP after its first layer (applied by the runtime) + max"
                                + (", input channels last" if sa_channels_last else "")
                                + (f", {g} centres per call" if g < n else ""))
                    for name, n, k in (("sa2", n2, k2), ("sa3", n3, k3), ("sa4", n4, k4))
                    for g in [min(sa_chunk_centres or n, n)]]
    else:
        sa_specs = [SegmentSpec("sa2", (1, 131, n2, k2), (1, 256, n2, 1), "SA2 MLP + max"),
                    SegmentSpec("sa3", (1, 259, n3, k3), (1, 256, n3, 1), "SA3 MLP + max"),
                    SegmentSpec("sa4", (1, 259, n4, k4), (1, 256, n4, 1), "SA4 MLP + max")]
    return [
        SegmentSpec("sa1", (1, 3, g1, k1), (1, SA1_FEATURES, g1, 1),
                    "SA1 MLP + max over ball samples" + (f", {g1} groups per call" if g1 < n1 else "")),
        *sa_specs,
        SegmentSpec("fp1", (1, 512, n3, 1), (1, 256, n3, 1), "FP1 MLP on [interpolated, skip]"),
        SegmentSpec("fp2_approach", (1, 512, n2, 1), (1, 2 + config.num_view, n2, 1),
                    "FP2 MLP + ApproachNet: objectness (2) and view scores"),
    ] + [spec for head in HEAD_LAYOUTS if head in head_layouts for spec in heads[head]]


class _FP2Approach(nn.Module):
    def __init__(self, model: GraspNet):
        super().__init__()
        self.fp2 = model.view_estimator.backbone.fp2
        self.vpmodule = model.view_estimator.vpmodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vpmodule(self.fp2(x))


class _GraspHeadPost(nn.Module):
    def __init__(self, model: GraspNet):
        super().__init__()
        self.grasp_generator = model.grasp_generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grasp_generator.head(x)


class _PointsMajor(nn.Module):
    """(B, C, P, 1) -> (B, P, 1, C): each point's features contiguous.

    The runtime pools them per depth over runs of points, vectorised over the channels (2.7 ms vs
    4.6-6.3 ms per example frame channels-major). ONNX Runtime computes the convolutions with the
    channels innermost anyway (NCHWc blocks in fp32, NHWC in int8), so the Transpose mostly replaces
    the one it made back to NCHW (int8 crop_mlp 0.42 -> 0.35 ms per call, fp32 0.96 -> 1.03 ms).
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).permute(0, 2, 3, 1)


class _AfterFirstLayer(nn.Module):
    """An SA layer without its first MLP layer: first-layer activations -> (B, C_out, S, 1).

    Input (B, S, K, C1) with ``channels_last`` (exports since 2026-12-08: the runtime writes each
    (centre, neighbour)'s channels contiguously, 3x faster than (C1, S, K); ONNX Runtime folds the
    Transpose into its own NCHWc reorder, same time and same values), else (B, C1, S, K).
    """

    def __init__(self, set_abstraction: nn.Module, channels_last: bool = True):
        super().__init__()
        self.layers = nn.Sequential(*list(set_abstraction.mlp_module)[1:])
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return max_over_group(self.layers(x))


def segment_modules(model: GraspNet, layout: str = "grouped", sa_channels_last: bool = True) -> dict[str, nn.Module]:
    """The model's own submodules (shared weights) keyed by segment name."""
    backbone = model.view_estimator.backbone
    sa = {name: getattr(backbone, name) for name in ("sa2", "sa3", "sa4")}
    if layout == "factored":
        sa = {name: _AfterFirstLayer(module, sa_channels_last) for name, module in sa.items()}
    return {
        "sa1": backbone.sa1,
        **sa,
        "fp1": backbone.fp1,
        "fp2_approach": _FP2Approach(model),
        "grasp_head": model.grasp_generator,
        "crop_mlp": _PointsMajor(model.grasp_generator.crop.mlps),   # no max: pooled per depth outside
        "grasp_head_post": _GraspHeadPost(model),
    }


def manifest_for_model(model: GraspNet, directory: Path, head_chunk_seeds: int, files: dict[str, dict[str, str]],
                       source: dict | None = None, head_layouts: tuple[str, ...] = tuple(HEAD_LAYOUTS),
                       crop_chunk_points: int | None = None, layout: str = "grouped",
                       first_layers: str = "", sa1_chunk_groups: int | None = None,
                       sa_chunk_centres: int | None = None, sa_channels_last: bool = True) -> SplitManifest:
    """The manifest describing ``model``'s segments; ``files`` maps segment -> {backend: file}."""
    cfg = model.config
    entries = tuple(SegmentEntry(spec.name, dict(files.get(spec.name, {})), spec.input_shape, spec.output_shape,
                                 spec.description)
                    for spec in segment_specs(cfg, head_chunk_seeds, head_layouts,
                                              crop_chunk_points or DEFAULT_CROP_CHUNK_POINTS, layout,
                                              sa1_chunk_groups, sa_chunk_centres, sa_channels_last))
    manifest = SplitManifest(directory=Path(directory), segments=entries, model=cfg,
                             head_chunk_seeds=head_chunk_seeds, source=source or {}, layout=layout,
                             first_layers=first_layers)
    return dataclasses.replace(manifest, steps=geometry_steps(manifest))


class _TorchSegment:
    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(tensor)).numpy()


def torch_segment_runners(model: GraspNet, head_chunk_seeds: int = DEFAULT_HEAD_CHUNK_SEEDS
                          ) -> tuple[SplitManifest, dict]:
    """(manifest, runners) running ``model``'s own modules in torch: the reference of the split runtime,
    e.g. ``runtime.split.SplitGraspNet(*torch_segment_runners(model))``."""
    manifest = manifest_for_model(model, Path("."), head_chunk_seeds, files={})
    return manifest, {name: _TorchSegment(module) for name, module in segment_modules(model).items()}


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
