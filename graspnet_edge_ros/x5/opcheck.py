"""X5 (``march: bayes-e``) model limits and operator placement of an ONNX file, without the toolchain.

The table and limits are those of edge_deploy.md §2.2/§2.5 (rdk_doc ``ptq_process.md`` and
``supported_op_list.md``): opset 10/11, IR <= 7, fixed 4-D inputs with N = 1, at most 32 outputs,
float32 outputs (pyeasy_dnn 3.0.6 reads only F32/S32/S16), 4-D (Conv2d) convolutions only.
It is a pre-flight check: ``hb_mapper checker --march bayes-e`` stays the authority.

Severity: a violated limit, an op marked "CPU※ (not integrated)" (Loop, Einsum, If, Scan), an op
outside the table, and the host-geometry ops GatherND / ScatterND / ScatterElements are errors.
Any other CPU placement is a warning (an error with ``bpu_only``: a split segment must be one BPU
subgraph, otherwise the .bin bounces between BPU and A55 on every call).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from graspnet_edge_ros.errors import BackendUnavailableError, ModelFormatError

X5_OPSETS = (10, 11)
X5_MAX_IR_VERSION = 7
X5_MAX_OUTPUTS = 32
X5_MAX_DIM = 65536

BPU, CPU, UNSUPPORTED, FOLDED, UNLISTED = "BPU", "CPU", "unsupported", "folded", "unlisted"

# op -> (placement, note) as documented for RDK Ultra/X5 (bayes); constraints are checked below.
X5_OPERATORS: dict[str, tuple[str, str]] = {
    "Conv": (BPU, "4-D only; kernel <= 31; channels <= 8192; stride <= 256; dilation <= 16"),
    "BatchNormalization": (BPU, "folded into the conv"),
    "Relu": (BPU, ""),
    "MaxPool": (BPU, "kernel/stride/pads <= 256, no dilation"),
    "GlobalMaxPool": (BPU, "H, W <= 256"),
    "ReduceMax": (BPU, "one axis, axis size <= 8192, keepdims = 1"),
    "ReduceSum": (BPU, "one axis"),
    "ReduceMean": (BPU, "one axis"),
    "Gather": (BPU, "rank <= 4; computed indices must be int32"),
    "GatherElements": (BPU, ""),
    "TopK": (BPU, "sorted must be true"),
    "ArgMax": (BPU, "BPU only for 4-D input, axis = 1, C <= 64"),
    "MatMul": (BPU, "same rank; last two dims <= 8192"),
    "Sqrt": (BPU, ""),
    "Mul": (BPU, "at most one constant input"),
    "Add": (BPU, "at most one constant input"),
    "Sub": (BPU, "at most one constant input"),
    "Div": (BPU, "BPU only when both inputs are feature maps"),
    "Pow": (BPU, "scalar exponent only"),
    "Concat": (BPU, "not along N"),
    "Tile": (BPU, "input/output differ in one dimension"),
    "Expand": (BPU, "input/output differ in one dimension"),
    "Reshape": (BPU, ""), "Transpose": (BPU, ""), "Slice": (BPU, ""), "Split": (BPU, ""),
    "Squeeze": (BPU, "becomes Reshape"), "Unsqueeze": (BPU, "becomes Reshape"),
    "Equal": (CPU, "BPU-capable but defaults to CPU"),
    "Greater": (CPU, "BPU-capable but defaults to CPU"),
    "Less": (CPU, "BPU-capable but defaults to CPU"),
    "GatherND": (CPU, "host-geometry op (advanced indexing) inside the graph"),
    "ScatterND": (CPU, "host-geometry op (masked update) inside the graph"),
    "ScatterElements": (CPU, "host-geometry op (masked update) inside the graph"),
    "Where": (CPU, ""), "Cast": (CPU, ""), "Range": (CPU, ""), "Sign": (CPU, ""), "Not": (CPU, ""),
    "Neg": (CPU, ""), "Round": (CPU, ""), "ReduceMin": (CPU, ""),
    "Loop": (UNSUPPORTED, "CPU※, not integrated: cannot compile for X5"),
    "Einsum": (UNSUPPORTED, "CPU※, not integrated: rewrite as MatMul/Mul+ReduceSum"),
    "If": (UNSUPPORTED, "CPU※, not integrated"),
    "Scan": (UNSUPPORTED, "CPU※, not integrated"),
    "Constant": (FOLDED, ""), "Shape": (FOLDED, ""), "ConstantOfShape": (FOLDED, ""), "Identity": (FOLDED, ""),
}
# CPU ops that mean the point-cloud geometry ended up in the graph: refused even though they run.
FORBIDDEN_CPU_OPS = frozenset({"GatherND", "ScatterND", "ScatterElements"})


@dataclass(frozen=True)
class NodePlacement:
    name: str
    op_type: str
    where: str
    note: str = ""


@dataclass
class ModelCheck:
    """What ``check_onnx_model`` found: per-node placement, errors (``problems``) and warnings."""

    path: Path
    summary: str
    nodes: list[NodePlacement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def op_table(self) -> list[tuple[str, str, int, str]]:
        """(op, placement, count, note) per distinct (op, placement), in first-seen order."""
        counts = Counter((n.op_type, n.where) for n in self.nodes)
        notes: dict[tuple[str, str], set] = {}
        for n in self.nodes:
            notes.setdefault((n.op_type, n.where), set()).add(n.note)
        # One shared note as is; differing per-node notes give way to the table's general one.
        return [(op, where, count, next(iter(notes[(op, where)])) if len(notes[(op, where)]) == 1
                 else X5_OPERATORS.get(op, ("", ""))[1]) for (op, where), count in counts.items()]

    def format(self, every_node: bool = False) -> str:
        lines = [f"{self.path.name}: {self.summary}"]
        if every_node:
            width = max((len(n.name) for n in self.nodes), default=4)
            lines += [f"  {n.name:<{width}}  {n.op_type:<18} {n.where:<11} {n.note}".rstrip() for n in self.nodes]
        else:
            lines += [f"  {op:<18} {where:<11} x{count:<5} {note}".rstrip()
                      for op, where, count, note in self.op_table()]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  ERROR: {p}" for p in self.problems]
        bpu = sum(n.where == BPU for n in self.nodes)
        verdict = "OK" if self.ok else f"FAILED ({len(self.problems)} error(s))"
        lines.append(f"  {verdict}: {bpu} of {len(self.nodes)} nodes on the BPU")
        return "\n".join(lines)


def check_onnx_model(path, bpu_only: bool = False) -> ModelCheck:
    """Check one ONNX file against the X5 limits; never raises for a model that merely violates them.

    Raises:
        ModelFormatError: the file is missing or not an ONNX model.
    """
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailableError(f"the X5 check needs the onnx package (pip install onnx): {exc}") from exc

    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"model not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and friends for non-ONNX files
        raise ModelFormatError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from exc
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shapes only refine the per-op checks; the limits below do not need them
        pass
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    shapes = _known_shapes(graph)
    check = ModelCheck(path, "")
    opset = _model_level_checks(model, initializers, check)
    for node in graph.node:
        where, note = _placement(node, initializers, shapes, check)
        check.nodes.append(NodePlacement(node.name or node.output[0], node.op_type, where, note))
    for op, where, count, note in check.op_table():
        message = f"{op} x{count} is {where}" + (f" ({note})" if note else "")
        if where in (UNSUPPORTED, UNLISTED) or op in FORBIDDEN_CPU_OPS:
            check.problems.append(message)
        elif where == CPU:
            (check.problems if bpu_only else check.warnings).append(message)
    inputs = [i for i in graph.input if i.name not in initializers]
    check.summary = (f"opset {opset}, IR {model.ir_version}, "
                     + ", ".join(f"input {i.name} {_dims(i)}" for i in inputs)
                     + f", {len(graph.output)} output(s), {len(graph.node)} nodes")
    return check


def _model_level_checks(model, initializers: dict, check: ModelCheck) -> int | None:
    import onnx

    graph = model.graph
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx"))
    if opset not in X5_OPSETS:
        check.problems.append(f"opset {opset}: X5 takes opset 10 or 11 (export with opset_version=11)")
    custom = sorted(d for d in opsets if d not in ("", "ai.onnx"))
    if custom:
        check.problems.append(f"custom op domains {custom}: need a registered hb_mapper custom_op (CPU)")
    if model.ir_version > X5_MAX_IR_VERSION:
        check.problems.append(f"IR version {model.ir_version} > {X5_MAX_IR_VERSION} (set model.ir_version = 7)")
    inputs = [i for i in graph.input if i.name not in initializers]
    for value in inputs:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        if len(dims) != 4:
            check.problems.append(f"input {value.name} is {len(dims)}-D {_dims(value)}: X5 inputs are fixed 4-D "
                                  "(pack points as [1, C, N, 1])")
        if any(d is None or d <= 0 for d in dims):
            check.problems.append(f"input {value.name} {_dims(value)} has dynamic dimensions: export static shapes")
        elif dims and dims[0] != 1:
            check.problems.append(f"input {value.name} has batch {dims[0]}: X5 needs N = 1")
        elif any(d > X5_MAX_DIM for d in dims[1:]):
            check.problems.append(f"input {value.name} {dims}: C, H, W must be <= {X5_MAX_DIM}")
    if len(graph.output) > X5_MAX_OUTPUTS:
        check.problems.append(f"{len(graph.output)} outputs > {X5_MAX_OUTPUTS}")
    for value in graph.output:
        elem = value.type.tensor_type.elem_type
        if elem != onnx.TensorProto.FLOAT:
            check.problems.append(
                f"output {value.name} is {onnx.helper.tensor_dtype_to_np_dtype(elem) if elem else 'untyped'}: "
                "make every output float32 (pyeasy_dnn 3.0.6 returns S64 and most other types as int8 garbage)")
    return opset


def _placement(node, initializers: dict, shapes: dict, check: ModelCheck) -> tuple[str, str]:
    """(placement, note) of one node, applying the documented BPU constraints."""
    op = node.op_type
    if op not in X5_OPERATORS:
        return UNLISTED, "not in the documented X5 operator table; confirm with hb_mapper checker"
    where, note = X5_OPERATORS[op]
    attrs = {a.name: _attr_value(a) for a in node.attribute}
    in_shape = shapes.get(node.input[0]) if node.input else None
    label = node.name or node.output[0]

    if op == "Conv":
        weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
        rank = len(weight.dims) if weight is not None else len(in_shape) if in_shape else None
        if rank is not None and rank != 4:
            check.problems.append(f"{label}: {rank}-D Conv (Conv1d-shaped): the X5 Conv (BPU and CPU) is 4-D "
                                  "only; use a 1x1 Conv2d on [1, C, N, 1]")
            return CPU, "not 4-D: no X5 kernel"
        if weight is not None:
            out_c, in_c, *kernel = weight.dims
            limits = [(max(kernel, default=1) <= 31, "kernel > 31"),
                      (in_c * math.prod(kernel) <= 65535, "C*kH*kW > 65535"),
                      (out_c <= 65536 and in_c <= 65536, "channels > 65536"),
                      (max(attrs.get("strides", [1]), default=1) <= 256, "stride > 256"),
                      (max(attrs.get("dilations", [1]), default=1) <= 16, "dilation > 16")]
            broken = [text for fits, text in limits if not fits]
            if broken:
                return CPU, ", ".join(broken)
            if out_c > 8192:
                return BPU, "channels > 8192: BPU only as the last op of a quantised subgraph"
            return BPU, f"{'x'.join(map(str, kernel))}, {in_c}->{out_c} ch"
    if op in ("ReduceMax", "ReduceSum", "ReduceMean"):
        axes = attrs.get("axes")
        if axes is None or len(axes) != 1:
            return CPU, f"reduces over {'all axes' if axes is None else len(axes)}: BPU reduces exactly one axis"
        if op == "ReduceMax":
            if attrs.get("keepdims", 1) != 1:
                return CPU, "keepdims = 0: BPU needs keepdims = 1"
            if in_shape and in_shape[axes[0]] and in_shape[axes[0]] > 8192:
                return CPU, f"axis size {in_shape[axes[0]]} > 8192"
        return BPU, f"axis {axes[0]}"
    if op == "ArgMax":
        channels = in_shape[1] if in_shape and len(in_shape) > 1 else None
        if in_shape and len(in_shape) == 4 and attrs.get("axis", 0) == 1 and channels and channels <= 64:
            return BPU, "axis 1, C <= 64"
        return CPU, f"axis {attrs.get('axis', 0)} of {in_shape}: BPU only for 4-D, axis 1, C <= 64"
    if op == "MaxPool":
        sizes = list(attrs.get("kernel_shape", [])) + list(attrs.get("strides", [])) + list(attrs.get("pads", []))
        if max(sizes, default=1) > 256 or max(attrs.get("dilations", [1]), default=1) > 1:
            return CPU, "kernel/stride/pads > 256 or dilated"
    if op == "TopK" and attrs.get("sorted", 1) != 1:
        return CPU, "sorted = 0: BPU TopK must be sorted"
    if op == "Concat" and attrs.get("axis") == 0:
        return CPU, "concatenation along N"
    if op == "Gather" and len(node.input) > 1 and node.input[1] not in initializers:
        if shapes.get(node.input[1] + ":dtype") == "int64":
            return CPU, "computed int64 indices (BPU needs int32)"
    if op == "Div" and any(name in initializers for name in node.input):
        return CPU, "constant operand: BPU Div needs two feature maps"
    if op in ("Mul", "Add", "Sub") and sum(name in initializers for name in node.input) > 1:
        return CPU, "more than one constant input"
    return where, note


def _known_shapes(graph) -> dict:
    """tensor name -> list of dims (None when unknown), plus name + ':dtype' -> numpy dtype name."""
    import onnx

    shapes = {}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if tensor.elem_type:
            shapes[value.name + ":dtype"] = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    return shapes


def _attr_value(attribute):
    import onnx

    return onnx.helper.get_attribute_value(attribute)


def _dims(value) -> str:
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]
    return "[" + ", ".join(map(str, dims)) + "]"
