"""Fake of D-Robotics' ``hbm_runtime`` binding (tests only; see test/fakes/README.md).

Mirrors the published type stub: metadata as {model: {tensor: value}} dicts, ``run`` taking an
ndarray, {input: ndarray} or {model: {input: ndarray}} and returning {model: {output: ndarray}},
ValueError on a shape or dtype mismatch, inputs made C-contiguous, and quantised outputs returned
raw with their QuantParams (the caller dequantises).
"""

import enum
from pathlib import Path

import numpy as np

from fake_bpu_model import NUMPY_DTYPES, FakeModelSpec

__all__ = ["HB_HBMRuntime", "QuantParams", "SchedParam", "hbDNNDataType", "hbDNNQuantiType"]


class hbDNNDataType(enum.IntEnum):  # noqa: N801 - the real enum name
    S4 = 0
    U4 = 1
    S8 = 2
    U8 = 3
    F16 = 4
    S16 = 5
    U16 = 6
    F32 = 7
    S32 = 8
    U32 = 9
    F64 = 10
    S64 = 11
    U64 = 12
    BOOL8 = 13
    MAX = 14


class hbDNNQuantiType(enum.IntEnum):  # noqa: N801
    NONE = 0
    SCALE = 1


_TYPE_NAMES = {"int8": "S8", "uint8": "U8", "float16": "F16", "int16": "S16", "uint16": "U16", "float32": "F32",
               "int32": "S32", "uint32": "U32", "float64": "F64", "int64": "S64", "uint64": "U64",
               "int4": "S4", "uint4": "U4"}


class QuantParams:
    def __init__(self, quant_type, axis, scale, zero_point):
        self.quant_type, self.axis, self.scale, self.zero_point = quant_type, axis, scale, zero_point


class SchedParam:
    def __init__(self):
        self.priority, self.customId, self.bpu_cores, self.deviceId = 0, 0, [-1], 0


def _quant(tensor):
    if tensor["scale"] and np.dtype(NUMPY_DTYPES.get(tensor["type"], np.float32)).kind in "iu":
        scale = np.asarray(tensor["scale"], np.float32)
        return QuantParams(hbDNNQuantiType.SCALE, FakeModelSpec.quant_axis(tensor), scale,
                           np.zeros(scale.size, np.int32))
    return QuantParams(hbDNNQuantiType.NONE, 0, np.zeros(0, np.float32), np.zeros(0, np.int32))


def _strides(tensor):
    itemsize = FakeModelSpec.itemsize(tensor["type"])
    dims = tensor["aligned_shape"]
    return [int(np.prod(dims[i + 1:])) * itemsize for i in range(len(dims))]


class HB_HBMRuntime:  # noqa: N801
    def __init__(self, model_file):
        files = [model_file] if isinstance(model_file, (str, Path)) else list(model_file)
        self._specs = {}
        for path in files:
            spec = FakeModelSpec(path)
            self._specs[spec.name] = spec
        self._sched = {name: SchedParam() for name in self._specs}

    @staticmethod
    def version():
        return "fake-3.0.0"

    def _per_model(self, group, field):
        return {m: {t["name"]: field(t) for t in getattr(s, group)} for m, s in self._specs.items()}

    model_names = property(lambda self: list(self._specs))
    model_count = property(lambda self: len(self._specs))
    input_counts = property(lambda self: {m: len(s.inputs) for m, s in self._specs.items()})
    input_names = property(lambda self: {m: [t["name"] for t in s.inputs] for m, s in self._specs.items()})
    input_shapes = property(lambda self: self._per_model("inputs", lambda t: list(t["shape"])))
    input_dtypes = property(lambda self: self._per_model("inputs", lambda t: hbDNNDataType[_TYPE_NAMES[t["type"]]]))
    input_quants = property(lambda self: self._per_model("inputs", _quant))
    input_strides = property(lambda self: self._per_model("inputs", _strides))
    output_counts = property(lambda self: {m: len(s.outputs) for m, s in self._specs.items()})
    output_names = property(lambda self: {m: [t["name"] for t in s.outputs] for m, s in self._specs.items()})
    output_shapes = property(lambda self: self._per_model("outputs", lambda t: list(t["shape"])))
    output_dtypes = property(lambda self: self._per_model("outputs", lambda t: hbDNNDataType[_TYPE_NAMES[t["type"]]]))
    output_quants = property(lambda self: self._per_model("outputs", _quant))
    output_strides = property(lambda self: self._per_model("outputs", _strides))
    sched_params = property(lambda self: dict(self._sched))

    def set_scheduling_params(self, priority=None, bpu_cores=None, custom_id=None, device_id=None):
        for field, values in (("priority", priority), ("bpu_cores", bpu_cores),
                              ("customId", custom_id), ("deviceId", device_id)):
            for model, value in (values or {}).items():
                if model not in self._sched:
                    raise ValueError(f"unknown model {model}")
                setattr(self._sched[model], field, value)

    def run(self, inputs, **kwargs):
        if isinstance(inputs, np.ndarray):
            (model,) = self._specs  # single-model, single-input form
            inputs = {model: {self._specs[model].inputs[0]["name"]: inputs}}
        elif isinstance(inputs, dict) and inputs and all(isinstance(v, np.ndarray) for v in inputs.values()):
            (model,) = self._specs
            inputs = {model: inputs}
        results = {}
        for model, tensors in inputs.items():
            spec = self._specs[model]
            values = {}
            for tensor in spec.inputs:
                if tensor["name"] not in tensors:
                    raise ValueError(f"missing input {tensor['name']}")
                array = np.ascontiguousarray(tensors[tensor["name"]])
                if list(array.shape) != list(tensor["shape"]):
                    raise ValueError(f"input {tensor['name']} shape {array.shape} != {tensor['shape']}")
                if array.dtype != np.dtype(NUMPY_DTYPES[tensor["type"]]):
                    raise ValueError(f"input {tensor['name']} dtype {array.dtype} != {tensor['type']}")
                values[tensor["name"]] = array
            results[model] = spec.compute(values)
        return results
