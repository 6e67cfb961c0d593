"""Checkpoint file -> exported artefact, one function per model family with one signature.

These are the ``exporters`` of the format table (``graspnet_edge_ros.formats``): ``graspnet-edge
export`` detects the model type, asks the table for its exporter and calls it with an
``ExportRequest``; each returns the one-line summary the command prints.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from graspnet_edge_ros.contract import DEFAULT_SA1_CHUNK_GROUPS
from graspnet_edge_ros.digest import file_digest
from graspnet_edge_ros.errors import ConfigError

GRASPNET_SINGLE_FILE_OPSET = 17


@dataclass(frozen=True)
class ExportRequest:
    """What to export and how (the options of ``graspnet-edge export``; None = the family's default)."""

    checkpoint: Path
    output: Path
    model_type: str
    split: bool = False                # GraspNet: BPU-ready segments + manifest.json
    num_points: int = 20000            # GraspNet single file: static point count
    opset: int | None = None           # single file (GraspNet 17, planar 11)
    head_chunk_seeds: int = 64         # GraspNet split: seeds per grasp-head call
    split_layout: str = "factored"     # GraspNet split: backbone layout, "factored" or "grouped" (X5 kit)
    sa1_chunk_groups: int | None = DEFAULT_SA1_CHUNK_GROUPS  # GraspNet split: SA1 groups per call; None = all
    input_size: int | None = None      # planar: square input side
    angle_output: str = "argmax"       # AFFGA-Net: "argmax" or "logits"

    def source(self) -> dict[str, str]:
        """Provenance stamped into the exported files."""
        return {"source_checkpoint": Path(self.checkpoint).name, "source_sha256": file_digest(self.checkpoint, 64)}


def export_graspnet(request: ExportRequest) -> str:
    """GraspNet checkpoint -> split directory (``split``) or one whole-network ONNX file."""
    from graspnet_edge_ros.export.onnx_export import export_single_file, export_split
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    if request.input_size is not None or request.angle_output != "argmax":
        raise ConfigError("--input-size and --angle-logits apply to planar models (grconvnet, affga), not GraspNet")
    model = load_graspnet(request.checkpoint)
    start = time.perf_counter()
    if request.split:
        manifest = export_split(model, request.output, head_chunk_seeds=request.head_chunk_seeds,
                                source=request.source(), layout=request.split_layout,
                                sa1_chunk_groups=request.sa1_chunk_groups)
        return (f"wrote {len(manifest.segments)} segments ({manifest.layout} backbone, grasp head layouts: "
                f"{', '.join(manifest.head_layouts)}) + manifest.json to {request.output} "
                f"in {time.perf_counter() - start:.1f} s")
    opset = GRASPNET_SINGLE_FILE_OPSET if request.opset is None else request.opset
    path = export_single_file(model, request.output, num_points=request.num_points, opset=opset,
                              source=request.source())
    return (f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {request.num_points} points) "
            f"in {time.perf_counter() - start:.1f} s")


def export_planar(request: ExportRequest) -> str:
    """GR-ConvNet / AFFGA-Net checkpoint -> one static-shape ONNX file, checked in onnxruntime."""
    from graspnet_edge_ros.planar.export import PLANAR_OPSET, export_planar_onnx, load_planar_model

    if request.split:
        raise ConfigError(f"--split is for GraspNet; a {request.model_type} model exports as one ONNX file")
    model_type, model = load_planar_model(request.checkpoint, request.model_type)
    start = time.perf_counter()
    path = export_planar_onnx(model, model_type, request.output, input_size=request.input_size,
                              opset=PLANAR_OPSET if request.opset is None else request.opset,
                              angle_output=request.angle_output, source=request.source())
    return (f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {model_type}) in {time.perf_counter() - start:.1f} s; "
            "onnxruntime matches PyTorch")
