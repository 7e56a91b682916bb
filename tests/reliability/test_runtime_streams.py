"""Live sources: the user's reconnect policy, 'source lost' exits 4, no password anywhere.

Issue 10 items 3, 5 and 8, end to end through a real segrun process: a
stream that drops and never comes back, an MJPEG camera behind a password,
a refused RTSP connection.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability.runtime_media import (
    SECRET,
    dropping_mjpeg_camera,
    error_lines,
    segrun,
)

FAST = ("--reconnect-backoff", "0.05")


def test_lost_stream_exits_4_after_the_reconnects_the_user_asked_for(
        rt_models: dict[str, Path], tmp_path: Path) -> None:
    uri = "synthetic://?frames=10&size=64x48&fps=200&live=1&lost=1"
    stats_path = tmp_path / "s.json"
    proc = segrun(rt_models["labels"], uri, "--reconnect", "3", *FAST, "--stats", stats_path,
                  "--no-display", "-q")
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if "reopening in" in line] == [
        f"segrun: {uri}: no frames; reopening in {delay} s (attempt {i}/3)"
        for i, delay in ((1, "0.1"), (2, "0.1"), (3, "0.2"))]
    assert error_lines(proc.stderr) == [
        f"segrun: error: run degraded: {uri}: source lost (every reconnect attempt failed)"]
    stats = json.loads(stats_path.read_text())
    assert stats["stop_reason"] == "source lost" and not stats["interrupted"]
    assert 1 <= stats["frames_processed"] <= 10
    assert stats["degraded"] == [f"{uri}: source lost (every reconnect attempt failed)"]


def test_reconnect_zero_gives_up_at_once(rt_models: dict[str, Path]) -> None:
    uri = "synthetic://?frames=5&size=64x48&fps=200&live=1&lost=1"
    proc = segrun(rt_models["labels"], uri, "--reconnect", "0", "--no-display", "-q", "--stats",
                  "-")
    assert proc.returncode == 4
    assert "reopening" not in proc.stderr
    assert json.loads(proc.stdout)["stop_reason"] == "source lost"


def test_password_protected_camera_that_drops_never_shows_the_password(
        rt_models: dict[str, Path], tmp_path: Path) -> None:
    stats_path = tmp_path / "s.json"
    with dropping_mjpeg_camera() as url:
        proc = segrun(rt_models["labels_dynamic"], url, "--reconnect", "2", *FAST,
                      "--stats", stats_path, "--stats", "-",
                      "--no-display")  # not -q: every log line too
    clean = url.replace(SECRET, "***")
    assert proc.returncode == 4, proc.stderr
    for text in (proc.stdout, proc.stderr, stats_path.read_text()):
        assert SECRET not in text
    assert f"segrun: source {clean}" in proc.stderr
    assert f"segrun: {clean}: no frames; reopening in 0.1 s (attempt 2/2)" in proc.stderr
    assert error_lines(proc.stderr) == [
        f"segrun: error: run degraded: {clean}: source lost (every reconnect attempt failed)"]
    stats = json.loads(stats_path.read_text())
    assert stats["source"] == clean and stats["stop_reason"] == "source lost"
    assert 1 <= stats["frames_processed"] <= 15
    assert json.loads(proc.stdout)["source"] == clean


def test_refused_stream_is_retried_and_stats_are_written(rt_models: dict[str, Path],
                                                         tmp_path: Path) -> None:
    uri = f"rtsp://viewer:{SECRET}@127.0.0.1:1/live"
    clean = uri.replace(SECRET, "***")
    stats_path = tmp_path / "s.json"
    proc = segrun(rt_models["labels"], uri, "--reconnect", "2", *FAST, "--stats", stats_path,
                  "--no-display", "-q")
    assert proc.returncode == 2, proc.stderr
    assert SECRET not in proc.stderr + proc.stdout + stats_path.read_text()
    assert proc.stderr.count("reopening in") == 2
    assert error_lines(proc.stderr) == [
        f"segrun: error: {clean}: expected a network stream that opens, got one OpenCV cannot "
        "open (after 2 retries)"]
    stats = json.loads(stats_path.read_text())
    assert stats["source"] == clean and stats["frames_processed"] == 0
    assert stats["stop_reason"].startswith(f"error: {clean}: expected a network stream")
