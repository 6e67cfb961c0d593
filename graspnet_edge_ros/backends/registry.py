"""FORMATS: the one table of model formats, and backend selection from it.

Adding a runtime is one backend file plus one record here. Backend modules are imported only
when a record is used, so listing formats never imports a runtime (or torch).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

from graspnet_edge_ros.backends.base import InferenceBackend
from graspnet_edge_ros.errors import BackendUnavailableError, ConfigError, ModelFormatError


@dataclass(frozen=True)
class BackendFormat:
    """One model format and the backend that runs it.

    Attributes:
        name: backend name used by configs and the CLI (``backend:=onnxruntime``).
        suffixes: lower-case file name endings this backend loads (".onnx").
        class_path: "module:Class" of the InferenceBackend subclass, imported lazily.
        install_hint: what to install when the runtime is missing.
        aliases: other accepted spellings of ``name``.
        directory_marker: for formats stored as a directory, a file name inside it that identifies the format.
    """

    name: str
    suffixes: tuple[str, ...]
    class_path: str
    install_hint: str
    aliases: tuple[str, ...] = ()
    directory_marker: str | None = None

    def matches_path(self, path: Path) -> bool:
        if path.is_dir():
            return self.directory_marker is not None and (path / self.directory_marker).is_file()
        return path.name.lower().endswith(self.suffixes)


FORMATS: tuple[BackendFormat, ...] = (
    BackendFormat(
        name="onnxruntime",
        suffixes=(".onnx",),
        class_path="graspnet_edge_ros.backends.onnxruntime_backend:OnnxRuntimeBackend",
        install_hint="pip install onnxruntime (CPU; aarch64 wheels on PyPI). For CUDA/TensorRT use "
        "onnxruntime-gpu on x86_64 or a Jetson Zoo / jetson-ai-lab wheel on Jetson",
        aliases=("ort", "onnx"),
    ),
    BackendFormat(
        name="hobot_dnn",
        suffixes=(".bin", ".hbm"),
        class_path="graspnet_edge_ros.backends.hobot_backend:HobotDnnBackend",
        install_hint="runs only on a Horizon RDK X5 board: install the hobot-spdev deb (RDK OS >= 3.5.0, "
        "provides hbm_runtime) or use the board image's hobot_dnn; do not pip install hbm_runtime",
        aliases=("hobot", "bpu", "hbm_runtime"),
    ),
    BackendFormat(
        name="torch",
        suffixes=(".pth", ".pt", ".tar"),
        class_path="graspnet_edge_ros.backends.torch_backend:TorchBackend",
        install_hint="pip install torch --index-url https://download.pytorch.org/whl/cpu "
        "(reference/parity backend; not needed on the robot)",
        aliases=("pytorch",),
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
SPLIT_MANIFEST = "manifest.json"


def supported_kinds() -> str:
    """The model kinds ``resolve_backend`` knows, for one-line error messages."""
    files = ", ".join(f"{'/'.join(fmt.suffixes)} ({fmt.name})" for fmt in FORMATS)
    return f"{files}, or a split directory with {SPLIT_MANIFEST} (onnxruntime, or hobot_dnn when it lists .bin files)"


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
        manifest = path / SPLIT_MANIFEST
        if not manifest.is_file():
            raise ModelFormatError(f"{path} is a directory without {SPLIT_MANIFEST}: unknown model kind "
                                   f"(supported: {supported_kinds()})")
        return _split_directory_backend(path, manifest)
    for fmt in FORMATS:
        if fmt.matches_path(path):
            return fmt.name
    raise ModelFormatError(f"{path.name!r}: unknown model kind, cannot choose a backend from it "
                           f"(supported: {supported_kinds()}); rename it or set backend explicitly")


def _split_directory_backend(directory: Path, manifest: Path) -> str:
    import json

    # Only a peek: a broken manifest gets onnxruntime here, and the manifest loader reports it.
    try:
        segments = json.loads(manifest.read_text()).get("segments")
        hobot_files = [segment["files"].get("hobot_dnn") for segment in segments]
        if segments and all(isinstance(name, str) and (directory / name).is_file() for name in hobot_files):
            return "hobot_dnn"
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    return "onnxruntime"


def load_backend_class(fmt: BackendFormat) -> type[InferenceBackend]:
    """Import the backend class of ``fmt``.

    Raises:
        BackendUnavailableError: the backend module cannot be imported (message keeps the cause).
    """
    module_name, class_name = fmt.class_path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{fmt.name}: cannot import {module_name} ({exc}); install: {fmt.install_hint}"
        ) from exc
    return getattr(module, class_name)


def select_backend(model_path: str | Path, prefer: str | None = None, **options) -> InferenceBackend:
    """Load ``model_path`` with the backend named by ``prefer``, or the one its suffix implies.

    Args:
        model_path: model file (or directory for directory formats).
        prefer: backend name or alias; None chooses by file suffix.
        **options: keyword options of the chosen backend's constructor (checked by name).

    Raises:
        ModelFormatError: missing file, unknown suffix, or a file the preferred backend cannot load.
        ConfigError: unknown backend name or option.
        BackendUnavailableError: the runtime is not installed here (with an install hint).
    """
    path = Path(model_path)
    if not path.exists():
        raise ModelFormatError(f"model file not found: {path}")
    if prefer:
        fmt = get_format(prefer)
        if not fmt.matches_path(path):
            raise ModelFormatError(
                f"backend {fmt.name!r} cannot load {path.name!r} (it loads {', '.join(fmt.suffixes)})"
            )
    else:
        fmt = format_for_path(path)
    backend_class = load_backend_class(fmt)
    _check_options(fmt, backend_class, options)
    if not backend_class.is_available():
        raise BackendUnavailableError(f"{fmt.name}: runtime not available on this machine; {fmt.install_hint}")
    return backend_class(path, **options)


def available_backends() -> dict[str, str]:
    """{backend name: runtime version, or "unavailable: <reason>"} for every format (``graspnet-edge env``)."""
    report = {}
    for fmt in FORMATS:
        try:
            backend_class = load_backend_class(fmt)
        except BackendUnavailableError as exc:
            report[fmt.name] = f"unavailable: {exc}"
            continue
        if backend_class.is_available():
            report[fmt.name] = backend_class.version()
        else:
            report[fmt.name] = f"unavailable: {fmt.install_hint}"
    return report


def _check_options(fmt: BackendFormat, backend_class: type[InferenceBackend], options: dict) -> None:
    """Reject option names the backend constructor does not take (its signature is the source of truth)."""
    parameters = inspect.signature(backend_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [n for n, p in parameters.items() if n not in ("self", "model_path") and p.kind is not p.VAR_POSITIONAL]
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{fmt.name}: unknown option {key!r} (valid: {', '.join(accepted) or 'none'}){hint}")
