"""``graspnet-edge x5-prepare | x5-check | x5-quant-check``: the RDK X5 kit commands.

Added to the main parser by ``graspnet_edge_ros.cli._add_optional_commands``. Imports nothing
heavy at import time; library errors reach the main CLI, which prints one line and exits non-zero.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from graspnet_edge_ros.errors import ConfigError, InputError

EXAMPLE_DATA_ENV = "EXAMPLE_DATA"  # the Makefile's variable for the example capture
EXIT_OK, EXIT_ERROR, EXIT_MODEL = 0, 1, 4


def add_commands(sub) -> None:
    p = sub.add_parser("x5-prepare", help="RDK X5 kit: segments, hb_mapper YAMLs, calibration data, "
                                          "conversion script, manifest")
    p.add_argument("--checkpoint", required=True, help="official or bare GraspNet state dict")
    p.add_argument("--output", required=True, help="kit directory (created)")
    p.add_argument("--calibration-source", default=None,
                   help="rosbag2 (MCAP/sqlite3), GraspNet capture dir (color.png, depth.png, meta.mat), directory "
                        f"of captures, or frame dir (color/, depth/, camera_info.yaml); default: ${EXAMPLE_DATA_ENV}")
    p.add_argument("--num-samples", type=int, default=100, help="calibration samples per segment input")
    p.add_argument("--max-frames", type=int, default=0, help="frames used from the source (0 = up to --num-samples)")
    p.add_argument("--head-chunk-seeds", type=int, default=64, help="seeds per grasp-head call")
    _add_pipeline_options(p)
    p.add_argument("--no-quant-check", action="store_true", help="skip the int8 simulation report")
    p.add_argument("--quant-seeds", type=int, default=2, help="sampling seeds per frame in the quant check")
    p.set_defaults(func=cmd_x5_prepare)

    p = sub.add_parser("x5-check", help="X5 limits and BPU/CPU placement of every op of ONNX models")
    p.add_argument("models", nargs="+", help=".onnx files")
    p.add_argument("--nodes", action="store_true", help="list every node, not one line per op type")
    p.add_argument("--bpu-only", action="store_true", help="CPU-placed ops are errors too (split segments)")
    p.set_defaults(func=cmd_x5_check)

    p = sub.add_parser("x5-quant-check", help="simulate int8 segments with the kit's calibration ranges and "
                                              "report how much the grasps change")
    p.add_argument("kit", help="directory written by x5-prepare")
    p.add_argument("--frames", default=None, help="frame source (as --calibration-source); default: the kit's "
                                                  "calibration source")
    p.add_argument("--max-frames", type=int, default=3, help="frames used from the source")
    p.add_argument("--seeds", type=int, default=2, help="sampling seeds per frame")
    p.add_argument("--top-k", type=int, default=10, help="compare the best K float grasps")
    p.add_argument("--range-scale", type=float, default=1.0,
                   help="multiply every calibrated activation range (e.g. 0.01 to see a broken calibration)")
    p.add_argument("--min-cosine", type=float, default=None, help="per-segment output cosine threshold (0.99)")
    p.add_argument("--min-top-k-match", type=float, default=None, help="top-k match threshold (0.5)")
    p.add_argument("--report", default=None, help="JSON report path (default: KIT/quant_report.json)")
    _add_pipeline_options(p)
    p.set_defaults(func=cmd_x5_quant_check)


def _add_pipeline_options(p) -> None:
    p.add_argument("--params-file", help="detector parameters (node YAML): depth range, workspace, num_points")
    p.add_argument("--depth-scale", type=float, help="metres per depth unit (default: from the source, else 0.001)")
    p.add_argument("--color-topic", help="bag colour topic")
    p.add_argument("--depth-topic", help="bag aligned depth topic")
    p.add_argument("--camera-info-topic", help="bag CameraInfo topic")


def _pipeline_params(args) -> dict:
    from graspnet_edge_ros.config import load_yaml

    params = load_yaml(args.params_file) if args.params_file else {}
    for key in ("model_path", "backend", "sampling_seed"):  # the kit sets these itself
        params.pop(key, None)
    if args.depth_scale is not None:
        params["depth_scale"] = args.depth_scale
    return params


def _frames(source, args, max_frames: int):
    from graspnet_edge_ros.x5.frames import open_frame_source

    topics = {key: value for key, value in (("color", args.color_topic), ("depth", args.depth_topic),
                                            ("info", args.camera_info_topic)) if value}
    return open_frame_source(source, topics, max_frames)


def cmd_x5_prepare(args) -> int:
    from graspnet_edge_ros.x5.kit import prepare_x5_kit

    source = args.calibration_source or os.environ.get(EXAMPLE_DATA_ENV)
    if not source:
        raise ConfigError("give --calibration-source: a rosbag2, a frame directory or a GraspNet capture "
                          f"(or set ${EXAMPLE_DATA_ENV} to the example capture)")
    params = _pipeline_params(args)
    frames = _frames(source, args, args.max_frames or args.num_samples)
    summary = prepare_x5_kit(args.checkpoint, args.output, frames, args.num_samples, args.head_chunk_seeds, params,
                             progress=print)
    total = sum(summary["calibration_bytes"].values())
    print(f"calibration data: {total / 1e6:.0f} MB ("
          + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in summary["calibration_bytes"].items()) + ")")
    code = EXIT_OK
    if not args.no_quant_check:
        code = _run_quant_check(Path(args.output), _frames(source, args, 3), args.quant_seeds, params)
    print(f"kit ready in {args.output} ({summary['seconds']:.0f} s). Next: bash {args.output}/convert_x5.sh "
          "(OpenExplorer X5 toolchain), then copy the directory to the board")
    return code


def cmd_x5_check(args) -> int:
    from graspnet_edge_ros.x5.opcheck import check_onnx_model

    failed = 0
    for model in args.models:
        check = check_onnx_model(model, bpu_only=args.bpu_only)
        print(check.format(every_node=args.nodes))
        failed += not check.ok
    if failed:
        print(f"{failed} of {len(args.models)} model(s) do not fit the RDK X5 limits", file=sys.stderr)
        return EXIT_MODEL
    return EXIT_OK


def cmd_x5_quant_check(args) -> int:
    kit = Path(args.kit)
    source = args.frames
    if source is None:
        index = kit / "calibration" / "calibration.json"
        try:
            source = json.loads(index.read_text()).get("source") if index.is_file() else None
        except (json.JSONDecodeError, AttributeError) as exc:
            raise InputError(f"{index} is not a kit's calibration index ({exc}); give --frames") from exc
        if not source:
            raise ConfigError(f"give --frames: {kit} does not name its calibration source")
    thresholds = {k: v for k, v in (("min_segment_cosine", args.min_cosine),
                                    ("min_top_k_match", args.min_top_k_match)) if v is not None}
    params = _pipeline_params(args)
    return _run_quant_check(kit, _frames(source, args, args.max_frames), args.seeds, params, args.top_k,
                            args.range_scale, thresholds, args.report)


def _run_quant_check(kit: Path, frames, seeds: int, params: dict, top_k: int = 10, range_scale: float = 1.0,
                     thresholds: dict | None = None, report_path=None) -> int:
    from graspnet_edge_ros.x5.quant import quant_check, write_report

    print(f"quantisation check on {frames.description}, {seeds} sampling seed(s) each")
    report = quant_check(kit, frames, num_seeds=seeds, top_k=top_k, range_scale=range_scale, params=params,
                         thresholds=thresholds)
    print(report.format())
    print(f"report -> {write_report(kit, report, report_path)}")
    return EXIT_OK if report.passed else EXIT_ERROR
