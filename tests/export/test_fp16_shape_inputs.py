"""FP16 keeps the inputs the ONNX spec types tensor(float) (or int64) exact, per op family.

Each graph is built with onnx.helper, converted with ``convert_fp16`` and run
on ONNX Runtime AND OpenVINO (f32 hint, so any difference is the graph's),
compared with the FP32 graph.  The failure these guard against is the one
published real-time models hit: Resize ``scales`` turned FP16 (``ParseData
type mismatch ... Expected:float Actual:float16``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from segedge.export.precision.fp16 import convert_fp16
from segedge.export.precision.fp16_inputs import float_only_inputs
from segedge.export.precision.graph import elem_types

FLOAT, HALF, INT64 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64


def _init(name: str, value: list[float] | list[int] | np.ndarray, dtype: type = np.float32
          ) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _const(name: str, value: list[float], dtype: type = np.float32) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"const_{name}",
                            value=numpy_helper.from_array(np.asarray(value, dtype=dtype)))


def _model(nodes: list[onnx.NodeProto], inits: list[TensorProto], x_shape: list[int],
           y_shape: list[int], opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", FLOAT, y_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run_both(model: onnx.ModelProto, x: np.ndarray, path: Path) -> list[np.ndarray]:
    """Outputs 'y' of ONNX Runtime and of OpenVINO (f32 hint) for one FP16 or FP32 graph."""
    onnx.save(model, str(path))
    ort_y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["y"], {"x": x})[0]
    ov = pytest.importorskip("openvino", reason="OpenVINO not installed")
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ov_y = compiled({"x": x})[compiled.output(0)]
    return [ort_y, np.asarray(ov_y)]


def _check_converted(fp32: onnx.ModelProto, x: np.ndarray, tmp_path: Path, atol: float
                     ) -> onnx.ModelProto:
    """Convert, check strictly, run both runtimes; FP16 within `atol` of FP32 on each."""
    half = convert_fp16(fp32).model
    onnx.checker.check_model(half)
    onnx.shape_inference.infer_shapes(half, check_type=True, strict_mode=True)
    want = _run_both(fp32, x, tmp_path / "fp32.onnx")
    got = _run_both(half, x, tmp_path / "fp16.onnx")
    for runtime, w, g in zip(("onnxruntime", "openvino"), want, got, strict=True):
        assert g.shape == w.shape, runtime
        np.testing.assert_allclose(g, w, atol=atol, rtol=0, err_msg=runtime)
    return half


def _value(model: onnx.ModelProto, name: str) -> np.ndarray:
    """A constant tensor's value, from an initializer or the Constant node producing it."""
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    node = next(n for n in model.graph.node if n.output[0] == name)
    assert node.op_type == "Constant", f"{name} is computed by {node.op_type}"
    return numpy_helper.to_array(node.attribute[0].t)


def _x(shape: list[int]) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)


def test_schema_lists_the_float_only_inputs_at_the_models_opset() -> None:
    def rule(op: str, inputs: list[str], opset: int) -> tuple[dict, set]:
        node = helper.make_node(op, inputs, ["o"], name="n")
        model = helper.make_model(helper.make_graph([node], "g", [], []),
                                  opset_imports=[helper.make_opsetid("", opset)])
        return float_only_inputs(model)

    assert rule("Resize", ["x", "", "s"], 18) == ({"n": (2,)}, set())
    assert rule("Resize", ["x", "", "", "sizes"], 18) == ({}, set())  # sizes: int64
    assert rule("Upsample", ["x", "s"], 9) == ({"n": (1,)}, set())
    assert rule("Range", ["a", "b", "c"], 18) == ({}, {"n"})  # T has no float16
    assert rule("Celu", ["x"], 18) == ({}, {"n"})
    for op, inputs in (("Conv", ["x", "w"]), ("Pad", ["x", "p", "v"]), ("Slice", ["x", "a", "b"]),
                       ("TopK", ["x", "k"]), ("Expand", ["x", "s"]), ("Tile", ["x", "r"])):
        assert rule(op, inputs, 18) == ({}, set()), op


