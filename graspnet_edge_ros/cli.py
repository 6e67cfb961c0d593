"""``graspnet-edge``: the command line of the ROS-free core.

Sub-commands: env, export (GraspNet or planar), infer-points, detect, warmup, and the optional replay
(ROS layer) and x5-prepare / x5-check / x5-quant-check (RDK X5 kit).
Library errors become one line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from graspnet_edge_ros.thread_pools import prefer_sleeping_thread_pools

prefer_sleeping_thread_pools()  # before numpy and OpenMP load (see thread_pools)

import numpy as np  # noqa: E402

from graspnet_edge_ros.errors import (BackendUnavailableError, ConfigError, GraspNetEdgeError, InputError,
                                      ModelError, ModelFormatError)
from graspnet_edge_ros.quantize import DEFAULT_CALIBRATION_SAMPLES
from graspnet_edge_ros.grasps import DEPTH, HEIGHT, OBJECT_ID, SCORE, WIDTH

from graspnet_edge_ros.errors import EXIT_ERROR, EXIT_INPUT, EXIT_MODEL, EXIT_OK, EXIT_USAGE  # noqa: F401
from graspnet_edge_ros.config import NODE_ONLY_PARAMETERS, detector_parameters  # noqa: F401
from graspnet_edge_ros.files import (check_output_directory, check_output_file, load_points,  # noqa: F401
                                     read_color, read_depth, read_intrinsics, read_labels)
from graspnet_edge_ros.contract import DEFAULT_SA1_CHUNK_GROUPS
from graspnet_edge_ros.formats import MODEL_TYPES, backend_names

PROVIDERS_HELP = ("onnxruntime execution providers, comma-separated, in order of preference: cpu, cuda, tensorrt, "
                  "openvino (default cpu; one not installed falls back to CPU with one warning)")


# --------------------------------------------------------------------------------------- env
def cmd_env(_args) -> int:
    from graspnet_edge_ros import __version__
    from graspnet_edge_ros.backends.registry import available_backends
    from graspnet_edge_ros.formats import FORMATS

    print(f"graspnet_edge_ros {__version__}, numpy {np.__version__}")
    status = available_backends()
    for fmt in FORMATS:
        print(f"  {fmt.name:12s} {status[fmt.name]}  [{fmt.describe()}]")
    return EXIT_OK


# ------------------------------------------------------------------------------------ export
def cmd_export(args) -> int:
    from graspnet_edge_ros.export.checkpoint_export import ExportRequest
    from graspnet_edge_ros.formats import load_exporter
    from graspnet_edge_ros.planar.formats import detect_planar_model_type

    _require_torch("export")
    if args.split:
        check_output_directory(args.output, "--output")
    else:
        check_output_file(args.output, "--output")

    if args.quantize and not args.split:
        raise ConfigError("--quantize int8 applies to split exports: add --split")
    if args.quantize and not args.calibration_source:
        raise ConfigError("--quantize int8 needs --calibration-source (a bag, GraspNet capture or frame directory)")
    if args.sa1_groups_per_call < 0:
        raise ConfigError(f"--sa1-groups-per-call must be >= 0 (0 = all SA1 groups in one call), "
                          f"got {args.sa1_groups_per_call}")
    if args.calibration_samples < 1:
        raise ConfigError(f"--calibration-samples must be >= 1, got {args.calibration_samples}")
    model_type = args.model_type or detect_planar_model_type(args.checkpoint) or "graspnet"
    if args.quantize:
        if model_type != "graspnet":
            raise ConfigError(f"--quantize int8 applies to GraspNet split exports, not {model_type}")
        return _export_int8(args)
    export = load_exporter(model_type)  # the format table's exporter of this model family
    print(export(ExportRequest(
        checkpoint=Path(args.checkpoint), output=Path(args.output), model_type=model_type, split=args.split,
        num_points=args.num_points, opset=args.opset, head_chunk_seeds=args.head_chunk_seeds,
        split_layout=args.split_layout, sa1_chunk_groups=args.sa1_groups_per_call or None,
        input_size=args.input_size, angle_output="logits" if args.angle_logits else "argmax")))
    return EXIT_OK


def _export_int8(args) -> int:
    """Split export quantised to int8 with calibration inputs recorded on real frames, plus the fp32/int8 report."""
    from graspnet_edge_ros.digest import file_digest
    from graspnet_edge_ros.model.checkpoint import load_graspnet
    from graspnet_edge_ros.quantize import REPORT_NAME, export_int8_split, format_report
    from graspnet_edge_ros.x5.frames import open_frame_source, with_orbited_views

    frames = open_frame_source(args.calibration_source)  # InputError before any work when it is unusable
    start = time.perf_counter()
    model = load_graspnet(args.checkpoint)
    source = {"source_checkpoint": Path(args.checkpoint).name, "source_sha256": file_digest(args.checkpoint, 64)}
    report_frames = with_orbited_views(frames, max_views=1) if args.report else None
    manifest, report = export_int8_split(model, args.output, frames, args.calibration_samples,
                                         head_chunk_seeds=args.head_chunk_seeds, source=source,
                                         layout=args.split_layout,
                                         sa1_chunk_groups=args.sa1_groups_per_call or None,
                                         report_frames=report_frames,
                                         progress=lambda line: print(line, flush=True))
    print(f"wrote {len(manifest.segments)} int8 segments ({manifest.layout} backbone) + manifest.json to {args.output} "
          f"in {time.perf_counter() - start:.1f} s")
    if report is not None:
        print(format_report(report))
        print(f"report -> {Path(args.output) / REPORT_NAME}")
    return EXIT_OK


def _require_torch(command: str) -> None:
    """BackendUnavailableError naming the extra to install when PyTorch is missing."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise BackendUnavailableError(f"`graspnet-edge {command}` needs PyTorch, which is not installed: "
                                      "pip install 'graspnet_edge_ros[torch]' (or the CPU wheel from "
                                      "https://download.pytorch.org/whl/cpu)")


