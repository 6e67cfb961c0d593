"""``graspnet-edge x5-prepare``: checkpoint -> everything the X5 toolchain and the board need.

The kit directory holds the split ONNX segments (checked against the X5 limits), one hb_mapper
YAML per segment, a calibration set per segment input, the conversion script, and a manifest
that lists both the ONNX files (onnxruntime, usable at once) and the ``.bin`` files the script
will write (hobot_dnn). Calibration tensors are what each segment really receives: the float
pipeline (``GraspDetector`` with the split runtime on the float ONNX segments) runs on real
frames and every segment call is recorded by wrapping the segment runners. With few frames the
20000-point sampling is redrawn with a new seed per run (run r uses frame r mod F, seed r), and
the grasp head, called once per 64 object seeds, contributes one of its chunks per run in turn.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from graspnet_edge_ros.errors import ExportError, InputError
from graspnet_edge_ros.contract import SplitManifest
from graspnet_edge_ros.x5 import templates
from graspnet_edge_ros.x5.frames import FrameSource
from graspnet_edge_ros.x5.opcheck import check_onnx_model

HOBOT_BACKEND = "hobot_dnn"
MULTI_CALL_SEGMENT = "grasp_head"  # called once per chunk of object seeds
# Segments whose calls split one set abstraction's centres (the CPU export's SA2/SA3 in calls of 256):
# every call of a run is recorded, so each sample is the whole SA's input, as when they were one call
# (first chunks only: 77 % of the fp32 top-10 reproduced instead of 83 %, 2026-12-08).
WHOLE_SA_SEGMENTS = ("sa2", "sa3", "sa4")
CALIBRATION_INDEX = "calibration.json"


@dataclass
class CalibrationSummary:
    """What the recording produced: samples per segment, runs, skipped frames, provenance."""

    directory: Path
    counts: dict[str, int]
    runs: int
    skipped: list[str] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    source: str = ""

    def to_json(self) -> dict:
        return {"source": self.source, "counts": self.counts, "runs": self.runs, "skipped": self.skipped,
                "samples": self.samples,
                "seconds": round(self.seconds, 1), "format": "raw C-order float32 (numpy.tofile), one file "
                "per sample, exactly the segment input shape"}


class _RecordingRunner:
    """A segment runner that keeps every input it is given (the first ``limit``), then runs the real one."""

    def __init__(self, runner, limit: int | None = None):
        self.runner = runner
        self.limit = limit
        self.calls: list[np.ndarray] = []

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        if self.limit is None or len(self.calls) < self.limit:
            self.calls.append(tensor.copy())
        return self.runner(tensor)


def calibration_dir(kit: Path, segment: str) -> Path:
    """Where the calibration files of ``segment`` live (``_f32``: the toolchain's float32 suffix)."""
    return kit / templates.CALIBRATION_DIR / f"{segment}_f32"


def split_runner(manifest: SplitManifest, runners: dict, model_id: str):
    """A ``GraspNetRunner`` over the split runtime with the given segment runners."""
    from graspnet_edge_ros.runtime.graspnet_runner import GraspNetRunner
    from graspnet_edge_ros.runtime.split import SplitGraspNet

    net = SplitGraspNet(manifest, runners)
    return GraspNetRunner("split", "recorded", net, None, model_id, timings_source=net)


def frame_config(base, frame, seed: int, keep_depth_scale: bool):
    """``base`` for one frame and sampling seed (the frame's mask and depth scale unless overridden)."""
    changes = {"sampling_seed": seed}
    if frame.workspace_mask_path:
        changes["workspace_mask_path"] = frame.workspace_mask_path
    if not keep_depth_scale:
        changes["depth_scale"] = frame.depth_scale
    return base.replace(**changes)


def record_calibration(kit: Path, manifest: SplitManifest, frames: FrameSource, num_samples: int,
                       base_config, keep_depth_scale: bool = False,
                       progress: Callable[[str], None] = lambda _: None) -> CalibrationSummary:
    """Run the float pipeline on ``frames`` until every segment has ``num_samples`` inputs on disk."""
    from graspnet_edge_ros.pipeline import GraspDetector
    from graspnet_edge_ros.runtime.segment_runners import backend_runners

    if num_samples < 1:
        raise InputError(f"num_samples must be >= 1, got {num_samples}")
    start = time.perf_counter()
    recorders = {name: _RecordingRunner(r) for name, r in backend_runners(manifest, "onnxruntime").items()}
    # The detector skips the heads of seeds no grasp of which can pass the filters (candidates.SeedGate),
    # as it does on the robot: the head segments are calibrated on the seeds they run on there.
    detector = GraspDetector(base_config, runner=split_runner(manifest, recorders, "x5-calibration"))
    for name in manifest.segment_names:
        directory = calibration_dir(kit, name)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.bin"):
            stale.unlink()
    summary = CalibrationSummary(kit / templates.CALIBRATION_DIR, dict.fromkeys(manifest.segment_names, 0), 0,
                                 source=frames.location)
    max_runs = 3 * num_samples  # runs without object seeds give no grasp-head sample; do not loop forever
    first_pass = True
    while min(summary.counts.values()) < num_samples and summary.runs < max_runs:
        usable = 0
        for frame in frames:
            if min(summary.counts.values()) >= num_samples or summary.runs >= max_runs:
                break
            for recorder in recorders.values():
                recorder.calls.clear()
            # A new sampling seed per run: distinct draws even when a source repeats a frame.
            seed = summary.runs
            detector.update_config(frame_config(base_config, frame, seed, keep_depth_scale))
            result = detector.detect(frame.color, frame.depth, frame.encoding, frame.intrinsics)
            if result.status not in ("ok", "no_grasp"):
                if first_pass:
                    summary.skipped.append(f"{frame.name}: {result.status} ({result.reason})")
                continue
            usable += 1
            sample = {"frame": frame.name, "seed": seed, "files": {}}
            for name, recorder in recorders.items():
                if summary.counts[name] >= num_samples or not recorder.calls:
                    continue
                # The head's chunks take turns, so the set covers first, middle and (padded) last chunks.
                # SA2-SA4 give every call (WHOLE_SA_SEGMENTS). Other segments called in chunks (sa1,
                # crop_mlp in the CPU export) give their first: rotating them too widened the min/max
                # ranges and reproduced fewer of the fp32 top-10 (82 vs 86 %, 6 samplings x 2 frames,
                # 2026-12-07).
                chunk = summary.runs % len(recorder.calls) if name == MULTI_CALL_SEGMENT else 0
                stem = f"{name}_{summary.counts[name]:04d}"
                if name in WHOLE_SA_SEGMENTS and len(recorder.calls) > 1:
                    paths = [calibration_dir(kit, name) / f"{stem}_call{call:02d}.bin"
                             for call in range(len(recorder.calls))]
                    for path, tensor in zip(paths, recorder.calls):
                        _write_raw_float32(path, tensor, manifest.segment(name).input_shape)
                    sample["files"][name] = f"{paths[0].name} .. {paths[-1].name} (every call)"
                else:
                    path = calibration_dir(kit, name) / f"{stem}.bin"
                    _write_raw_float32(path, recorder.calls[chunk], manifest.segment(name).input_shape)
                    sample["files"][name] = path.name + (f" (chunk {chunk + 1} of {len(recorder.calls)})"
                                                         if name == MULTI_CALL_SEGMENT else "")
                summary.counts[name] += 1
            summary.samples.append(sample)
            summary.runs += 1
            if summary.runs % 10 == 0:
                progress(f"  calibration: {summary.runs} pipeline runs, samples per segment "
                         f"{min(summary.counts.values())}/{num_samples}")
        if usable == 0:
            raise InputError(f"no usable frame in {frames.description}: " + "; ".join(summary.skipped[:3]))
        first_pass = False
    short = {name: n for name, n in summary.counts.items() if n < num_samples}
    if short:
        raise InputError(f"only {short} calibration samples after {summary.runs} runs: the frames show no "
                         "objects to the model (check the workspace and depth range)")
    summary.seconds = time.perf_counter() - start
    (summary.directory / CALIBRATION_INDEX).write_text(json.dumps(summary.to_json(), indent=1) + "\n")
    return summary


def _write_raw_float32(path: Path, tensor: np.ndarray, shape) -> None:
    """numpy.tofile of exactly ``shape``; read back by size, since a wrong byte count only fails later in hb_mapper."""
    array = np.ascontiguousarray(tensor, dtype=np.float32)
    if array.shape != tuple(shape):
        raise ExportError(f"{path.name}: recorded tensor {array.shape} != segment input {tuple(shape)}")
    array.tofile(path)
    if path.stat().st_size != array.nbytes:
        raise ExportError(f"{path}: wrote {path.stat().st_size} bytes, expected {array.nbytes}")


def read_calibration_sample(path: Path, shape) -> np.ndarray:
    """One calibration file as the toolchain reads it: numpy.fromfile + reshape to the input shape."""
    data = np.fromfile(path, dtype=np.float32)
    if data.size != int(np.prod(shape)):
        raise InputError(f"{path}: {data.size} float32 values, cannot reshape to {tuple(shape)}")
    return data.reshape(shape)


def int16_output_tail(graph) -> list[str]:
    """Nodes written as int16 into the YAML's node_info: a graph-output Concat and the Convs feeding it.

    The grasp head ends in Concat(operation conv3, tolerance conv3): one tensor mixing angle
    logits (|x| ~ 10) with widths and tolerances (~0.03). One int8 scale for all of it rounds the
    small channels away (measured: grasp scores drift ~0.4); int16 keeps them.
    """
    outputs = {o.name for o in graph.output}
    producers = {out: node for node in graph.node for out in node.output}
    names = []
    for node in graph.node:
        if node.op_type == "Concat" and node.output[0] in outputs:
            names += [producers[i].name for i in node.input if i in producers and producers[i].op_type == "Conv"]
            names.append(node.name)
    return names


def node_info_yaml(graph) -> str:
    """The YAML ``node_info`` line that makes ``int16_output_tail`` int16 ('' when there is none)."""
    names = int16_output_tail(graph)
    if not names:
        return ""
    entries = ", ".join(f'"{name}": {{"ON": "BPU", ' + ('"InputType": "int16", ' if i == len(names) - 1 else "")
                        + '"OutputType": "int16"}' for i, name in enumerate(names))
    return ("  # int16 output tail: one int8 scale cannot hold angle logits (~10) next to widths and\n"
            "  # tolerances (~0.03); see graspnet_edge_ros/x5/quant.py\n"
            f"  node_info: {{{entries}}}\n")


def write_toolchain_files(kit: Path, manifest: SplitManifest, num_samples: int) -> list[Path]:
    """One hb_mapper YAML per segment and the conversion script; returns the written paths."""
    import onnx

    from graspnet_edge_ros.contract import SEGMENT_INPUT

    written = []
    for entry in manifest.segments:
        graph = onnx.load(str(kit / entry.files["onnxruntime"])).graph
        text = templates.HB_MAPPER_YAML.substitute(
            node_info=node_info_yaml(graph),
            name=entry.name, description=entry.description, script=templates.SCRIPT_NAME,
            onnx=entry.files["onnxruntime"], working_dir=f"{templates.BUILD_DIR}/{entry.name}",
            input_name=SEGMENT_INPUT, input_shape="x".join(map(str, entry.input_shape)),
            cal_dir=calibration_dir(Path("."), entry.name).as_posix(), num_samples=num_samples)
        path = kit / f"hb_mapper_{entry.name}.yaml"
        path.write_text(text)
        written.append(path)
    script = kit / templates.SCRIPT_NAME
    script.write_text(templates.CONVERT_SCRIPT.substitute(
        script=templates.SCRIPT_NAME, image=templates.OE_IMAGE, build_dir=templates.BUILD_DIR,
        segments=" ".join(manifest.segment_names)))
    script.chmod(0o755)
    written.append(script)
    return written


def with_bpu_files(manifest: SplitManifest) -> SplitManifest:
    """The manifest listing ``<segment>.bin`` for hobot_dnn, with the hint to run the script first."""
    segments = tuple(dataclasses.replace(e, files={**e.files, HOBOT_BACKEND: f"{e.name}.bin"})
                     for e in manifest.segments)
    hint = (f"run `bash {templates.SCRIPT_NAME}` in the kit directory (Horizon OpenExplorer X5 toolchain) to "
            "convert the ONNX segments to .bin first, then copy the directory to the board")
    return dataclasses.replace(manifest, segments=segments,
                               build_hints={**manifest.build_hints, HOBOT_BACKEND: hint})


def check_segments(manifest: SplitManifest) -> list:
    """X5 check of every ONNX segment (BPU only); ExportError naming the problems of any that fails."""
    checks = [check_onnx_model(manifest.directory / e.files["onnxruntime"], bpu_only=True) for e in manifest.segments]
    failed = [c for c in checks if not c.ok]
    if failed:
        raise ExportError("segments outside the X5 limits:\n" + "\n".join(c.format() for c in failed))
    return checks


def prepare_x5_kit(checkpoint, output, frames: FrameSource, num_samples: int = 100, head_chunk_seeds: int = 64,
                   params: dict | None = None, progress: Callable[[str], None] = lambda _: None) -> dict:
    """Export, check, calibrate and write the toolchain files into ``output``; returns a summary dict.

    Args:
        frames: real frames for the calibration (see ``x5.frames.open_frame_source``).
        params: detector parameters (the node's names) for the float pipeline: depth range,
            workspace box/mask, ``num_points``; ``depth_scale`` here overrides the frames' own.
    """
    from graspnet_edge_ros.config import DetectorConfig, from_mapping
    from graspnet_edge_ros.export.onnx_export import export_split
    from graspnet_edge_ros.digest import file_digest
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    kit = Path(output)
    params = dict(params or {})
    base_config = from_mapping({**params, "model_path": str(kit), "backend": "onnxruntime"}, DetectorConfig())
    start = time.perf_counter()
    model = load_graspnet(checkpoint)
    source = {"source_checkpoint": Path(checkpoint).name, "source_sha256": file_digest(checkpoint, 64)}
    # The BPU runs the grouped backbone (whole SA MLPs; the factored layout's first SA2-SA4 layers
    # would run on the board's CPU, their calibration not checked there) and the per_depth grasp
    # head (calibrated, int16 output tail; shared_points would add a numba pooling step on the
    # board's CPU between two BPU calls, not measured there), SA1 on all 2048 groups in one call.
    manifest = export_split(model, kit, head_chunk_seeds=head_chunk_seeds, source=source, layout="grouped",
                            head_layouts=("per_depth",), sa1_chunk_groups=None)
    progress(f"exported {len(manifest.segments)} segments to {kit} in {time.perf_counter() - start:.1f} s")
    checks = check_segments(manifest)
    progress("X5 check: every segment fits the limits, every op on the BPU")
    summary = record_calibration(kit, manifest, frames, num_samples, base_config,
                                 keep_depth_scale="depth_scale" in params, progress=progress)
    progress(f"calibration: {num_samples} samples per segment from {frames.description} "
             f"({summary.runs} pipeline runs, {summary.seconds:.1f} s)")
    write_toolchain_files(kit, manifest, num_samples)
    with_bpu_files(manifest).save()
    (kit / "README.txt").write_text(templates.KIT_README.substitute(
        checkpoint=Path(checkpoint).name, cal_dir=templates.CALIBRATION_DIR, num_samples=num_samples,
        cal_source=frames.description, script=templates.SCRIPT_NAME))
    sizes = {name: sum(p.stat().st_size for p in calibration_dir(kit, name).glob("*.bin"))
             for name in manifest.segment_names}
    return {"directory": str(kit), "segments": manifest.segment_names, "calibration_runs": summary.runs,
            "calibration_bytes": sizes, "checks": [c.path.name for c in checks],
            "seconds": round(time.perf_counter() - start, 1)}
