"""Exact ONNX graph edits that keep an export portable across the runtimes that fuse it.

Each edit rewrites the FP32 graph into an equivalent form (the same numbers on ONNX
Runtime) that TensorRT parses and that OpenVINO's INT8 path lowers correctly; the
parity gate still compares the result with PyTorch.  Each returns how many nodes it
changed, so the export report can say what was done.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import ModelProto, numpy_helper


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((int(a.i) for a in node.attribute if a.name == "to"), None)


_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


def shapes_from_float_input(model: ModelProto) -> int:
    """Shape nodes reading a uint8 graph input read its float Cast instead; returns how many.

    Dynamic exports take every symbolic size from the graph input itself, and TensorRT's
    Shape takes no UINT8 tensor (the lint's dtype rule, export/tensorrt/lint.py).  A Cast
    keeps the shape, so Shape(Cast(x)) == Shape(x) exactly: the wrapper's own Cast (the
    first op on the bytes, export/onnx/wrap.py) is reused, or one is added, and moved ahead
    of the Shape nodes so the graph stays in topological order.
    """
    graph = model.graph
    moved = 0
    for value in graph.input:
        if value.type.tensor_type.elem_type != onnx.TensorProto.UINT8:
            continue
        name = value.name
        shapes = [n for n in graph.node if n.op_type == "Shape" and n.domain in ("", "ai.onnx")
                  and n.input and n.input[0] == name]
        if not shapes:
            continue
        cast = next((n for n in graph.node if n.op_type == "Cast" and n.input[0] == name
                     and _cast_to(n) in _FLOAT_TYPES), None)
        nodes = list(graph.node)
        if cast is None:
            cast = onnx.helper.make_node("Cast", [name], [f"{name}_float_for_shape"],
                                         name=f"{name}_float_for_shape",
                                         to=onnx.TensorProto.FLOAT)
        else:
            nodes.remove(cast)
        first = min(nodes.index(n) for n in shapes)
        nodes.insert(first, cast)
        for node in shapes:
            node.input[0] = cast.output[0]
        del graph.node[:]
        graph.node.extend(nodes)
        moved += len(shapes)
    return moved




def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _window_counts(size: int, kernel: int, stride: int, begin: int, end: int) -> np.ndarray:
    """How many of each output window's `kernel` taps fall inside `size` (not padding)."""
    starts = np.arange((size + begin + end - kernel) // stride + 1) * stride - begin
    return np.minimum(starts + kernel, size) - np.maximum(starts, 0)


def _spatial_shape(model: ModelProto, name: str) -> list[int] | None:
    """The static spatial dims of tensor `name` (after shape inference), else None."""
    typed = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    found = next((v for v in typed if v.name == name), None)
    if found is None:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in
            found.type.tensor_type.shape.dim]
    return dims[2:] if len(dims) > 2 and all(d > 0 for d in dims[2:]) else None


def exclusive_pool_padding(model: ModelProto) -> int:
    """AveragePool(pads, count_include_pad=1) -> AveragePool(pads, count_include_pad=0) * M,
    where M (a constant) is each window's share of real taps (count / kernel size).

    The same function: a window's sum over its real taps, divided by the kernel size, is
    their mean times count / kernel size (equal up to float rounding, at the border cells
    only; M is 1 inside).  Why: OpenVINO's INT8 path (2026.4) runs a pooling that reads a
    Q/DQ pair on shifted u8 values (zero point 128 even for a symmetric int8 pair, once a
    convolution shares the input) and moves the zero-point subtraction behind the pooling,
    so padding that counts as a tap counts as -zero_point * scale instead of 0 and every
    border cell moves (README, known issues).  A mean over the real taps alone commutes
    with that subtraction, so OpenVINO computes it correctly, also for a padded pooling fed
    by another pooling (ESPNet's quarter-size input image); ORT's pre-quantization
    optimiser cannot fold it back.  Only static spatial sizes with the default ceil_mode=0,
    explicit pads and unit dilations are rewritten.  Returns how many.
    """
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    nodes: list[onnx.NodeProto] = []
    changed = 0
    for index, node in enumerate(graph.node):
        attrs = _attrs(node)
        pads = [int(p) for p in attrs.get("pads", [])]  # type: ignore[attr-defined]
        kernel = [int(k) for k in attrs.get("kernel_shape", [])]  # type: ignore[attr-defined]
        sizes = _spatial_shape(inferred, node.input[0]) if node.input else None
        if (node.op_type != "AveragePool" or node.domain not in ("", "ai.onnx")
                or not any(pads) or attrs.get("count_include_pad", 0) != 1
                or attrs.get("ceil_mode", 0) != 0
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
                or any(d != 1 for d in attrs.get("dilations", []))  # type: ignore[attr-defined]
                or sizes is None or len(sizes) != len(kernel)):
            nodes.append(node)
            continue
        name = node.name or f"AveragePool_{index}"
        strides = [int(v) for v in attrs.get("strides", [1] * len(kernel))]  # type: ignore[attr-defined]
        rank = len(kernel)
        share = np.ones((), np.float64)
        for axis in range(rank):
            counts = _window_counts(sizes[axis], kernel[axis], strides[axis], pads[axis],
                                    pads[rank + axis]) / kernel[axis]
            share = np.multiply.outer(share, counts)
        scale = f"{name}_border_share"
        graph.initializer.append(numpy_helper.from_array(
            share.astype(np.float32).reshape(1, 1, *share.shape), scale))
        for attr in node.attribute:
            if attr.name == "count_include_pad":
                attr.i = 0
        out = node.output[0]
        node.output[0] = f"{name}_real_taps_mean"
        nodes += [node, onnx.helper.make_node("Mul", [node.output[0], scale], [out],
                                              name=f"{name}_border_share_mul")]
        changed += 1
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
    return changed
