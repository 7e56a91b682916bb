"""Sinks: temp-then-rename video, codecs by extension, masks, display detection."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime.errors import InputError
from segedge.runtime.sinks import window as sink_window
from segedge.runtime.sinks.base import (
    SinkContext,
    SinkOutcome,
    build_sinks,
    needs_pixels,
    open_sink,
    sink_names,
)
from segedge.runtime.sinks.masks import MaskSink
from segedge.runtime.sinks.video import (
    VideoSink,
    partial_path,
    remove_stale_partials,
    verify_video,
)
from segedge.runtime.sinks.window import WindowSink
from tests.runtime.onnx_fixtures import count_frames, scene, write_video


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
    monkeypatch.setattr(sink_window, "pygame_available", lambda: False, raising=False)
    assert not sink_window.display_available()
    monkeypatch.setenv("DISPLAY", ":0")
    assert sink_window.display_available()
    monkeypatch.setattr(sink_window, "gui_available", lambda: False)
    assert not sink_window.display_available()  # headless OpenCV: imshow would abort


def test_headless_automatically_and_forced(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    import segedge.runtime.sinks.window as sinks_mod

    ctx = SinkContext(fps=25.0)
    monkeypatch.setattr(sinks_mod, "display_available", lambda: False)
    assert build_sinks((), None, None, ctx) == []
    assert build_sinks((), None, True, ctx) == []  # asked for, but impossible: warned
    assert build_sinks(("display://0",), None, None, ctx) == []  # the same, by URI
    monkeypatch.setattr(sinks_mod, "display_available", lambda: True)
    assert [type(s).__name__ for s in build_sinks((), None, None, ctx)] == ["WindowSink"]
    assert build_sinks((), None, False, ctx) == []  # --no-display
    kinds = [type(s).__name__ for s in build_sinks((str(tmp_path / "a.mp4"),), tmp_path / "m",
                                                   False, ctx)]
    assert kinds == ["VideoSink", "MaskSink"]
    kinds = [type(s).__name__ for s in build_sinks(
        (str(tmp_path / "p.png"), f"{tmp_path / 'dir'}/", "display://0"), None, None, ctx)]
    assert kinds == ["ImageSink", "FolderSink", "WindowSink"]  # one window, after the files


def test_window_quits_on_q(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sink_window, "gui_available", lambda: True)  # the cv2.imshow window
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
    assert sink_names() == ["display", "folder", "image", "masks", "network", "video"]


def test_unknown_sink_kind_names_the_known_ones() -> None:
    with pytest.raises(InputError) as err:
        open_sink("printer")
    assert str(err.value) == ("sink: expected one of display, folder, image, masks, network, "
                              "video, got 'printer'")


def test_sink_outcome_validates_and_formats() -> None:
    assert SinkOutcome("o.mp4", 3).status == "ok"
    failed = SinkOutcome("o.mp4", 0, "failed", "disk full")
    assert failed.failed and failed.status == "failed: disk full"
    with pytest.raises(InputError, match="sink outcome: expected a reason for state 'partial'"):
        SinkOutcome("o.mp4", 1, "partial")
    with pytest.raises(InputError, match="sink outcome: expected one of ok, failed, partial"):
        SinkOutcome("o.mp4", 1, "lost", "x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="frames written: expected a count >= 0, got -1"):
        SinkOutcome("o.mp4", -1)


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_verify_video_counts_frames_and_needs_an_index(tmp_path: Path, suffix: str) -> None:
    path = write_video(tmp_path / f"v{suffix}", 10)
    assert verify_video(path, 10) is None
    assert verify_video(path, 11) == "the file holds 10 of the 11 frames written"
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert verify_video(cut, 10) in ("the file does not open (truncated: no index)",
                                     "the file holds 0 of the 10 frames written")
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert verify_video(tmp_path / "empty.mp4", 10) == "the file is empty"


def test_video_failing_verification_is_removed_not_renamed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segedge.runtime.sinks import video as video_mod

    monkeypatch.setattr(video_mod, "verify_video", lambda path, frames: "the file holds 2 of 5")
    target = tmp_path / "o.mp4"
    sink = VideoSink(target, fps=25.0)
    write_frames(sink, 5)
    outcome = sink.close(complete=True)
    assert outcome == SinkOutcome(str(target), 0, "failed", "video not written: the file holds "
                                  "2 of 5; 5 frame(s) were sent, the incomplete file was removed")
    assert list(tmp_path.iterdir()) == []


def test_video_outcomes_ok_partial_empty(tmp_path: Path) -> None:
    ok = VideoSink(tmp_path / "a.avi", fps=5)
    write_frames(ok, 3)
    assert ok.close() == SinkOutcome(str(tmp_path / "a.avi"), 3)
    partial = VideoSink(tmp_path / "b.avi", fps=5)
    write_frames(partial, 2)
    outcome = partial.close(complete=False)
    assert outcome.state == "partial" and outcome.frames_written == 2
    assert str(partial_path(tmp_path / "b.avi")) in outcome.detail
    assert VideoSink(tmp_path / "c.avi", fps=5).close().state == "empty"


def test_stale_partials_of_dead_processes_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "o.mp4"
    dead = partial_path(target, 2**22 + 12345)  # above Linux's pid_max: no such process
    mine = partial_path(target)
    other = tmp_path / ".other.partial-1.mp4"
    for path in (dead, mine, other):
        path.write_bytes(b"x")
    assert remove_stale_partials(target) == [dead]
    assert mine.exists() and other.exists() and not dead.exists()


def test_mask_failures_are_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    sink = MaskSink(tmp_path / "m")
    (tmp_path / "m" / "000001.png").mkdir()  # this name cannot become a file
    labels = np.zeros((4, 4), np.uint8)
    for i in range(3):
        sink.write(i, None, labels)
    outcome = sink.close()
    assert outcome == SinkOutcome(str(tmp_path / "m"), 2, "failed",
                                  "1 of 3 mask(s) not written (first: 000001.png: Is a "
                                  "directory)")
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if p.is_file()) == [
        "000000.png", "000002.png"]
    assert MaskSink(tmp_path / "n").close().state == "empty"
    assert MaskSink(tmp_path / "n").close(complete=False).state == "partial"
