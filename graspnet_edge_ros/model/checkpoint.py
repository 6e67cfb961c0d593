"""Loading official GraspNet checkpoints into the Conv2d-headed model, strictly.

Accepted files: the official training layout (a dict with ``model_state_dict``, e.g.
``checkpoint-rs.tar``), a bare state dict (e.g. GraspNet-Edge ``grasp.pth``), and either of those
saved from a DDP wrapper (``module.`` prefix). Head convolutions stored Conv1d-shaped
``[out, in, 1]`` are reshaped to ``[out, in, 1, 1]``; nothing else is changed.
"""
from __future__ import annotations

from pathlib import Path

import torch

from graspnet_edge_ros.digest import file_digest  # noqa: F401  (re-exported for callers)

from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.model.config import GraspNetConfig
from graspnet_edge_ros.model.graspnet import GraspNet

_MAX_LISTED = 5


def _numpy_safe_globals() -> list:
    """The numpy globals official training checkpoints pickle (scalars in 'loss'/'epoch' and their dtypes)."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtype_classes = [type(np.dtype(kind)) for kind in (np.float32, np.float64, np.int32, np.int64, np.bool_)]
    return [scalar, np.dtype, *dict.fromkeys(dtype_classes)]


def safe_torch_load(path: str | Path):
    """``torch.load(weights_only=True)`` with only numpy scalars/dtypes allowed beyond tensors and containers.

    A pickle naming any other global (e.g. ``os.system``) is refused before anything runs.

    Raises:
        ModelFormatError: unreadable file, or a pickled global outside the allow-list.
    """
    import pickle

    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"checkpoint not found: {path}")
    allowed = _numpy_safe_globals()
    try:
        if hasattr(torch.serialization, "safe_globals"):  # torch >= 2.5: scoped to this call
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        if hasattr(torch.serialization, "add_safe_globals"):  # torch 2.4
            torch.serialization.add_safe_globals(allowed)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first
                      else type(exc).__name__)
        raise ModelFormatError(f"refused to load {path}: it is not a plain weights file, loading it would run "
                               f"pickled code ({detail})") from exc
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise ModelFormatError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (weights only, see ``safe_torch_load``) and return its model state dict (on CPU)."""
    payload = safe_torch_load(path)
    if isinstance(payload, dict) and "model_state_dict" in payload:
        payload = payload["model_state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ModelFormatError(
            f"{path} holds no state dict (expected a dict of tensors or a dict with 'model_state_dict')")
    return {_strip_ddp_prefix(k): v for k, v in payload.items()}


def _strip_ddp_prefix(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


def adapt_state_dict(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Reshape Conv1d head weights to the model's Conv2d shapes, then check keys and shapes strictly.

    Raises:
        ModelFormatError naming the first missing, unexpected and mismatching keys with shapes.
    """
    expected = model.state_dict()
    adapted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        target = expected.get(key)
        if target is not None and tensor.dim() == 3 and target.dim() == 4 and tensor.shape[2] == 1 \
                and tuple(target.shape) == (*tensor.shape, 1):
            tensor = tensor.unsqueeze(-1)
        adapted[key] = tensor
    missing = [k for k in expected if k not in adapted]
    unexpected = [k for k in adapted if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(adapted[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in adapted and adapted[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, first: {missing[:_MAX_LISTED]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:_MAX_LISTED]}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches, first: {mismatched[:_MAX_LISTED]}")
        raise ModelFormatError("checkpoint does not fit GraspNet: " + "; ".join(parts))
    return adapted


def load_graspnet(path: str | Path, config: GraspNetConfig | None = None) -> GraspNet:
    """Build GraspNet, load ``path`` strictly, and return it in eval mode on CPU."""
    model = GraspNet(config)
    model.load_state_dict(adapt_state_dict(read_state_dict(path), model), strict=True)
    return model.eval()
