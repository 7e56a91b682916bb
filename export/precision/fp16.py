"""FP16 as an ONNX transform: a typed graph TensorRT compiles and OpenVINO loads as it is.

Like an automatic-mixed-precision pass, every float node runs in FP16 except
numerically sensitive ones (exponentials, reductions, normalisations), the
input normalisation (mean 110.33 must not become 110.3, and 1/(std x 255) =
5.4e-5 is below FP16's normal range) and the output head (logits upsampling,
argmax, confidence).  Graph inputs and outputs keep their types (uint8 camera
bytes in, FP32 logits / uint8 labels out), so the runtime feeds an FP16
artifact exactly like the FP32 one.

The conversion itself is onnxconverter-common's ``float16`` (maintained by
the ONNX project, pure Python, no runtime dependency), not a hand pass: it
knows every operator's typed inputs, converts Constant attributes and
sub-graphs, and removes the Cast pairs between adjacent FP32 nodes.  NVIDIA
ModelOpt's AutoCast would also do, but it pulls in a CUDA-era stack (torch
extensions, cupy/pulp-style solvers) that an offline CPU export box rarely
has.  Around it this module does what the converter leaves to the caller,
each checked by ``portability_problems`` afterwards:

* BatchNormalization goes first: folded into the conv before it where it
  can be, else written as an exact per-channel ``Mul``/``Add`` (OpenVINO
  refuses BatchNormalization with FP16 data and FP32 statistics);
* the normalisation and the head are named in ``node_block_list``;
* inputs the ONNX spec types ``tensor(float)`` whatever the data type
  (Resize/Upsample ``scales``...) keep their exact FP32 value, and the nodes
  computing them stay FP32; ops with no FP16 form (Range...) stay FP32
  (fp16_inputs.py, read from the operator schemas at the model's opset);
* any node whose same-typed inputs still mix FP16 and FP32 (Concat, Add, ...;
  OpenVINO refuses them, ONNX Runtime silently accepts) gets its FP32 inputs
  cast, so the result is portable to both runtimes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from unittest import mock

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

from segedge.export.precision.fp16_inputs import (
    float_only_inputs,
    restore_float_inputs,
    shape_subgraph,
    unshare_initializers,
)
from segedge.export.precision.graph import (
    COMPUTE_OPS,
    consumers,
    elem_types,
    ensure_node_names,
    head_nodes,
    input_nodes,
    same_type_inputs,
)
from segedge.runtime.errors import ExportError

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = 65504.0
# What torch.autocast runs in FP32, in ONNX terms (the converter's op_block_list).
FP32_OPS = frozenset({
    "Exp", "Log", "Pow", "Reciprocal", "Sqrt", "Erf", "Softmax", "LogSoftmax", "Softplus",
    "ReduceSum", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare", "CumSum", "LayerNormalization",
    "GroupNormalization", "InstanceNormalization", "LpNormalization", "Einsum",
    "NonMaxSuppression", "TopK", "RoiAlign", "Range",
})


@dataclass(frozen=True)
class Fp16Result:
    model: ModelProto
    fp32_nodes: tuple[str, ...]  # float nodes kept in FP32 (normalisation, sensitive, head)
    casts: int  # Cast nodes inserted at FP16/FP32 borders
    clamped_weights: int  # initializer values outside the FP16 range, clamped
    folded_batchnorms: int = 0  # folded into a conv or written as Mul/Add


def convert_fp16(model: ModelProto, keep_fp32: tuple[str, ...] = ()) -> Fp16Result:
    """FP16 copy of `model`; `keep_fp32` adds node names to the FP32 set."""
    try:
        from onnxconverter_common import float16 as occ
    except ImportError:
        raise ExportError("FP16: expected the onnxconverter-common package (pip install "
                          "'segedge[export]'), got it not installed") from None

    model = onnx.ModelProto.FromString(model.SerializeToString())
    ensure_node_names(model)
    folded = fold_batchnorms(model)
    casts_before = sum(n.op_type == "Cast" for n in model.graph.node)
    names = {n.name for n in model.graph.node}
    block = {*input_nodes(model), *head_nodes(model), *(set(keep_fp32) & names)}
    block |= {n.name for n in model.graph.node if n.op_type in FP32_OPS
              or n.domain not in ("", "ai.onnx")}
    # Resize/Upsample scales and other tensor(float)-only inputs stay FP32 (fp16_inputs.py)
    float_only, no_half = float_only_inputs(model)
    block |= no_half | shape_subgraph(model, float_only, elem_types(model))
    # an initializer shared by an FP32 and an FP16 node: the FP16 readers get an FP16 copy
    unshare_initializers(model, block, float_only)
    clamped = _out_of_range(model, block)
    try:
        # Its own Cast-pair clean-up crashes when an FP32 tensor feeds several blocked nodes
        # (it indexes a list of consumers as one node, onnxconverter-common 1.16): ours runs
        # instead, after it.
        with warnings.catch_warnings(), \
                mock.patch.object(occ, "remove_unnecessary_cast_node", lambda _graph: None):
            warnings.simplefilter("ignore")
            half = occ.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=sorted(FP32_OPS),
                node_block_list=sorted(block), max_finite_val=FP16_MAX,
                min_positive_val=float(np.finfo(np.float16).smallest_subnormal))
    except Exception as err:  # noqa: BLE001 - the converter raises many types
        raise ExportError(f"FP16 conversion failed: {type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0][:200]}") from None
    ensure_node_names(half)
    del half.graph.value_info[:]  # the converter's guesses; inferred afresh below
    _drop_cast_pairs(half, names)
    _restore_names(half, {n.name: list(n.output) for n in model.graph.node})
    if restore_float_inputs(half, model, float_only, elem_types(half)):
        _drop_dead(half)
    _cast_mixed_inputs(half)
    half = onnx.shape_inference.infer_shapes(half, check_type=True, strict_mode=True)
    problems = portability_problems(half)
    if problems:
        raise ExportError(f"FP16 conversion: expected a graph OpenVINO and TensorRT accept, got "
                          f"{problems[0]}" + (f" (+{len(problems) - 1} more)"
                                              if len(problems) > 1 else ""))
    kept = tuple(n.name for n in half.graph.node if n.name in block)
    casts = sum(n.op_type == "Cast" for n in half.graph.node) - casts_before
    return Fp16Result(half, kept, casts, clamped, folded)


def portability_problems(model: ModelProto) -> list[str]:
    """What OpenVINO refuses in an FP16 graph: BatchNormalization, mixed FP16/FP32 inputs."""
    types = elem_types(model)
    found = []
    for node in model.graph.node:
        if node.op_type == "BatchNormalization" and \
                len({types.get(i) for i in node.input if i}) > 1:
            found.append(f"BatchNormalization {node.name} with mixed FP16/FP32 inputs")
        mixed = {types.get(i) for i in same_type_inputs(model, node)} & {FLOAT, HALF}
        if len(mixed) > 1:
            found.append(f"{node.op_type} {node.name} mixing FP16 and FP32 inputs")
    return found


def fold_batchnorms(model: ModelProto) -> int:
    """BatchNormalization -> folded into the conv before it, else an exact Mul/Add pair.

    Folding is done in float64 and stored FP32, so the FP32 graph's numbers are
    unchanged to rounding; the converter then sees only convs, Mul and Add.
    """
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    users = consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    new_nodes: list[NodeProto] = []
    removed: set[str] = set()
    count = 0
    for node in model.graph.node:
        if node.op_type != "BatchNormalization" or len(node.output) != 1 or \
                not all(i in inits for i in node.input[1:5]):
            new_nodes.append(node)
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64)
                                  for i in node.input[1:5])
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        conv = producer.get(node.input[0])
        if conv is not None and conv.op_type == "Conv" and node.input[0] not in graph_outputs \
                and len(users[node.input[0]]) == 1 and conv.input[1] in inits:
            _fold_into_conv(model, conv, inits, scale, shift, node.output[0])
            removed.add(node.name)
        else:
            shape = (1, -1) + (1,) * _spatial_rank(model, node)
            s_name, b_name = f"{node.name}_scale", f"{node.name}_shift"
            model.graph.initializer.extend([
                numpy_helper.from_array(scale.reshape(shape).astype(np.float32), s_name),
                numpy_helper.from_array(shift.reshape(shape).astype(np.float32), b_name)])
            mid = f"{node.output[0]}_scaled"
            new_nodes.append(helper.make_node("Mul", [node.input[0], s_name], [mid],
                                              name=f"{node.name}_mul"))
            new_nodes.append(helper.make_node("Add", [mid, b_name], [node.output[0]],
                                              name=f"{node.name}_add"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(n for n in new_nodes if n.name not in removed)
    return count


def _spatial_rank(model: ModelProto, node: NodeProto) -> int:
    shapes = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    value = shapes.get(node.input[0])
    dims = len(value.type.tensor_type.shape.dim) if value is not None else 4
    return max(dims - 2, 0)


def _fold_into_conv(model: ModelProto, conv: NodeProto, inits: dict[str, TensorProto],
                    scale: np.ndarray, shift: np.ndarray, out: str) -> None:
    w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
    w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) \
        if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0])
    b = b * scale + shift
    w_name, b_name = f"{conv.name}_bnfold_w", f"{conv.name}_bnfold_b"
    model.graph.initializer.extend([numpy_helper.from_array(w.astype(np.float32), w_name),
                                    numpy_helper.from_array(b.astype(np.float32), b_name)])
    del conv.input[1:]
    conv.input.extend([w_name, b_name])
    conv.output[0] = out


def _out_of_range(model: ModelProto, block: set[str]) -> int:
    """Float initializer values beyond FP16's range read by nodes that will run FP16."""
    fp16_reads = {i for n in model.graph.node if n.name not in block
                  and n.op_type not in FP32_OPS for i in n.input}
    return sum(int(np.count_nonzero(np.abs(numpy_helper.to_array(i)) > FP16_MAX))
               for i in model.graph.initializer
               if i.data_type == FLOAT and i.name in fp16_reads)


