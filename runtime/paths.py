"""Which files are images or videos, and how a folder / glob / file becomes a frame list.

One rule for export (verification, calibration, evaluation) and runtime (image
sources), so a folder means the same frames everywhere.
"""

from __future__ import annotations

import glob
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


def is_image(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path: Path | str) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_images(spec: str | Path) -> list[Path]:
    """A folder (its images, sorted), one image file, or a glob; [] when nothing matches."""
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and is_image(p))
    if path.is_file():
        return [path] if is_image(path) else []
    matches = glob.glob(str(spec), recursive=True)
    return sorted(Path(p) for p in matches if Path(p).is_file() and is_image(p))