def test_resize_scales_stay_exact_fp32_while_the_data_runs_fp16(tmp_path: Path) -> None:
    """Scales as an initializer, as a Constant node and computed from Shape; sizes int64."""
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["h0"], name="mul"),
        helper.make_node("Resize", ["h0", "", "s_init"], ["h1"], name="up_init", mode="linear"),
        _const("s_const", [1, 1, 0.5, 0.5]),
        helper.make_node("Resize", ["h1", "", "s_const"], ["h2"], name="down_const"),
        # dynamic scales: [1, 1, H/2, W/3] from the tensor's own shape (2, 2 at 4x6)
        helper.make_node("Shape", ["h2"], ["shp"], name="shape", start=2),
        helper.make_node("Cast", ["shp"], ["shp_f"], name="cast_shape", to=FLOAT),
        _const("div_by", [2, 3]),
        helper.make_node("Div", ["shp_f", "div_by"], ["hw_scale"], name="div"),
        _const("ones", [1, 1]),
        helper.make_node("Concat", ["ones", "hw_scale"], ["s_dyn"], name="concat", axis=0),
        helper.make_node("Resize", ["h2", "", "s_dyn"], ["h3"], name="up_dyn"),
        helper.make_node("Resize", ["h3", "", "", "sizes"], ["y"], name="to_size",
                         mode="linear"),
    ]
    inits = [_init("w", np.full((1, 2, 1, 1), 1.5)), _init("s_init", [1, 1, 2, 2]),
             _init("sizes", [1, 2, 12, 18], np.int64)]
    fp32 = _model(nodes, inits, [1, 2, 4, 6], [1, 2, 12, 18])
    half = _check_converted(fp32, _x([1, 2, 4, 6]), tmp_path, atol=2e-3)

    types = elem_types(half)
    resizes = {n.name: n for n in half.graph.node if n.op_type == "Resize"}
    assert set(resizes) == {"up_init", "down_const", "up_dyn", "to_size"}
    for name in ("up_init", "down_const", "up_dyn"):
        node = resizes[name]
        assert types[node.input[0]] == HALF, f"{name} data should run FP16 (not blocked)"
        assert types[node.input[2]] == FLOAT, f"{name} scales"
    np.testing.assert_array_equal(_value(half, resizes["up_init"].input[2]), [1, 1, 2, 2])
    np.testing.assert_array_equal(_value(half, resizes["down_const"].input[2]), [1, 1, 0.5, 0.5])
    assert types[resizes["to_size"].input[3]] == INT64
    by_name = {n.name: n for n in half.graph.node}
    for name in ("div", "concat"):  # the scales' arithmetic stayed FP32
        assert types[by_name[name].output[0]] == FLOAT, name


def test_upsample_scales_stay_fp32(tmp_path: Path) -> None:
    nodes = [helper.make_node("Mul", ["x", "w"], ["h"], name="mul"),
             helper.make_node("Upsample", ["h", "scales"], ["y"], name="up", mode="nearest")]
    fp32 = _model(nodes, [_init("w", np.full((1, 2, 1, 1), 0.5)), _init("scales", [1, 1, 2, 2])],
                  [1, 2, 3, 5], [1, 2, 6, 10], opset=9)
    half = _check_converted(fp32, _x([1, 2, 3, 5]), tmp_path, atol=1e-3)
    types = elem_types(half)
    up = next(n for n in half.graph.node if n.op_type == "Upsample")
    assert (types[up.input[0]], types[up.input[1]]) == (HALF, FLOAT)


def test_ops_without_an_fp16_form_stay_fp32(tmp_path: Path) -> None:
    """Range's T has no float16 in the spec: the node and its inputs stay FP32."""
    nodes = [_const("start", [0.0]), _const("limit", [6.0]), _const("delta", [1.0]),
             helper.make_node("Squeeze", ["start"], ["s0"], name="sq0"),
             helper.make_node("Squeeze", ["limit"], ["s1"], name="sq1"),
             helper.make_node("Squeeze", ["delta"], ["s2"], name="sq2"),
             helper.make_node("Range", ["s0", "s1", "s2"], ["ramp"], name="range"),
             helper.make_node("Mul", ["x", "w"], ["h"], name="mul"),
             helper.make_node("Add", ["h", "ramp"], ["y"], name="add")]
    fp32 = _model(nodes, [_init("w", np.full((1, 1, 1, 1), 2.0))], [1, 1, 2, 6], [1, 1, 2, 6])
    half = _check_converted(fp32, _x([1, 1, 2, 6]), tmp_path, atol=5e-3)
    types = elem_types(half)
    rng = next(n for n in half.graph.node if n.op_type == "Range")
    assert [types[i] for i in rng.input] == [FLOAT] * 3
    assert types[rng.output[0]] == FLOAT


