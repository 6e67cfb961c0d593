"""Fake ``hobot_dnn_rdkx5.pyeasy_dnn`` (tests only)."""
from fake_pyeasy_dnn import Model, TensorProperties, load, pyDNNTensor

__all__ = ["Model", "TensorProperties", "load", "pyDNNTensor"]
