"""Overlays as image files: ``-o out.png`` (image in, image out) and ``-o DIR/`` (one per frame).

``-o photo_out.png`` holds the one overlay of a single-image source (the
RunConfig refuses it for any other source).  ``-o DIR/`` writes one PNG per
frame, named after its source image (``street.jpg`` -> ``DIR/street.png``)
when the source can say, else by frame index (``000000.png``: video,
cameras, streams).  PNG because an overlay folder is often the input of the
next tool: lossless, and the same names ``--save-masks`` uses for the label
maps beside it.

Every file is written through runtime/io.py (temporary name, fsync, rename),
so a reader never sees half a picture.  A picture that cannot be encoded or
written is counted, and the run goes on; ``close`` re-reads what it wrote
(each file there with its size, the last one decoding to the frame's size)
and says failed (exit 4) when anything is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from segedge.runtime.errors import InputError
from segedge.runtime.io import check_writable, write_bytes_atomic
from segedge.runtime.sinks.base import SinkContext, SinkOutcome, make_folder
from segedge.runtime.sinks.frame_files import FrameFiles

# Overlays are photographs with flat colour on top: level 1 is ~4x faster than the default 3
# for a few percent more bytes.
PNG_OVERLAY = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def _encode(image: np.ndarray, suffix: str) -> bytes:
    """The image as ``suffix`` bytes; ValueError saying why not."""
    params = PNG_OVERLAY if suffix == ".png" else []
    try:
        ok, data = cv2.imencode(suffix, image, params)
    except cv2.error as err:
        raise ValueError((str(err).strip().splitlines() or ["encoding failed"])[-1]) from err
    if not ok:
        raise ValueError(f"OpenCV could not encode {suffix}")
    return data.tobytes()


def _reread(path: Path, shape: tuple[int, ...]) -> str | None:
    """None when ``path`` decodes to an image of ``shape``; otherwise what is wrong."""
    back = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if back is None:
        return "it does not decode"
    if back.shape[:2] != shape[:2]:
        return f"it decodes to {back.shape[1]}x{back.shape[0]}, not {shape[1]}x{shape[0]}"
    return None


def check_image(target: str, flag: str = "--output") -> None:
    """The registry's up-front check of ``-o photo_out.png``: a file path in a writable folder."""
    check_writable(Path(target), flag)


def check_folder(target: str, flag: str = "--output") -> None:
    """The registry's up-front check of ``-o DIR/``: a folder (or none yet) we can write."""
    path = Path(target)
    if path.exists() and not path.is_dir():
        raise InputError(flag, "a folder (or a path ending in a video or image suffix)",
                         f"existing file {path}")
    check_writable(path / "000000.png", flag)


class ImageSink:
    """The one overlay of a single-image source, written and re-read when it arrives."""

    needs_pixels = True
    main_thread = False
    quit_requested = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.frames = 0
        self.extra = 0  # frames after the first: an image holds one picture
        self.error: str | None = None
        make_folder(self.path.parent, "--output", "a folder that can be created")

    def write(self, index: int, image: np.ndarray | None, labels: np.ndarray) -> None:
        if image is None:
            return
        if self.frames or self.error is not None:
            self.extra += 1
            return
        try:
            write_bytes_atomic(self.path, _encode(image, self.path.suffix.lower()))
        except (OSError, ValueError) as err:
            self.error = getattr(err, "strerror", None) or str(err)
            return
        problem = _reread(self.path, image.shape)
        if problem is not None:
            self.path.unlink(missing_ok=True)
            self.error = f"written, but {problem}; removed"
            return
        self.frames = 1

    def close(self, complete: bool = True) -> SinkOutcome:
        target = str(self.path)
        if self.error is not None:
            return SinkOutcome(target, 0, "failed", f"image not written: {self.error}")
        if self.extra:
            return SinkOutcome(target, self.frames, "failed",
                               f"an image holds one frame; {self.extra} more were not written "
                               "(use a folder: -o DIR/)")
        if self.frames == 0:
            return SinkOutcome(target, 0, "empty", "no frames reached it; no file written")
        return SinkOutcome(target, self.frames)


class FolderSink(FrameFiles):
    """One PNG overlay per frame, named after its image or by the frame index."""

    needs_pixels = True
    noun = "overlay"

    def __init__(self, directory: Path,
                 frame_names: Callable[[int], str | None] | None = None) -> None:
        super().__init__(directory, "--output", "a folder that can be created", frame_names)
        self.sizes: dict[str, int] = {}  # file name -> bytes written (checked at close)
        self.last: tuple[str, tuple[int, ...]] | None = None

    def write(self, index: int, image: np.ndarray | None, labels: np.ndarray) -> None:
        if image is None:
            return
        path = self.path_for(index)
        name = path.name
        try:
            data = _encode(image, ".png")
            write_bytes_atomic(path, data)
        except (OSError, ValueError) as err:
            self.count_failure(path, str(getattr(err, "strerror", None) or err))
            return
        self.sizes[name] = len(data)
        self.last = (name, image.shape)

    def _verify(self) -> str | None:
        """Each file still there with the bytes written, and the last one decodes."""
        missing = [name for name, size in self.sizes.items()
                   if not (self.directory / name).is_file()
                   or (self.directory / name).stat().st_size != size]
        if missing:
            return (f"{len(missing)} of {len(self.sizes)} overlay(s) missing or changed after "
                    f"writing (first: {missing[0]})")
        if self.last is not None:
            problem = _reread(self.directory / self.last[0], self.last[1])
            if problem is not None:
                return f"{self.last[0]}: written, but {problem}"
        return None

    def close(self, complete: bool = True) -> SinkOutcome:
        problem = None if self.failed else self._verify()
        if problem is not None:
            return SinkOutcome(str(self.directory), 0, "failed", problem)
        return self.outcome(len(self.sizes), complete)


def create_image(target: str, ctx: SinkContext) -> ImageSink:
    """The registry's factory for ``-o photo_out.png``."""
    return ImageSink(Path(target))


def create_folder(target: str, ctx: SinkContext) -> FolderSink:
    """The registry's factory for ``-o DIR/``: named after the source's images."""
    return FolderSink(Path(target), frame_names=ctx.frame_names)
