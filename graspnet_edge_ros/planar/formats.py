"""Torch-free facts about planar model artefacts, and cheap detection of the model type of a file.

Detection never unpickles or loads weights: checkpoints are scanned with ``pickletools`` (the
globals and strings of the pickle stream, not executed); ONNX files are read at the protobuf wire
level (metadata, graph inputs and outputs), skipping the initializers, so a 280 MB file costs
milliseconds and needs neither torch nor onnx.
"""
from __future__ import annotations

import functools
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path

from graspnet_edge_ros.errors import BackendUnavailableError, ModelFormatError
from graspnet_edge_ros.formats import get_format

META_PREFIX = "graspnet_edge."
META_MODEL_TYPE = META_PREFIX + "model_type"

GRCONVNET_OUTPUTS = ("pos", "cos", "sin", "width")
AFFGA_OUTPUTS = ("able", "angle", "width")
AFFGA_ARGMAX_OUTPUTS = ("able", "angle_bin", "width")
DEFAULT_INPUT_SIZES = {"grconvnet": 224, "affga": 320}

# Globals of whole-module pickles of the published models (pickle module, class name).
GRCONVNET_PICKLE_NAMES = frozenset(
    (f"inference.models.{module}", name)
    for module in ("grconvnet", "grconvnet2", "grconvnet3", "grconvnet4", "grasp_model")
    for name in ("GenerativeResnet", "ResidualBlock"))
AFFGA_PICKLE_NAMES = frozenset({
    ("models.affga.deeplab", "DeepLab"),
    ("models.affga.backbone.resnet", "ResNet"),
    ("models.affga.backbone.resnet", "Bottleneck"),
    ("models.affga.hasp", "HASP"),
    ("models.affga.hasp", "_HASPModule"),
    ("models.affga.decoder", "Decoder"),
})
# State-dict keys that only these networks have (after any "module." prefix).
_STATE_DICT_MARKERS = {
    "grconvnet": ("pos_output.weight", "cos_output.weight", "width_output.weight"),
    "affga": ("decoder.able_conv.0.weight", "decoder.angle_conv.10.weight", "hasp.hasp1_1.atrous_conv.weight"),
}
# Besides the torch format's checkpoints: plain pickles of the repositories' whole modules (detected only).
_PICKLE_SUFFIXES = (".pkl",)
_LEGACY_PICKLES = 4   # magic number, protocol, sys info, then the object (legacy torch.save)


@dataclass(frozen=True)
class OnnxSignature:
    """metadata_props, and (name, shape) of graph inputs and outputs (shape entries None when symbolic)."""

    metadata: dict[str, str]
    inputs: list[tuple[str, tuple[int | None, ...]]]
    outputs: list[tuple[str, tuple[int | None, ...]]]


