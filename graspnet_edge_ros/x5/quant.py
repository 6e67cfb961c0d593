"""Simulated int8 segments with the calibrated ranges, and how much the grasps change.

Scheme (a pre-flight estimate of what ``hb_mapper makertbin`` will do; the makertbin log's cosine
table and on-board runs remain the measurement):

* **Weights**: per-output-channel symmetric int8 of every Conv kernel (``numpy_helper`` on the
  initializers): ``s_c = max|W_c| / 127``, ``W_c <- clip(round(W_c / s_c), -127, 127) * s_c``.
  Biases stay float (int32 on the BPU). This is what the Bayes BPU does for conv weights.
* **Activations**: per-tensor symmetric int8, zero point 0 (X5 quantisation is symmetric in
  practice, edge_deploy.md §1.4), scale ``max|x| / 127`` over the calibration set ("max"
  calibration), simulated as ``clip(round(x / s), -127, 127) * s`` on the segment input (the .bin
  quantises its float input on the CPU) and on every node output, except a Conv output read only
  by a Relu (fused on the BPU) and a graph output produced by a Conv (the default keeps the last
  conv in high precision; ``set_model_output_int8`` would change that).
* **int16 tail**: a graph-output Concat and the Convs feeding it (the grasp head's
  [operation, tolerance] output) are int16 (scale ``max|x| / 32767``), as the kit's YAML asks with
  ``node_info`` (see ``int16_output_tail``).
* hb_mapper's default ``calibration_type: default`` searches max, KL and percentile ranges (and
  per-channel activations) and keeps what gives the best cosine similarity, so "max" is one of its
  candidates: on real ranges this simulation is, if anything, pessimistic. ``range_scale``
  multiplies every activation range, e.g. 0.01 to see what a broken calibration does.

The check runs the full pipeline twice per frame and seed, float segments and simulated int8
segments, on the same sampled points, and compares the published grasps: the share of the float
top-k that the int8 run reproduces within the NMS thresholds (0.03 m and 30 deg), and for the
matched pairs the score, translation and rotation differences. Per segment it also reports the
output cosine similarity on calibration inputs, the figure makertbin prints (target >= 0.99).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graspnet_edge_ros.errors import InputError, ModelFormatError
from graspnet_edge_ros.contract import SplitManifest
from graspnet_edge_ros.x5.kit import (calibration_dir, frame_config, int16_output_tail, read_calibration_sample,
                                      split_runner)

REPORT_NAME = "quant_report.json"
INT8_MAX = 127
MIN_SEGMENT_COSINE = 0.99     # edge_deploy.md §5.4 accuracy target per segment
MIN_TOP_K_MATCH = 0.5         # at least half of the float top-k grasps survive quantisation
X5_SCHEME = ("weights per-channel symmetric int8; activations per-tensor symmetric int8 (max calibration); "
             "grasp-head output tail int16")


def quantised_tensors(graph) -> dict[str, int]:
    """tensor name -> bits (8 or 16) of the tensors quantised on the BPU under the scheme above."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    outputs = {o.name for o in graph.output}
    initializers = {t.name for t in graph.initializer}
    wide = set(int16_output_tail(graph))
    bits = {i.name: 8 for i in graph.input if i.name not in initializers}
    for node in graph.node:
        for name in node.output:
            if node.op_type == "Conv" and (consumers.get(name) == ["Relu"] or name in outputs):
                continue
            bits[name] = 16 if node.name in wide else 8
    return bits


class _Session:
    """A segment runner on an in-memory ONNX model (no graph fusion: the Q/DQ pairs stay as written)."""

    def __init__(self, model, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run_all(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: tensor})))

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names[:1], {self.input_name: tensor})[0]


def _load_segment(manifest: SplitManifest, name: str):
    import onnx

    path = manifest.directory / manifest.segment(name).files["onnxruntime"]
    if not path.is_file():
        raise ModelFormatError(f"segment '{name}': {path} not found")
    return onnx.load(str(path))


def activation_ranges(manifest: SplitManifest, max_samples: int = 0) -> dict[str, dict[str, float]]:
    """segment -> {tensor: max |x|} over its calibration files (all of them when max_samples is 0)."""
    import onnx

    ranges = {}
    for entry in manifest.segments:
        model = _load_segment(manifest, entry.name)
        names = quantised_tensors(model.graph)
        observer = onnx.ModelProto()
        observer.CopyFrom(model)
        del observer.graph.output[:]
        observer.graph.output.extend(model.graph.output)
        skip = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
        observer.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                                     for n in names if n not in skip)
        session = _Session(observer)
        files = sorted(calibration_dir(manifest.directory, entry.name).glob("*.bin"))
        if max_samples:
            files = files[:max_samples]
        if not files:
            raise InputError(f"no calibration files for '{entry.name}' in "
                             f"{calibration_dir(manifest.directory, entry.name)} (run graspnet-edge x5-prepare)")
        peak = dict.fromkeys(names, 0.0)
        for path in files:
            tensor = read_calibration_sample(path, entry.input_shape)
            values = session.run_all(tensor)
            values[session.input_name] = tensor
            for name in names:
                peak[name] = max(peak[name], float(np.abs(values[name]).max()))
        ranges[entry.name] = peak
    return ranges


