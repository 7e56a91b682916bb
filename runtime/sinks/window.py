"""On-screen window sink with keys (overlay / mask / side-by-side / contours, legend,
HUD, snapshot, quit); OpenCV's window where it has a GUI, else a pygame (SDL 2) one.

pip's default OpenCV is the headless build (no highgui): with it, a window
needs another toolkit, so pygame (the ``display`` extra) draws it; JetPack's
OpenCV has a GUI and keeps cv2.imshow.  Opening a window without a display
aborts some toolkits, so a window is only used when a display exists
(``display_available``).  The keys change the run's shared ViewState
(runtime/view.py), which the drawer reads per frame; the window itself only
shows, saves snapshots, and says when the user wants to quit.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

import cv2
import numpy as np

from segedge.runtime.draw import draw_hud, text_scale
from segedge.runtime.errors import InputError
from segedge.runtime.io import write_bytes_atomic
from segedge.runtime.view import HELP_LINES, ViewState

log = logging.getLogger("segedge.runtime")

WindowBackend = Literal["auto", "opencv", "pygame"]
WINDOW_BACKENDS: tuple[str, ...] = ("auto", "opencv", "pygame")


def gui_available() -> bool:
    """OpenCV was built with a GUI (highgui); opencv-python-headless was not."""
    match = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    return match is None or match.group(1).upper() not in ("NONE", "NO", "OFF")


def pygame_available() -> bool:
    """pygame is installed (``pip install 'segedge[display]'``); not imported here."""
    return importlib.util.find_spec("pygame") is not None


def display_available() -> bool:
    """A window can open here, checked without opening one (that may abort the process)."""
    if not (gui_available() or pygame_available()):
        return False
    if sys.platform.startswith(("win", "darwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cv_key_name(code: int) -> str | None:
    """cv2.waitKey's code as the view spells keys (``m``, ``space``, ``escape``); None: none."""
    if code < 0:
        return None
    code &= 0xFF
    if code == 27:
        return "escape"
    if code == 32:
        return "space"
    if code == 255 or not 33 <= code < 127:
        return None
    return chr(code).lower()


class _Screen(Protocol):
    closed: bool

    def show(self, image: np.ndarray) -> list[str]:
        """Show one picture; the keys pressed since the last one."""
        ...

    def close(self) -> None: ...


