"""ONNX Runtime backend: CPU execution provider by default, CUDA/TensorRT/OpenVINO when the build offers them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from graspnet_edge_ros.backends.base import InferenceBackend, TensorSpec
from graspnet_edge_ros.errors import BackendUnavailableError, ConfigError, ModelFormatError
from graspnet_edge_ros.formats import PROVIDER_NAMES, get_format, resolve_providers

LOGGER = logging.getLogger(__name__)

# Provider sets already reported as missing: a split model opens one session per segment, and a
# provider that is not installed is one fact, so it is logged once per process, not per session.
_REPORTED_MISSING: set[tuple[str, ...]] = set()
ORT_TYPE_TO_DTYPE = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(bool)": "bool",
}

ExpectedShapes = Mapping[str, Sequence[int | None]]


class OnnxRuntimeBackend(InferenceBackend):
    """An ``.onnx`` model in an ``onnxruntime.InferenceSession`` (graph optimisation level ALL).

    Args:
        model_path: the .onnx file.
        intra_op_threads: threads inside one operator; None keeps ORT's default (one per physical
            core). Set it explicitly when BPU or geometry threads share the CPU.
        inter_op_threads: threads across independent nodes; a value > 1 also switches ORT to
            ORT_PARALLEL execution, the only mode in which it has an effect.
        providers: preference-ordered names from ("tensorrt", "cuda", "openvino", "cpu") or full ORT
            provider names (a list or a comma-separated string); default ["cpu"]. Providers the
            installed build lacks are skipped with one warning per process; CPU is always appended
            last; "tensorrt" also brings in CUDA for the nodes TRT rejects.
        expected_inputs / expected_outputs: optional {name: shape} (None = any size) the model must
            match; a mismatch raises ModelFormatError at load.
        allow_spinning: let idle intra-op threads busy-wait for the next run (ORT's default). Turn
            it off when other CPU work runs between calls (the split runtime's geometry kernels):
            spinning threads would steal the cores that work needs.
        memory_arena: where intermediate tensors live, see ``memory_options``: "shared" (default;
            one arena for every session of the process), "session" (ORT's default: one per
            session) or "off" (malloc/free per run).

    Examples:
        >>> OnnxRuntimeBackend("graspnet.onnx", intra_op_threads=2).run({"point_clouds": pts})  # doctest: +SKIP
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        providers: Sequence[str] | str | None = None,
        expected_inputs: ExpectedShapes | None = None,
        expected_outputs: ExpectedShapes | None = None,
        allow_spinning: bool = True,
        memory_arena: str = "shared",
    ) -> None:
        super().__init__(model_path)
        ort = self.import_runtime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not allow_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if intra_op_threads is not None:
            options.intra_op_num_threads = _thread_count("intra_op_threads", intra_op_threads)
        if inter_op_threads is not None:
            options.inter_op_num_threads = _thread_count("inter_op_threads", inter_op_threads)
            if inter_op_threads > 1:
                options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        memory_options(ort, options, memory_arena)
        requested = resolve_providers(providers)
        offered = set(ort.get_available_providers())
        usable = [p for p in requested if p in offered]
        try:
            self._session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=usable)
        except Exception as exc:  # ORT raises its own pybind exception types; keep the cause
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFormatError(f"onnxruntime cannot load {self.model_path}: {first_line}") from exc
        self.providers = list(self._session.get_providers())
        dropped = [p for p in requested if p not in self.providers]
        if dropped and tuple(dropped) not in _REPORTED_MISSING:
            _REPORTED_MISSING.add(tuple(dropped))
            # get_available_providers() is compile-time only, so also compare with what the session took.
            LOGGER.warning(
                "onnxruntime: requested providers %s are not usable in this build/machine "
                "(available: %s); running on %s",
                dropped, sorted(offered), self.providers,
            )
        self._input_specs = _specs_from_ort(self._session.get_inputs(), "input")
        self._output_specs = _specs_from_ort(self._session.get_outputs(), "output")
        if expected_inputs is not None:
            self._input_specs = _check_expected(self._input_specs, expected_inputs, "input", self.model_path, True)
        if expected_outputs is not None:
            self._output_specs = _check_expected(self._output_specs, expected_outputs, "output", self.model_path, False)
        self._output_names = [spec.name for spec in self._output_specs]

    @classmethod
    def import_runtime(cls):
        try:
            import onnxruntime
        except ImportError as exc:
            hint = get_format(cls.name).install_hint
            raise BackendUnavailableError(f"onnxruntime is not importable ({exc}); install: {hint}") from exc
        return onnxruntime

    @classmethod
    def version(cls) -> str:
        return cls.import_runtime().__version__

    # Each run allocates its outputs (arrays over their own OrtValues, kept alive by the array):
    # a later run never writes into them, so ``run`` need not copy them (~4 ms per split forward).
    fresh_outputs = True

    def execute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, inputs)
        return dict(zip(self._output_names, values))

    def describe(self) -> str:
        return f"{super().describe()} | providers: {self.providers}"


