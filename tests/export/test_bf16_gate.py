"""--check-bf16: OpenVINO bf16 gated against FP32 per artifact, and what `--backend auto` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segedge.export.config import FP16_MIN_AGREEMENT, ExportConfig, VerifyOptions
from segedge.export.pipeline import export, hint_section, reduced_precision_sections
from segedge.export.precision import runtimes
from segedge.runtime.backends.auto import verified_hints
from segedge.runtime.io import write_json_atomic
from segedge.runtime.sidecar import sha256_file

pytest.importorskip("openvino", reason="openvino not installed (pip install 'segedge[openvino]')")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bf16") / "demo.onnx"
    export(ExportConfig(model="demo", output=out, quiet=True, verify=VerifyOptions(bf16=True)))
    return out


def test_report_gates_bf16_and_auto_trusts_only_that_file(exported: Path) -> None:
    report = json.loads(exported.with_suffix(".report.json").read_text())
    section = report["openvino"]["bf16"]
    if not runtimes.native_hint("openvino", "bf16"):
        assert section == {"checked": False,
                           "reason": "this CPU has no native bf16 (AVX-512 BF16 / AMX)"}
        return
    assert section["checked"] is True and section["frames"] == 4
    assert 99.5 <= section["argmax_agreement"] <= 100.0
    assert section["gate"] == {"min_argmax_agreement": 99.5, "passed": True}
    sha = sha256_file(exported)
    assert "bf16" in verified_hints(exported, sha, "openvino")
    assert verified_hints(exported, "0" * 64, "openvino") == ()  # another file's report: none
    failed = dict(report, openvino={"bf16": dict(section, gate={"min_argmax_agreement": 99.5,
                                                                "passed": False})})
    write_json_atomic(exported.with_suffix(".report.json"), failed)
    assert "bf16" not in verified_hints(exported, sha, "openvino")


def test_gate_fails_below_the_threshold_and_says_why_when_absent(
        exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one bf16 gate (pipeline.hint_section) takes its threshold from the config unless
    given one; without native bf16 it says why instead of measuring."""
    from segedge.export.onnx.tools import read_metadata
    from segedge.runtime.backends import openvino as ov_backend

    meta = read_metadata(exported)
    assert meta is not None
    cfg = ExportConfig(model="demo", quiet=True, verify=VerifyOptions(count=2))
    size = meta.input.size
    assert size is not None
    if runtimes.native_hint("openvino", "bf16"):
        strict = hint_section(cfg, "semantic", exported, meta, size, "openvino", "bf16",
                              min_agreement=100.01)
        assert strict["checked"] is True and strict["frames"] == 2
        assert strict["gate"] == {"min_argmax_agreement": 100.01, "passed": False}
        default = hint_section(cfg, "semantic", exported, meta, size, "openvino", "bf16")
        assert default["gate"]["min_argmax_agreement"] == FP16_MIN_AGREEMENT == 99.5
        assert default["argmax_agreement"] == strict["argmax_agreement"]
    monkeypatch.setattr(ov_backend, "native_precisions", lambda device="CPU": ("f32",))
    assert not runtimes.native_hint("openvino", "bf16")
    assert hint_section(cfg, "semantic", exported, meta, size, "openvino", "bf16",
                        min_agreement=99.5) == {
        "checked": False, "reason": "this CPU has no native bf16 (AVX-512 BF16 / AMX)"}


def test_instance_artifacts_are_not_bf16_gated(exported: Path) -> None:
    """The report's sections as the pipeline writes them: every reduced hint of an instance
    artifact says why it was not gated (bf16 always, whether or not this CPU has it)."""
    cfg = ExportConfig(model="demo", quiet=True, verify=VerifyOptions(bf16=True))
    sections = reduced_precision_sections(cfg, "instance", exported, None,  # type: ignore[arg-type]
                                          (240, 320))
    assert list(sections) == ["openvino"] and "bf16" in sections["openvino"]
    for hint, section in sections["openvino"].items():
        assert section == {"checked": False,
                           "reason": f"{hint} gate is for label maps, not task 'instance'"}
