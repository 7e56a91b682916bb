"""FP16 as an ONNX transform: typed graph, unchanged interface, fidelity on a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from segedge.export.config import ExportConfig
from segedge.export.onnx.tools import read_metadata
from segedge.export.pipeline import export
from segedge.export.precision.fp16 import convert_fp16
from segedge.export.tensorrt.build import tensorrt_available
from tests.export.precision_helpers import (
    camvid,
    model_args,
    one_line,
    run_module,
    trained_checkpoint,
)

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


@pytest.fixture(scope="session")
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_checkpoint(request, tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Structure only (random weights): all three outputs, so every head op is present."""
    out = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    export(ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96), output=out,
                        emit="both", confidence=True, quiet=True))
    return out


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {i.name: i.data_type for i in inferred.graph.initializer}
    for v in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
        types[v.name] = v.type.tensor_type.elem_type
    return types


def test_fp16_graph_is_typed_and_keeps_the_interface(tiny_fp32: Path) -> None:
    fp32 = onnx.load(str(tiny_fp32))
    result = convert_fp16(fp32)
    model = result.model
    onnx.checker.check_model(model)
    io = [(v.name, v.type.tensor_type.elem_type) for v in [*model.graph.input, *model.graph.output]]
    assert io == [(v.name, v.type.tensor_type.elem_type)
                  for v in [*fp32.graph.input, *fp32.graph.output]]  # uint8 in, fp32/uint8 out
    types = _types(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.input[1]] == HALF and types[n.output[0]] == HALF for n in convs)
    head = {n.op_type: n for n in model.graph.node if n.name in result.fp32_nodes}
    # what an AMP pass keeps in FP32: the logits resize, argmax and the confidence maths
    assert {"Resize", "ArgMax", "Exp", "ReduceSum", "Reciprocal"} <= set(head)
    assert types[head["Resize"].input[0]] == FLOAT and types[head["Exp"].output[0]] == FLOAT
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:  # no fp32 -> fp16 -> fp32 round trips between FP32 nodes
        if node.op_type == "Cast" and node.input[0] in producer:
            up = producer[node.input[0]]
            assert up.op_type != "Cast", f"{up.name} -> {node.name}"
    assert result.casts <= 4  # input side once, then only the fp16 -> fp32 border(s)


def test_fp16_runs_in_onnxruntime_and_halves_the_weights(tiny_fp32: Path, tmp_path: Path) -> None:
    path = tmp_path / "tiny16.onnx"
    onnx.save(convert_fp16(onnx.load(str(tiny_fp32))).model, str(path))
    assert path.stat().st_size < 0.75 * tiny_fp32.stat().st_size
    x = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    a = ort.InferenceSession(str(tiny_fp32), providers=["CPUExecutionProvider"]).run(None, {
        "input": x})
    b = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {
        "input": x})
    assert [v.dtype for v in b] == [v.dtype for v in a]
    np.testing.assert_allclose(b[0], a[0], atol=2e-2, rtol=1e-2)  # logits, fp16 rounding


def test_engine_without_tensorrt_is_a_one_line_error(tmp_path: Path) -> None:
    ok, _ = tensorrt_available()
    if ok:
        pytest.skip("TensorRT and a GPU are present here")
    proc = run_module("segedge.export.cli", f"{FIXTURE}:TinySeg", "--num-classes", "3",
                      "--fp16", "--engine", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = one_line(proc.stderr)
    assert "--engine" in line and "TensorRT" in line
    assert list(tmp_path.iterdir()) == []  # refused before any work


@pytest.mark.slow
@pytest.mark.camvid
def test_fp16_cli_on_trained_model_camvid_val(trained: Path, tmp_path: Path) -> None:
    """`segexport --fp16` without TensorRT: exit 0, FP16 ONNX verified, one-line notice."""
    val = camvid()
    proc = run_module("segedge.export.cli", *model_args(trained, tmp_path / "classes.txt"),
                      "--fp16", "--eval-images", str(val / "val"),
                      "--eval-labels", str(val / "valannot"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "demo_fp16.onnx"
    meta = read_metadata(onnx.load(str(out)))
    assert meta is not None and meta.precision == "fp16"
    assert meta.extra["fp16"]["fp32_nodes"]
    report = json.loads((tmp_path / "demo_fp16.report.json").read_text())
    sec = report["precision_report"]
    assert report["precision"] == "fp16" and sec["frames"] == 101
    assert sec["argmax_agreement"] >= 99.5 and sec["gate"]["passed"]
    assert sec["miou"]["fp32"] > 25.0  # really trained (random weights give ~3 %)
    assert abs(sec["miou"]["drop"]) <= 0.1  # FP16 loses <= 0.1 mIoU point
    assert sec["size_bytes"]["fp16"] < 0.6 * sec["size_bytes"]["fp32"]
    assert sec["cpu_latency_ms"]["fp16"] > 0
    notices = [ln for ln in proc.stderr.splitlines() if "engine" in ln.lower()]
    if not tensorrt_available()[0]:
        assert len(notices) == 1 and notices[0].startswith("no TensorRT engine built: ")
        assert report["engine"]["plan"] is None


UPSAMPLING = '''
import torch
from torch import nn
import torch.nn.functional as F


class UpNet(nn.Module):
    """Published real-time nets upsample by a scale factor inside the network."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.down(x)))
        y = F.interpolate(y, scale_factor=0.5, mode="nearest")
        y = self.mid(F.interpolate(y, scale_factor=2.0, mode="nearest"))
        return self.head(self.up(y))
'''


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_fp16_export_of_scale_factor_upsampling(tmp_path: Path, dynamic: bool) -> None:
    """nn.Upsample(scale_factor=2) end to end with --fp16: Resize scales stay FP32 (the ONNX
    spec types them tensor(float)); before, the export died in shape inference."""
    src = tmp_path / "upnet.py"
    src.write_text(UPSAMPLING)
    out = tmp_path / "upnet_fp16.onnx"
    args = ["--dynamic"] if dynamic else []
    proc = run_module("segedge.export.cli", f"{src}:UpNet", "--num-classes", "3", "--imgsz",
                      "64", "96", "--fp16", "-o", str(out), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    model = onnx.load(str(out))
    types = _types(model)
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    inner = [n for n in resizes if types[n.input[0]] == HALF]  # the network's own upsampling
    assert len(inner) >= 2, [(n.name, types[n.input[0]]) for n in resizes]
    assert all(types[n.input[2]] == FLOAT for n in resizes if len(n.input) > 2 and n.input[2])
    report = json.loads(out.with_suffix(".report.json").read_text())["precision_report"]
    assert report["precision"] == "fp16" and report["gate"]["passed"]
    for runtime in ("onnxruntime", "openvino"):
        assert report["runtimes"][runtime]["argmax_agreement"] >= 99.5, runtime
