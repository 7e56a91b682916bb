"""A raw GStreamer pipeline string ending in ``appsink`` (live).

Needs an OpenCV built with GStreamer (the pip wheels are not); that is
checked up front so the user gets one clear line instead of a silent
"cannot open".
"""

from __future__ import annotations

import re
from typing import Any

import cv2

from segedge.runtime.errors import SourceError
from segedge.runtime.sources.base import SourceOptions
from segedge.runtime.sources.live import LiveSource


def gstreamer_available() -> bool:
    match = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    return match is not None and match.group(1).upper() not in ("NO", "OFF")


def require_gstreamer(uri: str) -> None:
    if not gstreamer_available():
        raise SourceError(
            f"{uri}: expected an OpenCV built with GStreamer, got OpenCV {cv2.__version__} "
            "without it (cv2.getBuildInformation() says GStreamer: NO); use the system OpenCV "
            "(e.g. JetPack's python3-opencv) instead of the pip wheel")


def open_pipeline(uri: str, pipeline: str, options: SourceOptions, what: str) -> LiveSource:
    require_gstreamer(uri)

    def opener() -> Any:
        return cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)

    return LiveSource(uri, opener, options, what=what)


def create(uri: str, options: SourceOptions) -> LiveSource:
    if not uri.rstrip().split("!")[-1].strip().startswith("appsink"):
        raise SourceError(f"{uri}: expected a GStreamer pipeline ending in appsink, got one "
                          f"ending in {uri.rstrip().split('!')[-1].strip()!r}")
    return open_pipeline(uri, uri, options, "GStreamer pipeline")