def detect_planar_model_type(path: str | Path) -> str | None:
    """"grconvnet" or "affga" for a planar checkpoint or ONNX file, None for anything else
    (a GraspNet checkpoint, split directory or ONNX file, a .bin, an unreadable file).

    Raises:
        ModelFormatError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"model not found: {path}")
    if path.is_dir():
        return None
    if get_format("onnxruntime").matches_path(path):
        try:
            return planar_type_from_onnx(read_onnx_signature(path))
        except ModelFormatError:
            return None
    if path.name.lower().endswith(get_format("torch").suffixes + _PICKLE_SUFFIXES):
        return _planar_type_from_strings(*_pickle_globals_and_strings(path))
    return None


def planar_type_from_onnx(signature: OnnxSignature) -> str | None:
    """Model type from metadata, else from output names, else from output shapes."""
    declared = signature.metadata.get(META_MODEL_TYPE)
    if declared in DEFAULT_INPUT_SIZES:
        return declared
    names = {_short_name(name) for name, _ in signature.outputs}
    if set(GRCONVNET_OUTPUTS) <= names:
        return "grconvnet"
    if {"able", "width"} <= names and names & {"angle", "angle_bin"}:
        return "affga"
    if len(signature.inputs) != 1 or len(signature.inputs[0][1]) != 4:
        return None
    _, channels, height, width = signature.inputs[0][1]
    if channels not in (1, 3, 4) or height is None or height != width:
        return None
    shapes = [shape for _, shape in signature.outputs]
    if len(shapes) == 4 and all(tuple(s) == (1, 1, height, width) for s in shapes):
        return "grconvnet"
    if len(shapes) == 3 and len(shapes[1]) == 4 and (shapes[1][1] or 0) > 1 and shapes[1][2:] == (height, width):
        return "affga"
    return None


def _short_name(name: str) -> str:
    """"output_able" (the TensorRT sample's naming) -> "able"."""
    return name[len("output_"):] if name.startswith("output_") else name


def _planar_type_from_strings(globals_: set[tuple[str, str]], strings: set[str]) -> str | None:
    if globals_ & GRCONVNET_PICKLE_NAMES:
        return "grconvnet"
    if globals_ & AFFGA_PICKLE_NAMES:
        return "affga"
    for model_type, markers in _STATE_DICT_MARKERS.items():
        if all(any(s == m or s.endswith("." + m) for s in strings) for m in markers):
            return model_type
    return None


def _pickle_globals_and_strings(path: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """Globals and string constants of a torch checkpoint's pickle stream, without executing it."""
    globals_: set[tuple[str, str]] = set()
    strings: set[str] = set()

    def scan(handle) -> None:
        recent: list[str] = []
        for opcode, arg, _ in pickletools.genops(handle):
            if opcode.name == "GLOBAL" and isinstance(arg, str) and " " in arg:
                globals_.add(tuple(arg.split(" ", 1)))
            elif opcode.name == "STACK_GLOBAL" and len(recent) >= 2:
                globals_.add((recent[-2], recent[-1]))
            elif isinstance(arg, str):
                strings.add(arg)
                recent.append(arg)

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if pickles:
                    with archive.open(pickles[0]) as handle:
                        scan(handle)
            return globals_, strings
        with open(path, "rb") as handle:
            for _ in range(_LEGACY_PICKLES):
                scan(handle)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, UnicodeDecodeError):
        pass   # not (or no longer) a pickle: keep what was seen
    return globals_, strings


# -- ONNX signature ----------------------------------------------------------------------------------
def read_onnx_signature(path: str | Path) -> OnnxSignature:
    """Metadata and graph input/output shapes of an ONNX file, read by ONNX Runtime (the robot
    runtime always has it; ``onnx`` is the fallback). Cached per file version: start-up asks
    several times (model type, runner, export check)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelFormatError(f"{path}: not a readable ONNX file ({exc.strerror or exc})") from exc
    return _read_signature(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_signature(path: str, _mtime_ns: int, _size: int) -> OnnxSignature:
    try:
        import onnxruntime
    except ImportError:
        return _read_signature_with_onnx(path)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own pybind classes (InvalidProtobuf, Fail, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(f"{path}: not a readable ONNX file ({first})") from exc

    def shapes(args) -> list:
        return [(arg.name, tuple(d if isinstance(d, int) else None for d in (arg.shape or ()))) for arg in args]

    return OnnxSignature(dict(session.get_modelmeta().custom_metadata_map), shapes(session.get_inputs()),
                         shapes(session.get_outputs()))


def _read_signature_with_onnx(path: str) -> OnnxSignature:
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailableError("reading an ONNX model needs onnxruntime: pip install onnxruntime") from exc
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise ModelFormatError(f"{path}: not a readable ONNX file ({exc})") from exc
    initializers = {tensor.name for tensor in model.graph.initializer}

    def shapes(values) -> list:
        return [(value.name, tuple(d.dim_value if d.HasField("dim_value") else None
                                   for d in value.type.tensor_type.shape.dim))
                for value in values if value.name not in initializers]

    return OnnxSignature({entry.key: entry.value for entry in model.metadata_props}, shapes(model.graph.input),
                         shapes(model.graph.output))
