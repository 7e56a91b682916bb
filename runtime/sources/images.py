"""Still images: one file, a directory of images, or a glob pattern.

Each image is one frame, in sorted order; an unreadable image is counted as
corrupt and skipped, and one summary line at the end names how many (not a
line per image: a folder of 10,000 damaged files must not bury the error).
When none could be read the run itself fails (exit 4), so no summary then.
Images may differ in size (the video sink adapts).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2

from segedge.runtime.errors import SourceError
from segedge.runtime.paths import IMAGE_SUFFIXES
from segedge.runtime.paths import list_images as shared_list_images
from segedge.runtime.sources.base import Frame, SourceOptions
from segedge.runtime.sources.finite import FiniteSource

log = logging.getLogger("segedge.runtime")


def list_images(uri: str) -> list[Path]:
    """The frames of an image source, or a one-line SourceError saying why there are none."""
    if any(ch in uri for ch in "*?["):
        paths = shared_list_images(uri)
        if not paths:
            raise SourceError(f"{uri}: expected a glob matching image files, got no matches")
        return paths
    path = Path(uri)
    if path.is_dir():
        paths = shared_list_images(path)
        if not paths:
            raise SourceError(f"{uri}: expected a directory with images "
                              f"({', '.join(IMAGE_SUFFIXES)}), got none")
        return paths
    if not path.is_file():
        raise SourceError(f"{uri}: expected an existing image file, got no such file")
    return [path]


class ImageSource(FiniteSource):
    def __init__(self, uri: str, options: SourceOptions) -> None:
        self.uri = uri
        self.paths = list_images(uri)
        self.expected_frames = len(self.paths)
        self._fps = options.fps
        self._pos = 0
        self._index = 0
        self._corrupt = 0
        self._first_corrupt: Path | None = None
        self._summarised = False
        # frame index -> position in `paths` (unreadable images are skipped), so a mask can
        # be named after its image; names only when every file stem is unique
        self._positions: list[int] = []
        self._unique_stems = len({p.stem for p in self.paths}) == len(self.paths)

    def frame_name(self, index: int) -> str | None:
        """The source image's file stem for frame `index` (None when stems repeat)."""
        if not self._unique_stems or not 0 <= index < len(self._positions):
            return None
        return self.paths[self._positions[index]].stem

    @property
    def corrupt(self) -> int:
        return self._corrupt

    def read(self) -> Frame | None:
        while self._pos < len(self.paths):
            path = self.paths[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self._corrupt += 1
                self._first_corrupt = self._first_corrupt or path
                continue
            frame = Frame(self._index, image, time.monotonic())
            self._positions.append(self._pos - 1)
            self._index += 1
            return frame
        self._summarise()
        return None

    def _summarise(self) -> None:
        if self._summarised or not self._corrupt or not self._index:
            return
        self._summarised = True
        log.warning("%s: %d of %d image(s) could not be decoded and were skipped (first: %s)",
                    self.uri, self._corrupt, self._corrupt + self._index, self._first_corrupt)

    def close(self) -> None:
        self._pos = len(self.paths)


def create(uri: str, options: SourceOptions) -> ImageSource:
    return ImageSource(uri, options)
