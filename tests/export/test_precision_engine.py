"""TensorRT wiring of segexport, without TensorRT: what reaches the builder, and gates."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from segedge.export.config import ExportConfig
from segedge.export.pipeline import export
from segedge.export.tensorrt import build as trt_build
from segedge.runtime.errors import VerificationError

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"


def _tiny(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return export(ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96),
                               output=tmp_path / "tiny.onnx", quiet=True, **kw))


def test_engine_options_reach_the_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    calls: list[tuple[Path, Path, trt_build.EngineConfig]] = []

    def fake_build(onnx_path: Path, plan: Path, config: trt_build.EngineConfig,
                   meta: object = None) -> SimpleNamespace:
        assert Path(onnx_path).is_file()  # built from the published, verified ONNX
        calls.append((Path(onnx_path), Path(plan), config))
        return SimpleNamespace(plan=plan, reused=False, warnings=(),
                               sidecar=SimpleNamespace(precision="fp32", strongly_typed=True))

    monkeypatch.setattr(trt_build, "tensorrt_available", lambda device_id=0: (True, ""))
    monkeypatch.setattr(trt_build, "build_engine", fake_build)
    report = _tiny(tmp_path, engine=True, workspace_mib=256, dla_core=1,
                   timing_cache=tmp_path / "timing.cache")
    (onnx_path, plan, config), = calls
    assert onnx_path == tmp_path / "tiny.onnx" and plan == tmp_path / "tiny.plan"
    assert config.workspace == 256 << 20 and config.dla_core == 1
    assert config.timing_cache == tmp_path / "timing.cache"
    assert config.min_hw is None  # static ONNX: the profile comes from the metadata
    assert report["engine"]["plan"] == str(tmp_path / "tiny.plan")


def test_no_engine_for_fp32_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trt_build, "build_engine", lambda *a, **k: pytest.fail("built"))
    monkeypatch.setattr(trt_build, "tensorrt_available", lambda device_id=0: (True, ""))
    assert _tiny(tmp_path)["engine"] is None


def test_failed_fp16_gate_publishes_nothing(tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="FP16 gate"):
        _tiny(tmp_path, precision="fp16", fp16_min_agreement=100.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.failed.report.json"]
