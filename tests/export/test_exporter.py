"""The exporter end to end on small models: metadata, parity, fallback, atomic output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from segedge.export.config import MAX_OPSET, MIN_OPSET, ExportConfig, VerifyOptions
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
    meta = read_metadata(model)  # ONNX Runtime's TensorRT provider profiles around it
    assert meta is not None and meta.extra["imgsz"] == [64, 96]


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


def _module(name: str) -> Any:
    """The fixture file imported under its own name (as segexport imports user files)."""
    from importlib import util

    spec = util.spec_from_file_location(name, FIXTURE)
    assert spec and spec.loader
    mod = util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_authors_convention_is_baked_exactly(tmp_path: Path) -> None:
    """(BGR - mean) / std / 255 with pixel-unit mean/std: --norm-units pixel --scale 1/255 --bgr.

    The graph, fed raw BGR bytes, must give what the authors' own code gives PyTorch."""
    torch.manual_seed(0)
    net = _module("tiny_for_norm").TinySeg(3).eval()
    ckpt = tmp_path / "w.pth"
    torch.save(net.state_dict(), ckpt)
    mean, std = (72.39, 82.91, 73.16), (45.32, 46.15, 44.91)
    tiny(tmp_path, checkpoint=ckpt, mean=mean, std=std, norm_units="pixel", scale=1 / 255,
         model_color="BGR", emit="logits")
    frame = np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    authors = (frame.astype(np.float32) - np.float32(mean)) / np.float32(std) / 255.0
    x = torch.from_numpy(authors.transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        want = torch.nn.functional.interpolate(net(x), size=(64, 96), mode="bilinear",
                                               align_corners=False).numpy()
    sess = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": frame[None]})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    meta = read_metadata(onnx.load(str(tmp_path / "tiny.onnx")))
    assert meta is not None and meta.extra["normalization"]["units"] == "pixel"
    assert meta.input.std == pytest.approx(std, rel=1e-12)  # S / (K * 255) in 0..1 units


@pytest.mark.parametrize(("opset", "exporter"), [(MIN_OPSET, "torchscript"),
                                                  (MAX_OPSET, "dynamo")])
def test_opset_is_honoured_at_both_ends_of_its_range(tmp_path: Path, opset: int,
                                                     exporter: str) -> None:
    """Where dynamo cannot write the opset asked (it writes 18), TorchScript does."""
    report = tiny(tmp_path, opset=opset)
    assert report["opset"] == opset and report["exporter"] == exporter
    assert not any("asked" in n for n in report["notes"] if "exporter wrote the ONNX" not in n)
    model = onnx.load(str(tmp_path / "tiny.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    assert report["parity"]["argmax_agreement"] >= 99.9


def test_published_model_with_constructor_args_shadowing_and_legacy_batchnorm(
        tmp_path: Path) -> None:
    """classes/p/q constructor, `self.modules = [...]`, a pre-0.4.1 BatchNorm checkpoint."""
    torch.manual_seed(1)
    net = _module("shadow_for_ckpt").ShadowsModules(3, 2, 8)
    state = net.state_dict()
    old: Any = type(state)((k, v) for k, v in state.items() if "num_batches" not in k)
    old._metadata = {k: dict(v, version=1) if k == "stem.1" else v
                     for k, v in state._metadata.items()}
    ckpt = tmp_path / "espnet_2018.pth"
    torch.save(old, ckpt)
    report = export(ExportConfig(
        model=f"{FIXTURE}:ShadowsModules", num_classes=3, checkpoint=ckpt, imgsz=(64, 96),
        model_args=(("classes", 3), ("p", 2), ("q", 8)), output=tmp_path / "esp.onnx",
        quiet=True))
    assert report["model_args"] == {"classes": 3, "p": 2, "q": 8}
    assert report["weights"] == f"checkpoint {ckpt}"
    assert report["parity"]["argmax_agreement"] >= 99.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["esp.onnx", "esp.report.json",
                                                          "espnet_2018.pth"]


def _labelled_scenes(root: Path, count: int) -> tuple[Path, Path]:
    """Generated road scenes and label maps (a fixed split of the picture) as PNG files."""
    import cv2

    from segedge.export import scenes

    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    for i, frame in enumerate(scenes.frames(count, (64, 96), seed=5)):
        cv2.imwrite(str(images / f"f{i}.png"), frame)
        truth = np.zeros((64, 96), np.uint8)
        truth[32:] = 1
        truth[:, 80:] = 2
        cv2.imwrite(str(labels / f"f{i}.png"), truth)
    return images, labels


def test_verify_labels_put_pytorch_and_onnx_miou_side_by_side(tmp_path: Path) -> None:
    from segedge.export.evaluation.evaluate import evaluate, pair_labels
    from segedge.export.evaluation.predictors import TorchPredictor
    from segedge.export.report import format_summary
    from segedge.export.tasks.base import get_task

    images, labels = _labelled_scenes(tmp_path, 3)
    out = tmp_path / "out"
    out.mkdir()
    cfg = ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96),
                       output=out / "tiny.onnx", quiet=True,
                       verify=VerifyOptions(images=str(images), labels=labels, count=3))
    torch.manual_seed(0)
    report = export(cfg)
    acc = report["parity"]["accuracy"]
    assert acc["labels"] == str(labels) and acc["ignore_index"] == 255
    assert acc["pytorch"]["images"] == acc["onnx"]["images"] == 3
    assert acc["pytorch"]["miou"] == acc["onnx"]["miou"]  # parity 100 %: the same masks
    # the same number segeval's PyTorch path computes for these frames (one metrics rule)
    torch.manual_seed(0)
    pt = evaluate(TorchPredictor(cfg), pair_labels(images, labels), 3, 255)
    assert acc["pytorch"]["miou"] == pytest.approx(pt.miou, abs=1e-9)
    assert acc["pytorch"]["pixel_accuracy"] == pytest.approx(pt.pixel_accuracy, abs=1e-9)
    line = format_summary(report, get_task("semantic")).splitlines()[2]
    assert line == (f"accuracy on 3 labelled frames ({labels}): mIoU PyTorch "
                    f"{acc['pytorch']['miou']:.2f} / ONNX {acc['onnx']['miou']:.2f}, pixel "
                    f"accuracy PyTorch {acc['pytorch']['pixel_accuracy']:.2f} / ONNX "
                    f"{acc['onnx']['pixel_accuracy']:.2f}")


def test_degenerate_masks_warn_even_when_quiet(tmp_path: Path) -> None:
    net = _module("tiny_flat").TinySeg(3)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, 4.0, 0.0]))  # class 1 everywhere
    ckpt = tmp_path / "flat.pth"
    torch.save(net.state_dict(), ckpt)
    lines: list[str] = []
    report = export(ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96),
                                 checkpoint=ckpt, output=tmp_path / "flat.onnx", quiet=True),
                    log=lines.append)
    warning = ("PyTorch predicts one class (class_1) on more than 98% of the pixels of every "
               "one of 4 frame(s): a degenerate mask; check the checkpoint and "
               "--mean/--std/--bgr (or --norm-units/--scale)")
    assert report["warnings"] == [warning]
    assert lines == [f"warning: {warning}"]  # --quiet silences the summary only


