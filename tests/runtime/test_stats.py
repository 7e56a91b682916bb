"""Latency recorders: exact percentiles, constant memory, atomic JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segedge.runtime.errors import InputError
from segedge.runtime.stats import FpsMeter, LatencyRecorder, RunStats, StatsRecorder


def test_percentiles_match_numpy() -> None:
    values = np.random.default_rng(0).exponential(10.0, 500)
    rec = LatencyRecorder()
    for v in values:
        rec.add(float(v))
    summary = rec.summary()
    assert summary.count == 500
    assert summary.p50_ms == pytest.approx(np.percentile(values, 50))
    assert summary.p90_ms == pytest.approx(np.percentile(values, 90))
    assert summary.p99_ms == pytest.approx(np.percentile(values, 99))
    assert summary.mean_ms == pytest.approx(values.mean())


def test_ring_buffer_keeps_the_recent_window() -> None:
    rec = LatencyRecorder(capacity=100)
    for _ in range(1000):
        rec.add(1.0)
    for _ in range(100):
        rec.add(5.0)
    summary = rec.summary()
    assert summary.count == 1100 and summary.p50_ms == 5.0
    assert rec._buf.size == 100  # constant memory


def test_empty_recorder() -> None:
    assert LatencyRecorder().summary().p99_ms == 0.0


def test_fps_meter() -> None:
    meter = FpsMeter(window=10)
    for i in range(30):
        meter.tick(i * 0.04)
    assert meter.fps == pytest.approx(25.0)


def test_run_stats_json_is_written_atomically(tmp_path: Path) -> None:
    rec = StatsRecorder()
    rec.counters.add("read", 10)
    rec.counters.add("processed", 9)
    rec.add("infer", 4.0)
    stats = rec.finish(2.0, dropped=1, corrupt=0, model="m.onnx")
    path = stats.write(tmp_path / "sub" / "stats.json")
    data = json.loads(path.read_text())
    assert data["frames_read"] == 10 and data["frames_processed"] == 9
    assert data["frames_dropped"] == 1 and data["fps"] == 4.5
    assert data["stages"]["infer"]["p50_ms"] == 4.0
    assert set(data["stages"]) >= {"read", "preprocess", "infer", "postprocess", "draw",
                                   "write", "latency"}
    assert [p.name for p in path.parent.iterdir()] == ["stats.json"]  # no temp left over
    assert len(rec.hud_lines()) == 3


def _stats(**kw: object) -> RunStats:
    return StatsRecorder().finish(1.0, dropped=0, corrupt=0, **kw)


@pytest.mark.parametrize(("kw", "code"), [
    ({}, 0),
    ({"interrupted": True, "stop_reason": "SIGINT"}, 130),
    ({"interrupted": True, "stop_reason": "SIGTERM"}, 143),
    ({"interrupted": True, "stop_reason": "interrupted"}, 0),
    ({"degraded": ("o.mp4: video not written",)}, 4),
    # an interrupted run whose output failed must not pass as merely interrupted
    ({"interrupted": True, "stop_reason": "SIGTERM", "degraded": ("masks: 3 of 9",)}, 4),
])
def test_exit_code_follows_the_documented_table(kw: dict[str, object], code: int) -> None:
    assert _stats(**kw).exit_code == code


def test_run_stats_validate_and_record_outputs(tmp_path: Path) -> None:
    stats = _stats(outputs={"o.mp4": "ok"}, frames_written={"o.mp4": 5})
    data = json.loads(stats.with_degraded("x: lost").to_json())
    assert data["outputs"] == {"o.mp4": "ok"} and data["frames_written"] == {"o.mp4": 5}
    assert data["degraded"] == ["x: lost"]
    with pytest.raises(InputError, match="frames_processed: expected a count >= 0, got -1"):
        RunStats(0, -1, 0, 0, 1.0, 0.0, {})
    with pytest.raises(InputError, match="frames_written: expected a count per listed output"):
        _stats(frames_written={"o.mp4": 5})


def test_summary_lines_are_short_and_exact() -> None:
    rec = StatsRecorder()
    rec.counters.add("read", 12)
    rec.counters.add("processed", 12)
    for stage, ms in (("read", 1.25), ("infer", 20.0), ("write", 2.0), ("latency", 45.04)):
        rec.add(stage, ms)
    stats = rec.finish(1.5, dropped=0, corrupt=0, stop_reason="max frames",
                       outputs={"a.mp4": "ok", "m": "failed: 1 of 12 mask(s) not written"},
                       frames_written={"a.mp4": 12, "m": 11})
    assert stats.summary_lines() == [
        "12 frames read, 12 processed, 0 dropped in 1.50 s: 8.0 FPS end to end "
        "(stopped: max frames)",
        "mean ms per frame: read 1.2, infer 20.0, write 2.0; latency 45.0",
        "outputs: a.mp4 (12 frames), m (11 frames, failed)"]
    quiet = StatsRecorder().finish(2.0, dropped=3, corrupt=2)
    assert quiet.summary_lines() == [  # nothing ran: no stage line; corrupt only when > 0
        "0 frames read, 0 processed, 3 dropped, 2 corrupt in 2.00 s: 0.0 FPS end to end",
        "outputs: none (-o FILE, -o DIR/ or -o URI keeps the overlays)"]
    one = StatsRecorder().finish(1.0, dropped=0, corrupt=0, outputs={"p.png": "ok"},
                                 frames_written={"p.png": 1})
    assert one.summary_lines()[-1] == "outputs: p.png (1 frame)"
