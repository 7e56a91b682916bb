"""Inputs the ONNX spec keeps FP32 in an FP16 graph, read from the operator schemas.

onnxconverter-common's FP16 pass works per node (``op_block_list`` /
``node_block_list``): it turns every float tensor of an unblocked node into
FP16.  Some operators take an input whose type the spec fixes to
``tensor(float)`` while their data is ``T`` (Resize/Upsample ``scales``,
opset < 19 DequantizeLinear ``x_scale``...); converting those is an invalid
graph (``ParseData type mismatch ... Expected:float Actual:float16``).  Blocking
the whole node (the converter's default list blocks Resize) would run every
upsampling of the network in FP32 behind two Casts, so instead:

* the schema of each node at the model's opset says which inputs are
  float-only (a fixed ``tensor(float)``, not a type variable) and which nodes
  cannot run FP16 at all (a float type variable without float16: Range, Celu...);
* the FP32 sub-graph computing a float-only input (Constant, or Shape -> Cast
  -> Div for dynamic scales) is put in ``node_block_list``, so its arithmetic
  stays FP32;
* after conversion, :func:`restore_float_inputs` points each float-only input
  back at the exact FP32 tensor: past the converter's Cast-to-FP16, or at an
  FP32 copy of the original initializer.  A Cast to FP32 is the last resort.

Integer inputs (sizes, pads, axes, indices, shapes) are never touched by the
converter; ``float_only_inputs`` lists them nowhere because they need nothing.

The converter also keeps an initializer FP32 as soon as *one* blocked node reads
it, leaving every FP16 reader with an FP32 input (a LayerNormalization bias that
the torch exporter's optimiser deduplicated with a Gemm's zero bias: ``Gemm C has
inconsistent type tensor(float)``).  :func:`unshare_initializers` gives those
FP16 readers their own copy first, which the converter then writes in FP16.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
_F32, _F16 = "tensor(float)", "tensor(float16)"


@functools.lru_cache(maxsize=512)
def _schema_rule(op_type: str, domain: str, opset: int
                 ) -> tuple[tuple[int, ...], bool] | None:
    """(float-only input indices, node cannot run FP16) for one operator version."""
    try:
        schema = onnx.defs.get_schema(op_type, opset, domain)
    except Exception:  # noqa: BLE001 - unknown/custom op: the caller blocks custom domains
        return None
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    fixed: list[int] = []
    no_half = False
    for i, formal in enumerate(schema.inputs):
        types = allowed.get(formal.type_str, {formal.type_str})
        if _F32 in types and _F16 not in types:
            if formal.type_str in allowed:  # a type variable: the whole node stays FP32
                no_half = True
            else:
                fixed.append(i)
    return tuple(fixed), no_half


def _opset(model: ModelProto, domain: str) -> int:
    want = ("", "ai.onnx") if domain in ("", "ai.onnx") else (domain,)
    return next((o.version for o in model.opset_import if o.domain in want), 1)


def float_only_inputs(model: ModelProto) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """{node name: input indices the spec types tensor(float)}, {nodes with no FP16 form}."""
    keep: dict[str, tuple[int, ...]] = {}
    whole: set[str] = set()
    for node in model.graph.node:
        rule = _schema_rule(node.op_type, node.domain, _opset(model, node.domain))
        if rule is None:
            continue
        fixed, no_half = rule
        idx = tuple(i for i in fixed if i < len(node.input) and node.input[i])
        if idx:
            keep[node.name] = idx
        if no_half:
            whole.add(node.name)
    return keep, whole


def shape_subgraph(model: ModelProto, keep: dict[str, tuple[int, ...]],
                   types: dict[str, int]) -> set[str]:
    """Nodes whose FP32 outputs flow (through FP32 tensors only) into a float-only input."""
    producer = {o: n for n in model.graph.node for o in n.output}
    by_name = {n.name: n for n in model.graph.node}
    stack = [by_name[name].input[i] for name, idx in keep.items() for i in idx]
    found: set[str] = set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or node.name in found or types.get(tensor, FLOAT) != FLOAT:
            continue
        found.add(node.name)
        stack.extend(i for i in node.input if i)
    return found


def unshare_initializers(model: ModelProto, fp32_nodes: set[str],
                         keep: dict[str, tuple[int, ...]]) -> int:
    """A float initializer read by an FP32 node and an FP16 node: the FP16 readers get a
    copy of their own (converted to FP16 by the converter), the FP32 ones keep the exact
    original.  Float-only inputs (`keep`) stay on the original.  Returns how many were
    copied.  `fp32_nodes`: every node the converter will leave FP32 (blocked names, ops)."""
    inits = {i.name: i for i in model.graph.initializer if i.data_type == FLOAT}
    readers: dict[str, list[tuple[NodeProto, int]]] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name in inits:
                readers.setdefault(name, []).append((node, k))
    outputs = {o.name for o in model.graph.output}
    have = {i.name for i in model.graph.initializer}
    copied = 0
    for name, uses in readers.items():
        half = [(n, k) for n, k in uses
                if n.name not in fp32_nodes and k not in keep.get(n.name, ())]
        if len(half) == len(uses) or not half or name in outputs:
            continue
        copy_name = f"{name}__fp16"
        while copy_name in have:
            copy_name += "_"
        copy = TensorProto()
        copy.CopyFrom(inits[name])
        copy.name = copy_name
        model.graph.initializer.append(copy)
        have.add(copy_name)
        for node, k in half:
            node.input[k] = copy_name
        copied += 1
    return copied


def restore_float_inputs(half: ModelProto, original: ModelProto,
                         keep: dict[str, tuple[int, ...]], types: dict[str, int]) -> int:
    """Point every float-only input of the FP16 graph at an exact FP32 tensor; returns how
    many needed a fix.  `types` are the FP16 graph's element types."""
    producer = {o: n for n in half.graph.node for o in n.output}
    fp32_init = {i.name: i for i in original.graph.initializer if i.data_type == FLOAT}
    fp32_const = {n.output[0]: n for n in original.graph.node
                  if n.op_type == "Constant" and len(n.output) == 1}
    have = {i.name for i in half.graph.initializer}
    by_name = {n.name: n for n in half.graph.node}
    before: dict[str, list[NodeProto]] = {}  # Casts, each placed before its reader
    replaced: set[str] = set()  # FP16 initializers now read by nobody: dropped
    fixed = 0
    for name, idx in keep.items():
        node = by_name.get(name)
        if node is None:
            continue
        for i in idx:
            tensor = node.input[i]
            if types.get(tensor) != HALF:
                continue
            fixed += 1
            src = producer.get(tensor)
            if src is not None and src.op_type == "Cast" and \
                    types.get(src.input[0]) == FLOAT:  # the converter's FP32 -> FP16 cast
                node.input[i] = src.input[0]
                continue
            value = _original_value(tensor, fp32_init, fp32_const)
            if value is not None:  # an FP32 copy of the original constant: exact
                exact = f"{tensor}__fp32"
                if exact not in have:
                    half.graph.initializer.append(numpy_helper.from_array(value, exact))
                    have.add(exact)
                replaced.add(tensor)
            else:  # computed in FP16 by something that could not stay FP32: cast back
                exact = f"{tensor}__fp32_{name}_{i}"
                before.setdefault(name, []).append(
                    helper.make_node("Cast", [tensor], [exact], to=FLOAT, name=f"cast_{exact}"))
            node.input[i] = exact
    if before:
        nodes = [m for n in half.graph.node for m in (*before.get(n.name, ()), n)]
        del half.graph.node[:]
        half.graph.node.extend(nodes)
    read = {i for n in half.graph.node for i in n.input} | {o.name for o in half.graph.output}
    if replaced - read:
        inits = [t for t in half.graph.initializer if t.name in read or t.name not in replaced]
        del half.graph.initializer[:]
        half.graph.initializer.extend(inits)
    return fixed


def _original_value(tensor: str, inits: dict[str, TensorProto],
                    consts: dict[str, NodeProto]) -> np.ndarray | None:
    if tensor in inits:
        return numpy_helper.to_array(inits[tensor])
    node = consts.get(tensor)
    if node is not None:
        attr = next((a for a in node.attribute if a.name == "value"), None)
        if attr is not None and attr.t.data_type == FLOAT:
            return numpy_helper.to_array(attr.t)
    return None
