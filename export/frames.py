"""Real frames to verify (and later calibrate) against: a folder, a video, CamVid, or scenes.

The parity gate is only meaningful on real images, so it prefers the user's
frames, then the shared CamVid set, and falls back to generated road scenes.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segedge.export import scenes
from segedge.runtime.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


@dataclass(frozen=True)
class FrameSet:
    frames: list[np.ndarray]  # BGR uint8, as OpenCV reads them
    source: str
    paths: tuple[str, ...] = ()


def shared_data_dir() -> Path | None:
    """`../shared/data` beside the checkout (or $SEGEDGE_SHARED_DATA), when present."""
    env = os.environ.get("SEGEDGE_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        candidates.append(base / ".." / "shared" / "data")
        candidates.append(base / "shared" / "data")
    for cand in candidates:
        if (cand / "camvid").is_dir() or (cand / "video").is_dir():
            return cand.resolve()
    return None


def camvid_dir(split: str = "val") -> Path | None:
    root = shared_data_dir()
    path = root / "camvid" / split if root else None
    return path if path and path.is_dir() else None


def list_images(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    return sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)


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
    """Frames from `spec` (dir, image, glob or video), else CamVid val, else scenes."""
    if spec:
        path = Path(spec)
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            frames = read_video(path, count)
            if not frames:
                raise InputError("--verify-images", "a readable video", f"no frames in {path}")
            return FrameSet(frames, f"video {path}")
        files = list_images(spec)
        if not files:
            raise InputError("--verify-images", "a folder, image, glob or video with frames",
                             repr(spec))
        return _read_files(files[:count], spec)
    cam = camvid_dir("val")
    if cam is not None:
        files = list_images(str(cam))
        picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, count)] if files else []
        if picks:
            return _read_files(picks, f"camvid {cam}")
    return FrameSet(scenes.frames(count, size, seed), "generated road scenes")


def _read_files(files: list[Path], source: str) -> FrameSet:
    frames = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError("image", "a readable image file", str(f))
        frames.append(img)
    return FrameSet(frames, source, tuple(str(f) for f in files))
