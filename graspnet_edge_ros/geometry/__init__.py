"""PointNet++ / GraspNet geometric operators (FPS, ball and cylinder query, three-NN, grouping).

Two implementations with identical results:

* :mod:`graspnet_edge_ros.geometry.native` - numba CPU kernels, one cloud, for the runtime.
  Imports numba but never torch.
* :mod:`graspnet_edge_ros.geometry.torch_ops` - batched PyTorch versions for training and
  ONNX export.

Nothing is imported here, so either module can be used without the other's dependency.
"""
