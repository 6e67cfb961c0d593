"""``graspnet-edge``: the command line of the ROS-free core.

Sub-commands: env, export (GraspNet or planar), infer-points, detect, and the optional replay
(ROS layer) and x5-prepare / x5-check / x5-quant-check (RDK X5 kit).
Library errors become one line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from graspnet_edge_ros.errors import ConfigError, GraspNetEdgeError, InputError, ModelFormatError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL = 0, 1, 2, 3, 4
GRASPNET_SINGLE_FILE_OPSET = 17


# --------------------------------------------------------------------------------------- env
def cmd_env(_args) -> int:
    from graspnet_edge_ros import __version__
    from graspnet_edge_ros.backends.registry import available_backends

    print(f"graspnet_edge_ros {__version__}, numpy {np.__version__}")
    for name, status in available_backends().items():
        print(f"  {name:12s} {status}")
    return EXIT_OK


# ------------------------------------------------------------------------------------ export
def cmd_export(args) -> int:
    from graspnet_edge_ros.planar.formats import detect_planar_model_type

    model_type = args.model_type or detect_planar_model_type(args.checkpoint) or "graspnet"
    if model_type != "graspnet":
        return _export_planar(args, model_type)
    if args.input_size is not None or args.angle_logits:
        raise ConfigError("--input-size and --angle-logits apply to planar models (grconvnet, affga), not GraspNet")
    from graspnet_edge_ros.export.onnx_export import export_single_file, export_split
    from graspnet_edge_ros.digest import file_digest
    from graspnet_edge_ros.model.checkpoint import load_graspnet

    model = load_graspnet(args.checkpoint)
    source = {"source_checkpoint": Path(args.checkpoint).name, "source_sha256": file_digest(args.checkpoint, 64)}
    start = time.perf_counter()
    if args.split:
        manifest = export_split(model, args.output, head_chunk_seeds=args.head_chunk_seeds, source=source)
        print(f"wrote {len(manifest.segments)} segments + manifest.json to {args.output} "
              f"in {time.perf_counter() - start:.1f} s")
    else:
        opset = GRASPNET_SINGLE_FILE_OPSET if args.opset is None else args.opset
        path = export_single_file(model, args.output, num_points=args.num_points, opset=opset, source=source)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.num_points} points) "
              f"in {time.perf_counter() - start:.1f} s")
    return EXIT_OK


def _export_planar(args, model_type: str) -> int:
    """GR-ConvNet / AFFGA-Net checkpoint -> one static-shape ONNX file, checked in onnxruntime."""
    from graspnet_edge_ros.digest import file_digest
    from graspnet_edge_ros.planar.export import PLANAR_OPSET, export_planar_onnx, load_planar_model

    if args.split:
        raise ConfigError(f"--split is for GraspNet; a {model_type} model exports as one ONNX file")
    model_type, model = load_planar_model(args.checkpoint, model_type)
    source = {"source_checkpoint": Path(args.checkpoint).name, "source_sha256": file_digest(args.checkpoint, 64)}
    start = time.perf_counter()
    path = export_planar_onnx(model, model_type, args.output, input_size=args.input_size,
                              opset=PLANAR_OPSET if args.opset is None else args.opset,
                              angle_output="logits" if args.angle_logits else "argmax", source=source)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {model_type}) in {time.perf_counter() - start:.1f} s; "
          "onnxruntime matches PyTorch")
    return EXIT_OK


# ------------------------------------------------------------------------------- infer-points
def cmd_infer_points(args) -> int:
    from graspnet_edge_ros.postprocess.decode import decode_grasps
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner, thread_options

    points = _load_points(args.points)
    runner = load_graspnet_runner(args.model, args.backend, **thread_options(args.backend, args.model, args.threads))
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


def _load_points(path) -> np.ndarray:
    try:
        points = np.load(path)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
        raise InputError(f"cannot read points {path}: {exc or 'empty file'}") from exc
    if points.ndim == 3 and points.shape[0] == 1:
        points = points[0]
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{path}: expected an (N, 3) array of camera-frame metres, got {points.shape}")
    if not np.isfinite(points).all():
        raise InputError(f"{path}: points contain NaN or inf")
    return points.astype(np.float32)


# ------------------------------------------------------------------------------------ detect
def cmd_detect(args) -> int:
    from graspnet_edge_ros.config import DetectorConfig, from_mapping, load_yaml
    from graspnet_edge_ros.pipeline import GraspDetector

    color = read_color(args.color)
    depth, encoding = read_depth(args.depth)
    intrinsics, file_scale = read_intrinsics(args, depth.shape)
    values = load_yaml(args.params_file) if args.params_file else {}
    values.update({"model_path": str(args.model), "backend": args.backend or values.get("backend", "")})
    if args.model_type:
        values["model_type"] = args.model_type
    if args.workspace_mask:
        values["workspace_mask_path"] = str(args.workspace_mask)
    if args.depth_scale is not None or file_scale is not None:
        values["depth_scale"] = args.depth_scale if args.depth_scale is not None else file_scale
    if args.seed is not None:
        values["sampling_seed"] = args.seed
    if args.max_grasps is not None:
        values["max_grasps"] = args.max_grasps
    config = from_mapping(values, DetectorConfig())
    detector = GraspDetector(config)
    result = detector.detect(color, depth, encoding, intrinsics)
    report = result_to_json(result, config)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print_result_table(result)
    print(f"grasps -> {args.output}")
    if args.overlay:
        from graspnet_edge_ros.visualization import save_overlay

        save_overlay(args.overlay, color, result.grasps, intrinsics)
        print(f"overlay -> {args.overlay}")
    return EXIT_OK if result.status in ("ok", "no_grasp") else EXIT_INPUT


def result_to_json(result, config) -> dict:
    grasps = []
    if result.poses is not None:
        for rank in range(len(result.grasps)):
            row = result.grasps.array[rank]
            grasps.append({
                "rank": rank, "score": float(row[0]), "width_m": float(row[1]), "height_m": float(row[2]),
                "depth_m": float(row[3]),
                "position_m": result.poses.positions[rank].tolist(),
                "orientation_xyzw": result.poses.quaternions[rank].tolist(),
                "approach": result.poses.approach[rank].tolist(),
                "pre_grasp_position_m": result.poses.pre_grasp_positions[rank].tolist(),
                "graspnet_row": [float(v) for v in row],
            })
    return {
        "status": result.status, "reason": result.reason, "model_id": result.model_id,
        "frame": "camera_optical", "pose_convention": config.pose_convention,
        "pre_grasp_distance_m": config.pre_grasp_distance_m, "tcp_offset_m": config.tcp_offset_m,
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        "counts": result.counts, "grasps": grasps,
    }


def print_result_table(result, top: int = 10) -> None:
    print(f"status: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    if len(result.grasps):
        print(f"{'rank':>4} {'score':>7} {'width':>7} {'depth':>6}   {'x':>7} {'y':>7} {'z':>7}")
        for rank, row in enumerate(result.grasps.array[:top]):
            x, y, z = result.poses.positions[rank]
            print(f"{rank:>4} {row[0]:7.3f} {row[1]:7.3f} {row[3]:6.2f}   {x:7.3f} {y:7.3f} {z:7.3f}")
    stages = "  ".join(f"{k} {v:.1f}" for k, v in result.timings_ms.items() if "." not in k)
    print(f"latency ms: {stages}  total {sum(v for k, v in result.timings_ms.items() if '.' not in k):.1f}")


def read_color(path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read colour image {path}: {exc}") from exc


def read_depth(path) -> tuple[np.ndarray, str]:
    """Depth PNG (uint16 units, '16UC1') or .npy (float32 metres, '32FC1')."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            depth = np.load(path)
            return depth.astype(np.float32), "32FC1"
        from PIL import Image

        with Image.open(path) as image:
            depth = np.asarray(image)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read depth image {path}: {exc}") from exc
    if depth.dtype != np.uint16 and depth.dtype != np.int32:
        raise InputError(f"{path}: depth PNG must be 16-bit (got {depth.dtype}); use .npy for float metres")
    return depth.astype(np.uint16), "16UC1"


