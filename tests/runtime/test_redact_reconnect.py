"""Credentials never printed; live sources reconnect under the user's policy and say when lost."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from segedge.runtime.errors import InputError, SourceError
from segedge.runtime.redact import redact
from segedge.runtime.sources.base import SourceOptions, open_source
from segedge.runtime.sources.live import LiveSource

FAST = dict(reconnect_backoff_s=0.01, reconnect_max_s=0.02)


@pytest.mark.parametrize(("raw", "clean"), [
    ("rtsp://user:password@host/x", "rtsp://user:***@host/x"),
    ("rtsp://admin:p@ss:w0rd@cam:554/stream", "rtsp://admin:***@cam:554/stream"),
    ("seen http://a:b@h:80/v and rtsps://c:d@e/f", "seen http://a:***@h:80/v and rtsps://c:***@e/f"),
    ("http://cam/mjpg?user=x&password=hunter2", "http://cam/mjpg?user=x&password=***"),
    ("rtsp://host/x", "rtsp://host/x"),
    ("http://user@host/p", "http://user@host/p"),
    ("no url here: a:b@c", "no url here: a:b@c"),
])
def test_redact(raw: str, clean: str) -> None:
    assert redact(raw) == clean


class Cam:
    def __init__(self, frames: int, opens: bool = True) -> None:
        self.frames, self.opens, self.released = frames, opens, False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opens and not self.released

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames <= 0 or self.released:
            return False, None
        self.frames -= 1
        time.sleep(0.001)
        return True, np.zeros((2, 2, 3), np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def drain(source: LiveSource) -> int:
    n = 0
    while source.read() is not None:
        n += 1
    return n


def test_lost_after_exhausted_reconnects_and_logs_without_password(
        caplog: pytest.LogCaptureFixture) -> None:
    uri = "rtsp://user:s3cret@cam/live"
    opens = iter([Cam(5), Cam(0, opens=False), Cam(0, opens=False)])
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        source = LiveSource(uri, lambda: next(opens, Cam(0, opens=False)),
                            SourceOptions(reconnect_attempts=2, **FAST))
        assert drain(source) >= 1
        source.close()
    assert source.lost is True
    assert source.uri == "rtsp://user:***@cam/live"
    text = caplog.text
    assert "s3cret" not in text
    assert "attempt 2/2" in text and "source lost" in text


def test_drop_without_reconnects_is_lost_but_a_finite_stream_ends_cleanly() -> None:
    source = LiveSource("fake", lambda: Cam(3), SourceOptions(reconnect_attempts=0, **FAST))
    drain(source)
    source.close()
    assert source.lost is True
    finite = LiveSource("gen", lambda: Cam(3), SourceOptions(reconnect_attempts=0, **FAST),
                        finite=True)
    assert drain(finite) >= 1
    finite.close()
    assert finite.lost is False


def test_reconnect_forever_keeps_trying_until_closed() -> None:
    calls = []

    def opener() -> Cam:
        calls.append(1)
        return Cam(2) if len(calls) == 1 else Cam(0, opens=False)

    source = LiveSource("fake", opener, SourceOptions(reconnect_attempts=None, **FAST))
    stopper = threading.Timer(0.5, source.close)
    stopper.start()
    drain(source)
    stopper.join()
    assert len(calls) > 10  # 5 tries would be the old fixed policy
    assert source.lost is False  # closed by us, not given up


def test_refused_first_connection_is_retried_for_streams() -> None:
    opens = iter([Cam(0, opens=False), Cam(0, opens=False), Cam(3)])
    source = LiveSource("rtsp://cam/x", lambda: next(opens, Cam(0, opens=False)),
                        SourceOptions(reconnect_attempts=3, **FAST), retry_open=True)
    assert drain(source) >= 1
    source.close()
    assert source.reconnects == 1


def test_refused_stream_error_names_retries_and_hides_password() -> None:
    with pytest.raises(SourceError) as info:
        LiveSource("rtsp://u:topsecret@cam/x", lambda: Cam(0, opens=False),
                   SourceOptions(reconnect_attempts=2, **FAST), retry_open=True,
                   what="network stream")
    assert str(info.value) == ("rtsp://u:***@cam/x: expected a network stream that opens, got "
                               "one OpenCV cannot open (after 2 retries)")


def test_open_source_errors_are_redacted() -> None:
    with pytest.raises(SourceError) as info:
        open_source("ftp://me:pa55@host/v.mp4")
    assert "pa55" not in str(info.value) and "me:***@host" in str(info.value)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"reconnect_attempts": -1}, "--reconnect: expected a count >= 0 or 'forever', got -1"),
    ({"fps": 0.0}, "--fps: expected a frame rate in (0, 1000], got 0.0"),
    ({"fps": -5.0}, "--fps: expected a frame rate in (0, 1000], got -5.0"),
    ({"reconnect_backoff_s": 0.0}, "--reconnect-backoff: expected seconds in (0, 8.0], got 0.0"),
])
def test_source_options_validate(kwargs: dict, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        SourceOptions(**kwargs)
    assert str(info.value) == fragment