def fake_quant_model(model, ranges: dict[str, float], range_scale: float = 1.0):
    """A copy of ``model`` with int8-rounded conv weights and Q/DQ pairs on the quantised tensors."""
    import onnx
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    weights = {node.input[1] for node in graph.node if node.op_type == "Conv"}
    for index, tensor in enumerate(graph.initializer):
        if tensor.name in weights:
            graph.initializer[index].CopyFrom(numpy_helper.from_array(_int8_per_channel(numpy_helper.to_array(tensor)),
                                                                      tensor.name))
    inputs = {i.name for i in graph.input}
    new_nodes = []
    for name, bits in quantised_tensors(model.graph).items():
        levels = 2 ** (bits - 1) - 1
        scale = max(ranges[name] * range_scale, 1e-12) / levels
        constants = {f"{name}__scale": np.array(scale, np.float32), f"{name}__low": np.array(-levels, np.float32),
                     f"{name}__high": np.array(levels, np.float32)}
        graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
        if name in inputs:  # consumers of the graph input read its fake-quantised copy
            source, target = name, f"{name}__fq"
            for node in graph.node:
                node.input[:] = [target if i == name else i for i in node.input]
        else:  # the producer writes a float copy; the fake-quant chain restores the original name
            source, target = f"{name}__float", name
            for node in graph.node:
                node.output[:] = [source if o == name else o for o in node.output]
        # x -> clip(round(x / s), -L, L) * s: round half to even, saturating, like Q/DQ with zero point 0
        # (Div/Round/Clip/Mul instead of QuantizeLinear: int16 Q/DQ needs opset 21).
        new_nodes += [helper.make_node("Div", [source, f"{name}__scale"], [f"{name}__div"]),
                      helper.make_node("Round", [f"{name}__div"], [f"{name}__round"]),
                      helper.make_node("Clip", [f"{name}__round", f"{name}__low", f"{name}__high"], [f"{name}__q"]),
                      helper.make_node("Mul", [f"{name}__q", f"{name}__scale"], [target])]
    graph.node.extend(new_nodes)
    # Producers come before their Q/DQ pair, which comes before the consumers: re-sort topologically.
    _sort_nodes(graph)
    return out


def _int8_per_channel(weight: np.ndarray) -> np.ndarray:
    flat = weight.reshape(weight.shape[0], -1)
    scale = np.maximum(np.abs(flat).max(axis=1, keepdims=True), 1e-12) / INT8_MAX
    return (np.clip(np.round(flat / scale), -INT8_MAX, INT8_MAX) * scale).reshape(weight.shape).astype(np.float32)


