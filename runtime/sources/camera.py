"""Local cameras: an index (``0``) or a V4L2 device (``/dev/video0``).

Live: newest frame only; a camera that disappears (USB unplugged) is
reopened with backoff, and if it stays away the run ends with a message.
"""

from __future__ import annotations

import sys
from typing import Any

import cv2

from segedge.runtime.sources.base import SourceOptions
from segedge.runtime.sources.live import LiveSource


def _opener(uri: str, options: SourceOptions) -> Any:
    def open_camera() -> Any:
        # OpenCV's V4L2 backend opens by index only: /dev/video2 -> 2
        index = int(uri) if uri.isdigit() else int(uri[len("/dev/video"):])
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(index, api)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if options.camera_size is not None:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, options.camera_size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, options.camera_size[1])
        return cap

    return open_camera


def create(uri: str, options: SourceOptions) -> LiveSource:
    return LiveSource(uri, _opener(uri, options), options, what="camera")
