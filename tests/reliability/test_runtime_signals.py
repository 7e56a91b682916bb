"""SIGTERM (timeout, systemd, docker stop) and SIGINT: outputs finalised, stats written, 143/130.

Issue 10 item 6 for segrun, in real processes: mid-run the video is
finalised and reopenable, the masks and stats match it, and no temporary
file is left; a signal while still connecting ends the run with the stats
written too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from segedge.runtime.sinks.video import partial_path
from tests.reliability.runtime_media import REPO, SECRET, hidden_leftovers, segrun_cmd
from tests.runtime.onnx_fixtures import count_frames

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def start(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(segrun_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)


def wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_finalises_every_output(rt_models: dict[str, Path], tmp_path: Path,
                                               sig: signal.Signals) -> None:
    out, masks, stats_path = tmp_path / "o.mp4", tmp_path / "masks", tmp_path / "s.json"
    proc = start(rt_models["labels"], "synthetic://?frames=100000&size=64x48&fps=25", "-o", out,
                 "--save-masks", masks, "--stats", stats_path, "--stats", "-", "--realtime",
                 "--no-display", "-q")
    wait_for(partial_path(out, proc.pid), proc)
    time.sleep(0.4)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == EXIT[sig], stderr
    assert stderr == ""  # a requested stop is not an error
    stats = json.loads(stats_path.read_text())
    assert json.loads(stdout) == stats
    assert stats["interrupted"] and stats["stop_reason"] == sig.name
    frames = stats["frames_processed"]
    assert 0 < frames < 100000 and stats["frames_read"] == frames  # in-flight frames drained
    assert count_frames(out) == (frames, (64, 48))
    assert len(list(masks.glob("*.png"))) == frames
    assert stats["outputs"] == {str(out): "ok", str(masks): "ok"}
    assert stats["frames_written"] == {str(out): frames, str(masks): frames}
    assert hidden_leftovers(tmp_path) == []


def test_sigterm_while_connecting_writes_stats_and_exits_143(rt_models: dict[str, Path],
                                                             tmp_path: Path) -> None:
    stats_path = tmp_path / "s.json"
    uri = f"rtsp://viewer:{SECRET}@127.0.0.1:1/live"
    proc = start(rt_models["labels"], uri, "--reconnect", "forever", "--reconnect-backoff", "0.05",
                 "-o", tmp_path / "o.mp4", "--stats", stats_path, "--no-display", "-q")
    time.sleep(1.5)  # model loaded, retries under way (the connection is refused at once)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert "reopening in" in stderr and stderr.splitlines()[-1] == "segrun: terminated"
    assert "Traceback" not in stderr and SECRET not in stderr + stdout
    stats = json.loads(stats_path.read_text())
    assert stats["stop_reason"] == "SIGTERM" and stats["interrupted"]
    assert stats["source"] == uri.replace(SECRET, "***")
    assert not (tmp_path / "o.mp4").exists() and hidden_leftovers(tmp_path) == []
