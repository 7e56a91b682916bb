"""Live capture: newest frame only (drops counted), reconnect with backoff, clean end."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from segedge.runtime.errors import SourceError
from segedge.runtime.sources.base import SourceOptions, open_source
from segedge.runtime.sources.live import LiveSource

FAST = SourceOptions(reconnect_attempts=3, reconnect_backoff_s=0.01, reconnect_max_s=0.02)


class FakeCamera:
    """Delivers ``frames`` frames (value = serial number) every ``period`` s, then fails."""

    serial = 0

    def __init__(self, frames: int, period: float = 0.002, opens: bool = True) -> None:
        self.frames, self.period, self.opens = frames, period, opens
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opens and not self.released

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames <= 0 or self.released:
            return False, None
        time.sleep(self.period)
        self.frames -= 1
        FakeCamera.serial += 1
        return True, np.full((4, 4, 3), FakeCamera.serial % 256, np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def test_slow_consumer_gets_newest_frames_and_drops_are_counted() -> None:
    source = LiveSource("fake", lambda: FakeCamera(200, 0.001),
                        SourceOptions(reconnect_attempts=0))
    got = []
    while (frame := source.read()) is not None:
        got.append(frame.index)
        time.sleep(0.01)  # consumer 10x slower than the camera
    assert len(got) < 100
    assert got == sorted(got) and len(set(got)) == len(got)
    assert source.dropped == 200 - len(got)


def test_camera_that_disappears_is_reopened() -> None:
    opened: list[FakeCamera] = []

    def opener() -> FakeCamera:
        camera = FakeCamera(5, opens=len(opened) < 4)  # comes back 3 times, then stays away
        opened.append(camera)
        return camera

    source = LiveSource("fake", opener, FAST)
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert source.reconnects == 3
    assert len(opened) == 4 + 3  # 1 open + 3 successful reopens + 3 failed attempts
    assert 1 <= len(frames) <= 20
    assert [f.index for f in frames] == sorted(f.index for f in frames)


def test_camera_that_stays_away_ends_the_stream_cleanly() -> None:
    calls = {"n": 0}

    def opener() -> FakeCamera:
        calls["n"] += 1
        return FakeCamera(3, opens=calls["n"] == 1)

    source = LiveSource("fake", opener, FAST)
    start = time.monotonic()
    while source.read() is not None:
        pass
    assert calls["n"] == 4  # the first open, then 3 failed reopen attempts
    assert time.monotonic() - start < 2.0


def test_first_open_failing_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="expected a camera that opens"):
        LiveSource("/dev/video7", lambda: FakeCamera(1, opens=False), FAST, what="camera")


def test_close_unblocks_a_waiting_reader() -> None:
    source = LiveSource("fake", lambda: FakeCamera(1_000_000, period=0.5),
                        SourceOptions(reconnect_attempts=0))
    source.read()  # first frame
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(source.read()))
    reader.start()
    time.sleep(0.05)
    source.close()
    reader.join(timeout=3)
    assert not reader.is_alive()


def test_synthetic_live_source_paces_and_ends() -> None:
    source = open_source("synthetic://?frames=20&fps=200&live=1&size=16x16")
    assert source.live and source.fps == pytest.approx(200)
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert 1 <= len(frames) <= 20 and len(frames) + source.dropped == 20


class DecodingCamera(FakeCamera):
    """A capture that, like cv2.VideoCapture, splits grab (the frame arrived) from retrieve
    (decode, here 30 ms)."""

    def __init__(self, frames: int) -> None:
        super().__init__(frames, period=0.01)
        self.grabbed_at: list[float] = []

    def grab(self) -> bool:
        ok, self._image = FakeCamera.read(self)
        self.grabbed_at.append(time.monotonic())
        return ok

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(0.03)
        return self._image is not None, self._image


def test_frames_are_stamped_when_they_arrive_not_after_decoding() -> None:
    camera = DecodingCamera(5)
    source = LiveSource("fake", lambda: camera, SourceOptions(reconnect_attempts=0))
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
        time.sleep(0.1)  # slower than the camera: each read gets the newest frame
    source.close()
    assert frames
    for frame in frames:  # the stamp of its grab: 30 ms of decoding are not hidden
        assert any(0.0 <= frame.timestamp - t < 0.005 for t in camera.grabbed_at)
