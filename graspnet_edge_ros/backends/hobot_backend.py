"""Horizon RDK X5 BPU backend for ``.bin`` models: hbm_runtime preferred, pyeasy_dnn as fallback.

hbm_runtime (RDK OS >= 3.5.0, deb ``hobot-spdev``) takes float feature maps and names as they
are. pyeasy_dnn 3.0.6 (``hobot_dnn`` on the board image, or ``hobot_dnn_rdkx5``) has quirks
this module works around (edge_deploy.md §1.2-1.4):

* ``forward(ndarray)`` copies element-count bytes (a float32 input loses 3/4 of its data) and
  ``forward(list)`` value-casts every item to uint8: inputs are passed as C-contiguous uint8
  byte views, always all of them, in model input order (missing ones would keep stale data);
* outputs alias one buffer set that the next ``forward`` overwrites, and ``.buffer`` makes a new
  copy on each access: each output's ``.buffer`` is read exactly once, under a lock, before
  the next forward (one model is not safe for concurrent forwards);
* only F32/S32/S16 outputs are readable (others come back as int8 garbage) and ``.buffer``
  ignores padding: such models are refused at load;
* int32/int16 outputs with ``scale_data`` are dequantised along the channel axis (axis 1 for
  NCHW, last axis for NHWC), since ``quantizeAxis`` is not exposed.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graspnet_edge_ros.backends.base import InferenceBackend, TensorSpec
from graspnet_edge_ros.errors import BackendUnavailableError, ConfigError, ModelFormatError
from graspnet_edge_ros.formats import get_format

# pyeasy_dnn copies these input tensor types byte-for-byte; image types (NV12, RGB, ...) go
# through other paths (RGB is even modified in the caller's array) and int4/float16 are refused.
PYEASY_BYTE_INPUT_TYPES = {
    "int8", "uint8", "int16", "uint16", "float32", "int32", "uint32", "float64", "int64", "uint64",
}
PYEASY_READABLE_OUTPUT_TYPES = {"float32": np.float32, "int32": np.int32, "int16": np.int16}
HBM_DTYPES = {
    "S8": "int8", "U8": "uint8", "F16": "float16", "S16": "int16", "U16": "uint16", "F32": "float32",
    "S32": "int32", "U32": "uint32", "F64": "float64", "S64": "int64", "U64": "uint64", "BOOL8": "bool",
}
HBM_QUANT_SCALE = 1  # hbDNNQuantiType.SCALE


@dataclass(frozen=True)
class _OutputDecoder:
    """How one raw runtime output becomes the array ``run`` returns."""

    name: str
    shape: tuple[int, ...]
    raw_dtype: np.dtype
    scale: np.ndarray | None = None  # float32, broadcastable to shape; None = no dequantisation
    zero_point: np.ndarray | None = None

    def decode(self, raw: np.ndarray) -> np.ndarray:
        if raw.dtype != self.raw_dtype or raw.size != int(np.prod(self.shape)):
            raise ModelFormatError(
                f"hobot_dnn: output {self.name!r} came back as {raw.dtype}{list(raw.shape)}, "
                f"expected {self.raw_dtype}{list(self.shape)}"
            )
        values = raw if raw.shape == self.shape else raw.reshape(self.shape)  # no view: run() keeps it uncopied
        if self.scale is None:
            return values
        if self.zero_point is not None:
            return (values.astype(np.float32) - self.zero_point) * self.scale
        return values.astype(np.float32) * self.scale

    @property
    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.shape, "float32" if self.scale is not None else self.raw_dtype.name)


def _broadcast_along(values, shape: tuple[int, ...], axis: int | None, what: str) -> np.ndarray:
    """(len,) per-tensor or per-channel parameters reshaped to broadcast along ``axis`` of ``shape``."""
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size == 1:
        return values.reshape((1,) * len(shape))
    if axis is None or not -len(shape) <= axis < len(shape) or shape[axis] != values.size:
        raise ModelFormatError(
            f"hobot_dnn: {what} has {values.size} values, which match no channel axis of shape {list(shape)}"
        )
    broadcast = [1] * len(shape)
    broadcast[axis] = values.size
    return values.reshape(broadcast)


class HobotDnnBackend(InferenceBackend):
    """A Horizon ``.bin`` model on the RDK X5 BPU.

    Args:
        model_path: the .bin file (one model).
        core_id: BPU core: 0 = any, 1 = core 0, 2 = core 1 (the X5 has one core: use 0 or 1).
        priority: scheduling priority 0-255, higher first.

    Attributes:
        runtime_name: "hbm_runtime" or "pyeasy_dnn", whichever was imported.

    Examples:
        >>> HobotDnnBackend("graspnet_x5.bin").run({"point_clouds": points})  # doctest: +SKIP
    """

    name = "hobot_dnn"

    def __init__(self, model_path: str | Path, core_id: int = 0, priority: int = 0) -> None:
        super().__init__(model_path)
        if isinstance(core_id, bool) or core_id not in (0, 1, 2):
            raise ConfigError(f"hobot_dnn: core_id must be 0 (any), 1 or 2, got {core_id!r}")
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 255:
            raise ConfigError(f"hobot_dnn: priority must be an integer 0-255, got {priority!r}")
        self.runtime_name, module = self.import_runtime()
        self._lock = threading.Lock()
        if self.runtime_name == "hbm_runtime":
            self._load_hbm_runtime(module, core_id, priority)
        else:
            self._load_pyeasy_dnn(module, core_id, priority)
        self._output_specs = [decoder.spec for decoder in self._decoders]

    @classmethod
    def import_runtime(cls) -> tuple[str, object]:
        """("hbm_runtime", module) when importable, else ("pyeasy_dnn", module) from hobot_dnn or hobot_dnn_rdkx5."""
        errors = []
        try:
            return "hbm_runtime", importlib.import_module("hbm_runtime")
        except ImportError as exc:
            errors.append(f"hbm_runtime: {exc}")
        for package in ("hobot_dnn", "hobot_dnn_rdkx5"):  # the two-step import D-Robotics' samples use
            try:
                return "pyeasy_dnn", importlib.import_module(f"{package}.pyeasy_dnn")
            except ImportError as exc:
                errors.append(f"{package}: {exc}")
        hint = get_format(cls.name).install_hint
        raise BackendUnavailableError(f"hobot_dnn: no Horizon runtime importable ({'; '.join(errors)}); {hint}")

    @classmethod
    def version(cls) -> str:
        runtime_name, module = cls.import_runtime()
        if runtime_name == "hbm_runtime":
            return f"hbm_runtime {module.HB_HBMRuntime.version()}"
        from importlib import metadata

        for distribution in ("hobot-dnn", "hobot-dnn-rdkx5"):
            try:
                return f"pyeasy_dnn {metadata.version(distribution)}"
            except metadata.PackageNotFoundError:
                continue
        return f"pyeasy_dnn {getattr(module, '__version__', 'unknown version')}"

    def execute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            return self._forward(inputs)

    def describe(self) -> str:
        return f"{super().describe()} | via {self.runtime_name}"

    # ---- hbm_runtime --------------------------------------------------------------------
    def _load_hbm_runtime(self, hbm_runtime, core_id: int, priority: int) -> None:
        try:
            runtime = hbm_runtime.HB_HBMRuntime(str(self.model_path))
            model_names = list(runtime.model_names)
        except Exception as exc:  # the binding raises plain RuntimeErrors for unreadable files
            raise ModelFormatError(f"hbm_runtime cannot load {self.model_path}: {exc}") from exc
        if len(model_names) != 1:
            raise ModelFormatError(f"{self.model_path}: expected one model in the file, found {model_names}")
        model = model_names[0]
        shapes, dtypes = runtime.input_shapes[model], runtime.input_dtypes[model]
        self._input_specs = [
            TensorSpec(name, tuple(int(d) for d in shapes[name]), _hbm_dtype(dtypes[name], name))
            for name in runtime.input_names[model]
        ]
        out_shapes, out_dtypes, out_quants = (
            runtime.output_shapes[model], runtime.output_dtypes[model], runtime.output_quants[model]
        )
        self._decoders = []
        for name in runtime.output_names[model]:
            shape = tuple(int(d) for d in out_shapes[name])
            raw_dtype = np.dtype(_hbm_dtype(out_dtypes[name], name))
            quant = out_quants[name]
            scale = zero_point = None
            if _enum_value(quant.quant_type) == HBM_QUANT_SCALE and np.asarray(quant.scale).size:
                axis = int(quant.axis)
                scale = _broadcast_along(quant.scale, shape, axis, f"output {name!r} scale")
                if np.any(np.asarray(quant.zero_point) != 0):
                    zero_point = _broadcast_along(quant.zero_point, shape, axis, f"output {name!r} zero point")
            self._decoders.append(_OutputDecoder(name, shape, raw_dtype, scale, zero_point))
        schedule = {"priority": {model: priority}}
        if core_id:
            schedule["bpu_cores"] = {model: [core_id - 1]}
        runtime.set_scheduling_params(**schedule)
        self._runtime, self._model_name = runtime, model
        self._forward = self._forward_hbm_runtime

    def _forward_hbm_runtime(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._runtime.run({self._model_name: inputs})[self._model_name]
        return {d.name: d.decode(np.ascontiguousarray(outputs[d.name])) for d in self._decoders}

    # ---- pyeasy_dnn ---------------------------------------------------------------------
    def _load_pyeasy_dnn(self, pyeasy_dnn, core_id: int, priority: int) -> None:
        try:
            models = pyeasy_dnn.load(str(self.model_path))
        except Exception as exc:  # the extension raises generic errors for unreadable files
            raise ModelFormatError(f"pyeasy_dnn cannot load {self.model_path}: {exc}") from exc
        if len(models) != 1:
            raise ModelFormatError(f"{self.model_path}: expected one model in the file, found {len(models)}")
        model = models[0]
        self._input_specs = []
        for tensor in model.inputs:  # .inputs/.outputs are rebuilt on each access: read once
            props = tensor.properties
            if props.tensor_type not in PYEASY_BYTE_INPUT_TYPES:
                raise ModelFormatError(
                    f"{self.model_path}: input {tensor.name!r} has tensor type {props.tensor_type}; this backend "
                    "feeds feature maps only (image types and int4/float16 are not byte-copied by pyeasy_dnn)"
                )
            self._input_specs.append(TensorSpec(tensor.name, tuple(int(d) for d in props.shape), props.dtype))
        self._decoders = [self._pyeasy_output_decoder(tensor) for tensor in model.outputs]
        self._model, self._core_id, self._priority = model, core_id, priority
        self._forward = self._forward_pyeasy_dnn

    def _pyeasy_output_decoder(self, tensor) -> _OutputDecoder:
        props = tensor.properties
        if props.tensor_type not in PYEASY_READABLE_OUTPUT_TYPES:
            raise ModelFormatError(
                f"{self.model_path}: output {tensor.name!r} has tensor type {props.tensor_type}; pyeasy_dnn 3.0.6 "
                "returns every output type except float32/int32/int16 as int8 garbage (e.g. S64 index outputs). "
                "Re-export the model with float32 or int32 outputs, or run it with hbm_runtime (RDK OS >= 3.5.0)"
            )
        valid, aligned = tuple(int(d) for d in props.validShape), tuple(int(d) for d in props.alignedShape)
        if valid != aligned:
            raise ModelFormatError(
                f"{self.model_path}: output {tensor.name!r} is padded (alignedShape {list(aligned)} != validShape "
                f"{list(valid)}); pyeasy_dnn's .buffer ignores padding. Keep the CPU Dequantize node so outputs "
                "are dense float32, or use hbm_runtime"
            )
        raw_dtype = np.dtype(PYEASY_READABLE_OUTPUT_TYPES[props.tensor_type])
        scale_data = np.asarray(props.scale_data, dtype=np.float32).ravel()
        scale = None
        if scale_data.size and raw_dtype.kind == "i":
            channel_axis = {"NCHW": 1, "NHWC": len(valid) - 1}.get(props.layout)
            scale = _broadcast_along(scale_data, valid, channel_axis, f"output {tensor.name!r} scale_data")
        return _OutputDecoder(tensor.name, valid, raw_dtype, scale)

    def _forward_pyeasy_dnn(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # uint8 byte views make element count == byte count and the list's uint8 force-cast a no-op.
        views = [np.ascontiguousarray(inputs[spec.name]).view(np.uint8) for spec in self._input_specs]
        argument = views[0] if len(views) == 1 else views
        tensors = self._model.forward(argument, self._core_id, self._priority)
        # Each .buffer access is a fresh copy of the shared output memory: take it once, now.
        return {d.name: d.decode(tensor.buffer) for d, tensor in zip(self._decoders, tensors)}


def _enum_value(value) -> int:
    return int(getattr(value, "value", value))


def _hbm_dtype(data_type, tensor_name: str) -> str:
    """numpy dtype name of an hbDNNDataType (pybind11 enum or int-like with ``.name``)."""
    key = getattr(data_type, "name", str(data_type)).rsplit(".", 1)[-1]
    if key not in HBM_DTYPES:
        raise ModelFormatError(f"hbm_runtime: tensor {tensor_name!r} has unsupported data type {key}")
    return HBM_DTYPES[key]
