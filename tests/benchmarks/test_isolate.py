"""Cells measured in a fresh process: skips pass through, crashes fail one cell only."""

from __future__ import annotations

import pytest

from segedge.benchmarks import isolate
from segedge.benchmarks.artifacts import Artifact
from segedge.benchmarks.jobs import ModelJob, SkipCell
from segedge.benchmarks.measure import measure_model

SIZE = (64, 96)


def _job(artifact: str | None, backend: str = "ort-cpu") -> ModelJob:
    return ModelJob(backend=backend, precision="fp32", model="demo", artifact=artifact,
                    imgsz=SIZE, batch=1, iters=4, warmup=1, threads=1)


def test_isolated_cell_reports_its_own_peak_memory(demo_labels: Artifact) -> None:
    import torch  # noqa: F401 - the parent is big; the child must not inherit its peak

    out = isolate.call(measure_model, _job(str(demo_labels.path)))
    assert out["iters"] == 4
    assert out["p50_ms"] <= out["p99_ms"] <= out["max_ms"]
    assert out["provider"] == "CPUExecutionProvider"
    assert 10 < out["peak_rss_mib"] < 400, out["peak_rss_mib"]


def test_skip_in_the_child_arrives_as_a_skip() -> None:
    with pytest.raises(SkipCell, match="no ONNX artifact"):
        isolate.call(measure_model, _job(None), isolated=False)


def test_an_error_in_the_child_fails_the_cell_with_one_line(tmp_path: object) -> None:
    with pytest.raises(isolate.CellFailed, match="ArtifactError"):
        isolate.call(measure_model, _job("/nonexistent/model.onnx"))
