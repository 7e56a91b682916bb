"""FP16 as an ONNX transform: the typed graph TensorRT 10/11 compiles as it is.

Like an automatic-mixed-precision pass, every float node runs in FP16 except
numerically sensitive ones (exponentials, reductions, normalisations) and the
output head (logits upsampling, argmax, confidence), which stay FP32; Casts go
only where a tensor crosses between the two.  Graph inputs and outputs keep
their types (uint8 camera bytes in, FP32 logits / uint8 labels out), so the
runtime feeds an FP16 artifact exactly like the FP32 one.

Own pass rather than onnxruntime.transformers.float16 (installed): measured on
the exported DemoNet, that helper routes tensors between two adjacent FP32
nodes through FP16 (Cast fp32->fp16->fp32, losing what blocking should keep)
and gives graph-output casts duplicate node names with several outputs (the
model no longer loads).  Which inputs follow the node's precision is read from
the ONNX operator schema (inputs sharing the output's type variable), so
Resize scales, Cast sources or index inputs are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

from segedge.export.precision.graph import elem_types, ensure_node_names, head_nodes

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = 65504.0
# What torch.autocast runs in FP32, in ONNX terms.
FP32_OPS = frozenset({
    "Exp", "Log", "Pow", "Reciprocal", "Sqrt", "Erf", "Softmax", "LogSoftmax", "Softplus",
    "ReduceSum", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare", "CumSum", "LayerNormalization",
    "GroupNormalization", "InstanceNormalization", "LpNormalization", "Einsum",
    "NonMaxSuppression", "TopK", "RoiAlign", "Range",
})
TYPE_AGNOSTIC = frozenset({"Shape", "Size"})  # accept any dtype: never cast for them


@dataclass(frozen=True)
class Fp16Result:
    model: ModelProto
    fp32_nodes: tuple[str, ...]  # float nodes kept in FP32 (sensitive ops + output head)
    casts: int  # Cast nodes inserted at FP16/FP32 borders
    clamped_weights: int  # initializer values outside the FP16 range, clamped


def _schema_follow(node: NodeProto, opset: int) -> tuple[list[bool], list[bool]]:
    """Which inputs / outputs share the node's first float-able type variable."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except onnx.defs.SchemaError:
        return [False] * len(node.input), [False] * len(node.output)
    halfable = {c.type_param_str for c in schema.type_constraints
                if "tensor(float16)" in c.allowed_type_strs and "tensor(float)" in
                c.allowed_type_strs}

    def kinds(formals: list[onnx.defs.OpSchema.FormalParameter], n: int) -> list[str]:
        out = [f.type_str for f in formals[:n]]
        if formals and len(out) < n:  # variadic tail repeats the last formal
            out += [formals[-1].type_str] * (n - len(out))
        return out

    outs = kinds(list(schema.outputs), len(node.output))
    ins = kinds(list(schema.inputs), len(node.input))
    main = next((t for t in outs + ins if t in halfable), None)
    return [t == main for t in ins], [t == main for t in outs]


def _float_nodes(model: ModelProto, types: dict[str, int], opset: int
                 ) -> dict[str, tuple[list[bool], list[bool]]]:
    """Nodes whose main type variable is bound to FP32 here, with their follow masks."""
    found = {}
    for node in model.graph.node:
        if node.op_type in TYPE_AGNOSTIC:
            continue
        if node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            if to == FLOAT:
                found[node.name] = ([False], [True])
            continue
        fin, fout = _schema_follow(node, opset)
        bound = [types.get(n) for n, f in zip(node.input, fin, strict=True) if f and n] + \
                [types.get(n) for n, f in zip(node.output, fout, strict=True) if f and n]
        if bound and all(t == FLOAT for t in bound):
            found[node.name] = (fin, fout)
    return found


