"""Skips are decided up front and always carry a reason; nothing is exported for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from segedge.benchmarks import backends
from segedge.benchmarks.artifacts import Artifact
from segedge.benchmarks.cells import Cell
from segedge.benchmarks.plan import ModelPlan, Planner
from segedge.benchmarks.suite import Suite, SuiteConfig
from segedge.runtime.errors import InputError

SIZE = (64, 96)


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(InputError, match="ort-cpu"):
        backends.get("ort-gpu")


@pytest.mark.parametrize(("backend", "precision", "reason"), [
    ("pytorch-cpu", "int8", "not a deployment path"),
    ("pytorch-cpu", "fp16", "emulated"),
    ("plain-ort", "fp16", "fp32 only"),
    ("ort-cpu", "int8", "calibration frames"),
])
def test_precision_skips_say_why(backend: str, precision: str, reason: str) -> None:
    decision = Planner().decide(ModelPlan("demo", sizes=(SIZE,)),
                                Cell("demo", backend, precision, SIZE))
    assert decision.needs is None
    assert decision.skip is not None and reason in decision.skip


def test_given_artifact_skips_what_it_cannot_be(demo_labels: Artifact) -> None:
    plan = ModelPlan(str(demo_labels.path))
    planner = Planner()
    assert plan.resolved_size(None) == SIZE  # from the artifact's metadata
    torch_cell = planner.decide(plan, Cell(plan.model, "pytorch-cpu", "fp32", SIZE))
    assert torch_cell.skip and "zoo model" in torch_cell.skip
    fp16 = planner.decide(plan, Cell(plan.model, "ort-cpu", "fp16", SIZE))
    assert fp16.skip == "the artifact is fp32, not fp16"
    plain = planner.decide(plan, Cell(plan.model, "plain-ort", "fp32", SIZE))
    assert plain.skip and "logits" in plain.skip
    ok = planner.decide(plan, Cell(plan.model, "ort-cpu", "fp32", SIZE))
    assert ok.skip is None and ok.needs is not None


def test_backends_this_machine_lacks_become_skipped_records(tmp_path: Path) -> None:
    gpu_backends = ("pytorch-cuda", "ort-cuda", "ort-tensorrt", "tensorrt")
    planner = Planner()
    absent = [b for b in gpu_backends if planner.probe(b)]
    if not absent:
        pytest.skip("every GPU backend is usable on this machine")
    cfg = SuiteConfig(plans=(ModelPlan("demo", sizes=(SIZE,), backends=tuple(absent),
                                       precisions=("fp32",)),),
                      workdir=tmp_path, isolated=False, progress=False)
    result = Suite(cfg).run()
    assert [r.backend for r in result.records] == absent
    for rec in result.records:
        assert rec.status == "skipped"
        assert len(rec.reason) > 10, rec
        assert rec.p50_ms is None and rec.fps is None
    assert not list((tmp_path / "artifacts").glob("*.onnx"))  # nothing exported for skips
