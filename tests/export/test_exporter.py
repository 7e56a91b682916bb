"""The exporter end to end on small models: metadata, parity, fallback, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from segedge.export.config import ExportConfig, VerifyOptions
from segedge.export.onnx.tools import read_metadata
from segedge.export.pipeline import export
from segedge.runtime.errors import VerificationError
from segedge.runtime.preprocess import prepare

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"


def tiny(tmp_path: Path, **kw: object) -> dict:
    cfg = ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96),
                       output=tmp_path / "tiny.onnx", quiet=True, **kw)  # type: ignore[arg-type]
    return export(cfg)


def test_writes_self_describing_onnx_and_report(tmp_path: Path) -> None:
    report = tiny(tmp_path)
    model = onnx.load(str(tmp_path / "tiny.onnx"))
    meta = read_metadata(model)
    assert meta is not None
    assert meta.model == "TinySeg" and meta.family == "custom"
    assert meta.classes == ("class_0", "class_1", "class_2") and len(meta.palette) == 3
    assert meta.input.format == "uint8" and meta.input.layout == "NHWC"
    assert meta.input.color_order == "BGR" and meta.input.size == (64, 96)
    assert meta.output.labels == "labels" and meta.output.logits is None
    assert meta.precision == "fp32" and meta.opset >= 17
    assert {"torch", "onnx", "segedge", "onnxruntime"} <= set(meta.versions)
    assert [o.name for o in model.graph.output] == ["labels"]
    on_disk = json.loads((tmp_path / "tiny.report.json").read_text())
    assert on_disk["parity"]["argmax_agreement"] >= 99.9
    assert on_disk["parity"]["max_abs_diff"] < 1e-4
    assert on_disk["parity"]["images"] == 4
    assert on_disk["tensorrt"]["unsupported"] == []
    assert on_disk["sha256"] == report["sha256"]
    # nothing else left behind (temp folders cleaned up)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.report.json"]


def test_baked_preprocessing_matches_pytorch_on_bgr_bytes(tmp_path: Path) -> None:
    """The graph takes raw BGR camera bytes; PyTorch gets classic normalised RGB floats."""
    tiny(tmp_path, emit="both", confidence=True)
    from tests.export.fixtures.tiny_model import TinySeg  # noqa: F401  (same file, importable)

    sess = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    meta = read_metadata(onnx.load(str(tmp_path / "tiny.onnx")))
    assert meta is not None and meta.output.kind == "both"
    frame = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    x, _ = prepare([frame], meta.input)
    logits, labels, conf = sess.run(["logits", "labels", "confidence"], {"input": x})
    assert logits.shape == (1, 3, 64, 96) and labels.shape == (1, 64, 96)
    assert labels.dtype == np.uint8
    assert np.array_equal(labels[0], logits[0].argmax(0))
    soft = torch.softmax(torch.from_numpy(logits), 1).amax(1).numpy()
    np.testing.assert_allclose(conf, soft, atol=1e-5)


def test_dynamic_axes_are_named_and_run_at_other_sizes(tmp_path: Path) -> None:
    tiny(tmp_path, dynamic=True)
    model = onnx.load(str(tmp_path / "tiny.onnx"))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "height", "width", 3]
    sess = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": np.zeros((2, 50, 70, 3), np.uint8)})[0]
    assert out.shape == (2, 50, 70)


def test_torchscript_fallback_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    from segedge.export.onnx import convert as onnx_export

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("dynamo cannot trace this model")

    monkeypatch.setitem(onnx_export.EXPORTERS, "dynamo", broken)
    report = tiny(tmp_path)
    assert report["exporter"] == "torchscript"
    assert any("dynamo cannot trace" in n for n in report["notes"])
    meta = read_metadata(onnx.load(str(tmp_path / "tiny.onnx")))
    assert meta is not None and meta.exporter == "torchscript"


def test_failed_parity_gate_leaves_no_artifact(tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="argmax agreement"):
        tiny(tmp_path, verify=VerifyOptions(min_agreement=100.01))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["tiny.failed.report.json"]


def test_user_model_with_checkpoint_and_classes_file(tmp_path: Path) -> None:
    from importlib import util

    spec = util.spec_from_file_location("tiny_model_for_ckpt", FIXTURE)
    assert spec and spec.loader
    mod = util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    trained = mod.TinySeg(4)
    with torch.no_grad():
        trained.head.bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))  # class 2 wins everywhere
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "model": {"state_dict": {f"module.{k}": v for k, v in
                                                      trained.state_dict().items()}}}, ckpt)
    classes = ("road", "car", "sky", "tree")
    cfg = ExportConfig(model=f"{FIXTURE}:make_tiny", classes=classes, checkpoint=ckpt,
                       imgsz=(32, 32), output=tmp_path / "user.onnx", quiet=True)
    report = export(cfg)
    assert report["parity"]["argmax_agreement"] == 100.0
    assert report["weights"].startswith("checkpoint")
    meta = read_metadata(onnx.load(str(tmp_path / "user.onnx")))
    assert meta is not None and meta.classes == classes


def test_float_input_format(tmp_path: Path) -> None:
    tiny(tmp_path, input_format="float", emit="logits")
    meta = read_metadata(onnx.load(str(tmp_path / "tiny.onnx")))
    assert meta is not None
    assert (meta.input.format, meta.input.layout, meta.input.color_order) == ("float", "NCHW",
                                                                               "RGB")
