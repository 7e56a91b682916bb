"""Sources: URI registry, files (every frame, damage counted), images, errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime.errors import SourceError
from segedge.runtime.sources import base, demo, gstreamer, stream
from segedge.runtime.sources.base import SourceOptions, open_source, source_kind
from segedge.runtime.sources.live import LiveSource
from segedge.runtime.sources.video import VideoFileSource
from tests.runtime.onnx_fixtures import scene, write_video


def read_all(source: base.Source) -> list[base.Frame]:
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    return frames


@pytest.mark.parametrize(("uri", "kind"), [
    ("0", "camera"), ("/dev/video2", "camera"), ("csi://0", "csi"),
    ("rtsp://cam.local/stream", "stream"), ("https://x.org/a.mp4", "stream"),
    ("http://cam/mjpg", "stream"), ("demo://", "demo"), ("synthetic://?frames=3", "synthetic"),
    ("videotestsrc ! videoconvert ! appsink", "gstreamer"), ("clip.mp4", "video"),
    ("file:///tmp/clip.avi", "video"), ("frames/*.png", "images"), ("a.jpg", "images"),
])
def test_registry_picks_the_kind(uri: str, kind: str) -> None:
    assert source_kind(uri) == kind


def test_directory_is_images(tmp_path: Path) -> None:
    assert source_kind(str(tmp_path)) == "images"


@pytest.mark.parametrize("uri", ["ftp://host/clip.mp4", "s3://bucket/key"])
def test_unsupported_scheme_is_one_clear_line(uri: str) -> None:
    with pytest.raises(SourceError, match="unsupported scheme") as err:
        open_source(uri)
    assert "\n" not in str(err.value)


def test_missing_video_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="expected an existing video file, got no such file"):
        open_source(str(tmp_path / "missing.mp4"))


def test_undecodable_video_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(bad))


def test_video_file_delivers_every_frame_in_order(video: Path) -> None:
    source = open_source(str(video))
    assert not source.live and source.fps == pytest.approx(25.0)
    frames = read_all(source)
    assert [f.index for f in frames] == list(range(40))
    assert source.corrupt == 0 and source.dropped == 0
    for frame in frames[:5]:  # content is right and in order (mp4v is lossy: tolerance)
        diff = np.abs(frame.image.astype(int) - scene(frame.index).astype(int))
        assert np.median(diff) <= 8


def test_truncated_video_counts_the_lost_frames(tmp_path: Path) -> None:
    """A cut-off file (moov atom in front, as camera files are) plays up to the damage."""
    full = write_video(tmp_path / "full.avi", 60)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    source = open_source(str(cut))
    frames = read_all(source)
    assert 10 < len(frames) < 60
    assert source.corrupt == 60 - len(frames)


def test_real_truncated_video(tmp_path: Path, dashcam_video: Path) -> None:
    data = dashcam_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    source = open_source(str(cut))
    frames = read_all(source)
    assert 80 < len(frames) < 150
    assert len(frames) + source.corrupt == 221


def test_capture_that_recovers_after_bad_frames_counts_them() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.pos = 0

        def isOpened(self) -> bool:  # noqa: N802
            return True

        def read(self) -> tuple[bool, np.ndarray | None]:
            self.pos += 1
            if self.pos > 10:
                return False, None
            return (self.pos not in (4, 5, 6)), np.zeros((4, 4, 3), np.uint8)

        def get(self, prop: int) -> float:
            return 10.0 if prop == cv2.CAP_PROP_FRAME_COUNT else 0.0

        def release(self) -> None:
            pass

    source = VideoFileSource("flaky", SourceOptions(), capture=Flaky())
    frames = read_all(source)
    assert [f.index for f in frames] == list(range(7))
    assert source.corrupt == 3


def test_images_directory_glob_and_unreadable(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), scene(i, 40, 30))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path))
    frames = read_all(source)
    assert len(frames) == 3 and source.corrupt == 1  # broken.jpg sorts first: skipped
    np.testing.assert_array_equal(frames[0].image, scene(0, 40, 30))
    assert len(read_all(open_source(str(tmp_path / "img*.png")))) == 3
    assert len(read_all(open_source(str(tmp_path / "img2.png")))) == 1
    with pytest.raises(SourceError, match="no matches"):
        open_source(str(tmp_path / "*.bmp"))
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "missing.png"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="got none"):
        open_source(str(empty))


def test_synthetic_source() -> None:
    frames = read_all(open_source("synthetic://?frames=7&size=40x24&fps=10"))
    assert len(frames) == 7 and frames[0].image.shape == (24, 40, 3)
    assert not np.array_equal(frames[0].image, frames[1].image)
    with pytest.raises(SourceError, match="malformed"):
        open_source("synthetic://?size=big")


def test_demo_clip_missing_names_the_path(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setattr(demo, "DEMO_CLIP", tmp_path / "assets" / "demo_clip.mp4")
    with pytest.raises(SourceError, match=r"expected the packaged demo clip at .*demo_clip\.mp4"):
        open_source("demo://")


def test_demo_clip_plays_when_present(monkeypatch: pytest.MonkeyPatch, video: Path,
                                      tmp_path: Path) -> None:
    clip = tmp_path / "demo_clip.mp4"
    shutil.copy(video, clip)
    monkeypatch.setattr(demo, "DEMO_CLIP", clip)
    assert len(read_all(open_source("demo://"))) == 40


def test_gstreamer_sources_need_gstreamer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gstreamer, "gstreamer_available", lambda: False)
    with pytest.raises(SourceError, match="expected an OpenCV built with GStreamer"):
        open_source("csi://0")
    with pytest.raises(SourceError, match="GStreamer: NO"):
        open_source("videotestsrc ! videoconvert ! appsink")
    with pytest.raises(SourceError, match="sensor number"):
        open_source("csi://left")


def test_gstreamer_pipeline_must_end_in_appsink() -> None:
    with pytest.raises(SourceError, match="ending in appsink"):
        open_source("videotestsrc ! appsink name=x ! fakesink")


def test_http_video_file_is_read_like_a_file(monkeypatch: pytest.MonkeyPatch,
                                             video: Path) -> None:
    monkeypatch.setattr(stream, "_open_network", lambda uri, opts: cv2.VideoCapture(str(video)))
    source = open_source("https://example.org/clip.mp4")
    assert isinstance(source, VideoFileSource)
    assert len(read_all(source)) == 40


def test_rtsp_is_live(monkeypatch: pytest.MonkeyPatch, video: Path) -> None:
    monkeypatch.setattr(stream, "_open_network", lambda uri, opts: cv2.VideoCapture(str(video)))
    source = stream.create("rtsp://cam/stream", SourceOptions(reconnect_attempts=0))
    assert isinstance(source, LiveSource) and source.live
    assert source.read() is not None
    source.close()


def test_missing_camera_is_one_clear_line() -> None:
    with pytest.raises(SourceError, match="expected a camera that opens"):
        open_source("/dev/video99")


def test_packaged_demo_clip() -> None:
    if not demo.DEMO_CLIP.is_file():
        pytest.skip(f"demo clip not generated yet at {demo.DEMO_CLIP}")
    frames = read_all(open_source("demo://"))
    assert len(frames) > 0 and frames[0].image.ndim == 3


def test_unreadable_images_give_one_summary_line(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), scene(i, 40, 30))
    for i in range(20):
        (tmp_path / f"z{i:02d}.jpg").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        source = open_source(str(tmp_path))
        assert len(read_all(source)) == 2 and source.corrupt == 20
        assert source.read() is None  # reading past the end does not repeat the summary
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: 20 of 22 image(s) could not be decoded and were skipped "
        f"(first: {tmp_path / 'z00.jpg'})"]
    caplog.clear()
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "a.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        assert read_all(open_source(str(only_bad))) == []
    assert caplog.records == []  # none readable: the run reports it (exit 4), not the source


def test_synthetic_lost_stream_follows_the_reconnect_policy() -> None:
    options = SourceOptions(reconnect_attempts=2, reconnect_backoff_s=0.01, reconnect_max_s=0.02)
    source = open_source("synthetic://?frames=4&size=16x16&fps=500&live=1&lost=1", options)
    assert 1 <= len(read_all(source)) <= 4
    assert source.lost is True  # type: ignore[attr-defined]
    finite = open_source("synthetic://?frames=4&size=16x16&fps=500&live=1", options)
    read_all(finite)
    assert finite.lost is False  # type: ignore[attr-defined]
    with pytest.raises(SourceError, match="expected lost=1 together with live=1"):
        open_source("synthetic://?frames=4&lost=1")
