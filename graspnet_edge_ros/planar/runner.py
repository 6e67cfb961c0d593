"""One callable per planar model artefact: full-resolution RGB-D frame -> ``PlanarGrasps``.

Artefacts: an ONNX export (``graspnet-edge export``; any backend of the registry that loads it:
onnxruntime, or hobot_dnn for a compiled ``.bin`` when the model type is given), or a checkpoint
(.pt/.pth, run by PyTorch). The runner crops, normalises, runs the network, decodes, and maps the
grasps back to full-image pixels. Importing this module does not import torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graspnet_edge_ros.errors import ConfigError, InputError, ModelFormatError
from graspnet_edge_ros.formats import get_format
from graspnet_edge_ros.planar.decode import decode_affga, decode_grconvnet
from graspnet_edge_ros.planar.formats import META_PREFIX, detect_planar_model_type, read_onnx_signature
from graspnet_edge_ros.planar.preprocess import (COLOR_NORMALISATIONS, DEPTH_NORMALISATIONS, CropWindow, affga_input,
                                                 crop_window, grconvnet_input)
from graspnet_edge_ros.planar.types import PLANAR_MODEL_TYPES, PlanarGrasps
from graspnet_edge_ros.timing import StageTimer

__all__ = ["PlanarDecodeOptions", "PlanarRunner", "load_planar_runner", "detect_planar_model_type"]

DEFAULT_MIN_QUALITY = {"grconvnet": 0.2, "affga": 0.5}       # the repositories' threshold_abs
DEFAULT_MIN_DISTANCE_PX = {"grconvnet": 20, "affga": 2}      # GR-ConvNet detect_grasps; AFFGA demo peak_dist
AFFGA_DEFAULT_ANGLE_BINS = 120
AFFGA_DEFAULT_WIDTH_SCALE = 200.0


@dataclass(frozen=True)
class PlanarDecodeOptions:
    """Preparation and decoding settings of a planar runner.

    Attributes:
        num_grasps: at most this many grasps (strongest peaks), best first.
        min_quality: peak threshold (skimage threshold_abs) on the smoothed quality / confidence;
            None = the repository default (GR-ConvNet 0.2, AFFGA-Net 0.5).
        min_distance_px: peak spacing and border exclusion in crop pixels; None = the repository
            default (GR-ConvNet 20, AFFGA-Net 2).
        exclude_border: drop peaks closer than min_distance_px to the crop edge (as skimage).
        width_scale: GR-ConvNet width map -> pixels; 150 reproduces the repository, ~112 (= 224/2)
            matches its training labels (see README). AFFGA-Net's is fixed at 200 by training.
        depth_normalisation: GR-ConvNet depth channel: "training" (metres minus mean, clip +-1) or
            "camera" (the repository camera path: metres / 255 minus mean).
        color_normalisation: AFFGA-Net: "training" (/255 minus scalar mean) or "tensorrt" (the
            TensorRT sample's (value - Caffe BGR mean) / 255).
        crop_center_rc: (row, col) the network crop is centred on (kept inside the image); None =
            the image centre, the repositories' camera path. ``preprocess.crop_center_from_mask``
            gives the workspace-mask centre.
    """

    num_grasps: int = 10
    min_quality: float | None = None
    min_distance_px: int | None = None
    exclude_border: bool = True
    width_scale: float = 150.0
    depth_normalisation: str = "training"
    color_normalisation: str = "training"
    crop_center_rc: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.num_grasps) or self.num_grasps < 1:
            raise ConfigError(f"num_grasps must be an integer >= 1, got {self.num_grasps!r}")
        if self.min_quality is not None and not math.isfinite(self.min_quality):
            raise ConfigError(f"min_quality must be finite, got {self.min_quality!r}")
        if self.min_distance_px is not None and (not _is_int(self.min_distance_px) or self.min_distance_px < 1):
            raise ConfigError(f"min_distance_px must be an integer >= 1, got {self.min_distance_px!r}")
        if not (isinstance(self.width_scale, (int, float)) and math.isfinite(self.width_scale)
                and self.width_scale > 0):
            raise ConfigError(f"width_scale must be a positive number, got {self.width_scale!r}")
        if self.depth_normalisation not in DEPTH_NORMALISATIONS:
            raise ConfigError(f"depth_normalisation must be one of {DEPTH_NORMALISATIONS}, "
                              f"got {self.depth_normalisation!r}")
        if self.color_normalisation not in COLOR_NORMALISATIONS:
            raise ConfigError(f"color_normalisation must be one of {COLOR_NORMALISATIONS}, "
                              f"got {self.color_normalisation!r}")
        if self.crop_center_rc is not None and (len(self.crop_center_rc) != 2 or
                                                not all(math.isfinite(float(v)) for v in self.crop_center_rc)):
            raise ConfigError(f"crop_center_rc must be (row, col) or None, got {self.crop_center_rc!r}")

    def threshold(self, model_type: str) -> float:
        return DEFAULT_MIN_QUALITY[model_type] if self.min_quality is None else float(self.min_quality)

    def distance(self, model_type: str) -> int:
        return DEFAULT_MIN_DISTANCE_PX[model_type] if self.min_distance_px is None else int(self.min_distance_px)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class PlanarRunner:
    """Runs one planar network on full-resolution frames. Build with ``load_planar_runner``.

    Attributes:
        model_type: "grconvnet" or "affga".
        backend_name: the runtime ("onnxruntime", "torch", "hobot_dnn").
        model_id: "<type>:<file name>@<8 hex sha256>", published with results.
        num_points: None (the network takes images).
        input_size: side S of the square network input (the crop, not resized).
        input_channels: C of the network input (GR-ConvNet 1/3/4, AFFGA-Net 3).
        decode_options: PlanarDecodeOptions (settable).
        last_timings_ms: {"prepare", "network", "decode"} of the last call.
    """

    def __init__(self, model_type: str, engine, model_id: str, decode_options: PlanarDecodeOptions | None = None,
                 metadata: dict[str, str] | None = None):
        self.model_type, self.model_id, self._engine = model_type, model_id, engine
        self.backend_name = engine.name
        shape = engine.inputs[0].shape if len(engine.inputs) == 1 else ()
        if len(shape) != 4 or shape[0] not in (1, None) or shape[2] is None or shape[2] != shape[3]:
            raise ModelFormatError(f"{engine.model_path.name}: a planar model takes one (1, C, S, S) input, "
                                   f"got {[spec.describe() for spec in engine.inputs]}")
        self._input_name = engine.inputs[0].name
        self.input_channels, self.input_size = int(shape[1]), int(shape[2])
        metadata = metadata or {}
        self._outputs = _map_outputs(model_type, engine)
        try:
            self._angle_bins = int(metadata.get(META_PREFIX + "angle_bins", 0)) or _angle_bins(engine, self._outputs)
            self._affga_width_scale = float(metadata.get(META_PREFIX + "width_scale", AFFGA_DEFAULT_WIDTH_SCALE)) \
                if model_type == "affga" else None
        except ValueError as exc:
            raise ModelFormatError(f"{engine.model_path.name}: malformed graspnet_edge metadata ({exc})") from exc
        if model_type == "affga" and self.input_channels != 3:
            raise ModelFormatError(f"{engine.model_path.name}: AFFGA-Net 2021 takes 3 (BGR) channels, "
                                   f"got {self.input_channels}")
        if model_type == "grconvnet" and self.input_channels not in (1, 3, 4):
            raise ModelFormatError(f"{engine.model_path.name}: GR-ConvNet takes 1, 3 or 4 channels, "
                                   f"got {self.input_channels}")
        self.decode_options = decode_options or PlanarDecodeOptions()
        self.last_timings_ms: dict[str, float] = {}

    # Planar networks read the image, not a fixed number of points (GraspModelRunner interface).
    num_points = None

    @property
    def needs_color(self) -> bool:
        return self.input_channels in (3, 4)

    @property
    def needs_depth(self) -> bool:
        return self.model_type == "grconvnet" and self.input_channels in (1, 4)

    def crop_window(self, image_shape: tuple[int, ...]) -> CropWindow:
        """The network's crop of a full image of ``image_shape`` under the current options."""
        return crop_window(image_shape, self.input_size, self.decode_options.crop_center_rc)

    def __call__(self, color_rgb: np.ndarray | None, depth_m: np.ndarray | None) -> PlanarGrasps:
        """Planar grasps in full-image pixels, best first.

        Args:
            color_rgb: (H, W, 3) uint8 RGB; may be None for a depth-only model.
            depth_m: (H, W) float depth in metres, holes as 0/NaN (filled with the nearest valid
                depth inside the crop before normalising); may be None for AFFGA-Net (RGB only).

        Raises:
            InputError: wrong shapes/dtypes, a missing image the model needs, an image smaller
                than the crop, or no valid depth in the crop.
        """
        timer = StageTimer()
        options = self.decode_options
        with timer("prepare"):
            shape = self._check_images(color_rgb, depth_m)
            window = self.crop_window(shape)
            if self.model_type == "grconvnet":
                tensor = grconvnet_input(color_rgb, depth_m, window, self.input_channels, options.depth_normalisation)
            else:
                tensor = affga_input(color_rgb, window, options.color_normalisation)
        with timer("network"):
            outputs = self._engine.run({self._input_name: tensor})
        with timer("decode"):
            maps = {role: outputs[name][0] for role, name in self._outputs.items()}
            common = dict(offset_rc=(window.top, window.left), num_grasps=options.num_grasps,
                          min_quality=options.threshold(self.model_type),
                          min_distance_px=options.distance(self.model_type), exclude_border=options.exclude_border)
            if self.model_type == "grconvnet":
                grasps = decode_grconvnet(maps["pos"], maps["cos"], maps["sin"], maps["width"],
                                          width_scale=options.width_scale, **common)
            else:
                grasps = decode_affga(maps["able"], maps["angle"], maps["width"], angle_bins=self._angle_bins,
                                      width_scale=self._affga_width_scale, **common)
        self.last_timings_ms = dict(timer.ms)
        return grasps

    def _check_images(self, color_rgb, depth_m) -> tuple[int, int]:
        shape = None
        if depth_m is not None:
            depth = np.asarray(depth_m)
            if depth.ndim == 3 and depth.shape[2] == 1:
                raise InputError("depth must be (H, W); squeeze the channel axis of an (H, W, 1) image")
            if depth.ndim != 2:
                raise InputError(f"depth must be an (H, W) array of metres, got shape {depth.shape}")
            if not np.issubdtype(depth.dtype, np.floating):
                raise InputError(f"depth must be float metres, got {depth.dtype} (convert sensor units with "
                                 "graspnet_edge_ros.camera.decode_depth)")
            shape = depth.shape
        elif self.needs_depth:
            raise InputError(f"this {self.model_type} model ({self.input_channels} channels) needs a depth image")
        if color_rgb is not None:
            color = np.asarray(color_rgb)
            if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
                raise InputError(f"color must be (H, W, 3) uint8 RGB, got {color.shape} {color.dtype}")
            if shape is not None and color.shape[:2] != shape:
                raise InputError(f"color {color.shape[:2]} and depth {shape} differ in size (register them first)")
            shape = color.shape[:2]
        elif self.needs_color:
            raise InputError(f"this {self.model_type} model ({self.input_channels} channels) needs a colour image")
        return shape


def _map_outputs(model_type: str, engine) -> dict[str, str]:
    """{role: engine output name}: by name ("pos", "output_able", ...), else by position."""
    roles = ("pos", "cos", "sin", "width") if model_type == "grconvnet" else ("able", "angle", "width")
    names = [spec.name for spec in engine.outputs]
    by_short = {}
    for name in names:
        short = name[len("output_"):] if name.startswith("output_") else name
        by_short["angle" if short == "angle_bin" else short] = name
    if all(role in by_short for role in roles):
        return {role: by_short[role] for role in roles}
    if len(names) == len(roles):
        return dict(zip(roles, names))
    raise ModelFormatError(f"{engine.model_path.name}: outputs {names} do not match a {model_type} model "
                           f"(expected {list(roles)})")


def _angle_bins(engine, outputs: dict[str, str]) -> int:
    if "angle" not in outputs:
        return 0
    spec = next(s for s in engine.outputs if s.name == outputs["angle"])
    channels = spec.shape[1] if len(spec.shape) == 4 else None
    return int(channels) if channels and channels > 1 else AFFGA_DEFAULT_ANGLE_BINS


def _model_id(model_type: str, path: Path) -> str:
    from graspnet_edge_ros.digest import file_digest

    return f"{model_type}:{path.name}@{file_digest(path, 8)}"


def load_planar_runner(model_path, model_type: str | None = None, backend: str | None = None,
                       decode: PlanarDecodeOptions | None = None, **backend_options) -> PlanarRunner:
    """Load a planar model artefact.

    Args:
        model_path: .onnx export, compiled .bin (needs ``model_type``), or .pt/.pth checkpoint.
        model_type: "grconvnet" / "affga"; None = detected from the file (ONNX metadata or
            outputs, checkpoint class or key names). A contradiction raises ModelFormatError.
        backend: backend name (default: the format table's, by suffix: torch for checkpoints).
        decode: PlanarDecodeOptions (default: repository defaults, 10 grasps).
        **backend_options: backend constructor options (e.g. intra_op_threads; for checkpoints
            input_size, num_threads, angle_output).
    """
    path = Path(model_path)
    if not path.exists():
        raise ModelFormatError(f"model not found: {path}")
    if model_type is not None and model_type not in PLANAR_MODEL_TYPES:
        raise ConfigError(f"model_type must be one of {PLANAR_MODEL_TYPES} or None, got {model_type!r}")
    detected = detect_planar_model_type(path)
    if detected is not None and model_type is not None and detected != model_type:
        raise ModelFormatError(f"{path.name} holds a {detected} model, not {model_type}")
    model_type = model_type or detected
    if model_type is None:
        raise ModelFormatError(f"{path.name} is not a GR-ConvNet or AFFGA-Net artefact (for a compiled .bin, "
                               "pass model_type)")
    from graspnet_edge_ros.backends.registry import select_backend

    # The format table picks the backend (checkpoints: torch, which takes the model type).
    engine = select_backend(path, prefer=backend, model_type=model_type, **backend_options)
    metadata = read_onnx_signature(path).metadata if get_format("onnxruntime").matches_path(path) else {}
    runner = PlanarRunner(model_type, engine, _model_id(model_type, path), decode, metadata)
    expected = metadata.get(META_PREFIX + "input_size")
    if expected is not None and str(expected) != str(runner.input_size):
        raise ModelFormatError(f"{path.name}: metadata input size {expected} != graph input {runner.input_size}")
    return runner
