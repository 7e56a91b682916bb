"""Sinks: temp-then-rename video, codecs by extension, masks, display detection."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime.errors import InputError
from segedge.runtime.sinks import window as sink_window
from segedge.runtime.sinks.base import build_sinks, needs_pixels, open_sink, sink_names
from segedge.runtime.sinks.masks import MaskSink
from segedge.runtime.sinks.video import VideoSink, partial_path
from segedge.runtime.sinks.window import WindowSink
from tests.runtime.onnx_fixtures import count_frames, scene


def write_frames(sink: VideoSink, n: int) -> None:
    labels = np.zeros((48, 64), np.uint8)
    for i in range(n):
        sink.write(i, scene(i), labels)


# FFmpeg reports MPEG-4 part 2 (written as mp4v) as FMP4 when reading it back.
@pytest.mark.parametrize(("suffix", "fourccs"), [(".mp4", ("mp4v", "fmp4")), (".avi", ("mjpg",))])
def test_video_written_under_temp_name_then_renamed(tmp_path: Path, suffix: str,
                                                    fourccs: tuple[str, ...]) -> None:
    target = tmp_path / f"out{suffix}"
    sink = VideoSink(target, fps=12.0)
    write_frames(sink, 10)
    assert not target.exists() and partial_path(target).exists()
    sink.close(complete=True)
    assert target.exists() and not partial_path(target).exists()
    assert count_frames(target) == (10, (64, 48))
    cap = cv2.VideoCapture(str(target))
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    assert code.to_bytes(4, "little").decode().lower() in fourccs
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)


def test_failed_run_never_leaves_a_complete_looking_file(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    sink = VideoSink(target, fps=25.0)
    write_frames(sink, 5)
    sink.close(complete=False)
    assert not target.exists()
    assert partial_path(target).name.startswith(".out.partial-")


def test_mixed_frame_sizes_are_resized(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "o.avi", fps=5)
    labels = np.zeros((1, 1), np.uint8)
    sink.write(0, scene(0, 64, 48), labels)
    sink.write(1, scene(1, 80, 30), labels)
    sink.close()
    assert count_frames(tmp_path / "o.avi") == (2, (64, 48))


def test_no_frames_no_file(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "o.mp4", fps=5)
    sink.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.gif", "out", "out.h264"])
def test_unsupported_video_extension(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="--output: expected a video path ending in"):
        VideoSink(tmp_path / name, fps=5)


def test_mask_sink_names_by_index_and_is_lossless(tmp_path: Path) -> None:
    sink = MaskSink(tmp_path / "masks")
    labels = np.random.default_rng(0).integers(0, 12, (48, 64), dtype=np.uint8)
    sink.write(0, None, labels)
    sink.write(17, None, labels)
    names = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert names == ["000000.png", "000017.png"]
    back = cv2.imread(str(tmp_path / "masks" / "000017.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back, labels)


def test_display_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sink_window, "gui_available", lambda: True)
    assert not sink_window.display_available()
    monkeypatch.setenv("DISPLAY", ":0")
    assert sink_window.display_available()
    monkeypatch.setattr(sink_window, "gui_available", lambda: False)
    assert not sink_window.display_available()  # headless OpenCV: imshow would abort


def test_headless_automatically_and_forced(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    import segedge.runtime.sinks.window as sinks_mod

    monkeypatch.setattr(sinks_mod, "display_available", lambda: False)
    assert build_sinks(None, None, None, 25.0) == []
    assert build_sinks(None, None, True, 25.0) == []  # asked for, but impossible: warned
    monkeypatch.setattr(sinks_mod, "display_available", lambda: True)
    assert [type(s).__name__ for s in build_sinks(None, None, None, 25.0)] == ["WindowSink"]
    assert build_sinks(None, None, False, 25.0) == []  # --no-display
    kinds = [type(s).__name__ for s in build_sinks(tmp_path / "a.mp4", tmp_path / "m", False,
                                                   25.0)]
    assert kinds == ["VideoSink", "MaskSink"]


def test_window_quits_on_q(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = []
    monkeypatch.setattr(cv2, "imshow", lambda name, image: shown.append(image.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q"))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda name, prop: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda name: None)
    window = WindowSink()
    window.write(0, scene(0), np.zeros((48, 64), np.uint8))
    assert shown == [(48, 64, 3)] and window.quit_requested
    window.close()


def test_sink_kinds_say_what_they_need(tmp_path: Path) -> None:
    video = VideoSink(tmp_path / "o.mp4", fps=5)
    masks = MaskSink(tmp_path / "m")
    window = WindowSink()
    assert [s.needs_pixels for s in (video, masks, window)] == [True, False, True]
    assert [s.main_thread for s in (video, masks, window)] == [False, False, True]
    assert not any(s.quit_requested for s in (video, masks, window))
    assert needs_pixels([masks]) is False and needs_pixels([masks, video]) is True
    assert sink_names() == ["masks", "video", "window"]


def test_unknown_sink_kind_names_the_known_ones() -> None:
    with pytest.raises(InputError) as err:
        open_sink("printer")
    assert str(err.value) == "sink: expected one of masks, video, window, got 'printer'"
