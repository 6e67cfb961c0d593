"""Fake of the pyeasy_dnn 3.0.6 extension (hobot_dnn / hobot_dnn_rdkx5), quirks included.

Behaviour follows shared/docs/edge_deploy.md §1.2-1.4; see README.md beside this file.
"""

import ctypes

import numpy as np

from fake_bpu_model import IMAGE_TYPES, NUMPY_DTYPES, FakeModelSpec

# .buffer returns these dtypes; every other tensor type is read back as int8 (§1.3).
_BUFFER_DTYPES = {"float32": np.float32, "int32": np.int32, "int16": np.int16}


class TensorProperties:
    """Read-only getters; the complete 3.0.6 list (no quantiType, quantizeAxis, stride)."""

    def __init__(self, tensor, is_input):
        self._tensor = tensor
        # For inputs the binary overwrites alignedShape with validShape at load.
        self._aligned = tuple(tensor["shape"] if is_input else tensor["aligned_shape"])
        self._scale = np.asarray(tensor["scale"], dtype=np.float32)

    @property
    def tensor_type(self):
        return self._tensor["type"]

    @property
    def dtype(self):
        return "uint8" if self._tensor["type"] in IMAGE_TYPES else self._tensor["type"]

    @property
    def layout(self):
        return self._tensor["layout"]

    @property
    def shape(self):
        return tuple(self._tensor["shape"])

    @property
    def validShape(self):  # noqa: N802 - the real attribute name
        return tuple(self._tensor["shape"])

    @property
    def alignedShape(self):  # noqa: N802
        return self._aligned

    @property
    def scale_data(self):
        return self._scale  # not a copy, like the real one


class pyDNNTensor:  # noqa: N801 - the real class name
    def __init__(self, tensor, memory, is_input):
        self.name = tensor["name"]
        self._tensor = tensor
        self._memory = memory  # the model's one buffer for this tensor, shared by every pyDNNTensor
        self._properties = TensorProperties(tensor, is_input)

    @property
    def properties(self):
        return self._properties

    @property
    def buffer(self):
        """A new copy on every access: the first prod(validShape)*itemsize bytes, padding ignored."""
        dtype = np.dtype(_BUFFER_DTYPES.get(self._tensor["type"], np.int8))
        dims = tuple(self._tensor["shape"])[:4]
        count = int(np.prod(dims))
        return np.frombuffer(bytes(self._memory[: count * dtype.itemsize]), dtype=dtype).reshape(dims).copy()


class Model:
    estimate_latency = 100  # hard-coded in the binary

    def __init__(self, model_file):
        self._spec = FakeModelSpec(model_file)
        self.name = self._spec.name
        self._input_memory = [bytearray(int(np.prod(t["shape"])) * FakeModelSpec.itemsize(t["type"]))
                              for t in self._spec.inputs]
        self._output_memory = [bytearray(int(np.prod(t["aligned_shape"])) * FakeModelSpec.itemsize(t["type"]))
                               for t in self._spec.outputs]

    @property
    def inputs(self):
        return [pyDNNTensor(t, m, True) for t, m in zip(self._spec.inputs, self._input_memory)]

    @property
    def outputs(self):
        return [pyDNNTensor(t, m, False) for t, m in zip(self._spec.outputs, self._output_memory)]

    def forward(self, arg, core_id=0, priority=0):
        if isinstance(arg, np.ndarray):
            items, from_list = [arg], False
        elif isinstance(arg, (list, tuple)):
            items, from_list = list(arg), True
        else:
            raise RuntimeError("arg_obj is NOT a container.")
        if len(items) > len(self._spec.inputs):
            raise RuntimeError("Too many inputs")
        for index, item in enumerate(items):  # fewer items than inputs: the rest keep stale bytes
            if not isinstance(item, np.ndarray):
                raise RuntimeError("input is not a numpy array")
            if from_list and item.dtype != np.uint8:
                item = item.astype(np.uint8)  # PyArray_FromAny(uint8, FORCECAST): values, not bytes
            self._copy_in(index, item)
        self._compute()
        return self.outputs

    def _copy_in(self, index, item):
        tensor_type = self._spec.inputs[index]["type"]
        if tensor_type in ("int4", "uint4", "float16"):
            raise RuntimeError("Transpose data type error")
        if tensor_type == "RGB":
            item[...] = np.maximum(item.astype(np.int16) - 128, 0)  # the in-place bug of §1.4
        size = item.size  # element count, not bytes, straight from the data pointer
        if size == 0:
            raise RuntimeError("input size is 0")
        memory = self._input_memory[index]
        if size > len(memory):
            raise RuntimeError("fake: copy larger than the input buffer (the real wheel overruns memory)")
        memory[:size] = ctypes.string_at(item.ctypes.data, size)

    def _compute(self):
        values = {}
        for tensor, memory in zip(self._spec.inputs, self._input_memory):
            dtype = np.dtype(NUMPY_DTYPES.get(tensor["type"], np.uint8))
            values[tensor["name"]] = np.frombuffer(bytes(memory), dtype=dtype).reshape(tensor["shape"])
        results = self._spec.compute(values)
        for tensor, memory in zip(self._spec.outputs, self._output_memory):
            aligned = np.zeros(tensor["aligned_shape"], dtype=results[tensor["name"]].dtype)
            aligned[tuple(slice(0, d) for d in tensor["shape"])] = results[tensor["name"]]
            memory[:] = aligned.tobytes()


def load(model_file):
    """str or list of str -> list of Model, one per file."""
    files = [model_file] if isinstance(model_file, str) else model_file
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise TypeError("model_file must be a str or a list of str")
    return [Model(f) for f in files]
