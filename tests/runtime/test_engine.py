"""The one run engine: one stream and several report the same way, and live sources report
their capture-to-output latency from the capture timestamp."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segedge.runtime import Segmenter
from segedge.runtime.config import RunConfig
from segedge.runtime.errors import ShapeError
from segedge.runtime.pipeline import run
from segedge.runtime.sources.base import Frame
from segedge.runtime.stats import RunStats
from segedge.runtime.streams import run_many
from tests.runtime.test_cli import call

LIVE = "fake-live://cam"


def failing_model(monkeypatch: pytest.MonkeyPatch, at_call: int) -> None:
    """The shared model fails on its ``at_call``-th inference call."""
    calls = {"n": 0}
    real = Segmenter.infer_many

    def flaky(self: Segmenter, tensors: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        calls["n"] += 1
        if calls["n"] == at_call:
            raise ShapeError("tensor: expected something, got something else")
        return real(self, tensors)

    monkeypatch.setattr(Segmenter, "infer_many", flaky)


def streams_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stream's part of a --stats document: the whole of a one-stream document."""
    if "streams" in doc:
        return list(doc["streams"].values())
    return [doc]


@pytest.mark.parametrize("sources", [1, 2], ids=["one-stream", "two-streams"])
def test_failed_run_prints_its_stats_json_for_one_stream_and_several(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        models: dict[str, Path], video: Path, tmp_path: Path, sources: int) -> None:
    failing_model(monkeypatch, at_call=3)  # mid-run: the lanes already delivered frames
    stats_path = tmp_path / "s.json"
    code, stdout, err = call(capsys, models["labels"], *[video] * sources, "--no-display",
                             "-q", "--stats", stats_path, "--stats", "-")
    assert code == 2  # ShapeError: bad input, one line
    assert err.splitlines() == ["segrun: error: tensor: expected something, got something "
                                "else"]
    doc = json.loads(stdout)  # the whole of stdout is the document the file holds
    assert doc == json.loads(stats_path.read_text())
    lanes = streams_of(doc)
    assert len(lanes) == sources
    for lane in lanes:
        assert lane["stop_reason"] == "error: tensor: expected something, got something else"
        assert 0 <= lane["frames_processed"] <= 2 and lane["degraded"] == []
    if sources > 1:
        assert doc["aggregate"]["stop_reason"] == lanes[0]["stop_reason"]


@pytest.mark.parametrize("sources", [1, 2], ids=["one-stream", "two-streams"])
def test_run_that_never_started_prints_its_stats_json_for_one_stream_and_several(
        capsys: pytest.CaptureFixture[str], models: dict[str, Path], video: Path,
        tmp_path: Path, sources: int) -> None:
    missing = tmp_path / "missing.mp4"
    code, stdout, err = call(capsys, models["labels"], *[video] * (sources - 1), missing,
                             "--no-display", "-q", "--stats", "-")
    want = f"error: {missing}: expected an existing video file, got no such file"
    assert code == 2 and err.splitlines() == [f"segrun: {want}"]
    lanes = streams_of(json.loads(stdout))
    assert len(lanes) == sources
    assert all(lane["stop_reason"] == want and lane["frames_processed"] == 0 for lane in lanes)
    assert lanes[-1]["source"] == str(missing)


def test_one_stream_and_several_share_the_shared_stage_stats(
        models: dict[str, Path], video: Path) -> None:
    """A single stream is a run with one lane: its inference goes through the same batching
    stage (one frame per call for a dynamic-batch model), counted the same way."""
    one = run(RunConfig(model=models["labels"], source=str(video), display=False,
                        max_frames=5))
    two = run_many([RunConfig(model=models["labels"], source=str(video), display=False,
                              max_frames=5) for _ in range(2)])
    assert one.frames_processed == 5 and one.stages["infer"].count == 5
    assert [s.frames_processed for s in two.streams] == [5, 5]
    assert [s.stages["infer"].count for s in two.streams] == [5, 5]
    assert one.capture_to_output_ms is None  # a file is not live: no capture latency


class DelayedLiveSource:
    """A live source whose frames reach segrun ``delay_s`` after they were captured (the
    capture timestamp says so), one every ``period_s``: a camera with a known transport
    delay, slower than the pipeline so no frame waits in a queue."""

    live = True
    fps = 25.0
    dropped = 0
    corrupt = 0

    def __init__(self, frames: int, period_s: float, delay_s: float) -> None:
        self.uri, self.frames, self.period_s, self.delay_s = LIVE, frames, period_s, delay_s
        self.index = 0

    def read(self) -> Frame | None:
        if self.index >= self.frames:
            return None
        time.sleep(self.period_s)
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, : 8 + self.index % 32] = (20, 40, 220)
        frame = Frame(self.index, image, time.monotonic() - self.delay_s)
        self.index += 1
        return frame

    def close(self) -> None:
        self.index = self.frames


