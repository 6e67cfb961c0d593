"""Horizon RDK X5 deployment kit: BPU-ready segments, calibration data, hb_mapper configs, checks.

* ``opcheck``: X5 model limits and operator placement of any ONNX file (``graspnet-edge x5-check``).
* ``frames``: real RGB-D frames from a rosbag, a frame directory or a GraspNet capture.
* ``kit``: checkpoint -> split segments + calibration set + YAMLs + conversion script + manifest
  (``graspnet-edge x5-prepare``).
* ``quant``: int8 simulation of the segments with the calibrated ranges, and how much the grasps
  change (``graspnet-edge x5-quant-check``).

Nothing here imports ROS, torch or a Horizon runtime at import time.
"""
