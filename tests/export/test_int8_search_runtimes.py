"""The INT8 budget search measures on every runtime the gate checks (the worst of them).

ONNX Runtime emulates Q/DQ where OpenVINO fuses real INT8 kernels, so a keep-in-float set
that meets 99 % on one can miss on the other, and the gate (ladder.per_runtime) checks
both.  Two fake runtimes (no graph runs): "ref" (the reference) meets the budget with one
unit kept in float, "fused" only with five; each has its own FP32 labels.  The graphs are
real files whose text names what they stand for (Int8Run.measure remembers a graph by its
bytes, so each stand-in has its own).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from segedge.export.evaluation.evaluate import LabelledFrames
from segedge.export.precision import int8_search, modes, runtimes
from segedge.export.precision.modes.int8_steps import Int8Run
from segedge.export.precision.sensitivity import Budget, Measure, search, worst
from segedge.runtime.errors import ArtifactError

SIDE = 10  # one 10x10 frame: one flipped pixel is 1 point of agreement
UNITS = [f"u{i}" for i in range(10)]
# pixels a candidate keeping k units in float flips on each runtime (against its own FP32)
FLIPS = {"ref": lambda k: max(0, 2 - k), "fused": lambda k: max(0, 6 - k)}


class FakeRuntimes:
    """run_labels for the stand-in graphs: files holding 'fp32', 'k/<kept>' or
    'only/<unit>'; `calls` records (what the file holds, runtime)."""

    def __init__(self, root: Path, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.root, self.fail_on = root, fail_on

    def graph(self, name: str) -> Path:
        """The stand-in graph `name` (written again with the same bytes when asked again)."""
        path = self.root / f"{name.replace('/', '_')}.onnx"
        path.write_text(name)
        return path

    def fp32(self, rt: str) -> np.ndarray:
        labels = np.zeros((SIDE, SIDE), np.int64)
        if rt == "fused":  # its own FP32 differs from the reference's in 3 pixels
            labels[0, :3] = 1
        return labels

    def run_labels(self, path: Path, frames: LabelledFrames, meta: Any,
                   runtime: str | None = None) -> list[np.ndarray]:
        rt = runtime or "ref"
        name = path.read_text()
        self.calls.append((name, rt))
        if name == self.fail_on and rt == "fused":
            raise ArtifactError(f"{path.name}: OpenVINO cannot compile it for CPU: boom")
        labels = self.fp32(rt)
        kind, _, arg = name.partition("/")
        flips = FLIPS[rt](int(arg)) if kind == "k" else int(kind == "only")
        labels[SIDE - 1, :flips] = 1 - labels[SIDE - 1, :flips]
        return [labels for _ in frames.tensors]


def _run(monkeypatch: pytest.MonkeyPatch, fake: FakeRuntimes,
         probe: dict[str, str | None]) -> Int8Run:
    monkeypatch.setattr(runtimes, "available", lambda: ("ref", "fused"))
    monkeypatch.setattr(runtimes, "reference", lambda: "ref")
    monkeypatch.setattr(runtimes, "probe", lambda path, rt: probe.get(rt))
    monkeypatch.setattr(runtimes, "run_labels", fake.run_labels)
    frames = LabelledFrames([np.zeros((1, 3, SIDE, SIDE), np.uint8)], [None], None,  # type: ignore[list-item]
                            "fake frames")
    parts = int8_search.split_held(frames)
    req = SimpleNamespace(fp32=fake.graph("fp32"), meta=SimpleNamespace(classes=("a", "b")),
                          cfg=SimpleNamespace(precision=SimpleNamespace(ignore_index=None)))
    ref = runtimes.run_labels(req.fp32, parts.selection, req.meta)
    return Int8Run(req, fake.graph("pre"), frames, parts, ref, None,  # type: ignore[arg-type]
                   time.monotonic() + 60)


def _keep_search(run: Int8Run, fake: FakeRuntimes) -> Any:
    def excluding(kept: tuple[str, ...]) -> Path:
        return fake.graph(f"k/{len(kept)}")

    full = fake.graph("k/0")
    run.pick_runtimes(full)
    return search(full, run.measure(full), Budget(min_agreement=99.0), UNITS,
                  only=lambda unit: fake.graph(f"only/{unit}"), excluding=excluding,
                  measure=run.measure, agreement_of=run.agreement_of)


def test_the_keep_search_goes_on_until_every_runtime_meets_the_budget(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeRuntimes(tmp_path)
    run = _run(monkeypatch, fake, {})
    found = _keep_search(run, fake)
    # the reference alone meets 99 % with one unit kept; "fused" needs five
    assert found.met and len(found.kept_fp32) == 5, found.trials
    assert [len(t["kept_fp32"]) for t in found.trials] == [0, 1, 2, 3, 4, 5]
    assert found.measure == Measure(99.0, None, None, "fused")  # 6 - 5 = 1 pixel of 100
    assert found.trials[1]["agreement"] == 95.0 and found.trials[1]["worst_on"] == "fused"
    assert run.search_info() == {"measured_on": ["ref", "fused"], "rule": "worst of them, "
                                 "each against its own FP32", "left_out": {}}
    # each runtime's FP32 labels are computed once (the reference's by open_run)
    assert fake.calls.count(("fp32", "fused")) == 1
    assert fake.calls.count(("fp32", "ref")) == 1
    # the ranking (one run per unit) stays on the reference runtime only
    assert {rt for name, rt in fake.calls if name.startswith("only/")} == {"ref"}
    assert sum(name.startswith("only/") for name, _ in fake.calls) == len(UNITS)
    # a graph measured before (the same bytes, written again) runs on no runtime again
    calls = len(fake.calls)
    assert run.measure(fake.graph("k/5")) == found.measure and len(fake.calls) == calls
    # per-frame figures of the deciding (worst) runtime, so the calibration search can pair
    # two candidates frame by frame (int8_search.paired_gain): one frame here, 94 % on fused
    assert run.measure(fake.graph("k/0")).per_frame == (94.0,)


def test_a_runtime_whose_compiler_fails_the_probe_is_left_out_and_said(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeRuntimes(tmp_path)
    run = _run(monkeypatch, fake, {"fused": "openvino compile probe: child died (SIGSEGV)"})
    found = _keep_search(run, fake)
    assert found.met and len(found.kept_fp32) == 1  # measured on the reference only
    assert not [c for c in fake.calls if c[1] == "fused"]  # never run in-process
    info = run.search_info()
    assert info["measured_on"] == ["ref"]
    assert info["left_out"] == {"fused": "openvino compile probe: child died (SIGSEGV)"}
    assert "worst_on" not in found.trials[-1]  # one runtime: no "worst of" to name
    section = {"frames": 1, "argmax_agreement": 99.0, "search_runtimes": info,
               "cpu_latency_ms": {"fp32": 2.0, "int8": 1.0}}
    assert modes.get("int8").report_lines(section)[1:] == [
        "INT8 budget searched on ref only: fused left out (openvino compile probe: child "
        "died (SIGSEGV))"]


def test_a_runtime_failing_on_a_candidate_leaves_the_search_with_the_reason(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeRuntimes(tmp_path, fail_on="k/2")
    run = _run(monkeypatch, fake, {})
    found = _keep_search(run, fake)
    # "fused" measured k = 0, 1, then failed on k = 2: the reference decides from there
    assert found.met and len(found.kept_fp32) == 2
    assert run.search_on == ("ref",)
    assert run.left_out == {"fused": "failed on k_2.onnx: k_2.onnx: OpenVINO cannot compile "
                                     "it for CPU: boom"}


def test_worst_takes_the_lowest_agreement_and_the_largest_drop() -> None:
    a = Measure(99.5, 60.0, 61.0, "ref")  # drop 1.0
    b = Measure(98.0, 60.5, 60.7, "fused")  # drop 0.2, lower agreement
    got = worst([a, b])
    assert got.agreement == 98.0 and got.miou_drop == 1.0 and got.worst_on == "ref"
    assert not Budget(max_miou_drop=0.5).met(got)  # a meets nothing, b alone would
    assert worst([Measure(99.2), Measure(98.7)]) == Measure(98.7)
    with pytest.raises(ValueError, match="expected at least one measure"):
        worst([])


def test_a_missed_budget_names_the_runtimes_its_figure_is_the_worst_of() -> None:
    from segedge.export.precision.modes.int8_finish import _on

    assert _on(SimpleNamespace(search_on=("ref", "fused"))) == "; worst of ref, fused"  # type: ignore[arg-type]
    assert _on(SimpleNamespace(search_on=("ref",))) == ""  # type: ignore[arg-type]
