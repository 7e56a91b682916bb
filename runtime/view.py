"""What a live window shows, changed by keys while the run goes on.

A run draws each frame in a worker thread while the window reads keys on the
main thread, so the choice of picture (overlay, mask, side-by-side, contours,
segmentation hidden, legend, HUD) lives in one small thread-safe object both
sides share: the window changes it, the drawer reads a frozen copy of it per
frame.  Without a view the drawers draw exactly what their DrawConfig says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from segedge.runtime.errors import InputError

if TYPE_CHECKING:
    from segedge.runtime.draw import DrawConfig

ViewMode = Literal["overlay", "mask", "side-by-side", "contours"]
# How a frame is pictured (what the window keys o/m/s/c pick); --visualize adds "none" (no
# picture drawn at all): runtime.draw.VISUALIZE_MODES.
PICTURE_MODES: tuple[str, ...] = ("overlay", "mask", "side-by-side", "contours")
Action = Literal["none", "changed", "snapshot", "help", "quit"]
HELP_SECONDS = 3.0

# key name (as the window backends spell it) -> the mode it selects
MODE_KEYS: dict[str, str] = {"o": "overlay", "m": "mask", "s": "side-by-side", "c": "contours"}
SNAPSHOT_KEYS = ("p", "space")
QUIT_KEYS = ("q", "escape")

KEYS_HELP = ("Window keys: o overlay (again: hide it), m mask only, s side-by-side, "
             "c contours, l legend, h HUD, p or space snapshot PNG, ? these keys, q or Esc quit.")
HELP_LINES: tuple[str, ...] = (
    "o overlay (again: hide)   m mask   s side-by-side   c contours",
    "l legend   h HUD   p/space snapshot   ? keys   q/Esc quit",
)


@dataclass(frozen=True)
class View:
    """One frame's choice of picture: what a drawer reads, never changes under it."""

    mode: ViewMode = "overlay"
    legend: bool = True
    hud: bool = True
    hidden: bool = False  # the segmentation is hidden: the plain frame (plus HUD)

    def __post_init__(self) -> None:
        if self.mode not in PICTURE_MODES:
            raise InputError("view mode", f"one of {', '.join(PICTURE_MODES)}", repr(self.mode))


def apply_key(view: View, key: str) -> tuple[View, Action]:
    """The view after ``key`` and what the window must do about it (pure: unit-tested)."""
    key = key.lower()
    if key in MODE_KEYS:
        mode = MODE_KEYS[key]
        hidden = not view.hidden if mode == view.mode else False
        return replace(view, mode=mode, hidden=hidden), "changed"  # type: ignore[arg-type]
    if key == "l":
        return replace(view, legend=not view.legend), "changed"
    if key == "h":
        return replace(view, hud=not view.hud), "changed"
    if key in SNAPSHOT_KEYS:
        return view, "snapshot"
    if key in ("?", "question"):
        return view, "help"
    if key in QUIT_KEYS:
        return view, "quit"
    return view, "none"


class ViewState:
    """The shared, mutable view of one run (thread-safe); drawers call ``current()``.

    ``snapshot_dir``: where ``p`` writes ``segrun-snapshot-<stream>-<frame>.png``.
    """

    def __init__(self, view: View | None = None, snapshot_dir: Path | str = ".",
                 help_seconds: float = HELP_SECONDS) -> None:
        if help_seconds < 0:
            raise InputError("help seconds", "a duration >= 0", help_seconds)
        self._view = view or View()
        self._lock = threading.Lock()
        self.snapshot_dir = Path(snapshot_dir)
        self.help_seconds = help_seconds
        self._help_until = time.monotonic() + help_seconds  # shown for a moment at start

    @classmethod
    def from_config(cls, config: DrawConfig, snapshot_dir: Path | str = ".") -> ViewState:
        """The view a run starts with: exactly what its DrawConfig draws."""
        mode = config.mode if config.mode in PICTURE_MODES else "overlay"
        view = View(mode=mode, legend=config.legend, hud=config.hud,  # type: ignore[arg-type]
                    hidden=config.mode == "none")
        return cls(view, snapshot_dir)

    def current(self) -> View:
        with self._lock:
            return self._view

    def press(self, key: str) -> Action:
        """Apply one key (``m``, ``space``, ``escape``, ``?`` ...); say what the window does."""
        with self._lock:
            self._view, action = apply_key(self._view, key)
        if action == "help":
            self.show_help()
        return action

    def show_help(self, seconds: float | None = None) -> None:
        with self._lock:
            wait = self.help_seconds if seconds is None else seconds
            self._help_until = time.monotonic() + wait

    def help_visible(self, now: float | None = None) -> bool:
        with self._lock:
            return (time.monotonic() if now is None else now) < self._help_until

    def snapshot_path(self, stream: str, index: int) -> Path:
        name = stream.strip().replace("/", "_").replace("\\", "_") or "0"
        return self.snapshot_dir / f"segrun-snapshot-{name}-{index:06d}.png"


def attach_view(drawer: Any, sinks: Iterable[Any]) -> ViewState | None:
    """Give the drawer and every sink that wants one (``wants_view``) the same view.

    Nothing happens without such a sink (files-only runs draw exactly their DrawConfig).
    A sink built with its own view keeps it and the drawer follows that one.
    """
    wanting = [s for s in sinks if getattr(s, "wants_view", False)]
    if drawer is None or not wanting or not hasattr(drawer, "config"):
        return None  # a task's drawer without view support draws its DrawConfig, keys aside
    given = [s.view for s in wanting if getattr(s, "view", None) is not None]
    view = given[0] if given else ViewState.from_config(drawer.config)
    drawer.view = view
    for sink in wanting:
        sink.view = view
    return view
