"""Video files (and http(s) URLs of video files): every frame, in order.

Damage is skipped, not fatal: OpenCV/FFmpeg fails a read on a broken frame
and often recovers on the next one, so up to ``max_corrupt_run`` consecutive
failures are retried.  Frames the container promises but that never decode
(a truncated file) are counted as corrupt when the stream ends.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import cv2

from segedge.runtime.errors import SourceError
from segedge.runtime.redact import redact
from segedge.runtime.sources.base import Frame, SourceOptions, scheme
from segedge.runtime.sources.finite import FiniteSource

log = logging.getLogger("segedge.runtime")


def open_capture(location: str) -> Any:
    """A VideoCapture asking for hardware decoding where this OpenCV/FFmpeg has any (VAAPI,
    D3D11, ...): decoding is a large share of a 2-core box's per-frame work.  OpenCV falls
    back to software by itself (bit-identical frames to a plain open, checked on this
    machine, which has no hardware decoder); a backend that refuses the request gets a
    plain open."""
    params = [cv2.CAP_PROP_HW_ACCELERATION, cv2.VIDEO_ACCELERATION_ANY]
    try:
        capture = cv2.VideoCapture(location, cv2.CAP_ANY, params)
    except cv2.error:
        capture = None
    if capture is not None and capture.isOpened():
        accel = int(capture.get(cv2.CAP_PROP_HW_ACCELERATION) or 0)
        log.debug("%s: decoding with %s", redact(location),
                  "hardware acceleration" if accel else "software (no hardware decoder)")
        return capture
    if capture is not None:
        capture.release()
    return cv2.VideoCapture(location)


class VideoFileSource(FiniteSource):
    def __init__(self, uri: str, options: SourceOptions, capture: Any = None) -> None:
        self.uri = redact(uri)
        self._options = options
        if capture is None:
            location = uri[len("file://"):] if scheme(uri) == "file" else uri
            if scheme(location) is None:
                path = Path(location)
                if not path.exists():
                    raise SourceError(f"{uri}: expected an existing video file, got no such file")
                if not path.is_file():
                    raise SourceError(f"{uri}: expected a video file, got a non-file path")
            capture = open_capture(location)
        if not capture.isOpened():
            raise SourceError(f"{self.uri}: expected a video OpenCV can decode, got one it "
                              "cannot open (unsupported format, damaged header or unreachable)")
        self._cap = capture
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.expected_frames: int | None = count if count > 0 else None
        fps = options.fps or float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0.0 < fps < 1000.0 else None
        self._decoded = 0
        self._skipped = 0  # failed reads that a later good frame proved were lost frames
        self._ended = False

    @property
    def corrupt(self) -> int:
        if self._ended and self.expected_frames is not None:
            return max(self._skipped, self.expected_frames - self._decoded)
        return self._skipped

    def read(self) -> Frame | None:
        if self._ended:
            return None
        failures = 0
        while True:
            ok, image = self._cap.read()
            if ok and image is not None and image.ndim == 3 and image.shape[2] == 3:
                self._skipped += failures
                frame = Frame(self._decoded, image, time.monotonic())
                self._decoded += 1
                return frame
            if ok and image is not None and image.ndim == 2:
                self._skipped += failures
                frame = Frame(self._decoded, cv2.cvtColor(image, cv2.COLOR_GRAY2BGR),
                              time.monotonic())
                self._decoded += 1
                return frame
            failures += 1
            done = self._decoded + self._skipped
            if (self.expected_frames is None or done >= self.expected_frames
                    or failures > self._options.max_corrupt_run):
                self._end()
                return None

    def _end(self) -> None:
        self._ended = True
        if self.corrupt and self._decoded:  # none decoded: the run fails and says so
            log.warning("%s: %d frame(s) could not be decoded (damaged or truncated file); "
                        "processed the %d that could", self.uri, self.corrupt, self._decoded)

    def close(self) -> None:
        self._cap.release()


def create(uri: str, options: SourceOptions) -> VideoFileSource:
    return VideoFileSource(uri, options)
