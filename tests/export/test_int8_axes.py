"""Per-channel weight scales on the output-channel axis, or per-tensor: what fused INT8 reads.

ConvTranspose weights are [Cin, Cout/group, kH, kW]: a per-channel scale on axis 0
is per *input* channel, which ONNX Runtime emulates exactly (plain dequantize math)
but a fused INT8 deconvolution (OpenVINO, TensorRT) applies per output channel.
A grouped ConvTranspose has no single output-channel axis: per-tensor.  ONNX
Runtime's own default writes axis 1 even for a grouped one (the old placement);
the graph lint refuses it and anything on the wrong axis.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from torch import nn

from segedge.export.precision import int8 as q8
from segedge.export.precision.graph import qdq_axis_problems
from segedge.runtime.backends.openvino import openvino_available
from segedge.runtime.errors import ExportError
from tests.export.openvino_probe import deconv_precisions


class Deconvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 1, 1)
        self.t1 = nn.ConvTranspose2d(8, 12, 2, 2, bias=False)  # Cin != Cout
        self.t2 = nn.ConvTranspose2d(12, 12, 2, 2, groups=4, bias=False)
        self.c2 = nn.Conv2d(12, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.t2(torch.relu(self.t1(torch.relu(self.c1(x)))))))


XS = [np.random.default_rng(i).standard_normal((1, 3, 16, 16)).astype(np.float32)
      for i in range(4)]


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    work = tmp_path_factory.mktemp("axes")
    torch.manual_seed(0)
    net = Deconvs().eval()
    with torch.no_grad():  # very different ranges per input and per output channel
        for m in (net.t1, net.t2):
            m.weight.mul_(torch.logspace(-2, 1, m.weight.shape[0]).view(-1, 1, 1, 1)
                          * torch.logspace(1, -2, m.weight.shape[1]).view(1, -1, 1, 1))
    fp32 = work / "deconvs.onnx"
    torch.onnx.export(net, (torch.from_numpy(XS[0]),), str(fp32), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    pre = q8.preprocess(fp32, work)
    ranges = q8.write_ranges(q8.calibrate(pre, XS, "x", "minmax", work), work / "r.json")
    return fp32, pre, ranges


def _weight_axes(path: Path) -> dict[str, int | None]:
    model = onnx.load(str(path))
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    return {n.input[0].split(".")[0]: next((a.i for a in n.attribute if a.name == "axis"), None)
            if any(d > 1 for d in inits[n.input[1]]) else None
            for n in model.graph.node if n.op_type == "DequantizeLinear"
            and n.input[0].endswith("weight_quantized")}


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_weights_per_output_channel_or_per_tensor(graph: tuple[Path, Path, Path], target: str,
                                                  tmp_path: Path) -> None:
    _, pre, ranges = graph
    out = q8.Quantizer.open(pre, ranges, target, "minmax").quantize(tmp_path / "q.onnx")  # type: ignore[arg-type]
    axes = _weight_axes(out)
    assert axes["t1"] == 1 and axes["t2"] is None and axes["c1"] == 0
    assert qdq_axis_problems(onnx.load(str(out))) == []


class _Reader(CalibrationDataReader):
    def __init__(self) -> None:
        self.it = iter(XS)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.it, None)
        return None if x is None else {"x": x}


def test_the_old_placement_is_refused(graph: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """ONNX Runtime's defaults (per_channel=True): grouped ConvTranspose per-channel on axis 1."""
    _, pre, _ = graph
    old = tmp_path / "old.onnx"
    quantize_static(str(pre), str(old), _Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, extra_options={"ActivationSymmetric": True})
    assert qdq_axis_problems(onnx.load(str(old))) == [
        "ConvTranspose '/t2/ConvTranspose': weight scales per-channel on axis 1, expected "
        "per-tensor (a ConvTranspose with group 4 has no single output-channel axis)"]


def test_quantize_refuses_a_wrong_axis(graph: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pre, ranges = graph
    good = q8.Quantizer.open(pre, ranges, "tensorrt", "minmax")
    wrong = dataclasses.replace(good, axes=tuple(
        (name, 0 if name.startswith("t1") else axis) for name, axis in good.axes))
    with pytest.raises(ExportError, match=r"^INT8 placement: expected weight scales per output "
                       r"channel, got 1 layer\(s\) otherwise: ConvTranspose '/t1/ConvTranspose'"
                       r": weight scales per-channel on axis 0, expected axis 1"):
        wrong.quantize(tmp_path / "wrong.onnx")




@pytest.mark.skipif(not openvino_available()[0], reason="needs OpenVINO")
def test_openvino_fuses_the_output_channel_form(graph: tuple[Path, Path, Path],
                                                tmp_path: Path) -> None:
    """Measured on OpenVINO 2026.4: the ungrouped ConvTranspose runs as an INT8 kernel and
    agrees with ONNX Runtime's emulation (the grouped one has no INT8 kernel there)."""
    fp32, pre, ranges = graph
    out = q8.Quantizer.open(pre, ranges, "tensorrt", "minmax").quantize(tmp_path / "q.onnx")
    assert deconv_precisions(out)["i8"] == 1
    import openvino as ov

    from segedge.runtime.backends.openvino import shared_core

    ref = ort.InferenceSession(str(fp32)).run(None, {"x": XS[0]})[0]
    emulated = ort.InferenceSession(str(out)).run(None, {"x": XS[0]})[0]
    compiled = shared_core().compile_model(ov.Core().read_model(str(out)), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32"})
    fused = compiled([XS[0]])[compiled.outputs[0]]
    scale = float(np.abs(ref).mean())
    assert float(np.abs(fused - emulated).mean()) <= 0.01 * scale  # same INT8 arithmetic
    assert float(np.abs(emulated - ref).mean()) <= 0.1 * scale  # and it is INT8-close