def test_engine_is_not_attempted_for_a_graph_tensorrt_would_refuse(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--int8-target cpu (U8 Q/DQ): the report says why there is no plan; no build runs."""
    from segedge.export.config import EngineOptions
    from segedge.export.pipeline import engine_section
    from segedge.export.precision import modes
    from segedge.export.tensorrt import build
    from segedge.runtime.metadata import ArtifactMetadata

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("build_engine must not run")

    seen: list[tuple[Path, str]] = []

    def refusal(path: Path, meta: ArtifactMetadata) -> str:
        seen.append((path, meta.precision))
        return "U8 activations: TensorRT needs S8S8 Q/DQ (--int8-target tensorrt)"

    monkeypatch.setattr(build, "tensorrt_available", lambda: (True, ""))
    monkeypatch.setattr(build, "quantization_refusal", refusal)
    monkeypatch.setattr(build, "build_engine", never)
    meta = ArtifactMetadata(model="m", family="f", classes=("a",), palette=((0, 0, 0),),
                            precision="int8")
    cfg = ExportConfig(model="demo", engine=EngineOptions(build=True))
    out = tmp_path / "m_int8.onnx"
    assert engine_section(cfg, modes.get("int8"), out, meta, (64, 96)) == {
        "plan": None, "reason": "U8 activations: TensorRT needs S8S8 Q/DQ (--int8-target "
                                "tensorrt)"}
    assert seen == [(out, "int8")]


UNPOOL = """
import torch
from torch import nn
import torch.nn.functional as F


class Unpool(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        print("Training from scratch!!")  # published model code prints; stdout is not theirs
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("forward", tuple(x.shape))
        pooled, idx = F.max_pool2d(self.conv(x), 2, return_indices=True)
        return F.max_unpool2d(pooled, idx, 2)  # TorchScript cannot export this
"""


def test_note_names_the_exporter_that_wrote_and_why_the_other_failed(tmp_path: Path) -> None:
    src = tmp_path / "unpool.py"
    src.write_text(UNPOOL)
    report = export(ExportConfig(model=f"{src}:Unpool", num_classes=3, imgsz=(32, 32),
                                 output=tmp_path / "unpool.onnx", quiet=True,
                                 exporter="torchscript"))
    assert report["exporter"] == "dynamo"
    notes = [n for n in report["notes"] if "exporter wrote" in n]
    assert notes == ["dynamo exporter wrote the ONNX (torchscript failed: TypeError: cond must be "
                     "a bool, but got a Tensor. For tensor conditions, use "
                     "torch._check_tensor_all() to assert that all elements are true.)"], \
        report["notes"]
    assert not any("fell back to TorchScript" in n for n in report["notes"])
    meta = read_metadata(onnx.load(str(tmp_path / "unpool.onnx")))
    assert meta is not None and meta.exporter == "dynamo"


def test_exporter_reason_is_the_first_full_line() -> None:
    from segedge.export.onnx.convert import MAX_REASON, _first_line

    dynamo = RuntimeError(
        "Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of "
        "exporting the model to ONNX. Next steps:\n- Modify the model code\n\n"
        "## Exception summary\n\n<class 'torch.fx.experimental.symbolic_shapes."
        "GuardOnDataDependentSymNode'>: Could not guard on data-dependent expression zuf0 > -1.0"
        "\n\nconsider using data-dependent friendly APIs\n")
    assert _first_line(dynamo) == ("GuardOnDataDependentSymNode: Could not guard on "
                                   "data-dependent expression zuf0 > -1.0")
    # TorchScript's SymbolicValueError with an empty message: the value's text spans lines
    symbolic = ValueError("  [Caused by the value 'x.3 defined in (%x.3 : int[] = "
                          "prim::ListConstruct(%1, %2)\n)' (type 'List[int]') in the "
                          "TorchScript graph.]\n\n    Inputs:\n")
    assert _first_line(symbolic) == ("ValueError: [Caused by the value 'x.3 defined in "
                                     "(%x.3 : int[] = prim::ListConstruct(%1, %2)")
    long = _first_line(RuntimeError("word " * 200))
    assert len(long) <= MAX_REASON + 4 and long.endswith("word ...")
    assert _first_line(RuntimeError("")) == "RuntimeError"


def test_user_model_prints_go_to_stderr_not_stdout(tmp_path: Path) -> None:
    from tests.export.precision_helpers import run_module

    src = tmp_path / "unpool.py"
    src.write_text(UNPOOL)
    proc = run_module("segedge.export.cli", f"{src}:Unpool", "--num-classes", "3", "--imgsz",
                      "32", "32", "-o", str(tmp_path / "u.onnx"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "Training from scratch!!" in proc.stderr and "forward (1, 3, 32, 32)" in proc.stderr
