"""FORMATS: the one table of model formats: suffixes, aliases, backend, exporter, model families.

Every place that needs to know about formats asks this table: backend choice from a file
(``resolve_backend``), the CLI's ``--backend``/``--model-type`` choices, ``thread_options``/``provider_options``, the
export dispatch of ``graspnet-edge export``, ``graspnet-edge env`` and the benchmarks' listing.
Adding a runtime is one backend class plus one record here.

Backend classes and exporters are named as "module:attribute" strings and imported only when a
record is used (``backends.registry``, ``load_exporter``): listing formats imports no runtime, no
torch, and this module sits at the bottom of the import layers (see README, "Repository layout").
"""
from __future__ import annotations

import difflib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from graspnet_edge_ros.contract import MANIFEST_NAME
from graspnet_edge_ros.errors import ConfigError, ModelFormatError

# The model families: GraspNet (points -> 6-DoF) and the planar networks (images -> 4-DoF, lifted).
MODEL_TYPES = ("graspnet", "grconvnet", "affga")

# Short names of the ONNX Runtime execution providers (``onnx_providers``, ``--providers``).
PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


@dataclass(frozen=True)
class BackendFormat:
    """One model format and the backend that runs it.

    Attributes:
        name: backend name used by configs and the CLI (``backend:=onnxruntime``).
        suffixes: lower-case file name endings this backend loads (".onnx").
        class_path: "module:Class" of the InferenceBackend subclass, imported lazily.
        install_hint: what to install when the runtime is missing.
        aliases: other accepted spellings of ``name``.
        model_types: the model families (MODEL_TYPES) this backend runs.
        thread_option: the constructor option that sets the CPU threads (None: the runtime has none).
        provider_option: the constructor option that takes execution providers (None: the runtime has none).
        runs_split_segments: can run the segments of a split GraspNet export (manifest.json).
        exporters: model type -> "module:function" writing this format from a checkpoint; the
            function takes an ``export.checkpoint_export.ExportRequest`` and returns a summary line.
        directory_marker: for formats stored as a directory, a file name inside it that identifies the format.
    """

    name: str
    suffixes: tuple[str, ...]
    class_path: str
    install_hint: str
    aliases: tuple[str, ...] = ()
    model_types: tuple[str, ...] = MODEL_TYPES
    thread_option: str | None = None
    provider_option: str | None = None
    runs_split_segments: bool = False
    exporters: dict[str, str] = field(default_factory=dict)
    directory_marker: str | None = None

    def matches_path(self, path: Path) -> bool:
        if path.is_dir():
            return self.directory_marker is not None and (path / self.directory_marker).is_file()
        return path.name.lower().endswith(self.suffixes)

    def describe(self) -> str:
        """E.g. ".onnx; graspnet, grconvnet, affga; exports graspnet, grconvnet, affga" (env, benchmarks)."""
        text = f"{'/'.join(self.suffixes)}; runs {', '.join(self.model_types)}"
        return text + (f"; exports {', '.join(self.exporters)}" if self.exporters else "")


_CHECKPOINT_EXPORT = "graspnet_edge_ros.export.checkpoint_export"

FORMATS: tuple[BackendFormat, ...] = (
    BackendFormat(
        name="onnxruntime",
        suffixes=(".onnx",),
        class_path="graspnet_edge_ros.backends.onnxruntime_backend:OnnxRuntimeBackend",
        install_hint="pip install onnxruntime (CPU; aarch64 wheels on PyPI). For CUDA/TensorRT use "
        "onnxruntime-gpu on x86_64 or a Jetson Zoo / jetson-ai-lab wheel on Jetson",
        aliases=("ort", "onnx"),
        thread_option="intra_op_threads",
        provider_option="providers",
        runs_split_segments=True,
        exporters={"graspnet": f"{_CHECKPOINT_EXPORT}:export_graspnet",
                   "grconvnet": f"{_CHECKPOINT_EXPORT}:export_planar",
                   "affga": f"{_CHECKPOINT_EXPORT}:export_planar"},
    ),
    BackendFormat(
        name="hobot_dnn",
        suffixes=(".bin", ".hbm"),
        class_path="graspnet_edge_ros.backends.hobot_backend:HobotDnnBackend",
        install_hint="runs only on a Horizon RDK X5 board: install the hobot-spdev deb (RDK OS >= 3.5.0, "
        "provides hbm_runtime) or use the board image's hobot_dnn; do not pip install hbm_runtime",
        aliases=("hobot", "bpu", "hbm_runtime"),
        runs_split_segments=True,   # .bin files come from the X5 toolchain (x5-prepare), not from export
    ),
    BackendFormat(
        name="torch",
        suffixes=(".pth", ".pt", ".tar"),
        # The torch side of the layers (it loads the torch models): see export/torch_backend.py.
        class_path="graspnet_edge_ros.export.torch_backend:TorchBackend",
        install_hint="pip install torch --index-url https://download.pytorch.org/whl/cpu "
        "(reference/parity backend; not needed on the robot)",
        aliases=("pytorch",),
        thread_option="num_threads",
    ),
)


def backend_names() -> list[str]:
    """Names of every format, in table order (CLI choices)."""
    return [fmt.name for fmt in FORMATS]


