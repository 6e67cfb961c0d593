"""A planar checkpoint run by PyTorch behind the InferenceBackend interface (reference / parity path).

The registry's ``torch`` backend is GraspNet's; planar checkpoints (.pt/.pth) come here through
``load_planar_runner``. Inputs and outputs carry the same names as the ONNX export.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from graspnet_edge_ros.backends.base import InferenceBackend, TensorSpec
from graspnet_edge_ros.backends.torch_backend import TorchBackend
from graspnet_edge_ros.planar.formats import DEFAULT_INPUT_SIZES


class PlanarTorchBackend(TorchBackend):
    """``input`` (1, C, S, S) float32 -> the planar outputs (GR-ConvNet: pos, cos, sin, width;
    AFFGA-Net: able, angle_bin or angle, width).

    Args:
        model_path: planar checkpoint (whole-module pickle or state dict).
        model_type: "grconvnet" or "affga" (None: detected from the file).
        input_size: S (default 224 / 320).
        num_threads: torch intra-op threads (None keeps torch's default).
        angle_output: AFFGA only: "argmax" or "logits".
    """

    def __init__(self, model_path: str | Path, model_type: str | None = None, input_size: int | None = None,
                 num_threads: int | None = None, angle_output: str = "argmax"):
        InferenceBackend.__init__(self, model_path)   # TorchBackend.__init__ would load GraspNet
        import torch

        from graspnet_edge_ros.planar.export import INPUT_NAME, check_input_size, inference_module, load_planar_model

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.model_type, model = load_planar_model(self.model_path, model_type)
        self.module, names = inference_module(self.model_type, model, angle_output)
        size = check_input_size(self.model_type, input_size or DEFAULT_INPUT_SIZES[self.model_type])
        channels = int(model.input_channels)
        self._input_specs = [TensorSpec(INPUT_NAME, (1, channels, size, size), "float32")]
        angle_bins = int(getattr(model, "angle_bins", 1))
        self._output_specs = [TensorSpec(n, (1, angle_bins if n == "angle" else 1, size, size),
                                         "int64" if n == "angle_bin" else "float32") for n in names]

    def execute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            outputs = self.module(torch.from_numpy(inputs[self._input_specs[0].name]))
        return {spec.name: tensor.numpy() for spec, tensor in zip(self._output_specs, outputs)}
