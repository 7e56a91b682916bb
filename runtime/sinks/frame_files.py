"""What the folder sinks share: one file per frame, named after its source image.

Not a sink kind (no registration line): the base of ``--save-masks DIR`` (masks.py)
and ``-o DIR/`` (images.py).  A file is named after the source image
(``frame_0001.jpg`` -> ``frame_0001.png``) when the source can say (an image folder
or glob with unique file stems), else by frame index (``000000.png``).  A file that
cannot be written is counted and the run goes on: one log line for the first, and
``close`` names how many failed and why, so a full disk is one line, not thousands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from segedge.runtime.sinks.base import SinkOutcome, make_folder

log = logging.getLogger("segedge.runtime")


def mask_name(index: int, source_name: str | None = None) -> str:
    return f"{source_name}.png" if source_name else f"{index:06d}.png"


class FrameFiles:
    """A folder of per-frame files: naming, failure counting and the closing outcome; a
    subclass writes the bytes and says how ``noun`` names one of its files."""

    main_thread = False
    quit_requested = False
    noun = "file"

    def __init__(self, directory: Path, flag: str, expected: str,
                 frame_names: Callable[[int], str | None] | None = None) -> None:
        self.directory = make_folder(directory, flag, expected)
        self.frame_names = frame_names
        self.failed = 0
        self.first_error: str | None = None

    def path_for(self, index: int) -> Path:
        return self.directory / mask_name(index, self.frame_names(index)
                                          if self.frame_names is not None else None)

    def count_failure(self, path: Path, cause: str) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = f"{path.name}: {cause}"
            log.info("%s: %s not written (%s); counting failures", path, self.noun, cause)

    def outcome(self, written: int, complete: bool) -> SinkOutcome:
        """failed (any file not written), partial (the run stopped early), empty or ok."""
        target = str(self.directory)
        if self.failed:
            return SinkOutcome(target, written, "failed",
                               f"{self.failed} of {self.failed + written} {self.noun}(s) not "
                               f"written (first: {self.first_error})")
        if not complete:
            return SinkOutcome(target, written, "partial",
                               f"run did not finish; {written} {self.noun}(s) written")
        if written == 0:
            return SinkOutcome(target, 0, "empty", "no frames reached it")
        return SinkOutcome(target, written)
