"""Backend selection from the format table (``graspnet_edge_ros.formats.FORMATS``).

Backend modules are imported only when a record is used, so listing formats never imports a
runtime (or torch). The table's names are re-exported here for the backends package's callers.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path

from graspnet_edge_ros.backends.base import InferenceBackend
from graspnet_edge_ros.errors import BackendUnavailableError, ConfigError, ModelFormatError
from graspnet_edge_ros.formats import (AUTO_BACKENDS, FORMATS, BackendFormat,  # noqa: F401
                                       backend_names, format_for_path, get_format, is_auto_backend,
                                       resolve_backend, supported_kinds)


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


def select_backend(model_path: str | Path, prefer: str | None = None, model_type: str | None = None,
                   **options) -> InferenceBackend:
    """Load ``model_path`` with the backend named by ``prefer``, or the one its suffix implies.

    Args:
        model_path: model file (or directory for directory formats).
        prefer: backend name or alias; None chooses by file suffix.
        model_type: the model family (formats.MODEL_TYPES) when the caller knows it: refused when the
            format's record does not run it, and passed on to backends whose constructor takes it
            (torch serves every family from a checkpoint); others read the family from the file.
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
    if model_type is not None:
        if model_type not in fmt.model_types:
            raise ModelFormatError(f"backend {fmt.name!r} does not run {model_type} models "
                                   f"(it runs {', '.join(fmt.model_types)})")
        if "model_type" in inspect.signature(backend_class.__init__).parameters:
            options = {**options, "model_type": model_type}
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
    # model_type is select_backend's own argument, passed on by it.
    accepted = [n for n, p in parameters.items()
                if n not in ("self", "model_path", "model_type") and p.kind is not p.VAR_POSITIONAL]
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{fmt.name}: unknown option {key!r} (valid: {', '.join(accepted) or 'none'}){hint}")
