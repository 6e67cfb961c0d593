"""The "model" both fake runtimes execute: tensors and a small arithmetic rule from a JSON sidecar.

Sidecar ``<model>.bin.json``::

    {"name": "toy",
     "inputs":  [{"name": "points", "type": "float32", "layout": "NCHW", "shape": [1, 8, 3, 1]}],
     "outputs": [{"name": "y", "type": "int32", "layout": "NCHW", "shape": [1, 3, 8, 1],
                  "sum_of": ["points"], "mul": 2.0, "add": 1.0, "transpose": [0, 2, 1, 3],
                  "scale": [0.01, 0.02, 0.04], "aligned_shape": [1, 3, 8, 1]}]}

Output value = transpose(sum(inputs in sum_of) * mul + add); integer types store
round(value / scale) with ``scale`` broadcast along the channel axis (1 for NCHW, last for NHWC,
or ``quant_axis``).
"""

import json
from pathlib import Path

import numpy as np

# Tensor type names as pyeasy_dnn prints them (edge_deploy.md §1.2), in tensorType order.
TENSOR_TYPES = ("Y", "NV12", "NV12_SEPARATE", "YUV444", "RGB", "BGR", "int4", "uint4", "int8", "uint8",
                "float16", "int16", "uint16", "float32", "int32", "uint32", "float64", "int64", "uint64")
NUMPY_DTYPES = {"int8": np.int8, "uint8": np.uint8, "float16": np.float16, "int16": np.int16,
                "uint16": np.uint16, "float32": np.float32, "int32": np.int32, "uint32": np.uint32,
                "float64": np.float64, "int64": np.int64, "uint64": np.uint64}
IMAGE_TYPES = TENSOR_TYPES[:6]


class FakeModelSpec:
    def __init__(self, model_file):
        path = Path(model_file)
        sidecar = Path(str(path) + ".json")
        if not path.is_file() or not sidecar.is_file():
            raise RuntimeError(f"hbDNNInitializeFromFiles failed: {model_file}")
        spec = json.loads(sidecar.read_text())
        self.name = spec["name"]
        self.inputs = [dict(t) for t in spec["inputs"]]
        self.outputs = [dict(t) for t in spec["outputs"]]
        for tensor in self.inputs + self.outputs:
            tensor.setdefault("layout", "NCHW")
            tensor.setdefault("aligned_shape", list(tensor["shape"]))
            tensor.setdefault("scale", [])

    @staticmethod
    def itemsize(tensor_type):
        return np.dtype(NUMPY_DTYPES.get(tensor_type, np.uint8)).itemsize

    @staticmethod
    def quant_axis(tensor):
        if "quant_axis" in tensor:
            return tensor["quant_axis"]
        return len(tensor["shape"]) - 1 if tensor["layout"] == "NHWC" else 1

    def compute(self, input_values):
        """{input name: ndarray (valid shape, own dtype)} -> {output name: ndarray (valid shape, output dtype)}."""
        results = {}
        for out in self.outputs:
            value = sum((input_values[name].astype(np.float64) for name in out["sum_of"]),
                        np.zeros(out["shape"]) if not out["sum_of"] else 0.0)  # no sources: zeros
            value = value * out.get("mul", 1.0) + out.get("add", 0.0)
            if "transpose" in out:
                value = np.transpose(value, out["transpose"])
            value = value.reshape(out["shape"])
            dtype = np.dtype(NUMPY_DTYPES[out["type"]])
            if dtype.kind in "iu":
                if out["scale"]:
                    axis = self.quant_axis(out)
                    scale = np.asarray(out["scale"], np.float64)
                    shape = [1] * value.ndim
                    shape[axis] = scale.size
                    value = value / scale.reshape(shape)
                info = np.iinfo(dtype)
                value = np.clip(np.rint(value), info.min, info.max)
            results[out["name"]] = value.astype(dtype)
        return results
