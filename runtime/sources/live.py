"""Shared capture thread for live sources (cameras, RTSP, GStreamer).

A live source must never lag behind reality: a thread grabs every frame as
the device delivers it, decodes only the one a reader takes (the newest: see
LiveSource) and counts every frame that was replaced before anyone took it.
When the device or stream goes away it is reopened with exponential backoff,
as often as the user's policy says (`--reconnect N|forever`); when that fails
the source ends and says it was *lost* (the run then exits with its own code
instead of passing for a clean end of stream). A stream that refuses the first connection is retried
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


def _can_defer(cap: Any) -> bool:
    """Whether ``cap`` splits the arrival of a frame (``grab``) from its decoding
    (``retrieve``), as cv2.VideoCapture does: then a frame nobody takes is never decoded."""
    return callable(getattr(cap, "grab", None)) and callable(getattr(cap, "retrieve", None))


class LiveSource:
    """The newest frame of a live capture, decoded only when a reader takes it.

    The capture thread grabs every frame as the device delivers it and stamps it
    (time.monotonic) the moment ``grab`` returns: capture-to-output latency runs from
    that stamp.  Where the capture splits grab from retrieve (cv2.VideoCapture: V4L2
    dequeues in grab and converts or decodes MJPEG in retrieve; FFmpeg converts colours
    in retrieve), a grabbed frame is held, undecoded, for the first half of the frame
    interval: a reader arriving then gets it decoded on demand; one arriving later
    waits for the next frame, due sooner than the held one is old, so it gets the
    fresher frame, and the capture thread is already back in ``grab``, so that frame is
    stamped when it arrives, not when we got round to it.  Frames nobody took are
    dropped without being decoded and counted (``dropped``).  A capture without the
    split (``read`` only) decodes every frame and keeps the newest (same rule for a
    reader: the next frame when it is due sooner than the newest is old).
    """

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
        self._interval: float | None = 1.0 / self._fps if self._fps else None
        self._last_captured: float | None = None
        self._cap = cap
        self._cond = threading.Condition()
        self._latest: Frame | None = None  # decoded, not yet taken
        self._held: tuple[int, float] | None = None  # grabbed, not decoded: (index, stamp)
        self._readers = 0  # readers waiting for a frame
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
                ok = self._grab_deferred(cap) if _can_defer(cap) else self._read_all(cap)
                if ok:
                    continue
                cap.release()
                cap = None if self._closing.is_set() else self._reconnect()
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                if self._held is not None:  # grabbed, never decoded: nobody gets it now
                    self._dropped += 1
                    self._held = None
                self._ended = True
                self._cond.notify_all()

    def _read_all(self, cap: Any) -> bool:
        """A capture without grab/retrieve: every frame decoded, the newest kept."""
        ok, image = cap.read()
        captured = time.monotonic()
        if not (ok and image is not None and image.ndim == 3):
            return False
        with self._cond:
            self._arrived(captured)
            self._latest = Frame(self._next_index, image, captured)
            self._next_index += 1
            self._cond.notify_all()
        return True

    def _grab_deferred(self, cap: Any) -> bool:
        """Grab (stamped on arrival), hold undecoded for half an interval, decode only for
        a reader; False when the capture failed."""
        before = time.monotonic()
        if not cap.grab():
            return False
        captured = time.monotonic()
        with self._cond:
            interval = self._interval
            # Hold only a frame the grab waited for: one handed over at once was queued (a
            # backlog) and the next is already there: drain it, decode nothing.
            waited = interval is not None and captured - before > interval / 4
            self._arrived(captured)
            index = self._next_index
            self._held = (index, captured)
            self._next_index += 1
            until = captured + (interval / 2 if waited and interval else 0.0)
            while not self._readers and not self._closing.is_set():
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._readers:
                return True  # nobody took it: dropped undecoded when the next arrives
        ok, image = cap.retrieve()
        with self._cond:
            self._held = None
            if not (ok and image is not None and image.ndim == 3):
                self._dropped += 1
                return False
            self._latest = Frame(index, image, captured)
            self._cond.notify_all()
        return True

    def _arrived(self, captured: float) -> None:
        """A frame arrived: the one waiting (decoded or not) is superseded (dropped); the
        frame interval is learnt from the arrivals when the capture does not say it."""
        if self._latest is not None or self._held is not None:
            self._dropped += 1
        self._latest, self._held = None, None
        last, self._last_captured = self._last_captured, captured
        if self._fps is None and last is not None and captured > last:
            gap = captured - last
            self._interval = gap if self._interval is None else 0.8 * self._interval + 0.2 * gap

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
        """The newest frame not yet returned, or the next one when it is due sooner than
        the newest is old (a fresher frame for less waiting than its age); a held frame
        is decoded now.  Blocks until one arrives; None once ended."""
        with self._cond:
            self._readers += 1
            self._cond.notify_all()  # a held frame is decoded for this reader
            try:
                stale = self._stale_latest()
                # every arrival, end and close notifies: the only timed wait is for a late
                # next frame (then the newest will do)
                late = stale.timestamp + 1.5 * (self._interval or 0.0) if stale else None
                while (self._latest is None or self._latest is stale) and not self._ended:
                    if late is None:
                        self._cond.wait()
                    elif (left := late - time.monotonic()) > 0:
                        self._cond.wait(left)
                    else:
                        break  # the next frame is late: the newest will do
                frame, self._latest = self._latest, None
                return frame
            finally:
                self._readers -= 1

    def _stale_latest(self) -> Frame | None:
        """The decoded newest frame when the next is due sooner than it is old (read-only
        captures; a held frame is never decoded that late: see _grab_deferred)."""
        frame, interval = self._latest, self._interval
        if frame is None or interval is None:
            return None
        now = time.monotonic()
        age, due_in = now - frame.timestamp, frame.timestamp + interval - now
        return frame if 0.0 < due_in < age else None

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