def _cast_mixed_inputs(model: ModelProto) -> None:
    """Cast FP32 inputs to FP16 where a node still mixes them (FP16 wins: it is the compute)."""
    types = elem_types(model)
    new_nodes: list[NodeProto] = []
    for node in model.graph.node:
        same = same_type_inputs(model, node)
        if {types.get(i) for i in same} >= {FLOAT, HALF} and node.op_type not in COMPUTE_OPS:
            for k, name in enumerate(node.input):
                if name in same and types.get(name) == FLOAT:
                    cast = f"{name}__to_fp16_{node.name}"
                    new_nodes.append(helper.make_node("Cast", [name], [cast], to=HALF,
                                                      name=f"cast_{cast}"))
                    node.input[k] = cast
        new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)


def _drop_cast_pairs(model: ModelProto, original: set[str]) -> None:
    """Inserted Cast(fp32->fp16) -> Cast(fp16->fp32) between two FP32 nodes: bypass both.

    The converter casts every blocked node's output to FP16 and back for the
    next blocked node; kept, that round trip would lose what blocking keeps.
    """
    users = consumers(model)
    outputs = {o.name for o in model.graph.output}
    renames: list[tuple[str, str]] = []

    def to(node: NodeProto) -> int:
        return next(a.i for a in node.attribute if a.name == "to")

    for first in list(model.graph.node):
        if first.op_type != "Cast" or first.name in original or to(first) != HALF:
            continue
        for second in users.get(first.output[0], []):
            if second.op_type != "Cast" or second.name in original or to(second) != FLOAT:
                continue
            if second.output[0] in outputs:  # the FP32 tensor takes the graph output's name
                renames.append((first.input[0], second.output[0]))
                continue
            for reader in users.get(second.output[0], []):
                for k, name in enumerate(reader.input):
                    if name == second.output[0]:
                        reader.input[k] = first.input[0]
    for old, new in renames:  # after the loop: _rename rebuilds the node list
        _rename(model, old, new)
    _drop_dead(model)
    types = elem_types(model)  # then casts to the type a tensor already has (e.g. of an
    for node in model.graph.node:  # FP32 graph output the converter took for FP16)
        if node.op_type == "Cast" and node.name not in original and \
                types.get(node.input[0]) == to(node) and node.output[0] not in outputs:
            for reader in consumers(model).get(node.output[0], []):
                for k, name in enumerate(reader.input):
                    if name == node.output[0]:
                        reader.input[k] = node.input[0]
    _drop_dead(model)


