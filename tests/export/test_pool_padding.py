"""Padded AveragePool (count_include_pad=1) written so OpenVINO's INT8 path keeps its borders.

OpenVINO 2026.4 runs a pooling that reads a Q/DQ pair (once a convolution shares that
input) on zero-point-shifted u8 values and moves the zero-point subtraction behind the
pooling, so counted padding becomes -zero_point * scale: every border cell of ESPNet's
pooled input image moved (README, known issues).  export/onnx/portable.py rewrites the
pooling into the mean over its real taps times each window's share; these tests prove the
rewrite is the same function on ONNX Runtime, that it survives ONNX Runtime's
pre-quantization optimiser, and that OpenVINO then agrees with ONNX Runtime on the Q/DQ
reproducer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from segedge.export.onnx.portable import exclusive_pool_padding
from segedge.runtime.backends.openvino import openvino_available

STEP = 0.02  # the activation scale of the reproducer's Q/DQ pair


def _reproducer(qdq: bool, pads: tuple[int, int, int, int] = (1, 1, 1, 1), stride: int = 2,
                size: tuple[int, int] = (16, 16)) -> onnx.ModelProto:
    """uint8 NHWC bytes -> normalise -> [symmetric int8 Q/DQ] -> AveragePool(pads, counted)
    and a 3x3 convolution sharing the normalised input (what makes OpenVINO pick u8)."""
    h, w = size
    rng = np.random.default_rng(1)
    weight = np.round(rng.normal(size=(4, 3, 3, 3)) / 0.01).astype(np.int8)
    inits = [numpy_helper.from_array(np.array([123.7, 116.3, 103.5], np.float32)
                                     .reshape(1, 3, 1, 1), "mean"),
             numpy_helper.from_array((1 / np.array([58.4, 57.1, 57.4], np.float32))
                                     .reshape(1, 3, 1, 1), "inv_std"),
             numpy_helper.from_array(np.array(STEP, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(weight, "wq"),
             numpy_helper.from_array(np.array(0.01, np.float32), "ws")]
    nodes = [helper.make_node("Cast", ["input"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Sub", ["t", "mean"], ["c"]),
             helper.make_node("Mul", ["c", "inv_std"], ["x"])]
    feed = "x"
    if qdq:
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        feed = "dq"
    nodes += [helper.make_node("AveragePool", [feed], ["pooled"], name="pool",
                               kernel_shape=[3, 3], strides=[stride, stride], pads=list(pads),
                               count_include_pad=1),
              helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"]),
              helper.make_node("Conv", [feed, "w"], ["conv"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes, "reproducer", [helper.make_tensor_value_info("input", TensorProto.UINT8,
                                                            [1, h, w, 3])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [
            1, 3, (h + pads[0] + pads[2] - 3) // stride + 1,
            (w + pads[1] + pads[3] - 3) // stride + 1]),
         helper.make_tensor_value_info("conv", TensorProto.FLOAT, [1, 4, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _frame(size: tuple[int, int] = (16, 16)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1, *size, 3), dtype=np.uint8)


def _ort(model: onnx.ModelProto, frame: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(["pooled"], {"input": frame})[0]  # type: ignore[no-any-return]


def _openvino(model: onnx.ModelProto, frame: np.ndarray) -> np.ndarray:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled({"input": frame})[compiled.output("pooled")]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("pads", "stride", "size"), [
    ((1, 1, 1, 1), 2, (16, 16)), ((1, 1, 1, 1), 1, (9, 7)), ((0, 2, 1, 0), 2, (11, 10)),
])
def test_the_rewrite_is_the_same_function(pads: tuple[int, int, int, int], stride: int,
                                          size: tuple[int, int]) -> None:
    before = _reproducer(qdq=False, pads=pads, stride=stride, size=size)
    after = onnx.ModelProto()
    after.CopyFrom(before)
    assert exclusive_pool_padding(after) == 1
    onnx.checker.check_model(after)  # topological order kept
    pool = next(n for n in after.graph.node if n.op_type == "AveragePool")
    assert helper.get_attribute_value(
        next(a for a in pool.attribute if a.name == "count_include_pad")) == 0
    a, b = _ort(before, _frame(size)), _ort(after, _frame(size))
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)  # float rounding at borders only
    assert exclusive_pool_padding(after) == 0  # nothing left to rewrite


def test_unpadded_ceil_mode_and_dynamic_pools_are_left_alone() -> None:
    plain = _reproducer(qdq=False, pads=(0, 0, 0, 0))
    assert exclusive_pool_padding(plain) == 0
    ceil = _reproducer(qdq=False)
    next(n for n in ceil.graph.node if n.op_type == "AveragePool").attribute.append(
        helper.make_attribute("ceil_mode", 1))
    assert exclusive_pool_padding(ceil) == 0
    dynamic = _reproducer(qdq=False)
    for dim in dynamic.graph.input[0].type.tensor_type.shape.dim[1:3]:
        dim.dim_param = "side"
    assert exclusive_pool_padding(dynamic) == 0  # no static size: no constant share map


@pytest.mark.skipif(not openvino_available()[0], reason="needs OpenVINO")
def test_openvino_int8_keeps_the_borders_after_the_rewrite() -> None:
    frame = _frame()
    model = _reproducer(qdq=True)
    reference = _ort(model, frame)  # ONNX Runtime emulates Q/DQ as the ONNX spec says
    # Before the rewrite OpenVINO 2026.4 moved the top and left border cells here by up to
    # 71 steps (1.42); the interior matched.
    assert exclusive_pool_padding(model) == 1
    np.testing.assert_allclose(_ort(model, frame), reference, rtol=1e-6, atol=1e-6)
    # OpenVINO now pools the u8 values itself and rounds the mean to the grid: within half
    # a quantization step of ONNX Runtime everywhere, borders included.
    np.testing.assert_allclose(_openvino(model, frame), reference, rtol=0,
                               atol=STEP / 2 + 1e-6)


def test_the_rewrite_survives_onnx_runtimes_pre_quantization_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """quant_pre_process folds an explicit Pad back into the pooling; not this form."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    monkeypatch.chdir(tmp_path)  # it leaves temporary files in the working directory

    model = _reproducer(qdq=False)
    assert exclusive_pool_padding(model) == 1
    src, out = tmp_path / "fp32.onnx", tmp_path / "pre.onnx"
    onnx.save(model, str(src))
    quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
    pre = onnx.load(str(out))
    pools = [{a.name: helper.get_attribute_value(a) for a in n.attribute}
             for n in pre.graph.node if n.op_type == "AveragePool"]
    assert [p.get("count_include_pad", 0) for p in pools] == [0]
    assert exclusive_pool_padding(pre) == 0
    np.testing.assert_allclose(_ort(pre, _frame()), _ort(_reproducer(qdq=False), _frame()),
                               rtol=1e-6, atol=1e-6)


def test_every_int8_export_rewrites_padded_pooling_before_quantizing(tmp_path: Path) -> None:
    """The INT8 path's pre-processing (export/precision/int8.preprocess) applies the rewrite,
    after ONNX Runtime's optimiser, and the graph it hands to calibration computes the same."""
    from segedge.export.precision.int8 import preprocess

    model = _reproducer(qdq=False)
    src = tmp_path / "fp32.onnx"
    onnx.save(model, str(src))
    pre = onnx.load(str(preprocess(src, tmp_path)))
    pools = [{a.name: helper.get_attribute_value(a) for a in n.attribute}
             for n in pre.graph.node if n.op_type == "AveragePool"]
    assert [p.get("count_include_pad", 0) for p in pools] == [0]
    assert exclusive_pool_padding(pre) == 0  # nothing left to rewrite
    np.testing.assert_allclose(_ort(pre, _frame()), _ort(model, _frame()), rtol=1e-6, atol=1e-6)