# ------------------------------------------------------------------------------- infer-points
def cmd_infer_points(args) -> int:
    from graspnet_edge_ros.postprocess.decode import decode_grasps
    from graspnet_edge_ros.formats import provider_options, resolve_providers, thread_options
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner

    if args.repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {args.repeat}")
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    if args.dump:
        check_output_file(args.dump, "--dump")
    if args.grasps:
        check_output_file(args.grasps, "--grasps")
    if args.providers:
        resolve_providers(args.providers)  # an unknown name is a usage error before anything loads
    points = load_points(args.points)
    runner = load_graspnet_runner(args.model, args.backend, **thread_options(args.backend, args.model, args.threads),
                                  **provider_options(args.backend, args.model, args.providers))
    # A raw dump must hold every seed; otherwise skip the head for seeds the decoder drops.
    skip = args.dump is None
    times = []
    raw = None
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        raw = runner(points, skip_background_seeds=skip)
        times.append(time.perf_counter() - start)
    print(f"{runner.kind} model via {runner.backend_name}: {len(points)} points, "
          f"median forward {np.median(times) * 1e3:.1f} ms over {len(times)} run(s)")
    if args.dump:
        np.savez(args.dump, **{k: v for k, v in raw.items()})
        print(f"raw outputs -> {args.dump}")
    if args.grasps:
        grasps = decode_grasps(raw)
        grasps.save_npy(args.grasps)
        print(f"{len(grasps)} decoded grasps (N x 17, graspnetAPI layout) -> {args.grasps}")
    return EXIT_OK




