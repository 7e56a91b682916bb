"""Shared capture thread for live sources (cameras, RTSP, GStreamer).

A live source must never lag behind reality: a thread reads as fast as the
device delivers and keeps only the newest frame, counting every frame that
was replaced before anyone consumed it.  When the device or stream goes
away it is reopened with exponential backoff, as often as the user's policy
says (`--reconnect N|forever`); when that fails the source ends and says it
was *lost* (the run then exits with its own code instead of passing for a
clean end of stream). A stream that refuses the first connection is retried
under the same policy when ``retry_open`` is set (network streams).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2

from segedge.runtime.errors import SourceError
from segedge.runtime.redact import redact
from segedge.runtime.sources.base import Frame, SourceOptions

log = logging.getLogger("segedge.runtime")

Opener = Callable[[], Any]  # returns an object with isOpened/read/release/get (cv2.VideoCapture)


def _capture(cap: Any) -> tuple[bool, Any, float]:
    """(ok, image, capture timestamp): stamped (time.monotonic) when the frame arrived,
    before it is decoded, where the capture object splits the two (cv2.VideoCapture's
    grab + retrieve); else when ``read`` returned it.  Capture-to-output latency
    (runtime.stats) runs from this stamp."""
    grab = getattr(cap, "grab", None)
    if grab is None:
        ok, image = cap.read()
        return ok, image, time.monotonic()
    if not grab():
        return False, None, 0.0
    captured = time.monotonic()
    ok, image = cap.retrieve()
    return ok, image, captured


class LiveSource:
    live = True

    def __init__(self, uri: str, opener: Opener, options: SourceOptions,
                 what: str = "live source", retry_open: bool = False,
                 finite: bool = False) -> None:
        self.uri = redact(uri)  # the raw URI lives only in the opener
        self._opener = opener
        self._options = options
        self._closing = threading.Event()
        self._lost = False
        self._finite = finite  # a generated stream that ends has ended: not lost
        self._reconnects = 0
        cap = opener()
        if not cap.isOpened():
            cap.release()
            cap = self._reconnect() if retry_open else None
            if cap is None:
                raise SourceError(f"{self.uri}: expected a {what} that opens, got one OpenCV "
                                  "cannot open" + (f" (after {self._tries} retries)"
                                                   if retry_open and self._tries else ""))
        fps = options.fps or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0.0 < fps < 1000.0 else None
        self._cap = cap
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._next_index = 0
        self._dropped = 0
        self._ended = False
        self._thread = threading.Thread(target=self._grab_loop, name=f"grab:{self.uri}",
                                        daemon=True)
        self._thread.start()

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def corrupt(self) -> int:
        return 0

    @property
    def reconnects(self) -> int:
        return self._reconnects

    @property
    def lost(self) -> bool:
        """True when the stream went away and every allowed reconnect failed."""
        return self._lost

    def _grab_loop(self) -> None:
        cap: Any | None = self._cap
        try:
            while cap is not None and not self._closing.is_set():
                ok, image, captured = _capture(cap)
                if ok and image is not None and image.ndim == 3:
                    self._publish(image, captured)
                    continue
                cap.release()
                cap = None if self._closing.is_set() else self._reconnect()
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _publish(self, image: Any, captured: float) -> None:
        with self._cond:
            if self._latest is not None:
                self._dropped += 1
            self._latest = Frame(self._next_index, image, captured)
            self._next_index += 1
            self._cond.notify_all()

    _tries = 0

    def _reconnect(self) -> Any | None:
        """Reopen under the policy; None (and ``lost``) when it is exhausted."""
        attempts = self._options.reconnect_attempts  # None: forever
        total = "forever" if attempts is None else str(attempts)
        delay = self._options.reconnect_backoff_s
        attempt = 0
        while attempts is None or attempt < attempts:
            attempt += 1
            self._tries = attempt
            log.warning("%s: no frames; reopening in %.1f s (attempt %d/%s)",
                        self.uri, delay, attempt, total)
            if self._closing.wait(delay):
                return None
            cap = self._opener()
            if cap.isOpened():
                self._reconnects += 1
                log.warning("%s: reopened", self.uri)
                return cap
            cap.release()
            delay = min(delay * 2, self._options.reconnect_max_s)
        self._lost = not self._finite
        if self._finite:
            return None
        log.error("%s: source lost: gave up after %d reconnect attempt(s)", self.uri, attempt)
        return None

    def read(self) -> Frame | None:
        """Newest frame not yet returned; blocks until one arrives; None once ended."""
        with self._cond:
            while self._latest is None and not self._ended:
                self._cond.wait(0.5)
            frame, self._latest = self._latest, None
            return frame

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
