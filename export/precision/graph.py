"""Graph regions the precision passes reason about: compute layers and the output head.

Both FP16 and INT8 keep the *head* (everything after the last compute layer:
the logits upsampling, argmax and confidence) in FP32, because that is where
rounding turns directly into flipped labels, and it costs almost nothing.
"""

from __future__ import annotations

from collections import defaultdict

import onnx
from onnx import ModelProto, NodeProto

COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def consumers(model: ModelProto) -> dict[str, list[NodeProto]]:
    out: dict[str, list[NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            if name:
                out[name].append(node)
    return out


def ensure_node_names(model: ModelProto) -> None:
    """Unique names for every node: the passes and reports refer to layers by name."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)


def _descendants_have_compute(model: ModelProto) -> dict[str, bool]:
    """Per node name: does any node downstream of it (itself excluded) do compute?"""
    users = consumers(model)
    result: dict[str, bool] = {}
    for node in reversed(model.graph.node):  # topological order: consumers come later
        below = [u for out in node.output for u in users.get(out, [])]
        result[node.name] = any(u.op_type in COMPUTE_OPS or result.get(u.name, False)
                                for u in below)
    return result


def head_nodes(model: ModelProto) -> list[str]:
    """Nodes after the last compute layer on every path (upsample, argmax, confidence)."""
    below = _descendants_have_compute(model)
    return [n.name for n in model.graph.node
            if n.op_type not in COMPUTE_OPS and not below[n.name] and _after_compute(model, n)]


def classifier_nodes(model: ModelProto) -> list[str]:
    """Compute layers with no compute layer below them: they produce the logits."""
    below = _descendants_have_compute(model)
    return [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS and not below[n.name]]


def concat_fed_nodes(model: ModelProto) -> list[str]:
    """Compute layers whose data input is a Concat output.

    Why: OpenVINO 2026.4 (CPU) miscomputes Concat -> symmetric int8 Q/DQ -> INT8 Conv:
    measured on a synthetic Concat(14+16 channels) -> Q/DQ -> 3x3 Conv, 15 % mean relative
    error against ONNX Runtime's exact emulation (a single input, an Add, or uint8
    asymmetric Q/DQ there: 1e-5); on the CamVid ESPNet that one layer cost OpenVINO 1.5
    points of agreement with FP32.  These layers stay in float for the symmetric flavour.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS and n.input
            and getattr(producer.get(n.input[0]), "op_type", None) == "Concat"]


def compute_nodes(model: ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS]


def _after_compute(model: ModelProto, node: NodeProto) -> bool:
    """True when some compute layer is upstream of `node` (input-side casts are not head)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    stack, seen = list(node.input), set()
    while stack:
        name = stack.pop()
        if name in seen or name not in producer:
            continue
        seen.add(name)
        up = producer[name]
        if up.op_type in COMPUTE_OPS:
            return True
        stack.extend(up.input)
    return False


def elem_types(model: ModelProto) -> dict[str, int]:
    """TensorProto element type of every named value the inference can see."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {i.name: i.data_type for i in inferred.graph.initializer}
    for value in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    return types


# Layout and elementwise ops that make up an input normalisation (uint8 -> float, NHWC ->
# NCHW, BGR -> RGB, (x - mean) * 1/std): kept FP32 by the FP16 pass.
NORMALISATION_OPS = frozenset({
    "Cast", "Transpose", "Slice", "Sub", "Mul", "Div", "Add", "Reshape", "Unsqueeze",
    "Squeeze", "Gather", "Identity", "Flatten", "Split", "Neg",
})


def input_nodes(model: ModelProto) -> list[str]:
    """The input normalisation: layout/elementwise nodes with no compute layer upstream."""
    return [n.name for n in model.graph.node
            if n.op_type in NORMALISATION_OPS and not _after_compute(model, n)]


_SCHEMA_CACHE: dict[tuple[str, str, int], tuple[list[str], list[str]] | None] = {}