# ------------------------------------------------------------------------------------ detect
def cmd_detect(args) -> int:
    from graspnet_edge_ros.config import from_mapping
    from graspnet_edge_ros.pipeline import GraspDetector, check_table_plane_frame

    # Everything that can be checked without the model comes first: outputs, parameters, inputs.
    check_output_file(args.output, "--output")
    if args.overlay:
        check_output_file(args.overlay, "--overlay")
    values = detector_parameters(args.params_file) if args.params_file else {}
    file_config = from_mapping(values)  # a bad value in the file is refused before any input is read
    color = read_color(args.color)
    depth, encoding = read_depth(args.depth)
    intrinsics, file_scale = read_intrinsics(depth.shape, args.intrinsics, args.camera_info)
    overrides = {"model_path": str(args.model), "backend": args.backend or values.get("backend", "")}
    if args.model_type:
        overrides["model_type"] = args.model_type
    if args.workspace_mask:
        overrides["workspace_mask_path"] = str(args.workspace_mask)
    # Precedence: --depth-scale, then the parameter file, then the camera file's factor.
    if args.depth_scale is not None:
        overrides["depth_scale"] = args.depth_scale
    elif "depth_scale" in values and file_scale is not None:
        print(f"graspnet-edge: note: depth_scale {values['depth_scale']} from {args.params_file} overrides "
              f"{file_scale:g} from {args.camera_info}", file=sys.stderr)
    elif file_scale is not None:
        overrides["depth_scale"] = file_scale
    if args.seed is not None:
        overrides["sampling_seed"] = args.seed
    if args.max_grasps is not None:
        overrides["max_grasps"] = args.max_grasps
    if args.providers:
        overrides["onnx_providers"] = args.providers
    if args.target_object:
        overrides["target_object_ids"] = list(args.target_object)
    config = from_mapping(overrides, file_config)
    if config.targeting.target_object_ids and not args.object_mask:
        where = "--target-object" if args.target_object else f"target_object_ids in {args.params_file}"
        raise ConfigError(f"{where} needs --object-mask (an instance-label image aligned to --color)")
    check_table_plane_frame(config)  # before the model loads: no frame could be detected
    labels = read_labels(args.object_mask) if args.object_mask else None
    detector = GraspDetector(config)
    result = detector.detect(color, depth, encoding, intrinsics, object_labels=labels)
    report = result_to_json(result, config)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print_result_table(result)
    print(f"grasps -> {args.output}")
    if args.overlay:
        from graspnet_edge_ros.visualization import save_overlay

        save_overlay(args.overlay, color, result.grasps, intrinsics)
        print(f"overlay -> {args.overlay}")
    if result.status == "error":
        return EXIT_MODEL
    return EXIT_OK if result.status in ("ok", "no_grasp") else EXIT_INPUT


def result_to_json(result, config) -> dict:
    grasps = []
    if result.poses is not None:
        for rank in range(len(result.grasps)):
            row = result.grasps.array[rank]
            grasps.append({
                "rank": rank, "score": float(row[SCORE]), "width_m": float(row[WIDTH]),
                "height_m": float(row[HEIGHT]), "depth_m": float(row[DEPTH]),
                "position_m": result.poses.positions[rank].tolist(),
                "orientation_xyzw": result.poses.quaternions[rank].tolist(),
                "approach": result.poses.approach[rank].tolist(),
                "pre_grasp_position_m": result.poses.pre_grasp_positions[rank].tolist(),
                "object_id": int(round(float(row[OBJECT_ID]))),
                "graspnet_row": [float(v) for v in row],
            })
    plane = result.support_plane
    return {
        "status": result.status, "reason": result.reason, "model_id": result.model_id,
        "frame": "camera_optical", "pose_convention": config.poses.pose_convention,
        "pre_grasp_distance_m": config.poses.pre_grasp_distance_m, "tcp_offset_m": config.poses.tcp_offset_m,
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        "counts": result.counts,
        "support_plane": None if plane is None else {
            "coefficients": [round(float(v), 6) for v in plane.coefficients], "source": plane.source,
            "inliers": plane.inliers},
        "support_plane_note": result.plane_note, "warnings": list(result.warnings),
        "grasps": grasps,
    }


