"""The torch backend: a checkpoint of any model family run by PyTorch (the reference / parity path).

Slow on CPU (GraspNet's geometry runs as dense torch ops); it is what the ONNX files and the split
runtime are checked against, not what runs on a robot. It sits on the torch side of the import
layers (it loads the torch models), so the format table names it by string and the backends and
runtime never import it. Inputs and outputs carry the exported files' names.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from graspnet_edge_ros.backends.base import InferenceBackend, TensorSpec
from graspnet_edge_ros.contract import SINGLE_FILE_INPUT, SINGLE_FILE_OUTPUTS, single_file_output_specs
from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.planar.formats import DEFAULT_INPUT_SIZES, detect_planar_model_type


class TorchBackend(InferenceBackend):
    """A checkpoint (.pth/.pt/.tar) in PyTorch.

    GraspNet: ``point_clouds`` (1, N, 3) float32 -> the raw outputs (official end_points names).
    GR-ConvNet / AFFGA-Net: ``input`` (1, C, S, S) float32 -> pos, cos, sin, width / able,
    angle_bin (or angle), width.

    Args:
        model_path: the checkpoint: GraspNet (official training layout or bare state dict), or a
            planar network (whole-module pickle or state dict).
        model_type: "graspnet", "grconvnet" or "affga"; None = detected from the file (planar
            checkpoints are recognised, anything else is taken for GraspNet).
        num_threads: torch intra-op threads (None keeps torch's default).
        crop_chunk_size: GraspNet: seeds per cylinder-query chunk (bounds memory; results are identical).
        input_size: planar: S (default 224 / 320).
        angle_output: AFFGA-Net: "argmax" or "logits".
    """

    name = "torch"

    def __init__(self, model_path: str | Path, model_type: str | None = None, num_threads: int | None = None,
                 crop_chunk_size: int | None = 256, input_size: int | None = None, angle_output: str = "argmax"):
        super().__init__(model_path)
        import torch

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.model_type = model_type or detect_planar_model_type(self.model_path) or "graspnet"
        if self.model_type == "graspnet":
            if input_size is not None:
                raise ConfigError("torch: input_size applies to planar checkpoints (grconvnet, affga), not GraspNet")
            self._load_graspnet(crop_chunk_size)
        else:
            self._load_planar(input_size, angle_output)

    def _load_graspnet(self, crop_chunk_size: int | None) -> None:
        from graspnet_edge_ros.model.checkpoint import load_graspnet

        self.model = load_graspnet(self.model_path)
        self.crop_chunk_size = crop_chunk_size
        self._input_specs = [TensorSpec(SINGLE_FILE_INPUT, (1, None, 3), "float32")]
        self._output_specs = single_file_output_specs(self.model.config, self.model.config.num_seed)

    def _load_planar(self, input_size: int | None, angle_output: str) -> None:
        from graspnet_edge_ros.planar.export import INPUT_NAME, check_input_size, inference_module, load_planar_model

        self.model_type, model = load_planar_model(self.model_path, self.model_type)
        self.module, names = inference_module(self.model_type, model, angle_output)
        size = check_input_size(self.model_type, input_size or DEFAULT_INPUT_SIZES[self.model_type])
        channels = int(model.input_channels)
        self._input_specs = [TensorSpec(INPUT_NAME, (1, channels, size, size), "float32")]
        angle_bins = int(getattr(model, "angle_bins", 1))
        self._output_specs = [TensorSpec(n, (1, angle_bins if n == "angle" else 1, size, size),
                                         "int64" if n == "angle_bin" else "float32") for n in names]

    @classmethod
    def is_available(cls) -> bool:
        try:
            import torch  # noqa: F401
        except ImportError:
            return False
        return True

    @classmethod
    def version(cls) -> str:
        import torch

        return torch.__version__

    def execute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            if self.model_type == "graspnet":
                end_points = self.model(torch.from_numpy(inputs[SINGLE_FILE_INPUT]),
                                        crop_chunk_size=self.crop_chunk_size)
                return {name: end_points[name].numpy() for name in SINGLE_FILE_OUTPUTS}
            outputs = self.module(torch.from_numpy(inputs[self._input_specs[0].name]))
        return {spec.name: tensor.numpy() for spec, tensor in zip(self._output_specs, outputs)}
