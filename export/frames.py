"""Frames to verify (and later calibrate) against: the user's folder, video or glob, else scenes.

The product never searches the file system for test data: what an export is
verified on comes from its flags (`--verify-images`), else from generated road
scenes, so the same command gives the same report wherever it runs.  Which
files count as images or videos is `segedge.runtime.paths`' one rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segedge.export import scenes
from segedge.runtime.errors import InputError
from segedge.runtime.paths import IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_video, list_images

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "FrameSet", "list_images", "load_frames",
           "load_labelled_frames", "read_video"]

SCENES_SOURCE = "generated road scenes"


@dataclass(frozen=True)
class FrameSet:
    """BGR uint8 frames (as OpenCV reads them), where they came from, and their files."""

    frames: list[np.ndarray]
    source: str
    paths: tuple[str, ...] = field(default=())
    truths: tuple[np.ndarray, ...] | None = None  # label maps (frame size), one per frame
    labels_source: str = ""

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("FrameSet.source: expected where the frames came from, got ''")
        if self.paths and len(self.paths) != len(self.frames):
            raise ValueError(f"FrameSet.paths: expected one per frame ({len(self.frames)}), "
                             f"got {len(self.paths)}")
        if self.truths is not None and len(self.truths) != len(self.frames):
            raise ValueError(f"FrameSet.truths: expected one per frame ({len(self.frames)}), "
                             f"got {len(self.truths)}")

    def __len__(self) -> int:
        return len(self.frames)


def read_video(path: Path, count: int) -> list[np.ndarray]:
    """`count` frames spread over the whole video (start, middle, end differ)."""
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    wanted = set(np.linspace(0, max(total - 1, 0), count).astype(int).tolist())
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            frames.append(frame)
        index += 1
    cap.release()
    return frames


def load_frames(spec: str | None, count: int, size: tuple[int, int], seed: int = 0) -> FrameSet:
    """Frames from `spec` (folder, image, glob or video); without one, generated scenes."""
    if not spec:
        return FrameSet(scenes.frames(count, size, seed), SCENES_SOURCE)
    path = Path(spec)
    if path.is_file() and is_video(path):
        frames = read_video(path, count)
        if not frames:
            raise InputError("--verify-images", "a readable video", f"no frames in {path}")
        return FrameSet(frames, f"video {path}")
    files = list_images(spec)
    if not files:
        raise InputError("--verify-images", "a folder, image, glob or video with frames",
                         repr(spec))
    return _read_files(files[:count], spec)


def _read_files(files: list[Path], source: str) -> FrameSet:
    frames = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError("image", "a readable image file", str(f))
        frames.append(img)
    return FrameSet(frames, source, tuple(str(f) for f in files))


def load_labelled_frames(spec: str, labels: Path, count: int) -> FrameSet:
    """The first `count` frames of `spec` (as load_frames picks them) with their label maps.

    Labels are matched by file name and must have the frame's size
    (segedge.export.evaluation's rules: pair_labels, read_pair).
    """
    from segedge.export.evaluation.evaluate import pair_labels, read_pair

    path = Path(spec)
    if path.is_file() and is_video(path):
        raise InputError("--verify-labels", "--verify-images as image files named like the "
                         "labels", f"a video {path}")
    try:
        pairs = pair_labels(spec, labels)[:count]
        read = [read_pair(image, label) for image, label in pairs]
    except InputError as err:  # named for segeval's flags; say which flag it was here
        flag = {"--images": "--verify-images", "--labels": "--verify-labels"}.get(err.what)
        if flag is None:
            raise
        raise InputError(flag, err.expected, err.received) from None
    frames, truths = [], []
    for frame, truth in read:
        frames.append(frame)
        truths.append(truth)
    return FrameSet(frames, spec, tuple(str(p) for p, _ in pairs), tuple(truths), str(labels))