def print_result_table(result, top: int = 10) -> None:
    print(f"status: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    if len(result.grasps):
        print(f"{'rank':>4} {'score':>7} {'width':>7} {'depth':>6}   {'x':>7} {'y':>7} {'z':>7}")
        for rank, row in enumerate(result.grasps.array[:top]):
            x, y, z = result.poses.positions[rank]
            print(f"{rank:>4} {row[SCORE]:7.3f} {row[WIDTH]:7.3f} {row[DEPTH]:6.2f}   {x:7.3f} {y:7.3f} {z:7.3f}")
    for note in ([result.plane_note] if result.plane_note else []) + list(result.warnings):
        print(f"note: {note}")
    stages = "  ".join(f"{k} {v:.1f}" for k, v in result.timings_ms.items() if "." not in k)
    print(f"latency ms: {stages}  total {sum(v for k, v in result.timings_ms.items() if '.' not in k):.1f}")




# ------------------------------------------------------------------------------------ warmup
def cmd_warmup(args) -> int:
    from graspnet_edge_ros.warmup import main as warmup

    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    return warmup(args.model, args.threads)


# -------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graspnet-edge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("env", help="versions and which backends are usable here").set_defaults(func=cmd_env)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (GraspNet single file or split segments; "
                                      "GR-ConvNet / AFFGA-Net single file)")
    p.add_argument("--checkpoint", required=True,
                   help="GraspNet state dict, or a GR-ConvNet / AFFGA-Net checkpoint "
                        "(whole-module pickle or state dict)")
    p.add_argument("--output", required=True, help="model.onnx, or a directory with --split")
    p.add_argument("--model-type", choices=list(MODEL_TYPES), default=None,
                   help="default: detected from the checkpoint")
    p.add_argument("--split", action="store_true", help="GraspNet: BPU-ready segments + manifest.json")
    p.add_argument("--num-points", type=int, default=20000, help="GraspNet: static point count of the single file")
    p.add_argument("--opset", type=int, default=None,
                   help="opset of the single file (default: GraspNet 17, planar 11; GraspNet segments: always 11)")
    p.add_argument("--input-size", type=int, default=None,
                   help="planar: square input side (default GR-ConvNet 224, AFFGA-Net 320)")
    p.add_argument("--angle-logits", action="store_true",
                   help="AFFGA-Net: output the 120 angle logits instead of the in-graph argmax bin map")
    p.add_argument("--head-chunk-seeds", type=int, default=64, help="seeds per grasp-head call (split)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="split: int8 segments for CPUs (onnxruntime static quantisation, QDQ, per-channel weights)")
    p.add_argument("--calibration-source", help="--quantize: real frames the calibration inputs are recorded on "
                                                "(rosbag2 / .mcap, GraspNet capture, directory of captures, or "
                                                "frame directory)")
    p.add_argument("--calibration-samples", type=int, default=DEFAULT_CALIBRATION_SAMPLES,
                   help=f"--quantize: recorded inputs per segment (default {DEFAULT_CALIBRATION_SAMPLES}; "
                        "kept in a temporary directory, ~32 MB per pipeline run)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="--quantize: skip the fp32 vs int8 comparison (int8_report.json)")
    p.add_argument("--split-layout", choices=["factored", "grouped"], default="factored",
                   help="split: 'factored' (fastest on a CPU: SA2-SA4 first layers run in the runtime) or "
                        "'grouped' (whole SA MLPs in the segments; the X5 kit's layout)")
    p.add_argument("--sa1-groups-per-call", type=int, default=DEFAULT_SA1_CHUNK_GROUPS, metavar="N",
                   help=f"split: SA1 groups per sa1 segment call (default {DEFAULT_SA1_CHUNK_GROUPS}: the runtime "
                        "runs only the ~40 %% "
                        "of SA1's groups that SA2 reads); 0 = all SA1 groups in one call, as x5-prepare exports")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("infer-points", help="one forward pass on exact input points")
    p.add_argument("--points", required=True,
                   help=".npy (N,3) float32 camera frame, metres (or .npz with one array / an array 'points')")
    p.add_argument("--model", required=True, help="checkpoint, .onnx file, or split directory")
    p.add_argument("--backend", choices=backend_names(), default=None)
    p.add_argument("--dump", help="write raw outputs (official end_points names) to this .npz")
    p.add_argument("--grasps", help="write decoded grasps (N x 17) to this .npy")
    p.add_argument("--repeat", type=int, default=1, help="run K times and print the median time")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of the backend (0 = its default)")
    p.add_argument("--providers", default=None, help=PROVIDERS_HELP)
    p.set_defaults(func=cmd_infer_points)

    p = sub.add_parser("detect", help="grasps for one RGB-D frame -> JSON (+ overlay PNG)")
    p.add_argument("--color", required=True)
    p.add_argument("--depth", required=True, help="16-bit PNG (units x depth scale) or .npy float metres")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--intrinsics", help="fx,fy,cx,cy")
    group.add_argument("--camera-info", help="YAML/JSON with k/K/camera_matrix, or meta.mat")
    p.add_argument("--depth-scale", type=float, help="metres per depth unit (default 0.001)")
    p.add_argument("--workspace-mask", help="PNG mask, non-zero = workspace")
    p.add_argument("--object-mask", help="instance-label image aligned to colour (8/16/32-bit PNG or .npy, "
                                         "0 = background): sets each grasp's object_id")
    p.add_argument("--target-object", type=int, action="append", metavar="ID",
                   help="keep only grasps on this object label (repeatable; needs --object-mask)")
    p.add_argument("--model", required=True)
    p.add_argument("--model-type", choices=["auto", *MODEL_TYPES], default=None,
                   help="default: detected from the model file (give it for a compiled .bin)")
    p.add_argument("--backend", choices=backend_names(), default=None)
    p.add_argument("--providers", default=None, help=PROVIDERS_HELP + "; overrides onnx_providers of --params-file")
    p.add_argument("--params-file", help="YAML of detector parameters: flat, or the node's parameter file "
                                         "(config/default.yaml; node-only keys are ignored)")
    p.add_argument("--seed", type=int, help="sampling seed for reproducible runs")
    p.add_argument("--max-grasps", type=int)
    p.add_argument("--output", required=True, help="grasps.json")
    p.add_argument("--overlay", help="overlay.png")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("warmup", help="compile every numba kernel into the on-disk cache (run once after "
                                      "install/build, so no process compiles at run time); optionally load a model")
    p.add_argument("--model", help="also load this model and run one synthetic frame through it")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of the backend (0 = its default)")
    p.set_defaults(func=cmd_warmup)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub) -> None:
    """Commands whose modules add their own sub-parsers (kept out of this file)."""
    import importlib

    for module_name in ("graspnet_edge_ros.ros.replay_cli", "graspnet_edge_ros.x5.cli", "graspnet_edge_ros.sim.cli"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Skip only when the module itself (or its package) is absent, e.g. the ROS layer in a
            # pip install; a module that exists but imports something missing must fail loudly.
            if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
                raise
            continue
        module.add_commands(sub)


DEBUG_ENV = "GRASPNET_EDGE_DEBUG"  # set to 1 to get the traceback of an unexpected error


def main(argv=None) -> int:
    """Run one sub-command; errors become one line on stderr and an exit code (see module docstring).

    Exit codes: 2 usage/configuration, 3 input, 4 model/runtime (incl. a missing runtime), 1 other.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", EXIT_USAGE)
    except InputError as exc:
        return _fail(f"bad input: {exc}", EXIT_INPUT)
    except (ModelFormatError, ModelError, BackendUnavailableError) as exc:
        return _fail(f"model error: {exc}", EXIT_MODEL)
    except GraspNetEdgeError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", 128 + 2)
    except MemoryError:
        return _fail("out of memory (lower num_points or the image size)", EXIT_ERROR)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, the traceback on request
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)",
                     EXIT_ERROR)


def _fail(message: str, code: int) -> int:
    print(f"graspnet-edge: {' '.join(str(message).split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
