"""Video file sink: codec from the extension, temp name until finalised.

Frames go to a hidden ``.NAME.partial-PID.EXT`` next to the target and are
renamed onto it only by ``close(complete=True)``, so a crashed or killed run
never leaves a file that looks complete.  Ctrl-C/SIGTERM still finalise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from segedge.runtime.errors import InputError

log = logging.getLogger("segedge.runtime")

# Measured here: avc1/H.264 writing fails in the pip OpenCV; mp4v and MJPG work.
CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
DEFAULT_FPS = 25.0


def check_video_path(path: Path) -> None:
    if path.suffix.lower() not in CODECS:
        raise InputError("--output", f"a video path ending in {', '.join(CODECS)}",
                         repr(str(path)))
    if path.is_dir():
        raise InputError("--output", "a video file path", f"directory {path}")


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


class VideoSink:
    """Opened lazily on the first frame (its size fixes the video's size)."""

    needs_pixels = True
    main_thread = False
    quit_requested = False

    def __init__(self, path: Path, fps: float | None) -> None:
        check_video_path(path)
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        self.tmp = partial_path(self.path)
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        fourcc = cv2.VideoWriter.fourcc(*CODECS[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise InputError("--output", f"a path OpenCV can write {CODECS[self.path.suffix]} "
                             "video to", str(self.path))
        self._size = (width, height)
        return writer

    def write(self, index: int, image: np.ndarray | None, labels: np.ndarray) -> None:
        if image is None:
            return
        if self._writer is None:
            self._writer = self._open(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:  # image sources of mixed sizes
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self, complete: bool = True) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            if complete:
                log.warning("%s: no frames were written, so no video was created", self.path)
            return
        writer.release()
        if complete:
            os.replace(self.tmp, self.path)
        else:
            log.warning("run did not finish: %d frame(s) kept in %s", self.frames, self.tmp)