class _OpenCvScreen:
    """cv2.imshow: needs an OpenCV built with a GUI (JetPack's, opencv-python)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False
        self._shown = False

    def show(self, image: np.ndarray) -> list[str]:
        cv2.imshow(self.name, image)
        self._shown = True
        key = cv_key_name(cv2.waitKey(1))
        if cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) < 1:
            self.closed = True
        return [key] if key else []

    def close(self) -> None:
        if self._shown:
            cv2.destroyWindow(self.name)
            cv2.waitKey(1)


class _PygameScreen:
    """An SDL 2 window through pygame: works where OpenCV is the headless build."""

    def __init__(self, name: str, screen: int = 0) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        self.pg: Any = pygame
        self.name, self.screen = name, screen
        self.closed = False
        self._surface: Any = None
        self._size: tuple[int, int] | None = None
        self._desktop: tuple[int, int] | None = None
        pygame.display.init()

    def _open(self, size: tuple[int, int]) -> None:
        pg = self.pg
        screen = self.screen
        if screen >= pg.display.get_num_displays():
            log.warning("display://%d: this machine has %d screen(s); using screen 0",
                        screen, pg.display.get_num_displays())
            screen = self.screen = 0
        self._surface = pg.display.set_mode(size, display=screen)
        pg.display.set_caption(self.name)
        self._size = size

    def show(self, image: np.ndarray) -> list[str]:
        pg = self.pg
        image = self._fit_desktop(image)
        height, width = image.shape[:2]
        if self._size != (width, height):
            self._open((width, height))
        frame = pg.image.frombuffer(np.ascontiguousarray(image).tobytes(), (width, height),
                                    "BGR")
        self._surface.blit(frame, (0, 0))
        pg.display.flip()
        keys = []
        for event in pg.event.get():
            if event.type == pg.QUIT:
                self.closed = True
            elif event.type == pg.KEYDOWN:
                key = self.key_name(event)
                if key:
                    keys.append(key)
        return keys

    def _fit_desktop(self, image: np.ndarray) -> np.ndarray:
        """Scaled down to the screen (SDL windows do not shrink a too-large picture)."""
        if self._desktop is None:
            sizes = self.pg.display.get_desktop_sizes()
            self._desktop = sizes[min(self.screen, len(sizes) - 1)] if sizes else (0, 0)
        dw, dh = self._desktop
        h, w = image.shape[:2]
        scale = min(dw / w, dh / h) if dw and dh else 1.0
        if scale >= 1.0:
            return image
        return cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))),
                          interpolation=cv2.INTER_AREA)

    def key_name(self, event: Any) -> str | None:
        pg = self.pg
        if event.key == pg.K_ESCAPE:
            return "escape"
        if event.key == pg.K_SPACE:
            return "space"
        text = getattr(event, "unicode", "") or ""
        return text.lower() if text.isprintable() and text.strip() else None

    def close(self) -> None:
        self.pg.display.quit()


def _open_screen(backend: str, name: str, screen: int) -> _Screen:
    if backend == "auto":
        backend = "opencv" if gui_available() else "pygame"
    if backend == "opencv":
        return _OpenCvScreen(name)
    if not pygame_available():
        raise InputError("display", "OpenCV with a GUI or pygame (pip install "
                         "'segedge[display]')", "headless OpenCV and no pygame")
    return _PygameScreen(name, screen)


class WindowSink:
    """Shows each drawn frame; keys change the shared view (must run on the main thread).

    ``view``: the run's ViewState (``attach_view`` sets it; without one the keys for
    snapshot, help and quit still work, the drawing keys change nothing).  Snapshots go
    to ``view.snapshot_dir`` as ``segrun-snapshot-<stream>-<frame>.png``.
    """

    needs_pixels = True
    main_thread = True
    wants_view = True

    def __init__(self, name: str = "segrun", view: ViewState | None = None, *,
                 stream: str = "", screen: int = 0, backend: WindowBackend = "auto",
                 open_screen: Callable[[str, str, int], _Screen] = _open_screen) -> None:
        if backend not in WINDOW_BACKENDS:
            raise InputError("window backend", f"one of {', '.join(WINDOW_BACKENDS)}",
                             repr(backend))
        if screen < 0:
            raise InputError("display", "a screen number >= 0", screen)
        self.name, self.view, self.stream = name, view, stream
        self.screen, self.backend = screen, backend
        self.quit_requested = False
        self.snapshots: list[Path] = []
        self._fallback = ViewState()  # keys still work before a view is attached
        self._open_screen = open_screen
        self._window: _Screen | None = None
        self._failed = False
        self._last: tuple[int, np.ndarray] | None = None

    @classmethod
    def from_uri(cls, target: str, ctx: Any) -> WindowSink:
        """``display://N`` (N: screen number, default 0); ctx: the run's SinkContext."""
        parsed = urlparse(target)
        rest = (parsed.netloc + parsed.path).strip("/")
        if parsed.scheme != "display" or not (rest == "" or rest.isdigit()):
            raise InputError("output", "display://N with N a screen number (display://0)",
                             repr(target))
        return cls(getattr(ctx, "window_name", "segrun"), stream=getattr(ctx, "stream", ""),
                   screen=int(rest or 0))

    @property
    def keys(self) -> ViewState:
        return self.view if self.view is not None else self._fallback

    def write(self, index: int, image: np.ndarray | None, labels: np.ndarray) -> None:
        if image is None or self._failed:
            return
        if self._window is None:
            try:
                self._window = self._open_screen(self.backend, self.name, self.screen)
            except Exception as err:  # noqa: BLE001 - no window is no reason to stop the run
                log.warning("window: could not open (%s: %s); running without it",
                            type(err).__name__, err)
                self._failed = True
                return
            self.keys.show_help()  # the key hint: a few seconds from the first frame
        self._last = (index, image)
        shown = image
        if self.keys.help_visible():
            shown = image.copy()
            draw_hud(shown, HELP_LINES, text_scale(image.shape[1]) * 0.9, bottom=True)
        for key in self._window.show(shown):
            self.press(key)
        if self._window.closed:
            self.quit_requested = True

    def press(self, key: str) -> None:
        """One key: the view changes, or a snapshot is saved, or the run is asked to end."""
        action = self.keys.press(key)
        if action == "quit":
            self.quit_requested = True
        elif action == "snapshot":
            self.snapshot()

    def snapshot(self) -> Path | None:
        """The frame on screen (without the key hint) as a PNG; a failure is one warning."""
        if self._last is None:
            return None
        index, image = self._last
        path = self.keys.snapshot_path(self.stream, index)
        try:
            ok, data = cv2.imencode(".png", image)
            if not ok:
                raise OSError("PNG encoding failed")
            write_bytes_atomic(path, data.tobytes())
        except OSError as err:
            log.warning("snapshot %s not written: %s", path, err.strerror or err)
            return None
        log.info("snapshot %s", path)
        self.snapshots.append(path)
        return path

    def close(self, complete: bool = True) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
