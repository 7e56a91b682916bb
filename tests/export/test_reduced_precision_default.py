"""Fastest verified precision by default: segexport gates OpenVINO's reduced precisions unless
--no-check-bf16 (--check-bf16 stays accepted), any precision the CPU runs natively is gated
(f16 too), and the summary says what was verified and what segrun will consider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from segedge.export import cli as export_cli
from segedge.export import pipeline
from segedge.export.config import ExportConfig, VerifyOptions
from segedge.runtime.report import ExportReport
from tests.runtime.onnx_fixtures import make_labels_model


@pytest.mark.parametrize(("flags", "gated"), [((), True), (("--check-bf16",), True),
                                              (("--no-check-bf16",), False)])
def test_the_gate_is_on_unless_no_check_bf16(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path, flags: tuple[str, ...],
                                             gated: bool) -> None:
    seen: list[ExportConfig] = []
    monkeypatch.setattr(pipeline, "export", seen.append)  # the CLI imports it when called
    result = CliRunner().invoke(export_cli.segexport,
                                ["demo", "-o", str(tmp_path / "m.onnx"), *flags])
    assert result.exit_code == 0, result.output
    assert len(seen) == 1 and seen[0].verify.bf16 is gated
    assert VerifyOptions().bf16 is True


def test_every_natively_run_reduced_precision_is_gated(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from segedge.runtime.backends import openvino

    model = make_labels_model(tmp_path / "labels.onnx")
    meta = openvino.OpenVinoBackend(model, openvino.BackendOptions()).metadata
    monkeypatch.setattr(openvino, "native_precisions", lambda device="CPU": ("f32", "f16"))
    cfg = ExportConfig(model="demo", quiet=True, verify=VerifyOptions(count=2))
    sections = pipeline.reduced_precision_sections(cfg, "semantic", model, meta, (32, 48))
    assert list(sections) == ["openvino"] and list(sections["openvino"]) == ["bf16", "f16"]
    f16 = sections["openvino"]["f16"]
    assert f16["checked"] is True and f16["frames"] == 2
    assert f16["runtime"] == "openvino CPU f16 vs onnxruntime fp32"
    assert 0.0 <= f16["argmax_agreement"] <= 100.0
    assert f16["gate"]["passed"] is (f16["argmax_agreement"] >= 99.5)
    assert pipeline.hint_section(cfg, "instance", model, meta, (32, 48), "openvino", "f16") == {
        "checked": False, "reason": "f16 gate is for label maps, not task 'instance'"}


def _summary(checks: dict[str, Any]) -> list[str]:
    return ExportReport.from_dict(Path("m.report.json"), {"openvino": checks}).precision_lines()


def test_the_summary_says_what_was_verified_and_what_segrun_considers() -> None:
    passed = {"checked": True, "frames": 4, "argmax_agreement": 99.99,
              "gate": {"min_argmax_agreement": 99.5, "passed": True}}
    failed = dict(passed, argmax_agreement=97.1, gate={"min_argmax_agreement": 99.5,
                                                        "passed": False})
    assert _summary({"bf16": passed, "f16": failed}) == [
        "openvino bf16 vs FP32 on 4 frames: 99.99 % argmax agreement (gate 99.5 %), passed",
        "openvino f16 vs FP32 on 4 frames: 97.10 % argmax agreement (gate 99.5 %), failed: "
        "not used",
        "segrun --backend auto will time openvino bf16 (verified) against FP32 and run the "
        "fastest"]
    assert _summary({"bf16": {"checked": False, "reason": "OpenVINO is not installed"}}) == [
        "openvino bf16: not checked (OpenVINO is not installed)",
        "segrun --backend auto will run FP32 (no reduced precision verified)"]
    assert ExportReport.from_dict(Path("r"), {}).precision_lines() == []


def test_an_int8_or_fp16_artifact_is_compared_against_its_own_precision() -> None:
    """The reference is the artifact itself on ONNX Runtime: an INT8 graph's bf16 run is
    gated against INT8, and segrun times it against INT8, not FP32."""
    passed = {"checked": True, "frames": 4, "argmax_agreement": 99.9,
              "gate": {"min_argmax_agreement": 99.5, "passed": True}}
    report = ExportReport.from_dict(Path("m.report.json"), {"precision": "int8",
                                                            "openvino": {"bf16": passed}})
    assert report.precision_lines() == [
        "openvino bf16 vs INT8 on 4 frames: 99.90 % argmax agreement (gate 99.5 %), passed",
        "segrun --backend auto will time openvino bf16 (verified) against INT8 and run the "
        "fastest"]
    failed = {"checked": False, "reason": "OpenVINO is not installed"}
    assert ExportReport.from_dict(Path("r"), {"precision": "fp16", "openvino": {
        "bf16": failed}}).precision_lines()[-1] == (
        "segrun --backend auto will run FP16 (no reduced precision verified)")

