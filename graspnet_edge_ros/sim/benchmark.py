"""Run the pick-success benchmark: scenes -> detector (library API) -> simulated execution -> rows.

Every configuration sees the same settled scenes and the same rendered images. Each grasp starts
from the settled state, so grasps and configurations cannot disturb one another.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graspnet_edge_ros import config as config_module
from graspnet_edge_ros.config import DetectorConfig
from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.sim import report
from graspnet_edge_ros.sim.scenes import VIEWS, SceneOptions, SimWorld, build_scene, check_view, realsense_intrinsics

PLANAR_VIEWS = ("topdown",)   # the views of top-down networks (GR-ConvNet / AFFGA: candidates.top_down_only)


@dataclass
class EvalConfig:
    name: str
    config: DetectorConfig
    source: str = ""   # parameter file, or "" for defaults


@dataclass
class BenchmarkSettings:
    seeds: tuple
    views: tuple = VIEWS
    resolution: tuple = (640, 480)
    top_k: int = 5
    noise: bool = False
    scene: SceneOptions = field(default_factory=SceneOptions)
    lift_m: float = 0.15

    def __post_init__(self):
        if not self.seeds:
            raise ConfigError("the seed range is empty (use A:B with A < B)")
        for view in self.views:
            check_view(view)
        if not self.views:
            raise ConfigError("no view given (oblique, topdown)")
        if self.top_k < 1:
            raise ConfigError(f"top-k must be >= 1, got {self.top_k}")
        check_resolution(self.resolution)
        realsense_intrinsics(self.resolution)


def parse_seeds(text: str) -> tuple:
    """'A:B' -> A, A+1, ..., B-1; a single 'A' -> (A,). An empty range is a ConfigError."""
    try:
        if ":" in text:
            start, stop = (int(part) for part in text.split(":", 1))
        else:
            start = int(text)
            stop = start + 1
    except ValueError:
        raise ConfigError(f"--seeds must be A:B (integers), got {text!r}") from None
    if stop <= start:
        raise ConfigError(f"the seed range {text!r} is empty (need A < B)")
    return tuple(range(start, stop))


MIN_RESOLUTION, MAX_RESOLUTION = 32, 4096   # pixels per side (4096 x 4096 renders take minutes)


def parse_resolution(text: str) -> tuple:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--resolution must be WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    check_resolution((width, height))
    return width, height


def check_resolution(resolution) -> None:
    """ConfigError unless both sides are MIN_RESOLUTION..MAX_RESOLUTION pixels."""
    width, height = resolution
    if not all(MIN_RESOLUTION <= side <= MAX_RESOLUTION for side in (width, height)):
        raise ConfigError(f"--resolution {width}x{height}: each side must be {MIN_RESOLUTION} to "
                          f"{MAX_RESOLUTION} pixels")


def load_eval_config(path: str | None, model: str | None) -> EvalConfig:
    """A parameter file on top of the defaults; ``model`` fills model_path when the file leaves it empty.

    The file is read like ``graspnet-edge detect --params-file``: flat, or the node's own YAML
    (``graspnet_edge_node:`` or ``/**:`` layout, e.g. config/default.yaml); node-only keys are
    dropped with one notice, any other unknown key is an error with a did-you-mean.
    """
    from graspnet_edge_ros.config import detector_parameters
    from graspnet_edge_ros.pipeline import check_table_plane_frame

    base = DetectorConfig.from_flat(model_path=model or "")
    if path is None:
        values, name = {}, "defaults"
    else:
        values = detector_parameters(path)  # its errors already name the file
        if not values.get("model_path"):
            values.pop("model_path", None)  # the node's YAML has model_path: "" (set by the launch file)
        name = Path(path).stem
    try:
        cfg = config_module.from_mapping(values, base)
        check_table_plane_frame(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
    if not cfg.model.model_path:
        raise ConfigError(f"{path or 'defaults'}: no model (give --model or model_path in the file)")
    return EvalConfig(name, cfg, path or "")


def _unique_names(configs: list[EvalConfig]) -> None:
    seen: dict[str, int] = {}
    for item in configs:
        count = seen.get(item.name, 0)
        seen[item.name] = count + 1
        if count:
            item.name = f"{item.name}#{count + 1}"


class _Detectors:
    """One GraspDetector per configuration; configurations with the same GraspNet model share its runner."""

    def __init__(self, configs: list[EvalConfig]):
        from graspnet_edge_ros.pipeline import GraspDetector, load_model_runner, resolve_model_type

        runners = {}
        self.detectors = {}
        for item in configs:
            cfg = item.config
            runner = None
            if resolve_model_type(cfg) == "graspnet":
                key = (cfg.model.model_path, cfg.model.backend, cfg.model.num_threads)
                runner = runners.get(key) or runners.setdefault(key, load_model_runner(cfg))
            self.detectors[item.name] = GraspDetector(cfg, runner=runner)

    def __getitem__(self, name):
        return self.detectors[name]


def _views_for(detector, views) -> tuple:
    return tuple(v for v in views if v in PLANAR_VIEWS) if detector.candidates.top_down_only else tuple(views)


def depth_for(config: DetectorConfig, depth_mm: np.ndarray) -> np.ndarray:
    """16UC1 depth in the configuration's depth_scale units."""
    if config.camera.depth_scale == 0.001:
        return depth_mm
    metres = depth_mm.astype(np.float64) * 0.001
    return np.clip(np.round(metres / config.camera.depth_scale), 0, 65535).astype(np.uint16)


def detect(detector, config: DetectorConfig, scene):
    """GraspDetector.detect on a SimScene with its instance labels; each scene is a new view, so the
    support plane of the previous scene is not held over."""
    detector.reset_support_plane()
    return detector.detect(scene.color, depth_for(config, scene.depth_mm), "16UC1", scene.intrinsics,
                           object_labels=scene.labels)


@dataclass
class BenchmarkResult:
    rows: list
    tiles: dict            # config name -> list of contact-sheet tiles (when asked for)
    skipped: list          # (config, reason)
    wall_s: float


def run_benchmark(configs: list[EvalConfig], settings: BenchmarkSettings, show_progress: bool = True,
                  keep_tiles: bool = False) -> BenchmarkResult:
    from graspnet_edge_ros.sim.execution import ExecutionOptions, GraspExecutor, GripperGeometry, commands_from_result

    _unique_names(configs)
    detectors = _Detectors(configs)
    plan = {c.name: _views_for(detectors[c.name], settings.views) for c in configs}
    skipped = [(name, f"planar model: evaluated on {', '.join(PLANAR_VIEWS)} views only, none requested")
               for name, views in plan.items() if not views]
    needed_views = tuple(v for v in settings.views if any(v in views for views in plan.values()))
    rows, tiles = [], {c.name: [] for c in configs}
    started = time.perf_counter()
    bar = report.progress(len(settings.seeds), "sim-eval", show_progress)
    with SimWorld() as world:
        for seed in settings.seeds:
            build_scene(world, seed, settings.scene)
            scenes, render_s = {}, {}
            for view in needed_views:
                t0 = time.perf_counter()
                scenes[view] = world.render(view, seed, settings.resolution, settings.noise)
                render_s[view] = time.perf_counter() - t0
            executors = {}
            for item in configs:
                key = (GripperGeometry.from_config(item.config.gripper), item.config.poses.pre_grasp_distance_m)
                if key not in executors:
                    executors[key] = GraspExecutor(world, key[0], ExecutionOptions(
                        pre_grasp_distance_m=key[1], lift_m=settings.lift_m))
            world.save_settled()
            for item in configs:
                detector = detectors[item.name]
                cfg = item.config
                if cfg.camera.sampling_seed < 0:   # reproducible runs: the scene seed drives the sampling
                    cfg = cfg.replace(sampling_seed=seed)
                detector.update_config(cfg)
                executor = executors[(GripperGeometry.from_config(cfg.gripper), cfg.poses.pre_grasp_distance_m)]
                for view in plan[item.name]:
                    scene = scenes[view]
                    t0 = time.perf_counter()
                    result = detect(detector, cfg, scene)
                    detect_ms = (time.perf_counter() - t0) * 1000.0
                    t0 = time.perf_counter()
                    grasp_rows = []
                    commands = commands_from_result(result, cfg, scene.camera_pose, settings.top_k) \
                        if result.ok else []
                    for rank, command in enumerate(commands):
                        outcome = executor.execute(command)
                        grasp_rows.append(report.GraspRow(
                            rank, float(result.grasps.scores[rank]), float(result.grasps.widths[rank]),
                            outcome.success, outcome.pre_grasp_collision, outcome.reason,
                            outcome.lifted_label, outcome.collided_with, _rounded(command.point),
                            _rounded(command.approach), _rounded(command.closing), round(command.depth, 5)))
                    row = report.SceneRow(item.name, seed, view, result.status, result.reason,
                                          len(result.grasps) if result.ok else 0, grasp_rows,
                                          render_s[view], detect_ms, time.perf_counter() - t0)
                    rows.append(row)
                    if keep_tiles:
                        top = result.grasps[:settings.top_k] if result.ok else result.grasps[:0]
                        tiles[item.name].append(report.scene_tile(scene.color, top, scene.intrinsics, row))
            bar.update(1)
    bar.close()
    return BenchmarkResult(rows, tiles, skipped, time.perf_counter() - started)


def _rounded(vector) -> list:
    return [round(float(v), 5) for v in vector]


def settings_dict(configs: list[EvalConfig], settings: BenchmarkSettings) -> dict:
    from graspnet_edge_ros.sim.scenes import ASSET_NOTICE, ASSET_SOURCE

    return {
        "seeds": [settings.seeds[0], settings.seeds[-1] + 1],
        "views": list(settings.views),
        "resolution": list(settings.resolution),
        "top_k": settings.top_k,
        "noise": settings.noise,
        "object_set": settings.scene.object_set,
        "objects_per_scene": settings.scene.objects_per_scene,
        "lift_m": settings.lift_m,
        "configs": [{"name": c.name, "params": c.source, "model_path": c.config.model.model_path} for c in configs],
        "asset_source": ASSET_SOURCE,
        "asset_notice": ASSET_NOTICE,
    }

