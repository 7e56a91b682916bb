"""``synthetic://?frames=N&size=WxH&fps=F&live=0&lost=0``: generated frames, no files.

For soak tests and benchmarks: a red bar sweeping over a blue background,
deterministic per frame index.  ``live=1`` serves it at ``fps`` through the
live capture thread (newest frame only), exercising the camera code path.
``lost=1`` (with ``live=1``) makes the end a dropped stream that never comes
back: reconnects follow ``--reconnect`` and fail, so the run ends "source
lost" (exit 4), the path a camera unplugged for good takes.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from segedge.runtime.errors import SourceError
from segedge.runtime.sources.base import Source, SourceOptions
from segedge.runtime.sources.live import LiveSource
from segedge.runtime.sources.video import VideoFileSource


def synthetic_frame(index: int, width: int, height: int) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (200, 60, 20)  # BGR: blue background
    bar = max(1, width // 4)
    left = (index * max(1, width // 32)) % width
    image[:, left : left + bar] = (20, 40, 220)  # red bar
    return image


RING = 8  # distinct frames a live synthetic camera cycles through (12 MB at 960x540)


class SyntheticCapture:
    """Duck-types the part of cv2.VideoCapture the sources use (``read``, and ``grab`` +
    ``retrieve`` so a live one goes through the camera path that drops frames undecoded).

    Paced (``live=1``), it serves a small ring of frames rendered once at open, and a
    frame costs one copy when taken (``retrieve``): a real camera's frames arrive by DMA
    without any CPU work of ours until they are converted, so a benchmark's capture must
    not spend the CPU that inference would get on drawing each frame.  Unpaced (a
    file-like source) each frame is rendered from its index, deterministic, once."""

    def __init__(self, frames: int, width: int, height: int, fps: float, paced: bool) -> None:
        self.frames, self.width, self.height, self.fps = frames, width, height, fps
        self.paced = paced
        self.pos = 0
        self._opened = True
        count = max(1, min(RING, frames if frames > 0 else RING))
        self._ring = [synthetic_frame(i, width, height) for i in range(count)] if paced else []
        self._grabbed: int | None = None
        self._next_t = time.monotonic()  # the clock starts once the ring is ready

    def isOpened(self) -> bool:
        return self._opened

    def grab(self) -> bool:
        """Wait for the next frame's time (paced) and take it, without producing pixels."""
        if not self._opened or (self.frames > 0 and self.pos >= self.frames):
            self._grabbed = None
            return False
        if self.paced:
            self._next_t += 1.0 / self.fps
            delay = self._next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._grabbed = self.pos
        self.pos += 1
        return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        """The pixels of the frame grabbed last: a copy of a ring frame (paced)."""
        if self._grabbed is None:
            return False, None
        if self._ring:
            return True, self._ring[self._grabbed % len(self._ring)].copy()
        return True, synthetic_frame(self._grabbed, self.width, self.height)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.grab():
            return False, None
        return self.retrieve()

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(max(self.frames, 0))
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        return 0.0

    def release(self) -> None:
        self._opened = False


def _params(uri: str) -> dict[str, Any]:
    query = {k: v[-1] for k, v in parse_qs(urlparse(uri).query).items()}
    try:
        width, height = (int(v) for v in query.get("size", "64x48").lower().split("x"))
        params = {"frames": int(query.get("frames", "100")), "width": width, "height": height,
                  "fps": float(query.get("fps", "25")), "live": query.get("live", "0") == "1",
                  "lost": query.get("lost", "0") == "1"}
    except ValueError as err:
        raise SourceError(f"{uri}: expected synthetic://?frames=N&size=WxH&fps=F&live=0|1"
                          f"&lost=0|1, got a malformed query ({err})") from err
    if params["lost"] and not params["live"]:
        raise SourceError(f"{uri}: expected lost=1 together with live=1, got a file-like "
                          "synthetic source")
    if width < 8 or height < 8 or params["fps"] <= 0:
        raise SourceError(f"{uri}: expected size >= 8x8 and fps > 0, got {width}x{height} "
                          f"at {params['fps']} fps")
    return params


def create(uri: str, options: SourceOptions) -> Source:
    p = _params(uri)
    opens = [0]

    def opener() -> SyntheticCapture:
        capture = SyntheticCapture(p["frames"], p["width"], p["height"], p["fps"], p["live"])
        if p["lost"] and opens[0]:  # the stream is gone: every reopen fails
            capture.release()
        opens[0] += 1
        return capture

    if p["lost"]:
        return LiveSource(uri, opener, options, what="synthetic stream")
    if p["live"]:  # a generated stream that ends has ended: nothing to reconnect to
        return LiveSource(uri, opener, replace(options, reconnect_attempts=0),
                          what="synthetic stream", finite=True)
    return VideoFileSource(uri, options, capture=opener())
