"""Fake ``hobot_dnn.pyeasy_dnn`` (tests only)."""
from fake_pyeasy_dnn import Model, TensorProperties, load, pyDNNTensor

__all__ = ["Model", "TensorProperties", "load", "pyDNNTensor"]
