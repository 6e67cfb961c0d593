"""An int8 split model for CPUs: ONNX Runtime static quantisation (QDQ) of every segment.

``quantize_split`` takes a float32 split export, records what each segment really receives on
real frames (the X5 kit's recorder, ``x5.kit.record_calibration``: the float pipeline runs and
every segment call is kept), and quantises each segment file the manifest lists with
``onnxruntime.quantization.quantize_static``: QDQ format, per-channel symmetric int8 weights,
uint8 activations calibrated with min/max over the recorded inputs. The nodes that write the
decoder's inputs stay float (see ``float_output_tail``): the grasp head's last layers mix
angle logits (|x| ~ 10) with widths and tolerances (~0.03) in one tensor, which one int8 scale
cannot hold (the X5 kit keeps the same tail in int16); segments that end in a feature map for the
next segment are quantised to the end. The result is an ordinary split directory
(float32 inputs and outputs, the same manifest layout) whose manifest says ``precision: int8``.

Nothing here depends on the segment layout: it quantises whatever segments the manifest lists
(either grasp-head layout; either backbone layout: a "factored" export's first SA2..SA4 layers,
``first_layers.npz``, run in the runtime in float32 and are copied unchanged).
``compare_split_models`` measures what quantisation changes in the published grasps, with the
metrics of the X5 check (``x5.quant``): share of the float top-k reproduced, score drift, counts.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from graspnet_edge_ros.errors import ExportError, InputError
from graspnet_edge_ros.contract import (DEFAULT_HEAD_LAYOUT_PREFERENCE, DEFAULT_SA1_CHUNK_GROUPS,
                                        HEAD_LAYOUT_PREFERENCE, SplitManifest)

PRECISION_INT8 = "int8"
DEFAULT_CALIBRATION_SAMPLES = 16
QDQ_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (the axis attribute) need opset >= 13
REPORT_NAME = "int8_report.json"
MIN_TOP_K_AGREEMENT = 0.8  # issue 14's goal: >= 80 % of the fp32 top-10 reproduced by int8
# Bumped when the same checkpoint and calibration would give another int8 model (2: feature outputs on
# 8 bits; 3: crop_mlp points-major; 4: SA2/SA3 in calls of 256 centres, factored SA inputs channels last;
# 5: every call of SA2/SA3 recorded for calibration).
QUANTIZER_REVISION = 5


# Ops whose output is a feature map for the next segment (non-negative, one range): quantised.
_FEATURE_OUTPUT_OPS = ("MaxPool", "ReduceMax", "Relu")
_LAYOUT_OPS = ("Transpose", "Reshape")  # move values only: quantised, they keep their input's scale


def float_output_tail(graph) -> list[str]:
    """Names of the nodes kept in float: linear graph outputs (a Conv, or a Concat and its Convs).

    Those are the decoder's inputs: the grasp head's Concat mixes angle logits (|x| ~ 10) with
    widths and tolerances (~0.03), fp2_approach's last Conv writes objectness and view scores; the
    X5 kit's int16 tail (``x5.kit.int16_output_tail``) covers the same nodes. A segment that ends in a
    feature map (ReLU, or the max of an SA layer) for the next segment is quantised to the end:
    - the max: dequantising is increasing, so the max of the uint8 values, dequantised, equals the
      max of the dequantised values bit for bit (the quantiser gives a MaxPool its input's scale),
      and it reads 8-bit activations instead of a float copy four times their size (int8 SA2 9.8 ->
      7.9 ms, same output);
    - a closing ReLU (fp1, crop_mlp) fuses into its QLinearConv, whose output range then starts at 0
      (twice the resolution of the signed range it had); the next segment quantises its input anyway;
    - a Transpose or Reshape after either (crop_mlp's points-major output) moves the 8-bit values.
      Segment cosines 0.9998 -> 0.9999 (fp1) and 0.9997 -> 0.9998 (crop_mlp); ~1 ms less per forward.
    (2026-12-07.)
    """
    outputs = {o.name for o in graph.output}
    producers = {out: node for node in graph.node for out in node.output}

    def feature_map(node) -> bool:  # looking through layout-only ops (crop_mlp's closing Transpose)
        while node.op_type in _LAYOUT_OPS and node.input[0] in producers:
            node = producers[node.input[0]]
        return node.op_type in _FEATURE_OUTPUT_OPS

    names: list[str] = []
    for node in graph.node:
        if not any(o in outputs for o in node.output) or feature_map(node):
            continue
        if node.op_type == "Concat":
            names += [producers[i].name for i in node.input if i in producers and producers[i].op_type == "Conv"]
        names.append(node.name)
    return names


class _RecordedInputs:
    """``CalibrationDataReader`` over one segment's recorded calibration files (read one at a time)."""

    def __init__(self, files: list[Path], shape, input_name: str):
        self.files, self.shape, self.input_name = list(files), tuple(shape), input_name
        self._next, self._end = 0, len(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def set_range(self, start_index: int, end_index: int) -> None:
        """The samples of one stride (``CalibStridedMinMax``)."""
        self._next, self._end = start_index, min(end_index, len(self.files))

    def get_next(self):
        from graspnet_edge_ros.x5.kit import read_calibration_sample

        if self._next >= self._end:
            return None
        path = self.files[self._next]
        self._next += 1
        return {self.input_name: read_calibration_sample(path, self.shape)}

    def rewind(self):
        self._next, self._end = 0, len(self.files)


def _stride(count: int, largest: int = 4) -> int:
    """Samples per min/max stride: the calibrator keeps every intermediate tensor of a stride in
    memory (SA2's are ~16 MB each, ~0.1 GB per sample), so ranges are merged every few samples."""
    return next(s for s in range(min(largest, count), 0, -1) if count % s == 0)


def quantize_segment(source: Path, target: Path, samples: list[Path], input_shape, keep_float_tail: bool = True,
                     per_channel: bool = True) -> dict:
    """Quantise one segment file with its recorded inputs; returns what was done (for the manifest).

    The float segments are opset 11 (the X5 limit); per-channel DequantizeLinear needs opset 13, so
    the graph is converted first, then ORT's pre-processing (shape inference, graph optimisation) runs.
    """
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, \
        quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from graspnet_edge_ros.contract import SEGMENT_INPUT

    class Reader(_RecordedInputs, CalibrationDataReader):
        pass

    try:
        with tempfile.TemporaryDirectory(prefix="graspnet_int8_") as scratch:
            converted, prepared = Path(scratch) / "opset13.onnx", Path(scratch) / "prepared.onnx"
            onnx.save(version_converter.convert_version(onnx.load(str(source)), QDQ_OPSET), str(converted))
            quant_pre_process(str(converted), str(prepared))
            excluded = float_output_tail(onnx.load(str(prepared)).graph) if keep_float_tail else []
            quantize_static(str(prepared), str(target), Reader(samples, input_shape, SEGMENT_INPUT),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded,
                            extra_options={"CalibStridedMinMax": _stride(len(samples))})
    except Exception as exc:  # ORT's quantiser raises plain Exceptions/ValueErrors from deep inside
        raise ExportError(f"{source.name}: int8 quantisation failed: {type(exc).__name__}: {exc}") from exc
    return {"float_nodes": excluded, "samples": len(samples)}


def quantize_split(float_dir, output, frames, num_samples: int = DEFAULT_CALIBRATION_SAMPLES,
                   params: dict | None = None, keep_float_tail: bool = True, calibration_dir=None,
                   progress: Callable[[str], None] = lambda _: None) -> SplitManifest:
    """Quantise every segment of the float split model ``float_dir`` into ``output`` (a new directory).

    Args:
        frames: real frames (``x5.frames.open_frame_source``) the calibration inputs are recorded on.
        params: detector parameters (the node's names) of the float pipeline while recording.
        calibration_dir: keep the recorded inputs there (default: a temporary directory, removed).
    """
    from graspnet_edge_ros.config import DetectorConfig, from_mapping
    from graspnet_edge_ros.x5.kit import calibration_dir as segment_calibration_dir
    from graspnet_edge_ros.x5.kit import record_calibration

    float_manifest = SplitManifest.load(float_dir)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    params = dict(params or {})
    base = from_mapping({**params, "model_path": str(float_dir), "backend": "onnxruntime"}, DetectorConfig())
    with tempfile.TemporaryDirectory(prefix="graspnet_int8_calibration_") as scratch:
        record_root = Path(calibration_dir) if calibration_dir else Path(scratch)
        start = time.perf_counter()
        summary = record_calibration(record_root, float_manifest, frames, num_samples, base,
                                     keep_depth_scale="depth_scale" in params, progress=progress)
        progress(f"calibration: {num_samples} inputs per segment from {frames.description} "
                 f"({summary.runs} pipeline runs, {time.perf_counter() - start:.1f} s)")
        segments, details = [], {}
        for entry in float_manifest.segments:
            start = time.perf_counter()
            name = f"{entry.name}.int8.onnx"
            samples = sorted(segment_calibration_dir(record_root, entry.name).glob("*.bin"))
            details[entry.name] = quantize_segment(float_manifest.directory / entry.files["onnxruntime"],
                                                   output / name, samples, entry.input_shape, keep_float_tail)
            progress(f"  {entry.name}: int8 in {time.perf_counter() - start:.1f} s "
                     f"({len(details[entry.name]['float_nodes'])} output node(s) kept float)")
            segments.append(dataclasses.replace(entry, files={"onnxruntime": name}))
    if float_manifest.first_layers:
        # The factored backbone's first SA2..SA4 layers run in the runtime, in float32: copied as they are.
        shutil.copyfile(float_manifest.directory / float_manifest.first_layers, output / float_manifest.first_layers)
    quantization = {
        "method": "onnxruntime.quantization.quantize_static", "format": "QDQ", "revision": QUANTIZER_REVISION,
        "weights": "int8, per-channel, symmetric", "activations": "uint8, per-tensor, min/max calibration",
        "float_nodes": {k: v["float_nodes"] for k, v in details.items()},
        "calibration": {"source": frames.description, "samples_per_segment": num_samples, "runs": summary.runs,
                        "params": params, "skipped": summary.skipped[:10]},
        "float_model": {"source": dict(float_manifest.source), "directory": str(Path(float_dir).resolve())},
    }
    manifest = dataclasses.replace(float_manifest, directory=output, segments=tuple(segments),
                                   precision=PRECISION_INT8, quantization=quantization, build_hints={})
    manifest.save()
    return manifest


def export_int8_split(model, output, frames, num_samples: int = DEFAULT_CALIBRATION_SAMPLES,
                      head_chunk_seeds: int = 64, params: dict | None = None, source: dict | None = None,
                      report_frames=None, report_seeds: int = 2, layout: str = "factored",
                      progress: Callable[[str], None] = lambda _: None,
                      sa1_chunk_groups: int | None = DEFAULT_SA1_CHUNK_GROUPS):
    """Float split export (temporary) -> int8 split model in ``output``; returns (manifest, report or None).

    ``layout``, ``sa1_chunk_groups``: the float export's backbone layout and SA1 groups per call
    (``export_split``), kept by the int8 model.
    ``report_frames``: frames the fp32 and int8 models are compared on (``compare_split_models``)
    before the float export is removed; the report is written to ``output/int8_report.json``.
    """
    from graspnet_edge_ros.export.onnx_export import export_split

    output = Path(output)
    report = None
    with tempfile.TemporaryDirectory(prefix="graspnet_float_split_") as scratch:
        float_dir = Path(scratch) / "float32"
        start = time.perf_counter()
        # Only the grasp-head layout the CPU runs: calibration records what the pipeline calls.
        export_split(model, float_dir, head_chunk_seeds=head_chunk_seeds, source=source, layout=layout,
                     sa1_chunk_groups=sa1_chunk_groups,
                     head_layouts=HEAD_LAYOUT_PREFERENCE.get("onnxruntime", DEFAULT_HEAD_LAYOUT_PREFERENCE)[:1])
        progress(f"float32 segments exported in {time.perf_counter() - start:.1f} s")
        manifest = quantize_split(float_dir, output, frames, num_samples, params, progress=progress)
        manifest = dataclasses.replace(manifest, quantization={
            **manifest.quantization, "float_model": {"source": dict(source or {}), "directory": None}})
        manifest.save()
        if report_frames is not None:
            start = time.perf_counter()
            report = compare_split_models(float_dir, output, report_frames, num_seeds=report_seeds, params=params)
            write_report(report, output / REPORT_NAME)
            progress(f"fp32 vs int8 report on {report_frames.description} in {time.perf_counter() - start:.1f} s")
    return manifest, report


# ------------------------------------------------------------------------------------ report
def compare_split_models(float_dir, int8_dir, frames, num_seeds: int = 2, top_k: int = 10,
                         params: dict | None = None, cosine_inputs: int = 2):
    """fp32 vs int8 on ``frames``: an ``x5.quant.QuantReport`` (top-k agreement, score drift, counts).

    Every frame runs through both split models with the same sampled points (``num_seeds`` samplings
    each); per segment, the output cosine on the inputs recorded from the first ``cosine_inputs``
    runs of the float model.
    """
    from graspnet_edge_ros.runtime.segment_runners import backend_runners
    from graspnet_edge_ros.x5.kit import _RecordingRunner
    from graspnet_edge_ros.x5.quant import QuantReport, compare_pipelines

    float_manifest, int8_manifest = SplitManifest.load(float_dir), SplitManifest.load(int8_dir)
    floats = {k: _RecordingRunner(r, limit=cosine_inputs)
              for k, r in backend_runners(float_manifest, "onnxruntime").items()}
    quants = backend_runners(int8_manifest, "onnxruntime")
    report = QuantReport(1.0, top_k, {}, scheme=_scheme(int8_manifest), min_top_k_match=MIN_TOP_K_AGREEMENT,
                         title="onnxruntime int8 (QDQ)")
    compare_pipelines(report, float_manifest, floats, quants, frames, num_seeds, params,
                      model_ids=("fp32", "int8"), float_dir=float_dir, independent_frames=True)
    report.segment_cosine = _segment_cosines(floats, quants, cosine_inputs)
    return report


def _scheme(manifest: SplitManifest) -> str:
    q = manifest.quantization or {}
    return (f"onnxruntime static quantisation ({q.get('format', 'QDQ')}): weights {q.get('weights', '?')}; "
            f"activations {q.get('activations', '?')}; decoder-input nodes kept float")


def _segment_cosines(floats: dict, quants: dict, count: int) -> dict[str, float]:
    """Worst output cosine similarity per segment on the first ``count`` inputs the float model saw."""
    cosines = {}
    for name, recorder in floats.items():
        worst = 1.0
        for tensor in recorder.calls[:count]:
            a = recorder.runner(tensor).ravel().astype(np.float64)
            b = quants[name](tensor).ravel().astype(np.float64)
            denom = np.linalg.norm(a) * np.linalg.norm(b)
            worst = min(worst, float(a @ b / denom) if denom > 0 else 0.0)
        cosines[name] = worst
        recorder.calls.clear()
    if not cosines:
        raise InputError("no segment input recorded for the cosine comparison")
    return cosines


def per_frame_summary(report) -> list[dict]:
    """One row per frame: runs, top-k agreement, |score drift| mean/max of matched pairs, mean grasp counts."""
    rows = []
    for name in dict.fromkeys(r["frame"] for r in report.runs):
        runs = [r for r in report.runs if r["frame"] == name]
        top_k = sum(r["top_k"] for r in runs)
        drift = [abs(v) for r in runs for v in r["score_diff"]]
        rows.append({"frame": name, "runs": len(runs),
                     "top_k_agreement": sum(r["matched"] for r in runs) / top_k if top_k else 0.0,
                     "score_drift_mean": float(np.mean(drift)) if drift else 0.0,
                     "score_drift_max": float(np.max(drift)) if drift else 0.0,
                     "grasps_fp32": float(np.mean([r["published_float"] for r in runs])),
                     "grasps_int8": float(np.mean([r["published_int8"] for r in runs]))})
    return rows


def format_report(report) -> str:
    """The fp32-vs-int8 table printed by ``graspnet-edge export --quantize int8``."""
    lines = [f"fp32 vs int8 ({report.scheme})",
             f"{'frame':<32} {'runs':>4} {'top-' + str(report.top_k):>7} {'drift mean':>10} {'drift max':>9} "
             f"{'grasps fp32/int8':>17}"]
    for row in per_frame_summary(report):
        lines.append(f"{row['frame'][:32]:<32} {row['runs']:>4} {row['top_k_agreement']:>7.0%} "
                     f"{row['score_drift_mean']:>10.4f} {row['score_drift_max']:>9.4f} "
                     f"{row['grasps_fp32']:>8.1f}/{row['grasps_int8']:<8.1f}")
    reference = report.sampling_reference_match
    lines.append(f"all: top-{report.top_k} agreement {report.top_k_match:.0%} (goal >= {report.min_top_k_match:.0%})"
                 + (f"; fp32 vs fp32 with another sampling seed: {reference:.0%}" if reference is not None else ""))
    lines.append("segment output cosine: " + "  ".join(f"{k} {v:.4f}" for k, v in report.segment_cosine.items()))
    return "\n".join(lines)


def write_report(report, path) -> Path:
    import json

    path = Path(path)
    path.write_text(json.dumps({**report.to_json(), "per_frame": per_frame_summary(report)}, indent=1) + "\n")
    return path
