"""``demo://``: the procedurally generated clip packaged with segedge."""

from __future__ import annotations

from pathlib import Path

from segedge.runtime.errors import SourceError
from segedge.runtime.sources.base import SourceOptions
from segedge.runtime.sources.video import VideoFileSource

DEMO_CLIP = Path(__file__).resolve().parent.parent / "assets" / "demo_clip.mp4"


def create(uri: str, options: SourceOptions) -> VideoFileSource:
    if uri.rstrip("/") not in ("demo:", "demo://clip") and uri != "demo://":
        raise SourceError(f"{uri}: expected demo:// (the packaged clip), got another demo name")
    if not DEMO_CLIP.is_file():
        raise SourceError(f"{uri}: expected the packaged demo clip at {DEMO_CLIP}, got no such "
                          "file (reinstall segedge or generate the assets)")
    return VideoFileSource(str(DEMO_CLIP), options)
