"""The torch reference backend: the exact PyTorch GraspNet loaded from a checkpoint.

Slow on CPU (the geometry runs as dense torch ops); it is the reference the ONNX file and the
split runtime are checked against, not what runs on a robot.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from graspnet_edge_ros.backends.base import InferenceBackend, TensorSpec
from graspnet_edge_ros.export.names import SINGLE_FILE_INPUT, SINGLE_FILE_OUTPUTS, single_file_output_specs


class TorchBackend(InferenceBackend):
    """``point_clouds`` (1, N, 3) float32 -> the raw GraspNet outputs (official end_points names).

    Args:
        model_path: checkpoint (.pth/.pt/.tar): official training layout or bare state dict.
        num_threads: torch intra-op threads (None keeps torch's default).
        crop_chunk_size: seeds per cylinder-query chunk (bounds memory; results are identical).
    """

    name = "torch"
    suffixes = (".pth", ".pt", ".tar")

    def __init__(self, model_path: str | Path, num_threads: int | None = None, crop_chunk_size: int | None = 256):
        super().__init__(model_path)
        import torch

        from graspnet_edge_ros.model.checkpoint import load_graspnet

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.model = load_graspnet(self.model_path)
        self.crop_chunk_size = crop_chunk_size
        seeds = self.model.config.num_seed
        self._input_specs = [TensorSpec(SINGLE_FILE_INPUT, (1, None, 3), "float32")]
        self._output_specs = single_file_output_specs(self.model.config, seeds)

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
            end_points = self.model(torch.from_numpy(inputs[SINGLE_FILE_INPUT]), crop_chunk_size=self.crop_chunk_size)
        return {name: end_points[name].numpy() for name in SINGLE_FILE_OUTPUTS}
