"""TensorRT lint on small onnx.helper graphs: each rule fires on its case and only there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segedge.export.tensorrt.lint import LintFinding, load_table, report
from segedge.export.tensorrt.lint import lint as trt_lint
from segedge.runtime.errors import ArtifactError

OPSET = 17


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           inits: tuple[onnx.TensorProto, ...] = (), opset: int = OPSET,
           extra_opsets: tuple[tuple[str, int], ...] = (),
           functions: tuple[onnx.FunctionProto, ...] = ()) -> onnx.ModelProto:
    outputs = [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def _x(name: str = "x", dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, [1, 3, 8, 8])


def _conv_relu() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "W")
    return _model([helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                   helper.make_node("Relu", ["c"], ["y"], name="relu")], [_x()], (weight,))


def test_table_names_version_and_source() -> None:
    table = load_table()
    assert table.tensorrt_version == "10.15"
    assert "onnx-tensorrt" in table.source and "operators.md" in table.source
    assert (table.opset_min, table.opset_max) == (9, 24)
    assert "MaxUnpool" in table.unsupported
    assert {"NonMaxSuppression", "RoiAlign", "Resize", "Loop", "If"} <= set(table.supported)


def test_broken_table_is_an_artifact_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "ops.json"
    bad.write_text(json.dumps({"tensorrt_version": "10.15"}))
    with pytest.raises(ArtifactError, match="ops.json"):
        load_table(bad)


def test_clean_conv_relu_graph_has_no_findings() -> None:
    assert trt_lint(_conv_relu()) == []
    assert report(trt_lint(_conv_relu()))["unsupported"] == []


def test_maxunpool_gives_one_finding_naming_it() -> None:
    nodes = [helper.make_node("MaxUnpool", ["x", "idx"], ["y"], name="unpool",
                              kernel_shape=[2, 2], strides=[2, 2])]
    model = _model(nodes, [_x(), _x("idx", TensorProto.INT64)])
    findings = trt_lint(model)
    assert findings == [LintFinding("MaxUnpool", "unpool", findings[0].reason)]
    assert "not supported by TensorRT 10.15" in findings[0].reason


def test_maxpool_indices_output_is_flagged() -> None:
    nodes = [helper.make_node("MaxPool", ["x"], ["p", "i"], name="pool", kernel_shape=[2, 2]),
             helper.make_node("Relu", ["p"], ["y"])]
    findings = trt_lint(_model(nodes, [_x()]))
    assert [(f.op_type, f.rule) for f in findings] == [("MaxPool", "outputs")]
    assert "i" in findings[0].reason


def test_custom_domain_op_needs_a_plugin() -> None:
    nodes = [helper.make_node("DeformableAttn", ["x"], ["y"], name="attn", domain="com.acme")]
    findings = trt_lint(_model(nodes, [_x()], extra_opsets=(("com.acme", 1),)))
    assert len(findings) == 1
    assert (findings[0].rule, findings[0].domain) == ("custom_domain", "com.acme")
    assert "plugin" in findings[0].reason


def test_resize_mode_restriction_only_fires_on_unsupported_mode() -> None:
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")

    def resize(**attrs: str) -> list[LintFinding]:
        node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", **attrs)
        return trt_lint(_model([node], [_x()], (scales,)))

    assert resize(mode="linear", coordinate_transformation_mode="pytorch_half_pixel") == []
    assert resize(mode="linear", nearest_mode="round_prefer_ceil") == []  # ignored for linear
    cubic = resize(mode="cubic")
    assert [(f.op_type, f.rule) for f in cubic] == [("Resize", "attribute")]
    assert "cubic" in cubic[0].reason
    crop = resize(mode="linear", coordinate_transformation_mode="tf_crop_and_resize")
    assert len(crop) == 1 and "tf_crop_and_resize" in crop[0].reason


def test_pool_dilations_must_be_ones() -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[3, 3],
                            dilations=[2, 2])
    findings = trt_lint(_model([node], [_x()]))
    assert [f.rule for f in findings] == ["attribute"] and "dilations" in findings[0].reason


def test_reduce_axes_must_be_an_initializer() -> None:
    axes_input = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum")
    computed = trt_lint(_model([node], [_x(), axes_input]))
    assert [(f.op_type, f.rule) for f in computed] == [("ReduceSum", "constant_input")]
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    assert trt_lint(_model([node], [_x()], (axes,))) == []
    const = helper.make_node("Constant", [], ["axes"], value_ints=[1])
    assert trt_lint(_model([const, node], [_x()])) == []


def test_dtype_uint8_is_only_io() -> None:
    cast = helper.make_node("Cast", ["x"], ["y"], name="cast", to=TensorProto.FLOAT)
    assert trt_lint(_model([cast], [_x(dtype=TensorProto.UINT8)])) == []
    transpose = helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[0, 2, 3, 1])
    findings = trt_lint(_model([transpose], [_x(dtype=TensorProto.UINT8)]))
    assert [(f.rule, f.node) for f in findings] == [("dtype", "t")]
    assert "UINT8" in findings[0].reason


def test_local_functions_are_inlined_before_linting() -> None:
    body = helper.make_node("MaxUnpool", ["a", "i"], ["b"], kernel_shape=[2, 2])
    fn = helper.make_function("local", "Unpool2", ["a", "i"], ["b"], [body],
                              [helper.make_opsetid("", OPSET)])
    relu_fn = helper.make_function("local", "MyRelu", ["a"], ["b"],
                                   [helper.make_node("Relu", ["a"], ["b"])],
                                   [helper.make_opsetid("", OPSET)])
    ok_model = _model([helper.make_node("MyRelu", ["x"], ["y"], domain="local")], [_x()],
                      extra_opsets=(("local", 1),), functions=(relu_fn,))
    assert trt_lint(ok_model) == []  # would be a custom-domain finding if not inlined
    bad_model = _model([helper.make_node("Unpool2", ["x", "idx"], ["y"], domain="local")],
                       [_x(), _x("idx", TensorProto.INT64)], extra_opsets=(("local", 1),),
                       functions=(fn,))
    assert [f.op_type for f in trt_lint(bad_model)] == ["MaxUnpool"]


def test_subgraph_nodes_are_linted_with_their_path() -> None:
    branch = helper.make_graph(
        [helper.make_node("Shrug", ["x"], ["z"], name="inner", domain="com.acme")], "then",
        [], [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["w"])], "else", [],
                              [helper.make_tensor_value_info("w", TensorProto.FLOAT, None)])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    node = helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=branch,
                            else_branch=other)
    findings = trt_lint(_model([node], [_x(), cond], extra_opsets=(("com.acme", 1),)))
    assert [(f.node, f.rule) for f in findings] == [("branch/then_branch/inner", "custom_domain")]


def test_opset_outside_range_is_reported() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_x()], opset=8)
    findings = trt_lint(model)
    assert [f.rule for f in findings] == ["opset"] and "8" in findings[0].reason


def test_report_is_json_serialisable() -> None:
    nodes = [helper.make_node("MaxUnpool", ["x", "idx"], ["y"], name="u", kernel_shape=[2, 2])]
    section = report(trt_lint(_model(nodes, [_x(), _x("idx", TensorProto.INT64)])))
    again = json.loads(json.dumps(section))
    assert again["tensorrt_version"] == "10.15"
    assert again["unsupported"][0]["op_type"] == "MaxUnpool"
    assert set(again["unsupported"][0]) == {"op_type", "node", "reason", "rule", "domain"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_typical_torch_segmentation_export_is_clean(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(8)
            self.head = torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
            y = torch.nn.functional.interpolate(self.head(y), scale_factor=2.0, mode="bilinear",
                                                align_corners=False)
            return y, y.argmax(1)

    path = tmp_path / "tiny.onnx"
    torch.onnx.export(Tiny().eval(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False,
                      opset_version=OPSET, input_names=["input"])
    model = onnx.load(str(path))
    assert {"Conv", "Relu", "MaxPool", "Resize", "ArgMax"} <= {n.op_type for n in model.graph.node}
    assert trt_lint(model) == []


def _bytes_shape_graph(with_cast: bool) -> onnx.ModelProto:
    """What a dynamic uint8 export writes: Shape nodes read the bytes, ahead of the Cast."""
    x = helper.make_tensor_value_info("input", TensorProto.UINT8, ["n", "h", "w", 3])
    nodes = [helper.make_node("Shape", ["input"], ["hw"], name="shape_hw", start=1, end=3),
             helper.make_node("Shape", ["input"], ["n"], name="shape_n", start=0, end=1)]
    if with_cast:
        nodes.append(helper.make_node("Cast", ["input"], ["f"], name="cast",
                                      to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Transpose", ["f"], ["y"], name="t", perm=[0, 3, 1, 2]))
    outputs = [helper.make_tensor_value_info("hw", TensorProto.INT64, [2]),
               helper.make_tensor_value_info("n", TensorProto.INT64, [1])]
    if with_cast:
        outputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"]))
    graph = helper.make_graph(nodes, "g", [x], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


@pytest.mark.parametrize("with_cast", [True, False])
def test_shapes_of_the_uint8_input_read_its_float_cast(with_cast: bool) -> None:
    import onnxruntime as ort

    from segedge.export.onnx.portable import shapes_from_float_input

    model = _bytes_shape_graph(with_cast)
    before = [(f.rule, f.node) for f in trt_lint(model)]
    assert before == [("dtype", "shape_hw"), ("dtype", "shape_n")]
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    assert shapes_from_float_input(fixed) == 2
    onnx.checker.check_model(fixed, full_check=True)  # topological order kept
    assert trt_lint(fixed) == []
    casts = [n for n in fixed.graph.node if n.op_type == "Cast"]
    assert len(casts) == 1  # the wrapper's own Cast is reused, or exactly one is added
    assert [n.input[0] for n in fixed.graph.node if n.op_type == "Shape"] == \
        [casts[0].output[0]] * 2
    frame = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    runs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            .run(None, {"input": frame}) for m in (model, fixed)]
    assert runs[1][0].tolist() == [5, 7] and runs[1][1].tolist() == [2]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)  # exactly the same results
    assert shapes_from_float_input(fixed) == 0  # nothing left to move


def test_a_dynamic_uint8_export_lints_clean(tmp_path: Path) -> None:
    from segedge.export.config import ExportConfig, VerifyOptions
    from segedge.export.pipeline import export

    out = tmp_path / "demo.onnx"
    report = export(ExportConfig(model="demo", output=out, dynamic=True, quiet=True,
                                 verify=VerifyOptions(count=1, bf16=False)))
    assert report["tensorrt"]["unsupported"] == [], report["tensorrt"]
    assert any("Shape node(s) read the uint8 input's float Cast" in r
               for r in report["rewrites"]), report["rewrites"]
    assert report["parity"]["argmax_agreement"] >= 99.9
    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert not [n.name for n in graph.node if n.op_type == "Shape" and n.input[0] == "input"]
