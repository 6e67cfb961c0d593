"""Inference backends: one module per runtime, chosen through the FORMATS table (graspnet_edge_ros/formats.py).

Importing this package imports no runtime: backend modules are loaded when a format is used.
"""

from graspnet_edge_ros.backends.base import InferenceBackend, TensorSpec
from graspnet_edge_ros.backends.registry import (
    FORMATS,
    BackendFormat,
    available_backends,
    backend_names,
    format_for_path,
    get_format,
    load_backend_class,
    select_backend,
)

__all__ = [
    "FORMATS",
    "BackendFormat",
    "InferenceBackend",
    "TensorSpec",
    "available_backends",
    "backend_names",
    "format_for_path",
    "get_format",
    "load_backend_class",
    "select_backend",
]
