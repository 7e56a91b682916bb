"""Network streams: ``rtsp://``, ``rtmp://`` and ``http(s)://``.

An RTSP/RTMP stream or an http camera (MJPEG) is live: newest frame only,
reconnect with backoff.  An http(s) URL naming a video file is read like a
file: every frame, and its end ends the run.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import cv2

from segedge.runtime.sources.base import Source, SourceOptions, scheme
from segedge.runtime.sources.live import LiveSource
from segedge.runtime.sources.video import VideoFileSource

FILE_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


def _open_network(uri: str, options: SourceOptions) -> Any:
    ms = int(options.open_timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)


def create(uri: str, options: SourceOptions) -> Source:
    kind = scheme(uri)
    if kind in ("http", "https") and urlparse(uri).path.lower().endswith(FILE_SUFFIXES):
        return VideoFileSource(uri, options, capture=_open_network(uri, options))
    return LiveSource(uri, lambda: _open_network(uri, options), options, what="network stream",
                      retry_open=True)
