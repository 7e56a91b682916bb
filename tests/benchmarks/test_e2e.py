"""End-to-end mode on a short clip: segrun (throughput and latency mode), model-only, the
plain loop and a live synthetic source, with ratios."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segedge.benchmarks import e2e, plots, report
from segedge.benchmarks.artifacts import Artifact, ArtifactStore
from segedge.benchmarks.e2e import E2EPlan, run_e2e

SIZE = (64, 96)


def test_e2e_measures_all_three_and_their_ratios(
        store: ArtifactStore, demo_labels: Artifact, demo_logits: Artifact,
        clip: tuple[Path, int], tmp_path: Path) -> None:
    video, frames = clip
    ticks: list[str] = []
    plan = E2EPlan("demo", str(video), threads=2, imgsz=SIZE, repeats=2, iters=5, warmup=1,
                   live_frames=20, live_fps=40.0)
    records, summary = run_e2e(plan, store, isolated=False, tick=ticks.append)
    assert len(ticks) == plan.steps() == 10
    assert summary["segrun_modes"] == {"segrun": "throughput", "segrun-latency": "latency"}
    assert summary["throughput_vs_latency"] == pytest.approx(
        summary["fps_median"]["segrun"] / summary["fps_median"]["segrun-latency"], rel=1e-2)
    live = summary["live"]
    assert live["mode"] == "latency" and all(1 <= f <= 20 for f in live["frames"])
    assert 0 < live["p50_ms"] <= live["p90_ms"]
    assert live["p50_vs_model"] == pytest.approx(live["p50_ms"] / live["model_only_ms"],
                                                 rel=1e-2)
    assert summary["frames"] == frames
    assert summary["dropped"] == 0
    med = summary["fps_median"]
    assert all(len(v) == 2 for v in summary["fps_runs"].values())
    assert summary["segrun_vs_model_only"] == pytest.approx(med["segrun"] / med["model-only"],
                                                            rel=1e-2)
    assert summary["segrun_vs_plain"] == pytest.approx(med["segrun"] / med["plain-loop"],
                                                       rel=1e-2)
    # Independently of the summary's own medians: each record keeps every repeat's FPS, and
    # statistics.median over those must give the summary's ratios (a ratio taken the wrong
    # way round, from one repeat, or from the wrong pair of measurements fails here).
    fps_runs = {r.backend: r.extra["fps_runs"] for r in records}
    assert fps_runs == summary["fps_runs"]
    mine = {name: statistics.median(values) for name, values in fps_runs.items()}
    assert summary["segrun_vs_model_only"] == pytest.approx(
        mine["segrun"] / mine["model-only"], rel=1e-2)
    assert summary["segrun_vs_plain"] == pytest.approx(mine["segrun"] / mine["plain-loop"],
                                                       rel=1e-2)
    assert set(summary["stages_mean_ms"]["plain-loop"]) == {
        "decode", "preprocess", "infer", "postprocess", "draw", "encode"}
    assert {r.backend for r in records} == {"model-only", "segrun", "segrun-latency",
                                            "plain-loop", "live"}
    for r in records:
        assert r.kind == "e2e" and r.ok and r.fps and r.fps > 0
        assert r.p50_ms is not None and r.p99_ms is not None and r.p50_ms <= r.p99_ms
    made = plots.stages_plot([summary], tmp_path / "stages.png")
    assert made is not None and Path(made).read_bytes()[:4] == b"\x89PNG"


def test_e2e_size_defaults_to_the_video_rounded_up(clip: tuple[Path, int]) -> None:
    plan = E2EPlan("demo", str(clip[0]), threads=1, multiple=32)
    assert plan.size() == (64, 96)  # 64x96 is already a multiple of 32
    assert E2EPlan("demo", str(clip[0]), threads=1, multiple=40).size() == (80, 120)


# Canned FPS per repeat, chosen so that the median of each sits at a different repeat and
# differs from the mean, the first and the last value: a summary built from any of those
# instead of the median, or with a ratio inverted, misses the hand-computed values below.
CANNED_FPS = {"model-only": [10.0, 30.0, 40.0], "segrun": [27.0, 9.0, 12.0],
              "segrun-latency": [8.0, 6.0, 7.0], "plain-loop": [5.0, 6.0, 4.0],
              "live": [20.0, 25.0, 22.0]}
LIVE_P50_MS = [50.0, 40.0, 60.0]  # median 50 ms against 1000 / 30 ms of model: 1.5
# By hand: medians 30, 12 and 5 FPS; 12 / 30 = 0.4 and 12 / 5 = 2.4.
EXPECTED_VS_MODEL, EXPECTED_VS_PLAIN = 0.4, 2.4
EXPECTED_PER_REPEAT = [{"segrun_vs_model_only": 2.7, "segrun_vs_plain": 5.4},
                       {"segrun_vs_model_only": 0.3, "segrun_vs_plain": 1.5},
                       {"segrun_vs_model_only": 0.3, "segrun_vs_plain": 3.0}]


def _tail(ms: float) -> dict[str, float]:
    return {"p50_ms": ms, "p90_ms": ms, "p99_ms": ms, "max_ms": ms, "mean_ms": ms}


def _canned_call(calls: list[str]) -> Callable[..., dict[str, Any]]:
    """Stands in for isolate.call: returns the next canned measurement of each kind."""
    kinds = {e2e.measure_model: "model-only", e2e.measure_segrun: "segrun",
             e2e.measure_plain_loop: "plain-loop", e2e.measure_live: "live"}
    seen: dict[str, int] = {}

    def call(fn: Callable[[Any], dict[str, Any]], job: Any, isolated: bool) -> dict[str, Any]:
        kind = kinds[fn]
        if kind == "segrun" and job.mode == "latency":
            kind = "segrun-latency"
        calls.append(kind)
        fps = CANNED_FPS[kind][seen.get(kind, 0)]
        seen[kind] = seen.get(kind, 0) + 1
        out: dict[str, Any] = {"fps": fps, "frames": 12, "dropped": 0,
                               "cpu_ms_per_iter": 1.0, "cpu_ms_per_frame": 1.0, "load1": 0.5,
                               **_tail(1000.0 / fps)}
        if kind in ("segrun", "segrun-latency"):
            out["stages"] = {"latency": _tail(1000.0 / fps), "read": {"mean_ms": 1.0}}
            out["mode"] = "latency" if kind == "segrun-latency" else "throughput"
        elif kind == "live":
            out["capture_to_output_ms"] = _tail(LIVE_P50_MS[seen[kind] - 1])
            out.update(infer_p50_ms=30.0, mode="latency")
        elif kind == "plain-loop":
            out["stages"] = {"total": _tail(1000.0 / fps), "infer": {"mean_ms": 2.0}}
        return out

    return call


def test_e2e_ratios_are_medians_of_the_repeats(store: ArtifactStore, demo_labels: Artifact,
                                               demo_logits: Artifact, clip: tuple[Path, int],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(e2e.isolate, "call", _canned_call(calls))
    plan = E2EPlan("demo", str(clip[0]), threads=2, imgsz=SIZE, repeats=3)
    records, summary = run_e2e(plan, store, isolated=False, tick=lambda _m: None)
    assert calls == ["model-only", "segrun", "segrun-latency", "plain-loop", "live"] * 3
    assert summary["fps_median"] == {"model-only": 30.0, "segrun": 12.0,
                                     "segrun-latency": 7.0, "plain-loop": 5.0, "live": 22.0}
    assert summary["throughput_vs_latency"] == 1.714  # 12 / 7 to 4 significant digits
    assert summary["live"]["p50_ms"] == 50.0 and summary["live"]["p50_vs_model"] == 1.5
    text = "\n".join(report.e2e_lines([summary]))
    assert "| segrun (decode → overlay video; throughput mode) | 12.00 |" in text
    assert "| segrun --mode latency (one inference call at a time) | 7.00 |" in text
    assert "p50 / model = 1.50 (target <= 1.5)" in text
    assert summary["segrun_vs_model_only"] == EXPECTED_VS_MODEL
    assert summary["segrun_vs_plain"] == EXPECTED_VS_PLAIN
    assert summary["per_repeat"] == EXPECTED_PER_REPEAT
    assert summary["meets_targets"] is False  # 0.4 < the 0.85 target
    assert {r.backend: r.fps for r in records} == {"model-only": 30.0, "segrun": 12.0,
                                                   "segrun-latency": 7.0, "plain-loop": 5.0,
                                                   "live": 22.0}
    assert summary["stages_mean_ms"] == {"segrun": {"decode": 1.0},
                                         "plain-loop": {"infer": 2.0}}