def _rename(model: ModelProto, old: str, new: str) -> None:
    """`old` is renamed `new` wherever it is produced or read; `new`'s producer goes."""
    nodes = [n for n in model.graph.node if new not in n.output]
    for node in nodes:
        for seq in (node.input, node.output):
            for k, name in enumerate(seq):
                if name == old:
                    seq[k] = new
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _drop_dead(model: ModelProto) -> None:
    """Remove nodes whose outputs nobody reads (the bypassed casts)."""
    while True:
        read = {i for n in model.graph.node for i in n.input} | \
            {o.name for o in model.graph.output}
        keep = [n for n in model.graph.node if any(o in read for o in n.output)]
        if len(keep) == len(model.graph.node):
            return
        del model.graph.node[:]
        model.graph.node.extend(keep)


def _restore_names(model: ModelProto, original: dict[str, list[str]]) -> None:
    """Give FP32 nodes back the output names the converter suffixed, where still free.

    Same tensor names as the FP32 graph: reports and debugging tools can line
    the two up, and the file does not grow by the suffixes.
    """
    used = {o for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        for k, (now, was) in enumerate(zip(node.output, original.get(node.name, []),
                                           strict=False)):
            if now != was and was not in used:
                for reader in model.graph.node:
                    for j, name in enumerate(reader.input):
                        if name == now:
                            reader.input[j] = was
                node.output[k] = was
                used.add(was)
