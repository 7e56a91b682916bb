"""Ctrl-C / SIGTERM as a request to stop, not a crash.

The first signal sets an event the pipeline polls: it stops reading, drains
what is in flight, finalises the video and writes the stats.  A second
SIGINT raises KeyboardInterrupt for users who really want out now.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class StopRequest:
    """Thread-safe stop flag carrying the reason (signal name, 'window closed', ...)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self.signum: int | None = None

    def set(self, reason: str, signum: int | None = None) -> None:
        if not self._event.is_set():
            self.reason, self.signum = reason, signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Route SIGINT/SIGTERM to ``stop`` while inside; no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and stop.signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set(signal.Signals(signum).name, signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
