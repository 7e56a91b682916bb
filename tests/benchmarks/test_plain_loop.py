"""The plain single-threaded baseline loop: every frame read is segmented and written."""

from __future__ import annotations

from pathlib import Path

import pytest

from segedge.benchmarks.artifacts import Artifact
from segedge.benchmarks.jobs import SkipCell
from segedge.benchmarks.plain_loop import STAGES, LoopJob, run_plain_loop
from tests.benchmarks.conftest import count_frames


def test_plain_loop_processes_and_writes_every_frame(
        demo_logits: Artifact, clip: tuple[Path, int], tmp_path: Path) -> None:
    video, frames = clip
    out = tmp_path / "plain.mp4"
    result = run_plain_loop(LoopJob(str(demo_logits.path), str(video), str(out)))
    assert result.frames == frames
    assert count_frames(out) == frames
    assert result.fps == pytest.approx(frames / result.wall_s, rel=1e-3)
    assert set(result.stages) == {*STAGES, "total"}
    for stage in result.stages.values():
        assert stage["n"] == frames
    # the stages add up to the iteration (up to timer overhead)
    parts = sum(result.stages[s]["mean_ms"] for s in STAGES)
    assert parts == pytest.approx(result.stages["total"]["mean_ms"], rel=0.05, abs=0.05)


def test_plain_loop_stops_at_max_frames(demo_logits: Artifact, clip: tuple[Path, int],
                                        tmp_path: Path) -> None:
    out = tmp_path / "plain.avi"
    result = run_plain_loop(LoopJob(str(demo_logits.path), str(clip[0]), str(out), max_frames=5))
    assert result.frames == 5
    assert count_frames(out) == 5


def test_plain_loop_refuses_a_labels_graph(demo_labels: Artifact, clip: tuple[Path, int],
                                           tmp_path: Path) -> None:
    with pytest.raises(SkipCell, match="float NCHW graph with logits"):
        run_plain_loop(LoopJob(str(demo_labels.path), str(clip[0]), str(tmp_path / "x.mp4")))