@pytest.fixture
def delayed_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    import segedge.runtime.engine as engine
    real = engine.open_source

    def opener(uri: str, options: object = None) -> object:
        if uri == LIVE:
            return DelayedLiveSource(frames=20, period_s=0.03, delay_s=DELAY_MS / 1e3)
        return real(uri, options)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "open_source", opener)


DELAY_MS = 120.0
# What the pipeline itself may add to a frame of 64x48 on a loaded 2-core machine: the
# lower bound is exact (the latency includes the capture delay), the upper one generous.
SLACK_MS = 90.0


def test_live_capture_to_output_latency_from_the_capture_timestamp(
        delayed_camera: None, models: dict[str, Path], tmp_path: Path) -> None:
    stats_path = tmp_path / "s.json"
    stats = run(RunConfig(model=models["labels"], source=LIVE, display=False,
                          save_masks=tmp_path / "m", stats_path=stats_path))
    assert stats.frames_processed == 20 and stats.exit_code == 0
    capture = stats.capture_to_output_ms
    assert capture is not None and capture["count"] == 20
    assert DELAY_MS <= capture["p50_ms"] <= capture["p90_ms"] <= DELAY_MS + SLACK_MS
    assert capture["p50_ms"] == round(stats.stages["latency"].p50_ms, 3)
    data = json.loads(stats_path.read_text())
    assert data["capture_to_output_ms"] == capture
    line = next(ln for ln in stats.summary_lines() if ln.startswith("capture to output"))
    assert line == (f"capture to output: p50 {capture['p50_ms']:.1f} ms, p90 "
                    f"{capture['p90_ms']:.1f} ms over 20 frames")


def test_several_streams_give_each_live_stream_its_capture_latency(
        delayed_camera: None, models: dict[str, Path], video: Path) -> None:
    stats = run_many([RunConfig(model=models["labels"], source=LIVE, display=False),
                      RunConfig(model=models["labels"], source=str(video), display=False)],
                     names=["cam", "file"])
    cam, file = stats.streams
    assert cam.capture_to_output_ms is not None and file.capture_to_output_ms is None
    assert cam.capture_to_output_ms["count"] == cam.frames_processed == 20
    assert DELAY_MS <= cam.capture_to_output_ms["p50_ms"] <= DELAY_MS + SLACK_MS
    lines = stats.summary_lines()
    assert sum(ln.startswith("  cam capture to output: p50 ") for ln in lines) == 1
    assert not any(ln.startswith("  file capture") for ln in lines)


def test_summary_says_capture_latency_only_for_live_runs() -> None:
    def stats(live: bool) -> RunStats:
        from segedge.runtime.stats import StatsRecorder

        rec = StatsRecorder()
        rec.add("infer", 5.0)
        for ms in (10.0, 20.0, 30.0, 40.0):
            rec.add("latency", ms)
        return rec.finish(1.0, dropped=0, corrupt=0, live=live)

    assert stats(True).summary_lines()[1:3] == [
        "mean ms per frame: infer 5.0; latency 25.0",
        "capture to output: p50 25.0 ms, p90 37.0 ms over 4 frames"]
    assert stats(True).capture_to_output_ms == {"count": 4, "mean_ms": 25.0, "p50_ms": 25.0,
                                                "p90_ms": 37.0, "p99_ms": 39.7}
    assert not any("capture" in ln for ln in stats(False).summary_lines())


def test_the_stats_give_the_process_cpu_per_frame_over_the_run(
        models: dict[str, Path], video: Path) -> None:
    """One stream: its own figure; several: the aggregate's only (they share the process).
    Over the run, not the model's loading: at most every core busy for the run's wall time."""
    import os

    one = run(RunConfig(model=models["labels"], source=str(video), display=False,
                        max_frames=6))
    assert one.cpu_ms_per_frame is not None and one.cpu_ms_per_frame > 0
    cpu_s = one.cpu_ms_per_frame * one.frames_processed / 1e3
    assert cpu_s <= one.wall_s * (os.cpu_count() or 1) + 0.05
    assert one.to_dict()["cpu_ms_per_frame"] == one.cpu_ms_per_frame
    several = run_many([RunConfig(model=models["labels"], source=str(video), display=False,
                                  max_frames=4, stream=f"s{k}") for k in range(2)])
    total = several.aggregate["cpu_ms_per_frame"]
    assert total is not None and total > 0
    assert total * several.aggregate["frames_processed"] / 1e3 <= \
        several.aggregate["wall_s"] * (os.cpu_count() or 1) + 0.05
    assert [s.cpu_ms_per_frame for s in several.streams] == [None, None]