def _sort_nodes(graph) -> None:
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ModelFormatError("fake-quantised graph has a cycle or a dangling input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def quantised_runners(manifest: SplitManifest, ranges: dict, range_scale: float = 1.0, threads: int = 0) -> dict:
    return {e.name: _Session(fake_quant_model(_load_segment(manifest, e.name), ranges[e.name], range_scale), threads)
            for e in manifest.segments}


def float_runners(manifest: SplitManifest, threads: int = 0) -> dict:
    return {e.name: _Session(_load_segment(manifest, e.name), threads) for e in manifest.segments}


def segment_cosines(manifest: SplitManifest, floats: dict, quants: dict, num_samples: int = 3) -> dict[str, float]:
    """segment -> worst output cosine similarity, float vs int8, on its first calibration inputs."""
    cosines = {}
    for entry in manifest.segments:
        files = sorted(calibration_dir(manifest.directory, entry.name).glob("*.bin"))[:num_samples]
        worst = 1.0
        for path in files:
            tensor = read_calibration_sample(path, entry.input_shape)
            a, b = floats[entry.name](tensor).ravel().astype(np.float64), quants[entry.name](tensor).ravel()
            denom = np.linalg.norm(a) * np.linalg.norm(b)
            worst = min(worst, float(a @ b / denom) if denom > 0 else 0.0)
        cosines[entry.name] = worst
    return cosines


def match_grasps(reference, candidate, top_k: int, translation_m: float = 0.03,
                 rotation_rad: float = math.radians(30)) -> dict:
    """How many of ``reference``'s top-k have a ``candidate`` grasp within the NMS thresholds.

    For each reference grasp the closest candidate (by translation) inside both thresholds is its
    match; returns the count and the matched pairs' score / translation / rotation differences.
    """
    ref = reference.sorted_by_score()[:top_k]
    if len(ref) == 0:
        return {"top_k": 0, "matched": 0, "score_diff": [], "translation_m": [], "rotation_deg": []}
    if len(candidate) == 0:
        return {"top_k": len(ref), "matched": 0, "score_diff": [], "translation_m": [], "rotation_deg": []}
    distance = np.linalg.norm(ref.translations[:, None] - candidate.translations[None], axis=2)
    trace = np.einsum("aij,bij->ab", ref.rotations.astype(np.float64), candidate.rotations.astype(np.float64))
    angle = np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0))
    inside = (distance < translation_m) & (angle < rotation_rad)
    result = {"top_k": len(ref), "matched": 0, "score_diff": [], "translation_m": [], "rotation_deg": []}
    for i in range(len(ref)):
        if not inside[i].any():
            continue
        j = int(np.argmin(np.where(inside[i], distance[i], np.inf)))
        result["matched"] += 1
        result["score_diff"].append(float(candidate.scores[j] - ref.scores[i]))
        result["translation_m"].append(float(distance[i, j]))
        result["rotation_deg"].append(float(np.degrees(angle[i, j])))
    return result