def read_intrinsics(args, shape):
    """CameraIntrinsics from --intrinsics fx,fy,cx,cy or --camera-info (YAML/JSON/.mat); (K, depth scale)."""
    from graspnet_edge_ros.camera import CameraIntrinsics

    height, width = shape
    if args.intrinsics:
        try:
            fx, fy, cx, cy = (float(v) for v in args.intrinsics.split(","))
        except ValueError as exc:
            raise ConfigError(f"--intrinsics needs fx,fy,cx,cy, got {args.intrinsics!r}") from exc
        return CameraIntrinsics(fx, fy, cx, cy, width, height), None
    if not args.camera_info:
        raise ConfigError("give --intrinsics fx,fy,cx,cy or --camera-info FILE")
    path = Path(args.camera_info)
    if not path.is_file():
        raise InputError(f"camera info file not found: {path}")
    if path.suffix == ".mat":
        import scipy.io

        meta = scipy.io.loadmat(path)
        scale = 1.0 / float(np.asarray(meta["factor_depth"]).ravel()[0]) if "factor_depth" in meta else None
        return CameraIntrinsics.from_matrix(np.asarray(meta["intrinsic_matrix"], float), width, height), scale
    import yaml

    data = yaml.safe_load(path.read_text())
    matrix = data.get("k") or data.get("K") or (data.get("camera_matrix") or {}).get("data")
    if matrix is None:
        raise InputError(f"{path}: no 'k', 'K' or 'camera_matrix.data' entry")
    return CameraIntrinsics.from_matrix(np.asarray(matrix, float).reshape(3, 3),
                                        int(data.get("width", data.get("image_width", width))),
                                        int(data.get("height", data.get("image_height", height)))), None


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
    p.add_argument("--model-type", choices=["graspnet", "grconvnet", "affga"], default=None,
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
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("infer-points", help="one forward pass on exact input points")
    p.add_argument("--points", required=True, help=".npy (N,3) float32 camera frame, metres")
    p.add_argument("--model", required=True, help="checkpoint, .onnx file, or split directory")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "hobot_dnn"], default=None)
    p.add_argument("--dump", help="write raw outputs (official end_points names) to this .npz")
    p.add_argument("--grasps", help="write decoded grasps (N x 17) to this .npy")
    p.add_argument("--repeat", type=int, default=1, help="run K times and print the median time")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of the backend (0 = its default)")
    p.set_defaults(func=cmd_infer_points)

    p = sub.add_parser("detect", help="grasps for one RGB-D frame -> JSON (+ overlay PNG)")
    p.add_argument("--color", required=True)
    p.add_argument("--depth", required=True, help="16-bit PNG (units x depth scale) or .npy float metres")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--intrinsics", help="fx,fy,cx,cy")
    group.add_argument("--camera-info", help="YAML/JSON with k/K/camera_matrix, or meta.mat")
    p.add_argument("--depth-scale", type=float, help="metres per depth unit (default 0.001)")
    p.add_argument("--workspace-mask", help="PNG mask, non-zero = workspace")
    p.add_argument("--model", required=True)
    p.add_argument("--model-type", choices=["auto", "graspnet", "grconvnet", "affga"], default=None,
                   help="default: detected from the model file (give it for a compiled .bin)")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "hobot_dnn"], default=None)
    p.add_argument("--params-file", help="YAML of detector parameters (same names as the node's)")
    p.add_argument("--seed", type=int, help="sampling seed for reproducible runs")
    p.add_argument("--max-grasps", type=int)
    p.add_argument("--output", required=True, help="grasps.json")
    p.add_argument("--overlay", help="overlay.png")
    p.set_defaults(func=cmd_detect)

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


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"graspnet-edge: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"graspnet-edge: bad input: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except ModelFormatError as exc:
        print(f"graspnet-edge: model error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except GraspNetEdgeError as exc:
        print(f"graspnet-edge: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
