"""The learned parts of GraspNet as fixed-shape 4-D segments, for the split runtime.

Everything geometric (FPS, ball/cylinder queries, grouping, three-NN interpolation) runs between
segments in native CPU kernels; each segment is only 1x1 Conv2d / BatchNorm / ReLU / ReduceMax /
Concat, the op set the Horizon X5 BPU runs. Every segment has one float32 NCHW input named
``input`` and one float32 output named ``output``, batch 1. Segments do not depend on the number of
input points, so one export serves any ``num_points``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import torch
from torch import nn

from graspnet_edge_ros.contract import (CROP_FEATURES, HEAD_LAYOUTS, SEGMENT_INPUT, SEGMENT_OUTPUT, SegmentEntry,
                                        SplitManifest, geometry_steps)
from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.model.config import GraspNetConfig
from graspnet_edge_ros.model.graspnet import GraspNet

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
                  crop_chunk_points: int = DEFAULT_CROP_CHUNK_POINTS) -> list[SegmentSpec]:
    """Segment names and fixed shapes: the backbone in execution order, then each head layout's."""
    (n1, _, k1), (n2, _, k2), (n3, _, k3), (n4, _, k4) = config.sa_layers
    rows = head_chunk_seeds * config.num_depth
    head_out = 4 * config.num_angle
    heads = {
        "per_depth": [
            SegmentSpec("grasp_head", (1, 3, rows, config.crop_nsample), (1, head_out, rows, 1),
                        "CloudCrop MLP + max + OperationNet + ToleranceNet; row = seed*4 + depth"),
        ],
        "shared_points": [
            SegmentSpec("crop_mlp", (1, 3, crop_chunk_points, 1), (1, CROP_FEATURES, crop_chunk_points, 1),
                        "CloudCrop MLP per distinct (seed, point) crop sample, whole seeds per call"),
            SegmentSpec("grasp_head_post", (1, CROP_FEATURES, rows, 1), (1, head_out, rows, 1),
                        "OperationNet + ToleranceNet on the per-depth max of crop_mlp; row = seed*4 + depth"),
        ],
    }
    unknown = [layout for layout in head_layouts if layout not in heads]
    if unknown or not head_layouts:
        raise ConfigError(f"head_layouts must name some of {list(heads)}, got {list(head_layouts)}")
    return [
        SegmentSpec("sa1", (1, 3, n1, k1), (1, 128, n1, 1), "SA1 MLP + max over ball samples"),
        SegmentSpec("sa2", (1, 131, n2, k2), (1, 256, n2, 1), "SA2 MLP + max"),
        SegmentSpec("sa3", (1, 259, n3, k3), (1, 256, n3, 1), "SA3 MLP + max"),
        SegmentSpec("sa4", (1, 259, n4, k4), (1, 256, n4, 1), "SA4 MLP + max"),
        SegmentSpec("fp1", (1, 512, n3, 1), (1, 256, n3, 1), "FP1 MLP on [interpolated, skip]"),
        SegmentSpec("fp2_approach", (1, 512, n2, 1), (1, 2 + config.num_view, n2, 1),
                    "FP2 MLP + ApproachNet: objectness (2) and view scores"),
    ] + [spec for layout in HEAD_LAYOUTS if layout in head_layouts for spec in heads[layout]]


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


def segment_modules(model: GraspNet) -> dict[str, nn.Module]:
    """The model's own submodules (shared weights) keyed by segment name."""
    backbone = model.view_estimator.backbone
    return {
        "sa1": backbone.sa1,
        "sa2": backbone.sa2,
        "sa3": backbone.sa3,
        "sa4": backbone.sa4,
        "fp1": backbone.fp1,
        "fp2_approach": _FP2Approach(model),
        "grasp_head": model.grasp_generator,
        "crop_mlp": model.grasp_generator.crop.mlps,   # no max: pooled per depth outside
        "grasp_head_post": _GraspHeadPost(model),
    }


def manifest_for_model(model: GraspNet, directory: Path, head_chunk_seeds: int, files: dict[str, dict[str, str]],
                       source: dict | None = None, head_layouts: tuple[str, ...] = tuple(HEAD_LAYOUTS),
                       crop_chunk_points: int | None = None) -> SplitManifest:
    """The manifest describing ``model``'s segments; ``files`` maps segment -> {backend: file}."""
    cfg = model.config
    entries = tuple(SegmentEntry(spec.name, dict(files.get(spec.name, {})), spec.input_shape, spec.output_shape,
                                 spec.description)
                    for spec in segment_specs(cfg, head_chunk_seeds, head_layouts,
                                              crop_chunk_points or DEFAULT_CROP_CHUNK_POINTS))
    manifest = SplitManifest(directory=Path(directory), segments=entries, model=cfg,
                             head_chunk_seeds=head_chunk_seeds, source=source or {})
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