def get_format(name: str) -> BackendFormat:
    """Record by name or alias (case-insensitive); ConfigError listing valid names otherwise."""
    wanted = name.strip().lower()
    for fmt in FORMATS:
        if wanted == fmt.name or wanted in fmt.aliases:
            return fmt
    known = backend_names() + [alias for fmt in FORMATS for alias in fmt.aliases]
    close = difflib.get_close_matches(wanted, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown backend {name!r} (valid: {', '.join(backend_names())}){hint}")


def format_for_path(model_path: str | Path) -> BackendFormat:
    """Record whose suffix (or directory marker) matches ``model_path``; ModelFormatError if none."""
    path = Path(model_path)
    for fmt in FORMATS:
        if fmt.matches_path(path):
            return fmt
    raise ModelFormatError(f"no backend loads {path.name!r}: unknown model format (supported: {supported_kinds()})")


# Spellings of "choose the backend from the model file" (the parameter's default).
AUTO_BACKENDS = ("", "auto")


def supported_kinds() -> str:
    """The model kinds ``resolve_backend`` knows, for one-line error messages."""
    files = ", ".join(f"{'/'.join(fmt.suffixes)} ({fmt.name})" for fmt in FORMATS)
    split = " or ".join(fmt.name for fmt in FORMATS if fmt.runs_split_segments)
    return f"{files}, or a split directory with {MANIFEST_NAME} ({split}, by the files it lists)"


def split_backends() -> list[str]:
    """Backends that run the segments of a split directory, in table order (the first is the default)."""
    return [fmt.name for fmt in FORMATS if fmt.runs_split_segments]


def is_auto_backend(backend: str | None) -> bool:
    return backend is None or backend.strip().lower() in AUTO_BACKENDS


def resolve_backend(model_path: str | Path, backend: str | None = None) -> str:
    """The backend that runs ``model_path``: ``backend`` (canonical name) unless it is ""/"auto"/None.

    From the model file: a split directory (``manifest.json``) runs with hobot_dnn when every
    segment lists an existing hobot_dnn file (the converted RDK X5 kit), else with onnxruntime;
    a single file by its suffix (.onnx onnxruntime, .pth/.pt/.tar torch, .bin/.hbm hobot_dnn).

    Raises:
        ModelFormatError: the path does not exist, or is of no known kind (one line, listing the kinds).
        ConfigError: an unknown backend name.
    """
    if not is_auto_backend(backend):
        return get_format(backend).name
    path = Path(model_path)
    if not str(model_path).strip():
        raise ModelFormatError(f"model_path is empty: give the model file or split directory ({supported_kinds()})")
    if not path.exists():
        raise ModelFormatError(f"model not found: {path}")
    if path.is_dir():
        manifest = path / MANIFEST_NAME
        if not manifest.is_file():
            raise ModelFormatError(f"{path} is a directory without {MANIFEST_NAME}: unknown model kind "
                                   f"(supported: {supported_kinds()})")
        return _split_directory_backend(path, manifest)
    for fmt in FORMATS:
        if fmt.matches_path(path):
            return fmt.name
    raise ModelFormatError(f"{path.name!r}: unknown model kind, cannot choose a backend from it "
                           f"(supported: {supported_kinds()}); rename it or set backend explicitly")


def _split_directory_backend(directory: Path, manifest: Path) -> str:
    """The first split backend (table order: onnxruntime) unless every segment lists an existing
    file of a later one (the converted X5 kit lists hobot_dnn .bin files)."""
    candidates = split_backends()
    # Only a peek: a broken manifest gets the default here, and the manifest loader reports it.
    try:
        segments = json.loads(manifest.read_text()).get("segments")
        for name in reversed(candidates[1:]):
            files = [segment["files"].get(name) for segment in segments]
            if segments and all(isinstance(file, str) and (directory / file).is_file() for file in files):
                return name
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    return candidates[0]


def thread_options(backend: str | None, model_path, threads: int) -> dict:
    """The backend option that sets ``threads`` CPU threads ({} when 0 or not applicable)."""
    if not threads:
        return {}
    option = get_format(resolve_backend(model_path, backend)).thread_option  # aliases and "auto" included
    return {option: int(threads)} if option else {}


def provider_options(backend: str | None, model_path, providers) -> dict:
    """The backend option selecting execution ``providers`` ({} when empty or the runtime has none).

    ``providers``: a comma-separated string or a list ("cpu", "cuda", "tensorrt", "openvino").
    """
    if not providers:
        return {}
    option = get_format(resolve_backend(model_path, backend)).provider_option
    return {option: providers} if option else {}


def load_exporter(model_type: str):
    """The exporter of ``model_type`` checkpoints (first record that has one), imported now.

    Raises:
        ConfigError: no record exports this model type.
    """
    for fmt in FORMATS:
        if model_type in fmt.exporters:
            module_name, function_name = fmt.exporters[model_type].split(":")
            return getattr(importlib.import_module(module_name), function_name)
    exportable = sorted({t for fmt in FORMATS for t in fmt.exporters})
    raise ConfigError(f"no exporter for model type {model_type!r} (exportable: {', '.join(exportable)})")


def resolve_providers(providers: Sequence[str] | str | None) -> list[str]:
    """Map short names to ORT provider names, keep order, add CUDA behind TensorRT and CPU last.

    ``providers``: a list, or one comma-separated string ("tensorrt,cuda"); None or empty = CPU.
    Raises ConfigError for a name that is neither a short nor a full ORT name.
    """
    if providers is None:
        providers = ["cpu"]
    elif isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    full_names = set(PROVIDER_NAMES.values())
    resolved: list[str] = []
    for provider in providers:
        key = str(provider).strip()
        ort_name = PROVIDER_NAMES.get(key.lower(), key if key in full_names else None)
        if ort_name is None:
            raise ConfigError(
                f"onnxruntime: unknown provider {provider!r} (valid: {', '.join(PROVIDER_NAMES)} "
                "or their ORT names)"
            )
        resolved.append(ort_name)
        if ort_name == PROVIDER_NAMES["tensorrt"]:
            resolved.append(PROVIDER_NAMES["cuda"])
    cpu = PROVIDER_NAMES["cpu"]
    return [p for p in dict.fromkeys(resolved) if p != cpu] + [cpu]
