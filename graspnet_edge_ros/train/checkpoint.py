"""Training checkpoints in the official ``train.py`` layout, readable by ``graspnet-edge export``.

File = ``torch.save({'epoch', 'model_state_dict', 'optimizer_state_dict', 'loss'})``. The model
and the Adam moments are stored with the official shapes (Conv1d heads ``[out, in, 1]``), from the
unwrapped module (no ``module.`` prefix), so graspnet-baseline's own code can read the file too.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from graspnet_edge_ros.errors import ModelFormatError
from graspnet_edge_ros.model.checkpoint import adapt_state_dict, read_state_dict, safe_torch_load

HEAD_CONV_PREFIXES = ("view_estimator.vpmodule.conv", "grasp_generator.operation.conv",
                      "grasp_generator.tolerance.conv")


def is_head_conv_weight(name: str) -> bool:
    return name.startswith(HEAD_CONV_PREFIXES) and name.endswith(".weight")


def _to_official(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if is_head_conv_weight(name) and tensor.dim() == 4 and tensor.shape[-1] == 1:
        return tensor.squeeze(-1)
    return tensor


def official_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with Conv1d-shaped head weights, on CPU."""
    return {name: _to_official(name, t.detach().cpu().clone()) for name, t in model.state_dict().items()}


def official_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict:
    """Optimizer state dict on CPU with per-parameter tensors shaped like the official parameters."""
    names = [name for name, _ in model.named_parameters()]
    state = copy.deepcopy(optimizer.state_dict())
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                value = value.cpu()
                if value.dim() > 0 and index < len(names):
                    value = _to_official(names[index], value)
                per_param[key] = value
    return state


def fit_optimizer_state(state: dict, model: nn.Module) -> dict:
    """Reshape stored per-parameter tensors (official or ours) to this model's parameter shapes."""
    params = list(model.parameters())
    state = copy.deepcopy(state)
    for index, per_param in state.get("state", {}).items():
        if index >= len(params):
            raise ModelFormatError(f"optimizer state has parameter #{index}, the model only {len(params)}")
        shape = params[index].shape
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != shape:
                if value.numel() != shape.numel():
                    raise ModelFormatError(f"optimizer state '{key}' of parameter #{index} has shape "
                                           f"{tuple(value.shape)}, the parameter {tuple(shape)}")
                per_param[key] = value.reshape(shape)
    return state


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    loss: float) -> Path:
    """Write the official layout atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"epoch": int(epoch), "model_state_dict": official_state_dict(model),
               "optimizer_state_dict": official_optimizer_state(optimizer, model), "loss": float(loss)}
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)
    return path


def load_for_training(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None
                      ) -> tuple[int, bool]:
    """Load weights (strict, official or ours) and, when present, the optimizer state and epoch.

    Returns:
        (start_epoch, resumed): start_epoch = stored 'epoch' for a training checkpoint, 0 for a
        bare state dict (weights only, e.g. fine-tuning from GraspNet-Edge ``grasp.pth``).
    """
    model.load_state_dict(adapt_state_dict(read_state_dict(path), model), strict=True)
    payload = safe_torch_load(path)
    if not (isinstance(payload, dict) and "optimizer_state_dict" in payload):
        return 0, False
    if "epoch" not in payload:
        raise ModelFormatError(f"{path}: has 'optimizer_state_dict' but no 'epoch'")
    if optimizer is not None:
        try:
            optimizer.load_state_dict(fit_optimizer_state(payload["optimizer_state_dict"], model))
        except (ValueError, KeyError) as exc:
            raise ModelFormatError(f"{path}: optimizer state does not fit Adam over GraspNet: {exc}") from exc
    return int(payload["epoch"]), True
