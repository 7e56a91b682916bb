"""Q/DQ placement rules that keep an INT8 artifact portable to fusing runtimes.

On ESPNetLite (structure only: PReLU, Concat of branches, BN after Concat,
the input image concatenated into features): Q/DQ only where a real INT8
kernel exists, never on the uint8 input path (normalisation constants stay
FP32) nor on BatchNorm statistics, and the graph compiles in OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from segedge.export.config import ExportConfig
from segedge.export.onnx import tools
from segedge.export.pipeline import export
from segedge.export.precision import int8 as q8
from segedge.export.precision import runtimes
from segedge.export.precision.graph import COMPUTE_OPS
from segedge.runtime.backends.openvino import openvino_available
from tests.export.precision_helpers import noise_ranges

ESPNET = Path(__file__).parents[2] / "tools" / "espnet_lite.py"


@pytest.fixture(scope="module")
def esp_ranges(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    work = tmp_path_factory.mktemp("qdq")
    fp32 = work / "esp.onnx"
    export(ExportConfig(model=f"{ESPNET}:ESPNetLite", num_classes=4, imgsz=(64, 96),
                        output=fp32, quiet=True))
    pre, ranges = noise_ranges(fp32, work)
    return fp32, pre, ranges


def _quantize(esp: tuple[Path, Path, Path], target: str, out: Path) -> onnx.ModelProto:
    fp32, pre, ranges = esp
    path = q8.Quantizer.open(pre, ranges, target, "minmax").quantize(out)  # type: ignore[arg-type]
    model = onnx.load(str(path))
    tools.set_metadata(model, tools.read_metadata(onnx.load(str(fp32))))
    onnx.save(model, str(path))
    return model


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_qdq_only_feeds_int8_kernels(esp_ranges: tuple[Path, Path, Path], target: str,
                                     tmp_path: Path) -> None:
    model = _quantize(esp_ranges, target, tmp_path / f"{target}.onnx")
    inits = {i.name for i in model.graph.initializer}
    dq_out = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    allowed = set(COMPUTE_OPS) | ({"AveragePool", "MaxPool", "GlobalAveragePool", "Add"}
                                  if target == "tensorrt" else set())
    for node in model.graph.node:
        for name in node.input:
            dq = dq_out.get(name)
            if dq is None or dq.input[0] not in inits:
                continue
            # a quantized *constant* (weight) is read only by a compute layer
            assert node.op_type in COMPUTE_OPS, f"{dq.name} -> {node.op_type} {node.name}"
    q_in = [n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    producer = {o: n for n in model.graph.node for o in n.output}
    # nothing on the uint8 input path: the normalisation output is quantized only for conv 1
    norm = {"mean255", "inv_std255"}
    assert not [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                and any(n.input[0].startswith(k) for k in norm)]
    assert all(i.data_type == TensorProto.FLOAT for i in model.graph.initializer
               if i.name in norm)
    # activation Q/DQ only for an INT8 kernel (or, cpu, on a conv's own output)
    q_of = {n.output[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    checked = 0
    for out, dq in dq_out.items():
        if dq.input[0] in inits:
            continue
        src = producer.get(q_of[dq.input[0]].input[0]) if dq.input[0] in q_of else None
        own_output = target == "cpu" and src is not None and src.op_type in COMPUTE_OPS
        # shared tensors may also reach a Concat, but each Q/DQ exists for a kernel
        assert own_output or set(readers.get(out, [])) & allowed, (dq.name, readers.get(out))
        checked += 1
    assert checked and q_in
    # no BatchNorm statistic or PReLU slope was turned into INT8
    for node in model.graph.node:
        if node.op_type in ("BatchNormalization", "PRelu"):
            assert all(dq_out.get(i) is None or dq_out[i].input[0] not in inits
                       for i in node.input[1:]), node.name


def test_tensorrt_flavour_is_symmetric_per_channel(esp_ranges: tuple[Path, Path, Path],
                                                   tmp_path: Path) -> None:
    model = _quantize(esp_ranges, "tensorrt", tmp_path / "t.onnx")
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [arrays[n.input[2]] for n in model.graph.node
           if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    scales = [arrays[n.input[1]] for n in model.graph.node if n.op_type == "DequantizeLinear"
              and n.input[0] in arrays and arrays[n.input[0]].ndim == 4]
    assert scales and all(s.ndim == 1 and s.size > 1 for s in scales)  # per-channel weights


@pytest.mark.skipif(not openvino_available()[0], reason="openvino is not installed")
@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_both_flavours_compile_in_openvino(esp_ranges: tuple[Path, Path, Path], target: str,
                                           tmp_path: Path) -> None:
    """Before the fix the cpu flavour (Q/DQ on every op, U8 asymmetric) crashed OpenVINO."""
    _quantize(esp_ranges, target, tmp_path / f"{target}.onnx")
    assert runtimes.probe(tmp_path / f"{target}.onnx", runtimes.OPENVINO) is None


def _concat_fed(work: Path) -> tuple[Path, Path]:
    """x -> conv_a, conv_b -> Concat -> conv_c -> conv_d: conv_c reads a Concat."""
    from onnx import helper

    rng = np.random.default_rng(0)

    def conv(name: str, src: str, cin: int, cout: int) -> tuple[onnx.NodeProto, onnx.TensorProto]:
        w = numpy_helper.from_array(rng.normal(size=(cout, cin, 3, 3)).astype(np.float32),
                                    f"{name}.w")
        return helper.make_node("Conv", [src, w.name], [name], name=name, kernel_shape=[3, 3],
                                pads=[1, 1, 1, 1]), w

    layers = [conv("conv_a", "x", 3, 14), conv("conv_b", "x", 3, 16)]
    cat = helper.make_node("Concat", ["conv_a", "conv_b"], ["cat"], name="cat", axis=1)
    layers += [conv("conv_c", "cat", 30, 8), conv("conv_d", "conv_c", 8, 4)]
    graph = helper.make_graph(
        [layers[0][0], layers[1][0], cat, layers[2][0], layers[3][0]], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 40])],
        [helper.make_tensor_value_info("conv_d", TensorProto.FLOAT, [1, 4, 32, 40])],
        [w for _, w in layers])
    fp32 = work / "concat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    pre = q8.preprocess(fp32, work)
    frames = [rng.normal(size=(1, 3, 32, 40)).astype(np.float32) for _ in range(4)]
    return pre, q8.write_ranges(q8.calibrate(pre, frames, "x", "minmax", work),
                                work / "ranges.json")


def test_a_concat_fed_layer_stays_float_where_openvino_miscomputes_it(tmp_path: Path) -> None:
    """OpenVINO 2026.4 runs Concat -> symmetric int8 Q/DQ -> INT8 Conv 15 % off ONNX
    Runtime's emulation (uint8 asymmetric is exact): the S8S8 flavour keeps that layer in
    float, so the artifact means the same on both runtimes."""
    pre, ranges = _concat_fed(tmp_path)
    trt = onnx.load(str(q8.Quantizer.open(pre, ranges, "tensorrt", "minmax").quantize(
        tmp_path / "trt.onnx")))
    assert q8.int8_layers(trt) == ["conv_a", "conv_b", "conv_d"]
    cpu = onnx.load(str(q8.Quantizer.open(pre, ranges, "cpu", "minmax").quantize(
        tmp_path / "cpu.onnx")))
    assert "conv_c" in q8.quantized_layers(cpu)  # U8 asymmetric: exact there, kept INT8
    if not openvino_available()[0]:
        pytest.skip("openvino is not installed (the cross-runtime half of this test)")
    import onnxruntime as ort
    import openvino as ov

    x = np.random.default_rng(1).normal(size=(1, 3, 32, 40)).astype(np.float32)
    want = ort.InferenceSession(str(tmp_path / "trt.onnx"),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ov.Core().compile_model(str(tmp_path / "trt.onnx"), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32"})({"x": x})[0]
    assert np.abs(got - want).mean() <= 1e-3 * np.abs(want).mean()
