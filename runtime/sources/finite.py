"""What the sources that deliver every frame share (a video file, a folder of images).

Not a source kind (no registration line): the base of those that are.  Such a source
is never live, so no frame is ever overwritten (``dropped`` is 0, unlike a camera's
newest-frame-only capture in live.py); its frame rate is ``--fps``, else what the file
says, and each counts its undecodable frames (``corrupt``) its own way.
"""

from __future__ import annotations


class FiniteSource:
    """``live``, ``fps`` and ``dropped`` of the Source protocol (runtime.sources.base) for a
    source that reads every frame; a subclass sets ``_fps`` and defines ``corrupt``."""

    live = False
    _fps: float | None = None

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def dropped(self) -> int:
        return 0
