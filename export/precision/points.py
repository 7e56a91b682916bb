"""Quantization points: every Q/DQ pair of an INT8 graph, activations and weights alike.

Why points and not layers (issue 21): keeping a *layer* in FP32 (ONNX Runtime's
``nodes_to_exclude``) leaves the Q/DQ pairs on the activations of Add, Concat, PReLU,
pooling and the rest quantized, so "every layer kept" still missed FP32 by points on a
published model.  A point here is one tensor that the INT8 graph rounds:

* ``activation``: a QuantizeLinear -> DequantizeLinear pair on a float tensor;
* ``weight``: a DequantizeLinear reading an int8/int32 initializer (weights, biases).

Keeping a point in float removes its rounding: an activation pair is bypassed (its
consumers read the float tensor), a weight's DequantizeLinear is replaced by the float
initializer of the pre-processed FP32 graph.  With every point kept the graph computes
exactly what the FP32 graph does, so the keep-in-float search always converges to FP32.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import ModelProto, numpy_helper

from segedge.export.precision.graph import COMPUTE_OPS

# ops that commonly collapse in INT8 (wide or heavy-tailed ranges): measured first
FRAGILE_OPS = frozenset({"LayerNormalization", "Softmax", "Gelu", "PRelu", "Erf", "Pow",
                         "ReduceMean", "Sqrt", "Div", "Sigmoid", "HardSigmoid"})


@dataclass(frozen=True)
class Point:
    name: str  # the float tensor it rounds (activation) or the float initializer (weight)
    kind: str  # "activation" | "weight"
    consumers: tuple[str, ...]  # node names reading the rounded tensor
    fragile: bool = False  # next to an op that commonly collapses, or feeds the classifier


@dataclass(frozen=True)
class Unit:
    """What the keep-in-float search keeps or quantizes as one: a compute layer's points.

    Why: OpenVINO and TensorRT run a Conv/ConvTranspose/Gemm/MatMul as an INT8 kernel only
    when its activation input *and* its weight are quantized; a half-kept layer runs in
    float there with one side rounded, which ONNX Runtime emulates differently (measured on
    ESPNet: the runtimes then disagreed by 1.5 points).  So the input activation(s) and the
    weight/bias of a compute layer are kept together, as ONNX Runtime's
    ``nodes_to_exclude`` kept whole layers, while points that feed no compute layer
    (Add, Concat, pooling inputs) stay units of their own.
    """

    name: str  # the first compute layer's node name, else the lone point's tensor name
    kind: str  # "layer" | "activation" | "weight"
    points: tuple[str, ...]
    layers: tuple[str, ...] = ()  # compute nodes reading this unit's points
    fragile: bool = False


def units(found: Sequence[Point], compute: Iterable[str]) -> list[Unit]:
    """Points grouped per consuming compute layer (transitively: one activation read by two
    convolutions ties both layers), in graph order of their first point."""
    compute = set(compute)
    parent = list(range(len(found)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, point in enumerate(found):
        for node in point.consumers:
            if node not in compute:
                continue
            if node in first:
                a, b = root(first[node]), root(i)
                parent[max(a, b)] = min(a, b)
            else:
                first[node] = i
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(found)):
        members[root(i)].append(i)
    layer_of = defaultdict(list)
    for node, i in first.items():
        layer_of[root(i)].append(node)
    out: list[Unit] = []
    for r in sorted(members):
        pts = [found[i] for i in members[r]]
        layers = tuple(sorted(layer_of[r], key=lambda n: first[n]))
        if layers:
            out.append(Unit(layers[0], "layer", tuple(p.name for p in pts), layers,
                            any(p.fragile for p in pts)))
        else:
            out.append(Unit(pts[0].name, pts[0].kind, (pts[0].name,), (), pts[0].fragile))
    return out


def _float_weights(pre: ModelProto) -> dict[tuple[str, int], str]:
    """(node name, input index) -> float initializer name in the pre-processed graph."""
    inits = {i.name for i in pre.graph.initializer}
    return {(n.name, k): name for n in pre.graph.node for k, name in enumerate(n.input)
            if name in inits}


def _uses(model: ModelProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name:
                uses[name].append((node, k))
    return uses


def find(qmodel: ModelProto, pre: ModelProto) -> list[Point]:
    """Every point of `qmodel`, in graph order (fragile ones flagged)."""
    uses = _uses(qmodel)
    inits = {i.name for i in qmodel.graph.initializer}
    floats = _float_weights(pre)
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    classifier_inputs = _classifier_reads(qmodel)
    points: list[Point] = []
    seen: set[str] = set()
    for node in qmodel.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            dqs = [u for u, _ in uses.get(node.output[0], []) if u.op_type == "DequantizeLinear"]
            readers = tuple(r.name for dq in dqs for r, _ in uses.get(dq.output[0], []))
            src = producer.get(node.input[0])
            fragile = (src is not None and src.op_type in FRAGILE_OPS) or any(
                r.op_type in FRAGILE_OPS for dq in dqs for r, _ in uses.get(dq.output[0], [])) \
                or any(dq.output[0] in classifier_inputs for dq in dqs)
            if node.input[0] not in seen:
                seen.add(node.input[0])
                points.append(Point(node.input[0], "activation", readers, fragile))
        elif node.op_type == "DequantizeLinear" and node.input[0] in inits:
            users = uses.get(node.output[0], [])
            name = next((floats[(r.name, k)] for r, k in users if (r.name, k) in floats),
                        None)
            if name is None or name in seen:
                continue
            seen.add(name)
            points.append(Point(name, "weight", tuple(r.name for r, _ in users),
                                node.output[0] in classifier_inputs))
    return points


def _classifier_reads(model: ModelProto) -> set[str]:
    """Inputs of the last compute layers (the ones right before the head)."""
    from segedge.export.precision.graph import classifier_nodes

    last = set(classifier_nodes(model))
    return {name for n in model.graph.node if n.name in last for name in n.input
            if n.op_type in COMPUTE_OPS}


def keep_float(qmodel: ModelProto, pre: ModelProto, keep: Iterable[str]) -> ModelProto:
    """A copy of `qmodel` with the points named in `keep` computing in float."""
    keep = set(keep)
    model = ModelProto()
    model.CopyFrom(qmodel)
    if not keep:
        return model
    uses = _uses(model)
    inits = {i.name: i for i in model.graph.initializer}
    pre_inits = {i.name: i for i in pre.graph.initializer}
    floats = _float_weights(pre)
    outputs = {o.name for o in model.graph.output}
    drop: set[int] = set()
    rename: dict[str, str] = {}  # DQ output -> float tensor its readers read instead
    identities: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    for idx, node in enumerate(model.graph.node):
        if node.op_type == "QuantizeLinear" and node.input[0] in keep \
                and node.input[0] not in inits:
            dqs = [u for u, _ in uses.get(node.output[0], []) if u.op_type == "DequantizeLinear"]
            if len(dqs) != len(uses.get(node.output[0], [])):
                continue  # the int8 tensor itself is read elsewhere: leave the pair
            drop.add(idx)
            for dq in dqs:
                rename[dq.output[0]] = node.input[0]
        elif node.op_type == "DequantizeLinear" and node.input[0] in inits:
            readers = uses.get(node.output[0], [])
            name = next((floats[(r.name, k)] for r, k in readers if (r.name, k) in floats),
                        None)
            if name is None or name not in keep or name not in pre_inits:
                continue
            drop.add(idx)
            tensor = numpy_helper.to_array(pre_inits[name]).astype(np.float32, copy=False)
            new_inits.append(numpy_helper.from_array(tensor, node.output[0]))
    dq_drop = {i for i, n in enumerate(model.graph.node)
               if n.op_type == "DequantizeLinear" and n.output[0] in rename}
    kept_nodes = []
    for i, node in enumerate(model.graph.node):
        if i in drop or i in dq_drop:
            continue
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
        kept_nodes.append(node)
    for dq_out, src in rename.items():
        if dq_out in outputs:  # a graph output keeps its name
            identities.append(onnx.helper.make_node("Identity", [src], [dq_out],
                                                    name=f"{dq_out}_float"))
    del model.graph.node[:]
    model.graph.node.extend(kept_nodes + identities)
    model.graph.initializer.extend(new_inits)
    used = {name for n in model.graph.node for name in n.input}
    keep_inits = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep_inits)
    return model