@dataclass
class QuantReport:
    """The quantisation check's findings; ``passed`` applies the documented thresholds."""

    range_scale: float
    top_k: int
    segment_cosine: dict[str, float]
    runs: list[dict] = field(default_factory=list)
    # float vs float with the next sampling seed: how much the top-k moves from sampling alone
    sampling_reference: list[dict] = field(default_factory=list)
    min_segment_cosine: float = MIN_SEGMENT_COSINE
    min_top_k_match: float = MIN_TOP_K_MATCH
    seconds: float = 0.0
    scheme: str = X5_SCHEME
    title: str = "int8 simulation"

    @property
    def top_k_match(self) -> float:
        """Share of the float top-k grasps matched by the int8 run, over all runs."""
        return _match_share(self.runs)

    @property
    def sampling_reference_match(self) -> float | None:
        """The same share between two float runs that differ only in the sampling seed."""
        return _match_share(self.sampling_reference) if self.sampling_reference else None

    def _pooled(self, key: str, absolute: bool = False) -> list[float]:
        values = [v for r in self.runs for v in r[key]]
        return [abs(v) for v in values] if absolute else values

    @property
    def failures(self) -> list[str]:
        out = [f"segment {name}: output cosine {c:.4f} < {self.min_segment_cosine}"
               for name, c in self.segment_cosine.items() if c < self.min_segment_cosine]
        if self.top_k_match < self.min_top_k_match:
            out.append(f"top-{self.top_k} match {self.top_k_match:.2f} < {self.min_top_k_match}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict:
        def stats(values):
            return {"mean": float(np.mean(values)), "max": float(np.max(values))} if values else None

        return {
            "scheme": self.scheme,
            "range_scale": self.range_scale, "top_k": self.top_k, "passed": self.passed, "failures": self.failures,
            "segment_cosine": {k: round(v, 6) for k, v in self.segment_cosine.items()},
            "top_k_match": round(self.top_k_match, 4),
            "sampling_reference_match": (None if self.sampling_reference_match is None
                                         else round(self.sampling_reference_match, 4)),
            "abs_score_diff": stats(self._pooled("score_diff", absolute=True)),
            "translation_m": stats(self._pooled("translation_m")),
            "rotation_deg": stats(self._pooled("rotation_deg")),
            "runs": self.runs, "thresholds": {"min_segment_cosine": self.min_segment_cosine,
                                              "min_top_k_match": self.min_top_k_match},
            "seconds": round(self.seconds, 1),
        }

    def format(self) -> str:
        data = self.to_json()
        scale = f" (range scale {self.range_scale:g})" if self.scheme == X5_SCHEME else ""
        lines = [f"{self.title}{scale}: per-segment output cosine vs float"]
        lines.append("  " + "  ".join(f"{k} {v:.4f}" for k, v in self.segment_cosine.items()))
        lines.append(f"grasps over {len(self.runs)} run(s): float top-{self.top_k} matched by int8 within "
                     f"0.03 m / 30 deg: {self.top_k_match:.0%}"
                     + (f" (float vs float with another sampling seed: {self.sampling_reference_match:.0%})"
                        if self.sampling_reference_match is not None else ""))
        for key, unit, label in (("abs_score_diff", "", "|score diff|"), ("translation_m", " m", "translation"),
                                 ("rotation_deg", " deg", "rotation")):
            if data[key]:
                lines.append(f"  matched pairs {label}: mean {data[key]['mean']:.4f}{unit}, "
                             f"max {data[key]['max']:.4f}{unit}")
        lines.append("  published grasps float/int8 per run: "
                     + ", ".join(f"{r['published_float']}/{r['published_int8']}" for r in self.runs))
        lines.append("PASSED" if self.passed else "FAILED: " + "; ".join(self.failures))
        return "\n".join(lines)


def quant_check(kit, frames, num_seeds: int = 2, top_k: int = 10, range_scale: float = 1.0,
                params: dict | None = None, cosine_samples: int = 3, max_range_samples: int = 0,
                ranges: dict | None = None, thresholds: dict | None = None) -> QuantReport:
    """Float vs simulated-int8 pipeline on ``frames`` (``num_seeds`` samplings each).

    Args:
        kit: a directory written by ``x5-prepare`` (segments + calibration files).
        ranges: precomputed ``activation_ranges`` (else computed from the kit's calibration files).
        thresholds: ``min_segment_cosine`` / ``min_top_k_match`` overriding the defaults.
    """
    start = time.perf_counter()
    manifest = SplitManifest.load(kit)
    ranges = ranges or activation_ranges(manifest, max_range_samples)
    floats = float_runners(manifest)
    quants = quantised_runners(manifest, ranges, range_scale)
    report = QuantReport(range_scale, top_k, segment_cosines(manifest, floats, quants, cosine_samples),
                         **(thresholds or {}))
    compare_pipelines(report, manifest, floats, quants, frames, num_seeds, params, model_ids=("x5-float", "x5-int8"),
                      float_dir=kit)
    report.seconds = time.perf_counter() - start
    return report


def compare_pipelines(report: QuantReport, manifest: SplitManifest, floats: dict, quants: dict, frames,
                      num_seeds: int, params: dict | None, model_ids=("float", "int8"), float_dir=None,
                      independent_frames: bool = False) -> QuantReport:
    """Run the float and the int8 segment runners through the full pipeline on the same frames and seeds.

    Appends one row per usable frame and seed to ``report.runs`` (top-k agreement, score differences,
    published counts) and the float-vs-float reference between seeds to ``report.sampling_reference``.
    ``independent_frames``: the frames are different scenes or cameras, so no support plane is
    carried from one frame to the next (a bag of one camera keeps it, as the node does).
    """
    from graspnet_edge_ros.config import DetectorConfig, from_mapping
    from graspnet_edge_ros.pipeline import GraspDetector

    start = time.perf_counter()
    params = dict(params or {})
    base = from_mapping({**params, "model_path": str(float_dir or manifest.directory), "backend": "onnxruntime"},
                        DetectorConfig())
    detectors = {kind: GraspDetector(base, runner=split_runner(manifest, runners, model_id))
                 for kind, runners, model_id in (("float", floats, model_ids[0]), ("int8", quants, model_ids[1]))}
    previous: dict[str, object] = {}
    for seed in range(num_seeds):
        for frame in frames:
            results = {}
            for kind, detector in detectors.items():
                if independent_frames:
                    detector.reset_support_plane()
                detector.update_config(frame_config(base, frame, seed, "depth_scale" in params))
                results[kind] = detector.detect(frame.color, frame.depth, frame.encoding, frame.intrinsics)
            if results["float"].status not in ("ok", "no_grasp"):
                continue
            if frame.name in previous:
                report.sampling_reference.append(match_grasps(previous[frame.name], results["float"].grasps,
                                                              report.top_k, base.nms.nms_translation_m,
                                                              base.nms.nms_rotation_rad))
            previous[frame.name] = results["float"].grasps
            match = match_grasps(results["float"].grasps, results["int8"].grasps, report.top_k,
                                 base.nms.nms_translation_m, base.nms.nms_rotation_rad)
            report.runs.append({"frame": frame.name, "seed": seed, **match,
                                "published_float": len(results["float"].grasps),
                                "published_int8": len(results["int8"].grasps),
                                "status_int8": results["int8"].status})
    if not report.runs:
        raise InputError("no usable frame for the quantisation check")
    report.seconds += time.perf_counter() - start
    return report


def _match_share(matches: list[dict]) -> float:
    total = sum(m["top_k"] for m in matches)
    return sum(m["matched"] for m in matches) / total if total else 0.0


def write_report(kit, report: QuantReport, path=None) -> Path:
    path = Path(path) if path else Path(kit) / REPORT_NAME
    path.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    return path
