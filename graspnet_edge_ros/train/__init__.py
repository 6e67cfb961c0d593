"""Training GraspNet on the GraspNet-1Billion layout (PyTorch, DDP; CPU gloo or GPU nccl).

Modules: ``dataset`` (official layout, loading, preprocessing, augmentation), ``tolerance``
(tolerance-label generator, numpy/scipy only), ``labels`` (online label generation), ``loss``
(official losses), ``trainer`` (``python -m graspnet_edge_ros.train`` / torchrun entry).
Everything except ``tolerance`` needs torch (extra ``train``); the runtime never imports this package.
"""
