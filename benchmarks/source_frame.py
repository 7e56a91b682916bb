"""The input frame every backend is timed on: a real one when there is one.

Latency barely depends on pixel values, but accuracy spot checks and
labels-output graphs behave more like deployment on a real frame, so the
first frame of the video (or an image) is used; generated road scenes
otherwise.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segedge.runtime.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


def reference_frame(source: str | None, imgsz: tuple[int, int]) -> np.ndarray:
    """One BGR uint8 frame: from a video/image when given, else a generated scene at imgsz."""
    if source:
        path = Path(source)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            cap = cv2.VideoCapture(str(path))
            ok, frame = cap.read()
            cap.release()
            if not ok or frame is None:
                raise InputError("--video", "a readable video file", str(path))
            return np.ascontiguousarray(frame)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError("frame source", "a readable video or image file", str(path))
        return image
    from segedge.export import scenes

    return scenes.sample(0, imgsz)[0]
