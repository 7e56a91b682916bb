"""Goal (b)'s ceiling (issue 22): what N streams can reach against one stream's model-only
on a CPU, from measured per-frame costs; the line goals.py writes into RESULTS.md."""

from __future__ import annotations

from typing import Any

import pytest

from segedge.benchmarks import goals
from segedge.benchmarks.bench_streams import ceiling_of

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


def test_the_goals_section_states_the_ceiling() -> None:
    ceiling = {"costs": COSTS, **ceiling_of(COSTS)}
    line = goals.ceiling_line(ceiling, 4)
    assert line.startswith("- (b) ceiling on this CPU (2 cores, CPU (bf16)): outside the model "
                           "a stream costs 15.0 CPU ms per frame (decode 4.0, preprocess 3.0, "
                           "postprocess + draw 3.0, encode 5.0)")
    assert f"4 streams reach at most {ceiling['ceiling_fps']} FPS = " \
           f"**{ceiling['ceiling_vs_model_only']}x** one stream's model-only" in line


def test_the_ceiling_takes_each_cost_median_over_fresh_processes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    walls = iter([40.0, 36.0, 30.0])  # one call at a time: median 36 (not first/last/mean)
    jobs: list[Any] = []

    def call(fn: Any, job: Any) -> dict[str, Any]:
        assert fn is goals.measure_ceiling
        jobs.append(job)
        return {**COSTS, "model_latency": [70.0, next(walls)]}

    monkeypatch.setattr(goals.isolate, "call", call)
    plan = goals.GoalsPlan("a.onnx", "v.mp4", 2, repeats=3, batched="a_b4.onnx")
    c = goals.run_ceiling(plan)
    assert len(jobs) == 3 and all(j.batched_artifact == "a_b4.onnx" for j in jobs)
    assert all(j.backend == "auto" for j in jobs)  # the backend segrun itself picks
    assert c["costs"]["model_latency"] == [70.0, 36.0]
    assert c["costs"]["encode"] == [5.0, 6.0] and "model_batched" not in c["costs"]
    assert c["ceiling_vs_model_only"] == ceiling_of(COSTS)["ceiling_vs_model_only"]
