"""Post-processing of decoded grasps: collision check, NMS and keep-mask filters (ROS-free).

Import the submodules directly; this package imports nothing heavy on its own (numba compiles
the collision and NMS kernels lazily, on first use, and caches them on disk).
"""
