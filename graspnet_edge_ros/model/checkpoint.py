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


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its model state dict (on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"checkpoint not found: {path}")
    try:
        # Official files store an optimizer state and numpy scalars: weights_only=False is needed.
        # Only load checkpoints you trust (torch.load can execute pickled code).
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise ModelFormatError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
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
