"""ExportConfig validates itself; the CLI's choices and flags come from the registries."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_type_hints

import click
import pytest

from segedge.export import cli
from segedge.export.config import (
    MAX_OPSET,
    MIN_OPSET,
    EngineOptions,
    ExportConfig,
    InstanceOptions,
    PrecisionOptions,
    VerifyOptions,
)
from segedge.export.precision import int8 as q8
from segedge.export.precision import modes
from segedge.export.precision.modes.int8 import CALIB_METHODS, INT8_TARGETS
from segedge.export.tasks.base import get_task, task_name_for, task_names
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ArtifactMetadata

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ExportConfig(model="demo", imgsz=(0, 64)),
     "--imgsz: expected two positive sizes (H W), got 0x64"),
    (lambda: ExportConfig(model="demo", batch=0), "--batch: expected a positive integer, got 0"),
    (lambda: ExportConfig(model="demo", output=Path("x.onx")),
     "--output: expected a path ending in .onnx, got x.onx"),
    (lambda: ExportConfig(model="demo", weights="cached"),  # type: ignore[arg-type]
     "--weights: expected one of auto, random, pretrained, got 'cached'"),
    (lambda: ExportConfig(model="demo", task="panoptic"),
     "--task: expected one of semantic, instance, got 'panoptic'"),
    (lambda: ExportConfig(model="demo", std=(0.2, 0.0, 0.2)),
     "--std: expected positive per-channel values, got (0.2, 0.0, 0.2)"),
    (lambda: VerifyOptions(count=0), "--verify-count: expected a positive integer, got 0"),
    (lambda: VerifyOptions(labels=Path("l")),
     "--verify-labels: expected --verify-images DIR as well, got labels only"),
    (lambda: ExportConfig(model="demo", opset=5),
     "--opset: expected 11..23 (what the ONNX exporters here write as asked), got 5"),
    (lambda: ExportConfig(model="demo", opset=99),
     "--opset: expected 11..23 (what the ONNX exporters here write as asked), got 99"),
    (lambda: ExportConfig(model="demo", imgsz=(100000, 100000)),
     "--imgsz: expected sides of at most 16384 pixels (H W), got 100000x100000"),
    (lambda: ExportConfig(model="demo", std=(0.2, float("nan"), 0.2)),
     "--std: expected finite per-channel values, got (0.2, nan, 0.2)"),
    (lambda: ExportConfig(model="demo", mean=(123.7, 116.3, 103.5), norm_units="unit"),
     "--mean: expected 0..1 values in 0..1 units (pixel values need --norm-units pixel), "
     "got 123.7,116.3,103.5"),
    (lambda: ExportConfig(model="demo", mean=(123.7, 116.3, 103.5)),
     "--std: expected both --mean and --std in pixel units, got only the other one"),
    (lambda: ExportConfig(model="demo", scale=1 / 255),
     "--scale: expected --mean and --std to apply to, got neither"),
    (lambda: ExportConfig(model="demo", model_args=(("classes", 12),)),
     "--model-args: expected a path/to/file.py:Class model (zoo entries take --num-classes), "
     "got demo"),
    (lambda: VerifyOptions(min_agreement=-1.0),
     "--min-agreement: expected a percentage >= 0, got -1.0"),
    (lambda: PrecisionOptions(mode="int4"), "precision: expected fp32 or fp16 or int8, got 'int4'"),
    (lambda: PrecisionOptions(mode="int8"),
     "--int8: expected --calib DIR|VIDEO|GLOB (calibration frames), got none"),
    (lambda: PrecisionOptions(mode="fp16", calib="frames/"),
     "--calib: expected --int8 as well, got precision fp16"),
    (lambda: PrecisionOptions(mode="fp16", int8_min_agreement=98.0),
     "--int8-min-agreement: expected --int8 as well (it is the INT8 accuracy budget), got "
     "precision fp16"),
    (lambda: PrecisionOptions(mode="int8", calib="f/", max_miou_drop=0.5),
     "--max-miou-drop: expected --eval-images DIR --eval-labels DIR, got no labels to measure "
     "mIoU"),
    (lambda: PrecisionOptions(mode="int8", calib="f/", eval_labels=Path("l")),
     "--eval-labels: expected --eval-images DIR as well, got labels only"),
    (lambda: PrecisionOptions(mode="int8", calib="f/", int8_min_agreement=100.5),
     "--int8-min-agreement: expected a percentage 0..100, got 100.5"),
    (lambda: PrecisionOptions(mode="int8", calib="f/", int8_target="gpu"),  # type: ignore[arg-type]
     "--int8-target: expected one of tensorrt, cpu, got 'gpu'"),
    (lambda: InstanceOptions(max_detections=0),
     "--max-detections: expected a positive integer, got 0"),
    (lambda: InstanceOptions(box_score_threshold=1.5),
     "--box-score-threshold: expected a number between 0 and 1, got 1.5"),
    (lambda: EngineOptions(dla_core=-1), "--dla-core: expected a DLA core index >= 0, got -1"),
    (lambda: EngineOptions(workspace_mib=0), "--workspace: expected a positive integer, got 0"),
])
def test_configs_refuse_impossible_values(make: Any, message: str) -> None:
    with pytest.raises(InputError) as err:
        make()
    assert str(err.value) == message


def test_defaults_are_the_documented_gates() -> None:
    cfg = ExportConfig(model="demo")
    assert cfg.verify == VerifyOptions(enabled=True, images=None, count=4, min_agreement=99.9)
    assert cfg.precision.spec is modes.get("fp32") and cfg.precision.fp16_min_agreement == 99.5
    assert cfg.instance.max_detections == 100 and cfg.instance.min_mean_mask_iou == 0.99
    assert cfg.engine.build is None


def test_precision_modes_own_their_rules() -> None:
    assert modes.names() == ("fp32", "fp16", "int8")
    fp32, fp16, int8 = (modes.get(n) for n in modes.names())
    assert [m.suffix for m in (fp32, fp16, int8)] == ["", "_fp16", "_int8"]
    assert [m.implies_engine for m in (fp32, fp16, int8)] == [False, True, True]
    assert [m.lowers for m in (fp32, fp16, int8)] == [False, True, True]
    assert [m.calibrated for m in (fp32, fp16, int8)] == [False, False, True]
    assert fp32.tensorrt_flags() == () and fp16.tensorrt_flags() == ("FP16",)
    assert int8.tensorrt_flags() == ("INT8",) and int8.tensorrt_flags(dla=True) == ("INT8",
                                                                                     "FP16")
    opts = PrecisionOptions(mode="int8", calib="f/", max_miou_drop=None)
    assert int8.ungated(opts).int8_min_agreement == 0.0
    assert fp16.ungated(PrecisionOptions(mode="fp16")).fp16_min_agreement == 0.0
    assert fp32.ungated(PrecisionOptions()) == PrecisionOptions()
    meta = ArtifactMetadata(model="m", family="f", classes=("a",), palette=((0, 0, 0),))
    req = modes.LowerRequest(ExportConfig(model="demo"), Path("x.onnx"), meta, Path("."),
                             Path("x.onnx"), (8, 8))
    assert fp32.lower(req) is None  # the verified FP32 graph is the artifact


def test_registries_agree_with_the_transforms_and_the_metadata() -> None:
    assert tuple(q8.METHODS) == CALIB_METHODS
    assert tuple(q8.FLAVOURS) == INT8_TARGETS
    assert task_names() == get_args(get_type_hints(ArtifactMetadata)["task"])
    for name in task_names():
        assert get_task(name).name == name


def _choices(name: str) -> tuple[str, ...]:
    param = next(p for p in cli.segexport.params if p.name == name)
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


def test_cli_choices_come_from_the_registries() -> None:
    assert _choices("precision") == modes.names()
    assert _choices("int8_target") == INT8_TARGETS
    assert _choices("calib_method") == CALIB_METHODS
    assert _choices("task") == task_names()
    flags = {p.name for p in cli.segexport.params}
    assert {"fp16", "int8", "int8_min_agreement", "min_agreement"} <= flags
    assert "fp32" not in flags  # only modes that lower get a shorthand flag


def test_task_follows_the_zoo_and_defaults_to_semantic() -> None:
    assert task_name_for(ExportConfig(model="maskrcnn_mobilenet_v3_cars")) == "instance"
    assert task_name_for(ExportConfig(model="demo")) == "semantic"
    assert task_name_for(ExportConfig(model=f"{FIXTURE}:TinySeg")) == "semantic"
    assert task_name_for(ExportConfig(model=f"{FIXTURE}:TinySeg", task="instance")) == "instance"
    with pytest.raises(InputError) as err:
        task_name_for(ExportConfig(model="demo", task="instance"))
    assert str(err.value) == ("--task: expected semantic for demo (its zoo entry's task), "
                              "got instance")


def _parsed(monkeypatch: pytest.MonkeyPatch, *args: str) -> ExportConfig:
    """What segexport hands the pipeline for these arguments (the export itself is stubbed)."""
    from segedge.export import pipeline

    seen: list[ExportConfig] = []
    monkeypatch.setattr(pipeline, "export", lambda cfg: seen.append(cfg))
    cli.main([f"{FIXTURE}:TinySeg", "--num-classes", "3", *args])
    (cfg,) = seen
    return cfg


def test_min_agreement_is_the_fp32_gate_only(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _parsed(monkeypatch, "--int8", "--calib", "frames/", "--min-agreement", "99.0",
                  "--int8-min-agreement", "98.5")
    assert cfg.precision.mode == "int8" and cfg.precision.calib == "frames/"
    assert cfg.verify.min_agreement == 99.0  # with --int8 as without: the PyTorch gate
    assert cfg.precision.int8_min_agreement == 98.5  # the INT8 budget has its own flag
    plain = _parsed(monkeypatch, "--min-agreement", "99.5")
    assert plain.verify.min_agreement == 99.5 and plain.precision.int8_min_agreement is None
    assert _parsed(monkeypatch, "--precision", "fp16").precision.mode == "fp16"
    assert _parsed(monkeypatch, "--fp16", "--precision", "fp16").precision.mode == "fp16"


@pytest.mark.parametrize(("args", "message"), [
    (["--fp16", "--int8", "--calib", "f/"],
     "--fp16/--int8: expected one precision, got fp16, int8"),
    (["--precision", "int8", "--fp16", "--calib", "f/"],
     "--precision/--fp16: expected one precision, got int8, fp16"),
])
def test_conflicting_precisions_are_refused(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as code:
        _parsed(monkeypatch, *args)
    assert code.value.code == 2
    assert capsys.readouterr().err.strip() == f"segexport: error: {message}"


def test_model_args_and_normalisation_flags_reach_the_config(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _parsed(monkeypatch, "--model-args", "classes=3", "p=2", "name=esp", "--norm-units",
                  "pixel", "--mean", "72.39", "82.91", "73.16", "--std", "45.3", "46.2", "44.9",
                  "--scale", "1/255", "--bgr", "--verify-images", "v/", "--verify-labels", "l/")
    assert cfg.model_args == (("classes", 3), ("p", 2), ("name", "esp"))
    assert cfg.norm_units == "pixel" and cfg.scale == pytest.approx(1 / 255, rel=1e-15)
    assert cfg.mean == (72.39, 82.91, 73.16) and cfg.model_color == "BGR"
    assert cfg.verify.images == "v/" and cfg.verify.labels == Path("l/")
    norm = cfg.normalization()
    assert norm.offset == pytest.approx((72.39, 82.91, 73.16))
    assert norm.divisor == pytest.approx((45.3 * 255, 46.2 * 255, 44.9 * 255))
    # the words after --model-args stop at the next option; repeating it works too
    cfg = _parsed(monkeypatch, "--model-args", "p=2", "--model-args", "q=8")
    assert cfg.model_args == (("p", 2), ("q", 8))


def test_opset_range_is_what_torch_can_write() -> None:
    from torch.onnx import _constants

    assert _constants.ONNX_MAX_OPSET >= MAX_OPSET
    assert MIN_OPSET <= 18 <= MAX_OPSET  # the default is inside


@pytest.mark.parametrize(("kw", "message"), [
    ({"mean": (0.5, 0.5, 0.5)}, "--mean: expected no normalisation flags for instance models "
                                "(torchvision's Mask R-CNN normalises inside, with its own "
                                "mean/std), got --mean"),
    ({"verify": VerifyOptions(images="v/", labels=Path("l"))},
     "--verify-labels: expected a semantic model (instance parity matches detections; it has "
     "no label maps to score), got l"),
])
def test_instance_task_refuses_what_it_cannot_honour(kw: dict[str, Any], message: str) -> None:
    cfg = ExportConfig(model="maskrcnn_mobilenet_v3_cars", **kw)
    with pytest.raises(InputError) as err:
        get_task("instance").check(cfg)
    assert str(err.value) == message
