"""FP16 converter invariants on a graph with the structures OpenVINO is strict about.

ESPNetLite (random weights: structure only) has BatchNorm after Concat, PReLU,
dilated branches and the input image concatenated into features: the FP16
artifact must keep the normalisation exact in FP32, hold no BatchNormalization
or node mixing FP16/FP32 inputs, and load and agree in OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from segedge.export.config import ExportConfig
from segedge.export.pipeline import export
from segedge.export.precision import fp16
from segedge.export.precision.graph import elem_types, input_nodes
from segedge.runtime.backends.openvino import openvino_available

ESPNET = Path(__file__).parents[2] / "tools" / "espnet_lite.py"
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


@pytest.fixture(scope="module")
def esp_fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("esp16") / "esp.onnx"
    export(ExportConfig(model=f"{ESPNET}:ESPNetLite", num_classes=4, imgsz=(64, 96), output=out,
                        emit="both", quiet=True))
    return out


def _x() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)


def test_fp32_graph_has_the_strict_structures(esp_fp32: Path) -> None:
    ops = {n.op_type for n in onnx.load(str(esp_fp32)).graph.node}
    assert {"BatchNormalization", "PRelu", "Concat", "AveragePool"} <= ops


def test_no_batchnorm_and_no_mixed_inputs_remain(esp_fp32: Path) -> None:
    result = fp16.convert_fp16(onnx.load(str(esp_fp32)))
    model = result.model
    onnx.checker.check_model(model)
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert result.folded_batchnorms == sum(n.op_type == "BatchNormalization"
                                           for n in onnx.load(str(esp_fp32)).graph.node) > 0
    assert fp16.portability_problems(model) == []
    types = elem_types(model)
    concats = [n for n in model.graph.node if n.op_type == "Concat"]
    assert concats and all({types[i] for i in n.input} == {HALF} for n in concats)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(types[n.input[1]] == HALF for n in convs)


def test_normalisation_stays_exact_fp32(esp_fp32: Path) -> None:
    src = onnx.load(str(esp_fp32))
    model = fp16.convert_fp16(src).model
    before = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
    after = {i.name: i for i in model.graph.initializer}
    for name in ("mean255", "inv_std255"):
        assert after[name].data_type == FLOAT
        np.testing.assert_array_equal(numpy_helper.to_array(after[name]), before[name])
    norm = set(input_nodes(model))
    types = elem_types(model)
    subs = [n for n in model.graph.node if n.name in norm and n.op_type in ("Sub", "Mul")]
    assert len(subs) == 2 and all(types[n.output[0]] == FLOAT for n in subs)


def test_portability_problems_sees_a_mixed_concat() -> None:
    a = helper.make_tensor_value_info("a", HALF, [1, 2])
    b = helper.make_tensor_value_info("b", FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", HALF, [1, 4])
    graph = helper.make_graph([helper.make_node("Concat", ["a", "b"], ["y"], axis=1,
                                                name="cat")], "g", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert fp16.portability_problems(model) == ["Concat cat mixing FP16 and FP32 inputs"]


def test_batchnorm_folding_is_exact_in_fp32(esp_fp32: Path, tmp_path: Path) -> None:
    model = onnx.load(str(esp_fp32))
    assert fp16.fold_batchnorms(model) > 0
    path = tmp_path / "folded.onnx"
    onnx.save(model, str(path))
    a = ort.InferenceSession(str(esp_fp32), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = a.run(["logits"], {"input": _x()})[0]
    got = b.run(["logits"], {"input": _x()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not openvino_available()[0], reason="openvino is not installed")
def test_fp16_loads_in_openvino_and_matches_fp32(esp_fp32: Path, tmp_path: Path) -> None:
    from segedge.export.onnx import tools
    from segedge.runtime.backends.base import BackendOptions
    from segedge.runtime.backends.openvino import OpenVinoBackend

    model = fp16.convert_fp16(onnx.load(str(esp_fp32))).model
    tools.set_metadata(model, tools.read_metadata(onnx.load(str(esp_fp32))))
    path = tmp_path / "esp16.onnx"
    onnx.save(model, str(path))
    ref = ort.InferenceSession(str(esp_fp32), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"input": _x()})[0]
    for rt in ("ort", "openvino"):
        if rt == "ort":
            got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
                ["logits"], {"input": _x()})[0]
        else:
            got = OpenVinoBackend(path, BackendOptions(precision_hint="f32")).infer(_x())["logits"]
        assert got.dtype == np.float32
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(got, ref, atol=2e-2 * scale, rtol=0, err_msg=rt)