def test_index_and_shape_inputs_stay_int64(tmp_path: Path) -> None:
    """Pad/Slice/Reshape/Expand/Tile/ConstantOfShape/TopK: int64 operands untouched, data FP16."""
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["h"], name="mul"),
        helper.make_node("Pad", ["h", "pads", "pad_value"], ["p"], name="pad"),
        helper.make_node("Slice", ["p", "starts", "ends", "axes"], ["s"], name="slice"),
        helper.make_node("Reshape", ["s", "shape"], ["r"], name="reshape"),
        helper.make_node("Expand", ["r", "expand_to"], ["e"], name="expand"),
        helper.make_node("Tile", ["e", "repeats"], ["t"], name="tile"),
        helper.make_node("ConstantOfShape", ["cos_shape"], ["bias"], name="fill",
                         value=numpy_helper.from_array(np.array([0.25], np.float32))),
        helper.make_node("Add", ["t", "bias"], ["tb"], name="add"),
        helper.make_node("TopK", ["tb", "k"], ["y", "idx"], name="topk", axis=-1),
    ]
    inits = [_init("w", np.full((1, 2, 1, 1), 1.25)), _init("pads", [0, 0, 1, 1, 0, 0, 1, 1],
                                                            np.int64),
             _init("pad_value", 0.5), _init("starts", [1], np.int64),
             _init("ends", [5], np.int64), _init("axes", [3], np.int64),
             _init("shape", [1, 2, 1, -1], np.int64), _init("expand_to", [1, 2, 3, 1], np.int64),
             _init("repeats", [1, 1, 1, 2], np.int64),
             _init("cos_shape", [1, 2, 3, 1], np.int64), _init("k", [3], np.int64)]
    fp32 = _model(nodes, inits, [1, 2, 2, 4], [1, 2, 3, 3])
    half = _check_converted(fp32, _x([1, 2, 2, 4]), tmp_path, atol=2e-3)
    types = elem_types(half)
    for name in ("pads", "starts", "ends", "axes", "shape", "expand_to", "repeats", "cos_shape",
                 "k"):
        assert types[name] == INT64, name
    by_name = {n.name: n for n in half.graph.node}
    assert types[by_name["tile"].output[0]] == HALF  # the layout ops run FP16


def test_initializer_shared_by_fp32_and_fp16_nodes_is_split(tmp_path: Path) -> None:
    """One bias read by a LayerNormalization (kept FP32) and by two Gemms (FP16), as the torch
    exporter's optimiser writes transformers (deduplicated zero biases): the Gemms get an FP16
    copy (C typed like A and B), the normalisation keeps the exact FP32 values."""
    rng = np.random.default_rng(1)
    bias = (0.1 * np.arange(8) - 0.35).astype(np.float32)  # not exact in FP16
    nodes = [helper.make_node("Gemm", ["x", "w1", "b"], ["h"], name="g1"),
             helper.make_node("LayerNormalization", ["h", "gamma", "b"], ["n"], name="ln",
                              axis=-1),
             helper.make_node("Gemm", ["n", "w2", "b"], ["y"], name="g2")]
    inits = [_init("w1", rng.uniform(-0.5, 0.5, (8, 8))), _init("b", bias),
             _init("gamma", rng.uniform(0.5, 1.5, 8)), _init("w2", rng.uniform(-0.5, 0.5, (8, 8)))]
    fp32 = _model(nodes, inits, [4, 8], [4, 8])
    half = _check_converted(fp32, _x([4, 8]), tmp_path, atol=1e-2)
    types = elem_types(half)
    by_name = {n.name: n for n in half.graph.node}
    for gemm in ("g1", "g2"):
        assert [types[i] for i in by_name[gemm].input] == [HALF] * 3, gemm
    ln = by_name["ln"]
    assert types[ln.input[2]] == FLOAT and types[ln.output[0]] == FLOAT
    np.testing.assert_array_equal(_value(half, ln.input[2]), bias)  # exact, not via FP16
    np.testing.assert_array_equal(_value(half, by_name["g2"].input[2]), bias.astype(np.float16))
