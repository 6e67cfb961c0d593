"""``graspnet-edge sim-eval``: pick success of the detector's grasps in a physics simulation.

Added to the main parser by ``graspnet_edge_ros.cli._add_optional_commands``. Imports neither
pybullet nor a model at import time; library errors reach the main CLI (one line, exit code 2 for
configuration errors such as an unknown object set, an empty seed range or unknown parameters).
"""
from __future__ import annotations

import textwrap

EXIT_OK = 0


def add_commands(sub) -> None:
    from graspnet_edge_ros.sim.scenes import OBJECT_SETS

    p = sub.add_parser("sim-eval", help="pick-success benchmark: render tabletop scenes (pybullet), detect, "
                                        "execute the top K grasps with a simulated gripper, report")
    p.add_argument("--params", action="append", default=[], metavar="YAML",
                   help="detector parameter file: flat, or the node's YAML (config/default.yaml; node-only keys are "
                        "ignored); repeat to compare several on the same scenes "
                        "(default: the built-in defaults)")
    p.add_argument("--model", help="model for parameter files without model_path (checkpoint, .onnx, split dir)")
    p.add_argument("--planar-model", help="also evaluate this planar model (GR-ConvNet/AFFGA, default parameters) "
                                          "on the top-down views")
    p.add_argument("--seeds", default="0:10", help="scene seeds A:B (A inclusive, B exclusive; default 0:10)")
    p.add_argument("--views", default="oblique,topdown", help="comma-separated: oblique, topdown")
    p.add_argument("--resolution", default="640x480", help="WIDTHxHEIGHT, e.g. 640x480 or 1280x720")
    p.add_argument("--top-k", type=int, default=5, help="grasps executed per scene (best first)")
    p.add_argument("--noise", action="store_true", help="RealSense-like depth noise and holes")
    p.add_argument("--object-set", default="mixed", help=f"one of {', '.join(OBJECT_SETS)}")
    p.add_argument("--objects-per-scene", type=int, default=6)
    p.add_argument("--json", help="write figures, settings and per-scene rows to this JSON file")
    p.add_argument("--contact-sheet", help="write a PNG of every scene's overlay marked success/fail")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sim_eval)


def cmd_sim_eval(args) -> int:
    from graspnet_edge_ros.errors import ConfigError
    from graspnet_edge_ros.sim import benchmark, report
    from graspnet_edge_ros.sim.scenes import ASSET_NOTICE, SceneOptions, check_object_set

    # Cheap checks first: bad input fails before pybullet or a model is loaded.
    from graspnet_edge_ros.files import check_output_file

    if args.json:
        check_output_file(args.json, "--json")
    if args.contact_sheet:
        check_output_file(args.contact_sheet, "--contact-sheet")
    check_object_set(args.object_set)
    settings = benchmark.BenchmarkSettings(
        seeds=benchmark.parse_seeds(args.seeds),
        views=tuple(v.strip() for v in args.views.split(",") if v.strip()),
        resolution=benchmark.parse_resolution(args.resolution), top_k=args.top_k, noise=args.noise,
        scene=SceneOptions(args.object_set, args.objects_per_scene))
    configs = [benchmark.load_eval_config(path, args.model) for path in args.params] or \
        [benchmark.load_eval_config(None, args.model)]
    if args.planar_model:
        planar = benchmark.load_eval_config(None, args.planar_model)
        planar.name = "planar_" + planar.config.model.model_path.rstrip("/").split("/")[-1].split(".")[0]
        configs.append(planar)
    if len(settings.seeds) > 100000:
        raise ConfigError("seed range too large (> 100000 scenes)")

    from graspnet_edge_ros.sim._bullet import import_pybullet

    import_pybullet()  # missing pybullet: one line with the install hint
    result = benchmark.run_benchmark(configs, settings, show_progress=not args.no_progress,
                                     keep_tiles=bool(args.contact_sheet))
    summary = report.summaries(result.rows)
    print(report.format_table(summary, settings.top_k))
    for name, reason in result.skipped:
        print(f"skipped {name}: {reason}")
    print(f"{len(settings.seeds)} scenes x {len(settings.views)} views in {result.wall_s:.0f} s; "
          f"scene assets: pybullet_data (zlib licence)")
    if args.json:
        data = report.report_dict(result.rows, benchmark.settings_dict(configs, settings))
        data["wall_s"] = result.wall_s
        data["skipped"] = [{"config": n, "reason": r} for n, r in result.skipped]
        report.write_json(args.json, data)
        print(f"wrote {args.json}")
    if args.contact_sheet:
        sections = [(f"{c.name}: green = top-1 lifted, orange = another of the top {settings.top_k}, red = none; "
                     "ok / x / C (pre-grasp collision) per rank", result.tiles[c.name]) for c in configs
                    if result.tiles[c.name]]
        report.save_contact_sheet(args.contact_sheet, sections, "\n".join(textwrap.wrap(ASSET_NOTICE, 150)))
        print(f"wrote {args.contact_sheet}")
    return EXIT_OK
