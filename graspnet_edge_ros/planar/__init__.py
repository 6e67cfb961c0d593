"""Planar (4-DoF, image-space) grasp networks: GR-ConvNet and SGDN/AFFGA-Net (2021).

``runner.load_planar_runner`` turns a checkpoint or ONNX export into a callable
(colour, depth) -> ``types.PlanarGrasps`` in full-image pixels; ``export.export_planar_onnx`` writes
static-shape ONNX files. Submodules are imported on demand (torch only where a checkpoint is used).
"""
