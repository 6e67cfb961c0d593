"""The inference-backend interface: named numpy arrays in, named numpy arrays out.

A backend wraps one model artefact of one runtime (ONNX Runtime, Horizon BPU, torch, ...).
Subclasses implement ``import_runtime`` (or ``is_available``) and ``version`` (class level, so one can ask about a
runtime without a model), call ``super().__init__(model_path)`` then load the artefact in
their ``__init__`` (explicit keyword options), fill ``self._input_specs``/``self._output_specs``
and implement ``execute``, the bare runtime call that benchmarks time. ``run`` adds
validation and ownership on top and is what pipelines call.
No torch types cross this boundary.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from graspnet_edge_ros.contract import TensorSpec  # noqa: F401  (part of the backend interface)
from graspnet_edge_ros.errors import BackendUnavailableError, InputError, ModelFormatError
from graspnet_edge_ros.formats import FORMATS


class InferenceBackend(ABC):
    """One loaded model of one runtime.

    Examples:
        >>> backend = OnnxRuntimeBackend("model.onnx")  # doctest: +SKIP
        >>> outputs = backend.run({"point_clouds": points})  # doctest: +SKIP
    """

    name: ClassVar[str] = ""
    # The format table's suffixes of the record named ``name`` (set for each subclass, never repeated there).
    suffixes: ClassVar[tuple[str, ...]] = ()
    # True when every ``execute`` returns arrays of their own, which no later run writes into: ``run``
    # then hands them over without copying. False (the safe default): outputs may view runtime buffers.
    fresh_outputs: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        record = next((fmt for fmt in FORMATS if fmt.name == cls.name), None)
        if record is not None:
            cls.suffixes = record.suffixes

    def __init__(self, model_path: str | Path) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.exists():
            raise ModelFormatError(f"{self.name}: model file not found: {self.model_path}")
        # Filled by the subclass while loading: inputs in model order; outputs with the dtypes
        # that ``execute`` returns (e.g. float32 after dequantisation).
        self._input_specs: list[TensorSpec] = []
        self._output_specs: list[TensorSpec] = []

    # ---- runtime-level facts -------------------------------------------------------------
    @classmethod
    def import_runtime(cls):
        """Import and return the runtime; BackendUnavailableError with an install hint if it is missing."""
        raise NotImplementedError(f"{cls.__name__} must implement import_runtime() or is_available()")

    @classmethod
    def is_available(cls) -> bool:
        """True when the runtime can be imported on this machine (cheap, no model needed)."""
        try:
            cls.import_runtime()
        except BackendUnavailableError:
            return False
        return True

    @classmethod
    @abstractmethod
    def version(cls) -> str:
        """Version string of the runtime; only meaningful when is_available()."""

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._input_specs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self._output_specs)

    # ---- inference -----------------------------------------------------------------------
    @abstractmethod
    def execute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The bare runtime call: no validation; arrays may alias runtime memory until the next call.

        ``inputs`` must hold exactly the model inputs, C-contiguous, with the spec dtypes and shapes.
        """

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``inputs`` against ``self.inputs``, run, and return caller-owned output arrays.

        Raises:
            InputError: a missing or unexpected input name, or a shape/dtype that does not match.
        """
        prepared = self.validate_inputs(inputs)
        raw = self.execute(prepared)
        outputs = {}
        for spec in self._output_specs:
            if spec.name not in raw:
                raise ModelFormatError(f"{self.name}: runtime returned no output {spec.name!r}")
            array = raw[spec.name]
            # Arrays that view runtime buffers would change under the caller at the next run.
            owned = self.fresh_outputs or (array.flags.owndata and array.flags.writeable and array.base is None)
            outputs[spec.name] = array if owned else np.array(array, copy=True)
        return outputs

    def validate_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names, shapes and dtypes; return C-contiguous arrays in model input order."""
        if not isinstance(inputs, dict):
            raise InputError(f"{self.name}: inputs must be a dict of name -> ndarray, got {type(inputs).__name__}")
        specs = self._input_specs
        expected = [spec.name for spec in specs]
        missing = [name for name in expected if name not in inputs]
        unexpected = [name for name in inputs if name not in expected]
        if missing or unexpected:
            raise InputError(
                f"{self.name}: input names do not match the model (missing: {missing}, "
                f"unexpected: {unexpected}; model inputs: {expected})"
            )
        prepared = {}
        for spec in specs:
            array = inputs[spec.name]
            if not isinstance(array, np.ndarray):
                raise InputError(f"{self.name}: input {spec.name!r} must be a numpy array, got {type(array).__name__}")
            if array.dtype != np.dtype(spec.dtype):
                raise InputError(
                    f"{self.name}: input {spec.name!r} has dtype {array.dtype}, the model expects {spec.dtype}"
                )
            if not shape_matches(array.shape, spec.shape):
                raise InputError(
                    f"{self.name}: input {spec.name!r} has shape {array.shape}, the model expects "
                    f"{spec.type_text()}"
                )
            prepared[spec.name] = np.ascontiguousarray(array)
        return prepared

    def warmup(self, n: int = 1) -> None:
        """Run ``n`` times on zeros of the input shapes (dynamic dimensions as 1)."""
        zeros = {
            spec.name: np.zeros(tuple(1 if d is None else d for d in spec.shape), dtype=spec.dtype)
            for spec in self._input_specs
        }
        for _ in range(n):
            self.run(zeros)

    def describe(self) -> str:
        """One-paragraph summary: runtime, version, file, inputs and outputs."""
        ins = "; ".join(spec.describe() for spec in self._input_specs)
        outs = "; ".join(spec.describe() for spec in self._output_specs)
        return f"{self.name} {self.version()} | {self.model_path} | inputs: {ins} | outputs: {outs}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.model_path)!r})"


def shape_matches(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    """True when ``actual`` has the rank of ``expected`` and equals it on every fixed dimension."""
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected))
