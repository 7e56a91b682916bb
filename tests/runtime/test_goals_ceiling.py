"""Goal (b)'s ceiling (issue 22): what N streams can reach against one stream's model-only
on a CPU, from measured per-frame costs; the line goals.py writes into RESULTS.md."""

from __future__ import annotations

from typing import Any

import pytest

from segedge.benchmarks import goals
from segedge.benchmarks.ceiling import ceiling_of
from segedge.benchmarks.stats import ratio

# (CPU ms, wall ms) per frame; 2 cores; the model fills both (CPU = 2 x wall).
COSTS: dict[str, Any] = {"cores": 2, "provider": "CPU (bf16)", "throughput_slots": 2,
                         "decode": [4.0, 5.0], "preprocess": [3.0, 3.0],
                         "postprocess_draw": [3.0, 4.0], "encode": [5.0, 6.0],
                         "model_latency": [70.0, 36.0], "model_throughput": [72.0, 35.0]}


def test_the_ceiling_is_the_cores_shared_by_the_model_and_the_rest() -> None:
    c = ceiling_of(COSTS)
    assert c["other_cpu_ms"] == 15.0  # decode + preprocess + postprocess/draw + encode
    assert c["best_model"] == "model_throughput" and c["best_model_wall_ms"] == 35.0
    assert c["best_model_vs_model_only"] == round(36 / 35, 3)
    # min(1000 / 35 (the model alone), 2 x 1000 / (72 + 15) (the cores)) against 1000 / 36
    assert c["ceiling_fps"] == round(2000 / 87, 2)
    assert c["ceiling_vs_model_only"] == round((2000 / 87) / (1000 / 36), 3)


def test_a_cheap_pipeline_is_capped_by_the_models_best_throughput() -> None:
    cheap = {**COSTS, "decode": [0.0, 0.0], "preprocess": [0.0, 0.0],
             "postprocess_draw": [0.0, 0.0], "encode": [0.0, 0.0],
             "model_batched": [40.0, 25.0]}
    c = ceiling_of(cheap)
    assert c["best_model"] == "model_batched"
    # the cores would allow 2000 / 40 = 50 FPS; the batched model gives 40 FPS
    assert c["ceiling_fps"] == 40.0 and c["ceiling_vs_model_only"] == pytest.approx(1.44)


def _runs(walls: list[float]) -> dict[str, list[dict[str, Any]]]:
    """Three repeats; the ceiling's model wall per repeat from ``walls`` (so its FPS moves
    like the machine's load), segrun and the streams in throughput mode with their
    process CPU per frame over the run."""
    ceilings = [{**COSTS, "model_latency": [70.0, w + 1.0], "model_throughput": [72.0, w]}
                for w in walls]
    return {"ceiling": ceilings,
            "openvino-direct": [{"fps": f} for f in (20.0, 25.0, 30.0)],
            "model-only": [{"fps": f} for f in (21.0, 26.0, 31.0)],
            "segrun": [{"fps": f, "mode": "throughput", "run_cpu_ms_per_frame": cpu}
                       for f, cpu in ((18.0, 90.0), (19.0, 91.0), (20.0, 89.0))],
            "streams": [{"fps": f, "mode": "throughput", "run_cpu_ms_per_frame": None}
                        for f in (17.0, 18.0, 19.0)]}


def test_each_repeats_ceiling_is_set_against_the_same_repeats_denominators() -> None:
    c = goals.ceiling_summary(_runs([35.0, 40.0, 60.0]))
    fps = [min(1000 / w, 2000 / 87) for w in (35.0, 40.0, 60.0)]  # 22.99, 22.99, 16.67
    per = c["per_repeat"]
    assert [p["a_fps"] for p in per] == [round(f, 2) for f in fps]
    assert [p["a_bound"] for p in per] == [ratio(round(f, 2), d) for f, d in
                                           zip(fps, (20.0, 25.0, 30.0), strict=True)]
    assert [p["b_bound"] for p in per] == [ratio(round(f, 2), d) for f, d in
                                           zip(fps, (21.0, 26.0, 31.0), strict=True)]
    # medians of the per-repeat ratios, not a ratio of medians taken at different times
    assert c["bounds"]["a_bound"] == round(sorted(p["a_bound"] for p in per)[1], 3)
    assert c["bounds"]["segrun_of_ceiling"] == round(
        sorted(ratio(s, round(f, 2)) or 0 for s, f in zip((18.0, 19.0, 20.0), fps,
                                                           strict=True))[1], 3)
    # outside the model: the run's process CPU less the model's in the run's mode
    assert [p["segrun_outside_cpu_ms"] for p in per] == [18.0, 19.0, 17.0]
    assert c["bounds"]["segrun_outside_cpu_ms"] == 18.0
    assert c["bounds"]["parts_cpu_ms"] == 15.0
    assert c["bounds"]["streams_outside_cpu_ms"] is None  # not reported: not invented
    assert c["costs"]["model_throughput"] == [72.0, 40.0]  # each cost's median for the table


def test_one_file_is_not_bounded_by_a_batched_artifact_it_cannot_use() -> None:
    runs = _runs([35.0, 35.0, 35.0])
    for c in runs["ceiling"]:
        c["model_batched"] = [40.0, 20.0]  # 50 FPS alone; the cores allow 2000 / 55
    c = goals.ceiling_summary(runs)
    assert c["bounds"]["b_fps"] == round(2000 / 55, 2)
    assert c["bounds"]["a_fps"] == round(2000 / 87, 2)


def test_the_goals_section_states_the_ceilings() -> None:
    ceiling = goals.ceiling_summary(_runs([35.0, 35.0, 35.0]))
    line = goals.ceiling_line(ceiling, 4)
    assert line.startswith("- (b) ceiling on this CPU (2 cores, CPU (bf16)): outside the model "
                           "a stream costs 15.0 CPU ms per frame (decode 4.0, preprocess 3.0, "
                           "postprocess + draw 3.0, encode 5.0)")
    b = ceiling["bounds"]
    assert f"4 streams reach at most {b['b_fps']} FPS = **{b['b_bound']}x** one stream's " \
           "model-only" in line
    a = goals.ceiling_a_line({"ceiling": ceiling})
    assert f"at most {b['a_fps']} FPS = **{b['a_bound']}x** OpenVINO direct" in a
    assert f"segrun reached {b['segrun_of_ceiling']} of it, spending 18.0 CPU ms" in a


def test_the_ceiling_is_measured_in_every_repeat_between_the_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    def call(fn: Any, job: Any) -> dict[str, Any]:
        if fn is goals.measure_ceiling:
            order.append("ceiling")
            assert job.batched_artifact == "a_b4.onnx" and job.backend == "auto"
            return dict(COSTS)
        order.append("run")
        out: dict[str, Any] = {"fps": 20.0, "mode": "throughput", "precision": "bf16",
                               "run_cpu_ms_per_frame": 90.0}
        if fn is goals.measure_live:
            out.update(capture_to_output_ms={"p50_ms": 50.0, "p90_ms": 60.0},
                       infer_p50_ms=40.0, frames=100, mode="latency")
        return out

    monkeypatch.setattr(goals.isolate, "call", call)
    monkeypatch.setattr(goals, "resolve_backend", lambda *a: type("C", (), {"reason": "r"}))
    summary = goals.run_goals(goals.GoalsPlan("a.onnx", "v.mp4", 2, repeats=2,
                                              batched="a_b4.onnx"))
    assert order == (["run"] * 7 + ["ceiling"]) * 2
    assert len(summary["ceiling"]["per_repeat"]) == 2
    assert "(a) ceiling on this CPU" in goals.markdown(summary)
