"""TensorRT wiring of segexport, through the real build_engine against the TensorRT/CUDA fakes:
what reaches the builder, what is written, and gates."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segedge.export.config import EngineOptions, ExportConfig, PrecisionOptions
from segedge.export.pipeline import export
from segedge.runtime.errors import VerificationError
from segedge.runtime.sidecar import read_sidecar
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"


def _tiny(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return export(ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96),
                               output=tmp_path / "tiny.onnx", quiet=True, **kw))


def test_engine_options_reach_the_builder(tmp_path: Path,
                                          fake_gpu: Callable[..., FakeGpu]) -> None:  # noqa: F811
    gpu = fake_gpu(generation=10)
    report = _tiny(tmp_path, engine=EngineOptions(build=True, workspace_mib=256,
                                                  timing_cache=tmp_path / "timing.cache"))
    plan = tmp_path / "tiny.plan"
    assert report["engine"]["plan"] == str(plan)
    # built from the published, verified ONNX, with the options given
    assert ("parse_from_file", str(tmp_path / "tiny.onnx")) in gpu.trt.calls
    assert ("set_memory_pool_limit", "WORKSPACE", 256 << 20) in gpu.trt.calls
    assert ("set_timing_cache", False) in gpu.trt.calls
    assert (tmp_path / "timing.cache").read_bytes().startswith(b"FAKETC")
    assert "add_optimization_profile" not in gpu.trt.names()  # static ONNX: no profile
    sidecar = read_sidecar(plan)
    assert sidecar.precision == "fp32" and sidecar.strongly_typed is True
    assert sidecar.profile == {"input": ((1, 64, 96, 3),) * 3}  # from the metadata
    assert sidecar.extra["build"]["workspace"] == 256 << 20
    for path in (plan, tmp_path / "tiny.plan.json"):  # a service account reads them
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert gpu.trt.violations == [] and gpu.cuda.violations == []


def test_fp16_on_dla_gets_the_weak_flags_tensorrt_10_needs(
        tmp_path: Path, fake_gpu: Callable[..., FakeGpu]) -> None:  # noqa: F811
    gpu = fake_gpu(generation=10, num_dla_cores=2)
    report = _tiny(tmp_path, precision=PrecisionOptions(mode="fp16"),
                   engine=EngineOptions(dla_core=1))
    plan = tmp_path / "tiny.plan"
    assert report["engine"]["plan"] == str(plan) and report["engine"]["precision"] == "fp16"
    sidecar = read_sidecar(plan)
    assert sidecar.precision == "fp16" and sidecar.dla_core == 1
    assert sidecar.strongly_typed is False and sidecar.builder_flags == ("FP16",)
    assert [c for c in gpu.trt.calls if c[0] == "set_flag"] == [
        ("set_flag", "FP16"), ("set_flag", "GPU_FALLBACK")]
    assert gpu.trt.violations == []


def test_no_engine_for_fp32_unless_asked(tmp_path: Path,
                                         fake_gpu: Callable[..., FakeGpu]) -> None:  # noqa: F811
    gpu = fake_gpu(generation=10)  # TensorRT usable: only the request decides
    assert _tiny(tmp_path)["engine"] is None
    assert gpu.trt.calls == [] and not (tmp_path / "tiny.plan").exists()


def test_failed_fp16_gate_publishes_nothing(tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="FP16 gate"):
        _tiny(tmp_path, precision=PrecisionOptions(mode="fp16", fp16_min_agreement=100.01))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.failed.report.json"]
