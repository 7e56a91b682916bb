"""Which Q/DQ ONNX TensorRT can build: signed int8 with zero points 0 (S8S8) only.

The ONNX Runtime CPU flavour (``--int8-target cpu``: U8S8, asymmetric uint8
activations) fails in TensorRT's parser or builds wrongly, so it is refused
here, before TensorRT sees it, whoever calls the builder.
"""

from __future__ import annotations

from pathlib import Path

from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.precisions import find, symmetric_int8_targets

_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _qdq_zero_point_problem(onnx_path: Path) -> str | None:
    """The first Q/DQ zero point TensorRT rejects (uint8, or non-zero), read off the graph."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # a runtime-only box: the metadata check above is all there is
        return None
    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in _QDQ_OPS or len(node.input) < 3 or node.input[2] not in inits:
            continue
        zero = inits[node.input[2]]
        if zero.data_type == onnx.TensorProto.UINT8:
            return f"node {node.name or node.op_type!r} has a uint8 zero point (U8S8)"
        if (numpy_helper.to_array(zero) != 0).any():
            return f"node {node.name or node.op_type!r} has a non-zero zero point"
    return None


def quantization_refusal(onnx_path: str | Path, meta: ArtifactMetadata) -> str | None:
    """Why TensorRT cannot build this Q/DQ ONNX (the ONNX Runtime CPU flavour), or None.

    TensorRT takes only signed int8 Q/DQ with zero points 0 (S8S8); the U8S8 graph
    ``--int8-target cpu`` makes would fail in the parser or build wrongly.
    """
    spec = find(meta.precision)
    if spec is None or not spec.quantized:
        return None
    int8 = meta.extra.get("int8")
    target = int8.get("target") if isinstance(int8, dict) else None
    symmetric = symmetric_int8_targets()
    fix = f"export with --int8-target {' or '.join(symmetric)} for an engine"
    if target is not None and target not in symmetric:
        return (f"the INT8 ONNX was quantized for {target!r} (U8S8, asymmetric uint8 "
                f"activations), TensorRT takes only S8S8 with zero points 0; {fix}")
    problem = _qdq_zero_point_problem(Path(onnx_path))
    return None if problem is None else (
        f"{problem}, TensorRT takes only S8S8 Q/DQ with zero points 0; {fix}")