# ------------------------------------------------------------------------------ memory options
MEMORY_ARENAS = ("shared", "session", "off")
_shared_arena_lock = threading.Lock()
_shared_arena_registered = False


def memory_options(ort, options, memory_arena: str = "shared") -> None:
    """Set where the intermediate tensors of a session live (``options``: ``ort.SessionOptions``).

    "session" is ORT's default: each session keeps its own CPU arena, which grows to that session's
    peak and never shrinks; the split model's segment sessions then hold one peak each for good
    (0.3-0.4 GB more resident memory than "shared" on 20000 points, benchmarks/bench_memory.py).
    "shared": one arena registered in ORT's process-wide environment serves every session that
    asks for it (``session.use_env_allocators``); the segments run one after another, so it only
    grows to the largest single run. Same latency as "session" (measured in one process).
    "off": no arena, tensors are malloc'd and freed per run: the least memory, but every run
    page-faults its buffers in again (+40-60 % process CPU time per frame measured here).
    """
    if memory_arena not in MEMORY_ARENAS:
        raise ConfigError(f"onnxruntime: memory_arena must be one of {MEMORY_ARENAS}, got {memory_arena!r}")
    options.enable_cpu_mem_arena = memory_arena != "off"
    if memory_arena == "shared":
        _register_shared_arena(ort)
        options.add_session_config_entry("session.use_env_allocators", "1")


def _register_shared_arena(ort) -> None:
    """Register the process-wide CPU arena in ORT's environment, once (ORT refuses a second one)."""
    global _shared_arena_registered
    with _shared_arena_lock:
        if _shared_arena_registered:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        # max_mem, extend strategy, initial chunk, max dead bytes per chunk: -1 / 0 = ORT's defaults.
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
        _shared_arena_registered = True


def _thread_count(option: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"onnxruntime: {option} must be an integer >= 0 (0 = ORT default), got {value!r}")
    return int(value)


def _specs_from_ort(node_args, kind: str) -> list[TensorSpec]:
    specs = []
    for arg in node_args:
        dtype = ORT_TYPE_TO_DTYPE.get(arg.type)
        if dtype is None:
            raise ModelFormatError(f"onnxruntime: {kind} {arg.name!r} has unsupported type {arg.type}")
        # Symbolic ("N") and unknown dimensions come back as str/None: both mean any size.
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
        specs.append(TensorSpec(arg.name, shape, dtype))
    return specs


def _check_expected(
    specs: list[TensorSpec], expected: ExpectedShapes, kind: str, path: Path, exhaustive: bool
) -> list[TensorSpec]:
    """Return ``specs`` with dynamic dims fixed by ``expected``; ModelFormatError naming any mismatch.

    ``exhaustive``: the model may not have names beyond ``expected`` (true for inputs, which must all be fed).
    """
    by_name = {spec.name: spec for spec in specs}
    missing = [name for name in expected if name not in by_name]
    extra = [spec.name for spec in specs if spec.name not in expected] if exhaustive else []
    if missing or extra:
        raise ModelFormatError(
            f"{path}: model {kind}s {list(by_name)} do not match the expected {list(expected)} "
            f"(missing: {missing}, unexpected: {extra})"
        )
    refined = []
    for spec in specs:
        if spec.name not in expected:
            refined.append(spec)
            continue
        want = tuple(None if d is None else int(d) for d in expected[spec.name])
        compatible = len(want) == len(spec.shape) and all(
            w is None or have is None or w == have for w, have in zip(want, spec.shape)
        )
        if not compatible:
            raise ModelFormatError(
                f"{path}: {kind} {spec.name!r} has shape {spec.type_text()}, expected {list(want)}"
            )
        shape = tuple(have if have is not None else w for w, have in zip(want, spec.shape))
        refined.append(TensorSpec(spec.name, shape, spec.dtype))
    return refined
