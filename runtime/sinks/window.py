"""On-screen window sink (cv2.imshow); q or Esc asks the run to stop.

cv2.imshow without a display aborts the whole process, so the window is
only used when both a display and a GUI-enabled OpenCV exist.
"""

from __future__ import annotations

import os
import re
import sys

import cv2
import numpy as np

QUIT_KEYS = (ord("q"), ord("Q"), 27)


def gui_available() -> bool:
    match = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    return match is None or match.group(1).upper() not in ("NONE", "NO", "OFF")


def display_available() -> bool:
    if not gui_available():
        return False
    if sys.platform.startswith(("win", "darwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class WindowSink:
    """Must be driven from the main thread (GUI toolkits require it)."""

    needs_pixels = True
    main_thread = True

    def __init__(self, name: str = "segrun") -> None:
        self.name = name
        self.quit_requested = False
        self._shown = False

    def write(self, index: int, image: np.ndarray | None, labels: np.ndarray) -> None:
        if image is None:
            return
        cv2.imshow(self.name, image)
        self._shown = True
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) < 1
        if key in QUIT_KEYS or closed:
            self.quit_requested = True

    def close(self, complete: bool = True) -> None:
        if self._shown:
            cv2.destroyWindow(self.name)
            cv2.waitKey(1)