def convert_fp16(model: ModelProto, keep_fp32: tuple[str, ...] = ()) -> Fp16Result:
    """FP16 copy of `model`; `keep_fp32` adds node names to the FP32 set."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    ensure_node_names(model)
    _constants_to_initializers(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    types = elem_types(model)
    floats = _float_nodes(model, types, opset)
    fp32 = {n.name for n in model.graph.node if n.name in floats and (
        n.op_type in FP32_OPS or n.domain not in ("", "ai.onnx") or
        any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in n.attribute))}
    fp32 |= set(head_nodes(model)) & set(floats)
    fp32 |= set(keep_fp32) & set(floats)
    half = {name for name in floats if name not in fp32}

    inits = {i.name: i for i in model.graph.initializer}
    dtype: dict[str, int] = dict(types)  # what each tensor will be after the pass
    for node in model.graph.node:
        if node.name in half:
            for name, f in zip(node.output, floats[node.name][1], strict=True):
                if f and name:
                    dtype[name] = HALF
            if node.op_type == "Cast":
                for attr in node.attribute:
                    if attr.name == "to":
                        attr.i = HALF
    keep_io = {v.name for v in [*model.graph.input, *model.graph.output]}
    half_inits, clamped = _convert_initializers(model, half, floats, inits)
    for name in half_inits:
        dtype[name] = HALF

    new_nodes: list[NodeProto] = []
    casts: dict[tuple[str, int], str] = {}
    for node in model.graph.node:
        mask = floats.get(node.name, ([False] * len(node.input), []))[0]
        want = HALF if node.name in half else FLOAT
        for i, (name, follows) in enumerate(zip(node.input, mask, strict=True)):
            if not follows or not name:
                continue
            have = dtype.get(name)
            if have in (FLOAT, HALF) and have != want:
                key = (name, want)
                if key not in casts:
                    casts[key] = f"{name}__to_{'fp16' if want == HALF else 'fp32'}"
                    new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=want,
                                                      name=f"cast_{casts[key]}"))
                node.input[i] = casts[key]
        new_nodes.append(node)
    # graph outputs keep their type: re-cast the FP16 ones at the very end
    for out in model.graph.output:
        if out.name in keep_io and dtype.get(out.name) == HALF:
            _rename_output(new_nodes, out.name, f"{out.name}__fp16")
            new_nodes.append(helper.make_node("Cast", [f"{out.name}__fp16"], [out.name], to=FLOAT,
                                              name=f"cast_{out.name}_to_fp32"))
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return Fp16Result(model, tuple(n.name for n in model.graph.node if n.name in fp32),
                      len(casts) + sum(1 for o in model.graph.output if dtype.get(o.name) == HALF),
                      clamped)


def _rename_output(nodes: list[NodeProto], old: str, new: str) -> None:
    for node in nodes:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _convert_initializers(model: ModelProto, half: set[str],
                          floats: dict[str, tuple[list[bool], list[bool]]],
                          inits: dict[str, TensorProto]) -> tuple[dict[str, str], int]:
    """FP16 copies of float initializers read only by FP16 nodes at following inputs."""
    readers: dict[str, list[tuple[NodeProto, bool]]] = {}
    for node in model.graph.node:
        mask = floats.get(node.name, ([False] * len(node.input), []))[0]
        for name, follows in zip(node.input, mask, strict=True):
            if name in inits:
                readers.setdefault(name, []).append((node, follows and node.name in half))
    converted: dict[str, str] = {}
    clamped = 0
    for name, uses in readers.items():
        init = inits[name]
        if init.data_type != FLOAT or not all(h for _, h in uses):
            continue
        arr = numpy_helper.to_array(init)
        clamped += int(np.count_nonzero(np.abs(arr) > FP16_MAX))
        init.CopyFrom(numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16),
                                              name))
        converted[name] = name
    return converted, clamped


def _constants_to_initializers(model: ModelProto) -> None:
    """Float Constant nodes become initializers, so they convert like weights."""
    keep = []
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and value.data_type == FLOAT:
            tensor = TensorProto()
            tensor.CopyFrom(value)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
