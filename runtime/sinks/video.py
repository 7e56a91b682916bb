"""Video file sink: codec from the extension, temp name until verified and finalised.

Frames go to a hidden ``.NAME.partial-PID.EXT`` next to the target.  OpenCV's
writer reports no write error (a full disk gives a truncated file with no
index), so ``close(complete=True)`` reopens the temp file and checks that it
holds every frame written and that the last one decodes, before renaming it
onto the target.  A file that fails the check is removed and the outcome says
why (the cause read back from the folder: no space, no permission).  A run
that did not finish keeps its frames under the partial name; partial files of
processes that no longer exist are removed by the next run to the same target.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np

from segedge.runtime.errors import InputError
from segedge.runtime.io import check_writable
from segedge.runtime.sinks.base import (
    SinkContext,
    SinkOutcome,
    make_folder,
    write_failure_cause,
)

log = logging.getLogger("segedge.runtime")

# Measured here: avc1/H.264 writing fails in the pip OpenCV; mp4v and MJPG work.
CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
DEFAULT_FPS = 25.0


def check_video_path(path: Path, flag: str = "--output") -> None:
    if path.suffix.lower() not in CODECS:
        raise InputError(flag, f"a video path ending in {', '.join(CODECS)}",
                         repr(str(path)))
    if path.is_dir():
        raise InputError(flag, "a video file path", f"directory {path}")


def check_target(target: str, flag: str = "--output") -> None:
    """The registry's up-front check: a video suffix, and a folder that can take the file."""
    check_video_path(Path(target), flag)
    check_writable(Path(target), flag)


def partial_path(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f".{path.stem}.partial-{os.getpid() if pid is None else pid}"
                          f"{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete partial files of ``path`` left by processes that are gone (killed runs)."""
    pattern = re.compile(rf"^\.{re.escape(path.stem)}\.partial-(\d+){re.escape(path.suffix)}$")
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    for entry in path.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        try:
            entry.unlink()
        except OSError:
            continue
        removed.append(entry)
        log.info("removed %s, left by an earlier run that did not finish", entry)
    return removed


def verify_video(path: Path, frames: int) -> str | None:
    """None when ``path`` opens, reports ``frames`` frames and its last frame decodes;
    otherwise what is wrong with it."""
    if not path.is_file() or path.stat().st_size == 0:
        return "the file is empty"
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return "the file does not open (truncated: no index)"
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if count != frames:
            return f"the file holds {count} of the {frames} frames written"
        cap.set(cv2.CAP_PROP_POS_FRAMES, frames - 1)
        ok, _ = cap.read()
        if not ok:
            return "its last frame does not decode"
    finally:
        cap.release()
    return None


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
        make_folder(self.path.parent, "--output", "a folder that can be created")
        remove_stale_partials(self.path)

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        fourcc = cv2.VideoWriter.fourcc(*CODECS[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            cause = write_failure_cause(self.path.parent)
            raise InputError("--output", f"a path OpenCV can write "
                             f"{CODECS[self.path.suffix.lower()]} video to",
                             f"{self.path}" + (f" ({cause})" if cause else ""))
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

    def close(self, complete: bool = True) -> SinkOutcome:
        writer, self._writer = self._writer, None
        target = str(self.path)
        if writer is None:
            return SinkOutcome(target, 0, "empty", "no frames reached it; no file written")
        writer.release()
        if not complete:
            log.info("run did not finish: %d frame(s) kept in %s", self.frames, self.tmp)
            return SinkOutcome(target, self.frames, "partial",
                               f"run did not finish; {self.frames} frame(s) kept in {self.tmp}")
        problem = verify_video(self.tmp, self.frames)
        if problem is None:
            try:
                os.replace(self.tmp, self.path)
                return SinkOutcome(target, self.frames)
            except OSError as err:
                problem = f"renaming it into place failed ({err.strerror})"
        cause = write_failure_cause(self.path.parent)
        self.tmp.unlink(missing_ok=True)
        because = f" ({cause})" if cause else ""
        return SinkOutcome(target, 0, "failed",
                           f"video not written{because}: {problem}; {self.frames} frame(s) "
                           "were sent, the incomplete file was removed")


def create(target: str, ctx: SinkContext) -> VideoSink:
    """The registry's factory: ``-o x.mp4`` at the source's frame rate."""
    return VideoSink(Path(target), ctx.fps)
