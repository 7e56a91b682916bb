"""End-to-end mode on a short clip: segrun, model-only and the plain loop, with ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from segedge.benchmarks import plots
from segedge.benchmarks.artifacts import Artifact, ArtifactStore
from segedge.benchmarks.e2e import E2EPlan, run_e2e

SIZE = (64, 96)


def test_e2e_measures_all_three_and_their_ratios(
        store: ArtifactStore, demo_labels: Artifact, demo_logits: Artifact,
        clip: tuple[Path, int], tmp_path: Path) -> None:
    video, frames = clip
    ticks: list[str] = []
    plan = E2EPlan("demo", str(video), threads=2, imgsz=SIZE, repeats=2, iters=5, warmup=1)
    records, summary = run_e2e(plan, store, isolated=False, tick=ticks.append)
    assert len(ticks) == plan.steps() == 6
    assert summary["frames"] == frames
    assert summary["dropped"] == 0
    med = summary["fps_median"]
    assert all(len(v) == 2 for v in summary["fps_runs"].values())
    assert summary["segrun_vs_model_only"] == pytest.approx(med["segrun"] / med["model-only"],
                                                            rel=1e-2)
    assert summary["segrun_vs_plain"] == pytest.approx(med["segrun"] / med["plain-loop"],
                                                       rel=1e-2)
    assert set(summary["stages_mean_ms"]["plain-loop"]) == {
        "decode", "preprocess", "infer", "postprocess", "draw", "encode"}
    assert {r.backend for r in records} == {"model-only", "segrun", "plain-loop"}
    for r in records:
        assert r.kind == "e2e" and r.ok and r.fps and r.fps > 0
        assert r.p50_ms is not None and r.p99_ms is not None and r.p50_ms <= r.p99_ms
    made = plots.stages_plot([summary], tmp_path / "stages.png")
    assert made is not None and Path(made).read_bytes()[:4] == b"\x89PNG"


def test_e2e_size_defaults_to_the_video_rounded_up(clip: tuple[Path, int]) -> None:
    plan = E2EPlan("demo", str(clip[0]), threads=1, multiple=32)
    assert plan.size() == (64, 96)  # 64x96 is already a multiple of 32
    assert E2EPlan("demo", str(clip[0]), threads=1, multiple=40).size() == (80, 120)
