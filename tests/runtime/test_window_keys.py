"""Window keys: exact ViewState transitions, the drawers following the view, snapshots,
the key hint kept out of them, display:// parsing and where a window can open."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime.draw import DrawConfig, Drawer, colorize
from segedge.runtime.errors import InputError
from segedge.runtime.sinks import window as window_mod
from segedge.runtime.sinks.base import SinkContext
from segedge.runtime.sinks.window import WindowSink, cv_key_name
from segedge.runtime.view import KEYS_HELP, View, ViewState, apply_key, attach_view
from tests.runtime.test_draw import (  # one scene for drawing tests
    CLASSES,
    PALETTE,
    frame_and_labels,
)


@pytest.mark.parametrize(("start", "key", "after", "action"), [
    (View(), "m", View(mode="mask"), "changed"),
    (View(), "s", View(mode="side-by-side"), "changed"),
    (View(), "c", View(mode="contours"), "changed"),
    (View(mode="mask"), "o", View(mode="overlay"), "changed"),
    (View(), "o", View(hidden=True), "changed"),  # o again: the segmentation hidden
    (View(hidden=True), "o", View(), "changed"),
    (View(mode="mask", hidden=True), "c", View(mode="contours"), "changed"),
    (View(), "l", View(legend=False), "changed"),
    (View(legend=False), "L", View(), "changed"),
    (View(), "h", View(hud=False), "changed"),
    (View(mode="mask"), "p", View(mode="mask"), "snapshot"),
    (View(), "space", View(), "snapshot"),
    (View(), "?", View(), "help"),
    (View(), "q", View(), "quit"),
    (View(), "escape", View(), "quit"),
    (View(), "x", View(), "none"),
])
def test_each_key_gives_exactly_this_view(start: View, key: str, after: View,
                                          action: str) -> None:
    assert apply_key(start, key) == (after, action)


def test_view_state_starts_from_the_config_and_is_shared() -> None:
    state = ViewState.from_config(DrawConfig(mode="contours", legend=False, hud=True))
    assert state.current() == View(mode="contours", legend=False, hud=True, hidden=False)
    assert ViewState.from_config(DrawConfig(mode="none")).current() == View(hidden=True)
    assert [state.press(k) for k in ("m", "h", "z", "q")] == ["changed", "changed", "none",
                                                              "quit"]
    assert state.current() == View(mode="mask", legend=False, hud=False)
    with pytest.raises(InputError, match=r"^view mode: expected one of overlay, mask, "
                       r"side-by-side, contours, got 'none'$"):
        View(mode="none")  # type: ignore[arg-type]


def test_help_shows_at_start_and_on_question_mark() -> None:
    state = ViewState(help_seconds=3.0)
    assert state.help_visible()
    now = time.monotonic()
    assert not state.help_visible(now + 3.5)
    assert state.press("?") == "help" and state.help_visible()
    assert "m mask" in KEYS_HELP and "q or Esc quit" in KEYS_HELP and "p or space" in KEYS_HELP


def test_attach_view_only_where_a_sink_wants_it() -> None:
    drawer = Drawer(DrawConfig(mode="mask"), CLASSES, PALETTE)

    class FileSink:
        pass

    assert attach_view(drawer, [FileSink()]) is None and drawer.view is None
    window = WindowSink()
    view = attach_view(drawer, [FileSink(), window])
    assert view is not None and drawer.view is view and window.view is view
    assert view.current().mode == "mask"
    assert attach_view(None, [window]) is None


def test_the_drawer_follows_the_view_and_keeps_the_frame_size() -> None:
    frame, labels = frame_and_labels()
    drawer = Drawer(DrawConfig(legend=False, hud=False), CLASSES, PALETTE)
    before = drawer.draw(frame, labels)
    state = ViewState.from_config(drawer.config)
    drawer.view = state
    np.testing.assert_array_equal(drawer.draw(frame, labels), before)  # same view: same
    state.press("m")
    np.testing.assert_array_equal(drawer.draw(frame, labels), colorize(labels, drawer.lut))
    state.press("o")
    state.press("o")  # overlay, then hidden: the plain frame
    np.testing.assert_array_equal(drawer.draw(frame, labels), frame)
    state.press("s")  # twice as wide, letterboxed into the run's 80x60
    wide = drawer.draw(frame, labels)
    assert wide.shape == frame.shape
    assert not wide[:15].any() and not wide[45:].any()  # black bands above and below
    np.testing.assert_array_equal(wide[15:45, :40], np.full((30, 40, 3), 100, np.uint8))


def test_legend_and_hud_keys_change_the_picture() -> None:
    frame = np.zeros((240, 320, 3), np.uint8)
    labels = np.zeros((240, 320), np.uint8)
    drawer = Drawer(DrawConfig(mode="mask"), CLASSES, PALETTE)
    state = ViewState.from_config(drawer.config)
    drawer.view = state
    with_legend = drawer.draw(frame, labels, ["fps 10"])
    plain = colorize(labels, drawer.lut)
    assert (with_legend[:, 200:] != plain[:, 200:]).any()  # top right: the legend
    assert (with_legend[:20, :80] != plain[:20, :80]).any()  # top left: the HUD
    assert drawer.hud_wanted
    state.press("l")
    state.press("h")
    assert not drawer.hud_wanted
    np.testing.assert_array_equal(drawer.draw(frame, labels, ["fps 10"]), plain)


class FakeScreen:
    """Records what the window shows and feeds it keys."""

    def __init__(self, keys: list[list[str]]) -> None:
        self.keys, self.shown, self.closed = keys, [], False

    def show(self, image: np.ndarray) -> list[str]:
        self.shown.append(image.copy())
        return self.keys.pop(0) if self.keys else []

    def close(self) -> None:
        self.closed = True


def test_window_keys_snapshot_without_the_hint_and_quit(tmp_path: Path) -> None:
    screen = FakeScreen([[], ["p"], ["q"]])
    state = ViewState(snapshot_dir=tmp_path)
    window = WindowSink("w", state, stream="cam1", open_screen=lambda *_: screen)
    frames = [np.full((120, 160, 3), 40 * i, np.uint8) for i in range(3)]
    for i, image in enumerate(frames):
        window.write(i, image, np.zeros((120, 160), np.uint8))
    assert window.quit_requested
    snap = tmp_path / "segrun-snapshot-cam1-000001.png"
    assert window.snapshots == [snap]
    np.testing.assert_array_equal(cv2.imread(str(snap)), frames[1])  # no key hint in it
    assert (screen.shown[1] != frames[1]).any()  # ... which the screen did show
    assert [p.name for p in tmp_path.iterdir()] == [snap.name]  # no temporary left
    window.close()
    assert screen.closed


def test_window_close_button_quits_and_a_failed_open_is_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    screen = FakeScreen([])
    window = WindowSink(open_screen=lambda *_: screen)
    screen.closed = True
    window.write(0, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))
    assert window.quit_requested

    def broken(*_: object) -> FakeScreen:
        raise RuntimeError("No available video device")

    window = WindowSink(open_screen=broken)
    for i in range(3):
        window.write(i, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["window: could not open (RuntimeError: No available video device); "
                        "running without it"]
    assert not window.quit_requested


def test_snapshot_into_a_missing_folder_is_a_warning(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    window = WindowSink(view=ViewState(snapshot_dir=blocker / "sub"),
                        open_screen=lambda *_: FakeScreen([["space"]]))
    window.write(7, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))
    assert window.snapshots == [] and not window.quit_requested
    assert any("segrun-snapshot-0-000007.png not written" in r.getMessage()
               for r in caplog.records)


def test_display_uri() -> None:
    ctx = SinkContext(window_name="segrun cam", stream="s2")
    sink = WindowSink.from_uri("display://1", ctx)
    assert (sink.name, sink.stream, sink.screen) == ("segrun cam", "s2", 1)
    assert WindowSink.from_uri("display://", ctx).screen == 0
    with pytest.raises(InputError, match=r"^output: expected display://N with N a screen "
                       r"number \(display://0\), got 'display://left'$"):
        WindowSink.from_uri("display://left", ctx)


def test_cv_key_codes() -> None:
    assert [cv_key_name(c) for c in (-1, 27, 32, ord("M"), ord("?"), 255, 0x10FF71)] == [
        None, "escape", "space", "m", "?", None, "q"]


def test_a_window_opens_with_pygame_where_opencv_is_headless(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(window_mod, "gui_available", lambda: False)
    monkeypatch.setattr(window_mod, "pygame_available", lambda: True)
    monkeypatch.setattr(window_mod.sys, "platform", "linux")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    assert not window_mod.display_available()  # no display: never try to open one
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert window_mod.display_available()
    monkeypatch.setattr(window_mod, "pygame_available", lambda: False)
    assert not window_mod.display_available()
    with pytest.raises(InputError, match=r"pip install 'segedge\[display\]'"):
        window_mod._open_screen("auto", "w", 0)