def _formal_types(op_type: str, domain: str, opset: int) -> tuple[list[str], list[str]] | None:
    key = (op_type, domain, opset)
    if key not in _SCHEMA_CACHE:
        try:
            schema = onnx.defs.get_schema(op_type, opset, domain)
        except onnx.defs.SchemaError:
            _SCHEMA_CACHE[key] = None
        else:
            _SCHEMA_CACHE[key] = ([f.type_str for f in schema.inputs],
                                  [f.type_str for f in schema.outputs])
    return _SCHEMA_CACHE[key]


def same_type_inputs(model: ModelProto, node: NodeProto) -> list[str]:
    """Inputs that must share the type of the node's first output (schema type variable).

    These are the inputs a runtime refuses to see mixed (Concat, Add, Mul,
    BatchNormalization's data and statistics, ...); index, shape and scale
    inputs have their own type variables and are not listed.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    formal = _formal_types(node.op_type, node.domain or "", opset)
    if formal is None or not formal[1] or not formal[0]:
        return []
    ins, outs = formal
    main = outs[0]
    kinds = ins[:len(node.input)] + [ins[-1]] * max(0, len(node.input) - len(ins))
    return [name for name, kind in zip(node.input, kinds, strict=True) if name and kind == main]


def _attr(node: NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def output_channel_axis(node: NodeProto, weight_rank: int) -> int | None:
    """The weight axis that indexes the layer's *output* channels, or None when no one axis
    does (a grouped ConvTranspose: [Cin, Cout/group, kH, kW] repeats Cout/group per group).

    Fused INT8 kernels (OpenVINO, TensorRT) apply per-channel weight scales per output
    channel; a scale per *input* channel is exact only where Q/DQ is emulated (ONNX Runtime).
    """
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1 if _attr(node, "group", 1) == 1 else None
    if node.op_type == "Gemm":
        return 0 if _attr(node, "transB", 0) else 1
    if node.op_type == "MatMul":
        return weight_rank - 1 if weight_rank >= 2 else None
    return None


def weight_axes(model: ModelProto) -> dict[str, int | None]:
    """Per-channel axis for each compute layer's weight initializer (None: per-tensor).

    A weight shared by layers that disagree on the axis is per-tensor.
    """
    ranks = {i.name: len(i.dims) for i in model.graph.initializer}
    axes: dict[str, int | None] = {}
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OPS or len(node.input) < 2 or node.input[1] not in ranks:
            continue
        name = node.input[1]
        axis = output_channel_axis(node, ranks[name])
        axes[name] = axis if axes.get(name, axis) == axis else None
    return axes


def qdq_axis_problems(model: ModelProto) -> list[str]:
    """Compute layers whose weight DequantizeLinear is per-channel on another axis than the
    output channels (one line each); empty when every fused INT8 kernel reads it right."""
    producer = {o: n for n in model.graph.node for o in n.output}
    ranks = {i.name: len(i.dims) for i in model.graph.initializer}
    scale_dims = {i.name: list(i.dims) for i in model.graph.initializer}
    problems = []
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OPS or len(node.input) < 2:
            continue
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 2:
            continue
        dims = scale_dims.get(dq.input[1], [])
        if not dims or all(d == 1 for d in dims):
            continue  # per-tensor: every kernel reads it right
        rank = ranks.get(dq.input[0], 0)
        axis = _attr(dq, "axis", 1)
        axis = axis + rank if axis < 0 else axis
        want = output_channel_axis(node, rank)
        if axis != want:
            group = _attr(node, "group", 1)
            expected = (f"per-tensor (a {node.op_type} with group {group} has no single "
                        "output-channel axis)" if want is None else
                        f"axis {want} (its output channels)")
            problems.append(f"{node.op_type} {node.name!r}: weight scales per-channel on axis "
                            f"{axis}, expected {expected}")
    return problems
