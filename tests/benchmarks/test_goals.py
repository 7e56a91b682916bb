"""Issue 22's goals benchmark: interleaved runs, ratios of medians, a section kept in place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segedge.benchmarks import goals
from segedge.benchmarks.e2e import ChosenBackend

# Medians sit at different repeats (a first/last/mean value instead of the median fails).
CANNED = {"openvino-direct": [16.0, 10.0, 20.0], "model-only": [8.0, 20.0, 10.0],
          "segrun": [9.0, 18.0, 12.0], "segrun-latency": [7.0, 9.0, 8.0],
          "streams": [13.0, 11.0, 12.5], "streams-latency": [9.0, 10.0, 8.0],
          "live": [20.0, 20.0, 20.0]}
LIVE_P50 = [150.0, 140.0, 160.0]  # median 150 ms against 1000 / 10 FPS = 100 ms: 1.5


def _name(fn: Callable[[Any], dict[str, Any]], job: Any) -> str:
    """Which measurement a (function, job) pair is, read from the job itself."""
    if fn is goals.measure_openvino_direct:
        return "openvino-direct"
    if fn is goals.measure_live:
        return "live"
    if fn is goals.measure_segrun:
        return "segrun-latency" if job.mode == "latency" else "segrun"
    assert fn is goals.measure_streams
    return {"model-only": "model-only", "streams-unbatched": "streams",
            "streams-latency": "streams-latency"}[job.kind]


def _canned(calls: list[str]) -> Callable[..., dict[str, Any]]:
    seen: dict[str, int] = {}

    def call(fn: Callable[[Any], dict[str, Any]], job: Any) -> dict[str, Any]:
        name = _name(fn, job)
        calls.append(name)
        i = seen.get(name, 0)
        seen[name] = i + 1
        out: dict[str, Any] = {"fps": CANNED[name][i], "mode": "throughput",
                               "backend_reason": "openvino CPU (bf16): measured",
                               "precision": "bf16"}
        if name == "live":
            out.update(capture_to_output_ms={"p50_ms": LIVE_P50[i], "p90_ms": 200.0},
                       infer_p50_ms=95.0, frames=240, mode="latency")
        return out

    return call


def test_goals_are_ratios_of_interleaved_medians_and_the_section_is_replaced(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[str] = []
    monkeypatch.setattr(goals.isolate, "call", _canned(calls))
    monkeypatch.setattr(goals, "resolve_backend",
                        lambda *a: ChosenBackend("openvino-cpu", "bf16", "measured", "openvino"))
    summary = goals.run_goals(goals.GoalsPlan("a.onnx", "v.mp4", 2, repeats=3,
                                              ceiling=False))
    assert calls == list(CANNED) * 3  # every measurement once per repeat, same order
    assert summary["fps_median"]["segrun"] == 12.0
    assert summary["segrun_vs_direct"] == 0.75  # 12 / 16
    assert summary["streams_vs_model"] == 1.25  # 12.5 / 10
    assert summary["streams_latency_vs_model"] == 0.9
    assert summary["model_only_ms"] == 100.0 and summary["live_p50_ms"] == 150.0
    assert summary["live_p50_vs_model"] == 1.5
    assert summary["per_repeat"][0] == {"segrun_vs_direct": 0.5625, "streams_vs_model": 1.625,
                                        "live_p50_vs_model": 1.2}
    section = goals.markdown(summary)
    assert "(a) default export + segrun / OpenVINO direct: **0.75** (target 1.0: NOT met)" \
        in section
    assert "**1.25** (target 1.15: met)" in section and "**1.5** (target <= 1.5: met)" in section
    results = tmp_path / "RESULTS.md"
    results.write_text("# segedge benchmarks\n\nkept\n")
    goals.replace_section(results, section)
    goals.replace_section(results, section.replace("0.75", "0.80"))
    text = results.read_text()
    assert text.startswith("# segedge benchmarks\n\nkept\n\n" + goals.BEGIN)
    assert text.count(goals.BEGIN) == 1 and "**0.80**" in text and "**0.75**" not in text
