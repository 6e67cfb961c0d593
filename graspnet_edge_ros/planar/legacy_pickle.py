"""Restricted loading of planar-network checkpoints, including whole-module pickles.

Published planar models are often ``torch.save(model)`` pickles whose classes live in modules that
do not exist here (``inference.models.grconvnet3``, ``models.affga.deeplab``). They are read with
an allow-listing unpickler: each model family names the foreign classes it expects (mapped to an
inert ``PickledModule`` that only carries the unpickled state), plus a fixed set of torch/stdlib
globals that rebuild tensors and layers. Any other global is refused *before* it is resolved, so a
crafted pickle cannot run code through it. The extracted state dict is then loaded strictly into
our own module (``load_state_dict_strictly``).
"""
from __future__ import annotations

import pickle
import types
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from graspnet_edge_ros.errors import ModelFormatError

# Globals a torch checkpoint may reference besides the model's own classes: tensor/parameter
# rebuilders, the layer classes the planar networks are built from, and the plain containers /
# numpy scalars that training checkpoints carry next to the state dict. Storage classes
# (torch.FloatStorage, ...) never reach find_class: torch's loader resolves them itself.
SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("collections", "OrderedDict"),
    ("builtins", "set"),            # nn.Module._non_persistent_buffers_set (protocol 2 spells it
    ("__builtin__", "set"),         # __builtin__.set)
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "device"),
    ("torch.nn.modules.conv", "Conv2d"),
    ("torch.nn.modules.conv", "ConvTranspose2d"),
    ("torch.nn.modules.batchnorm", "BatchNorm2d"),
    ("torch.nn.modules.dropout", "Dropout"),
    ("torch.nn.modules.activation", "ReLU"),
    ("torch.nn.modules.pooling", "MaxPool2d"),
    ("torch.nn.modules.container", "Sequential"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
})

_MAX_LISTED = 5


class PickledModule(nn.Module):
    """Inert stand-in for a foreign model class: holds the unpickled parameters, never runs."""

    def forward(self, *args, **kwargs):  # pragma: no cover - never called
        raise ModelFormatError("a module unpickled from a checkpoint is a weight container; it cannot run")


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.qualified = f"{module}.{name}"


def restricted_pickle_module(model_classes: Mapping[tuple[str, str], type]) -> types.SimpleNamespace:
    """A ``pickle_module`` for ``torch.load`` that resolves only ``model_classes`` and SAFE_GLOBALS."""

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) in model_classes:
                return model_classes[(module, name)]
            if (module, name) in SAFE_GLOBALS:
                return super().find_class(module, name)
            raise _RefusedGlobal(module, name)

    def load(file, **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()

    return types.SimpleNamespace(__name__="graspnet_edge_restricted_pickle", Unpickler=RestrictedUnpickler,
                                 load=load, UnpicklingError=pickle.UnpicklingError)


def load_restricted(path: str | Path, model_classes: Mapping[tuple[str, str], type], what: str):
    """``torch.load`` of ``path`` (legacy or zip format) through the restricted unpickler, on CPU.

    Raises:
        ModelFormatError: missing/unreadable file, or a global outside the allow-list (named).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{what} checkpoint not found: {path}")
    try:
        # weights_only=True cannot read legacy whole-module pickles (their persistent ids carry the
        # class); the allow-list in find_class is what keeps this load safe.
        return torch.load(path, map_location="cpu", pickle_module=restricted_pickle_module(model_classes),
                          weights_only=False)
    except _RefusedGlobal as exc:
        raise ModelFormatError(
            f"{path.name}: refused to unpickle global {exc.qualified!r}: not a known {what} class or "
            f"torch layer (wrong model type, or an unsafe file)") from None
    except Exception as exc:  # torch/pickle raise many types for a corrupt or foreign file
        raise ModelFormatError(f"cannot read {what} checkpoint {path}: {type(exc).__name__}: {exc}") from exc


def read_planar_state_dict(path: str | Path, model_classes: Mapping[tuple[str, str], type],
                           what: str) -> dict[str, torch.Tensor]:
    """State dict of a checkpoint: whole-module pickle, bare state dict, ``model_state_dict`` /
    ``state_dict``-wrapped training file; a DDP ``module.`` prefix is removed."""
    payload = load_restricted(path, model_classes, what)
    if isinstance(payload, nn.Module):
        payload = payload.state_dict()
    elif isinstance(payload, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if key in payload and isinstance(payload[key], (dict, nn.Module)):
                inner = payload[key]
                payload = inner.state_dict() if isinstance(inner, nn.Module) else inner
                break
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ModelFormatError(f"{path}: holds no {what} weights (expected a whole-module pickle, a state dict, "
                               f"or a dict with 'model_state_dict')")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in payload.items()}


def load_state_dict_strictly(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """Load ``state_dict`` with strict key and shape checks; ModelFormatError names the offending keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    problems = [f"{len(items)} {label}, first: {items[:_MAX_LISTED]}"
                for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatches", mismatched)) if items]
    if problems:
        raise ModelFormatError(f"checkpoint does not fit {what}: " + "; ".join(problems))
    model.load_state_dict(dict(state_dict), strict=True)
    return model.eval()
