"""Live latency (issue 22): the newest frame is taken, frames nobody takes are dropped
undecoded and counted, and capture-to-output is reported split into parts that add up to
each frame's total, with p50/p90 consistent with the per-frame records.  No timed
assertions: only counts, identities and sums."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from segedge.runtime.config import RunConfig
from segedge.runtime.pipeline import run
from segedge.runtime.sources.base import SOURCES, SourceOptions, register_source
from segedge.runtime.sources.live import LiveSource
from segedge.runtime.sources.synthetic import RING, SyntheticCapture, synthetic_frame
from segedge.runtime.stats import BREAKDOWN
from segedge.runtime.streams import is_image_source, stream_name

CAMERA = "fake-grab://cam"


class GrabCamera:
    """cv2.VideoCapture's grab/retrieve split: ``grab`` waits for the test (``release``)
    or, with ``period``, for the next frame time; ``retrieve`` (the decode) is counted."""

    def __init__(self, frames: int, period: float | None = None) -> None:
        self.frames, self.period = frames, period
        self.gate = threading.Semaphore(0)
        self.grabbed = 0
        self.calls = 0  # grab calls entered
        self.retrieved: list[int] = []
        self.opened = True

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def grab(self) -> bool:
        self.calls += 1
        if self.grabbed >= self.frames or not self.opened:
            return False
        if self.period is None:
            while not self.gate.acquire(timeout=0.05):
                if not self.opened:
                    return False
        else:
            time.sleep(self.period)
        self.grabbed += 1
        return True

    def retrieve(self) -> tuple[bool, np.ndarray]:
        index = self.grabbed - 1
        self.retrieved.append(index)
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, : 8 + index % 32] = (20, 40, 220)
        return True, image

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.opened = False


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.002)


def test_frames_nobody_reads_are_dropped_undecoded_and_the_reader_gets_the_newest() -> None:
    camera = GrabCamera(frames=10)
    source = LiveSource("fake", lambda: camera, SourceOptions(reconnect_attempts=0),
                        finite=True)
    try:
        for _ in range(3):  # three frames arrive with no reader
            camera.gate.release()
        wait_until(lambda: camera.calls == 4)  # back in grab: nothing held for a reader
        got: list[int] = []
        reader = threading.Thread(target=lambda: got.append(source.read().index))
        reader.start()
        wait_until(lambda: source._readers == 1)  # noqa: SLF001 - the reader is waiting
        camera.gate.release()  # the fourth arrives while a reader waits
        reader.join(timeout=10)
        assert got == [3]  # the newest, not the oldest held one
        assert camera.retrieved == [3]  # only the frame taken was decoded
        assert source.dropped == 3
    finally:
        source.close()


def test_every_grabbed_frame_is_either_delivered_or_counted_dropped() -> None:
    camera = GrabCamera(frames=60, period=0.002)
    source = LiveSource("fake", lambda: camera, SourceOptions(reconnect_attempts=0),
                        finite=True)
    got = []
    while (frame := source.read()) is not None:
        got.append(frame.index)
        time.sleep(0.01)  # a consumer slower than the camera
    assert got == sorted(set(got)) and len(got) < 60
    assert len(got) + source.dropped == 60
    assert sorted(camera.retrieved) == got  # nothing decoded that was not delivered


def test_live_synthetic_frames_are_copies_of_a_ring_rendered_once() -> None:
    capture = SyntheticCapture(frames=RING + 2, width=64, height=48, fps=1000.0, paced=True)
    frames = []
    while capture.grab():
        ok, image = capture.retrieve()
        assert ok and image is not None
        frames.append(image)
    assert len(frames) == RING + 2
    assert all(np.array_equal(frames[i], synthetic_frame(i, 64, 48)) for i in range(RING))
    assert np.array_equal(frames[RING], frames[0])  # the ring starts again
    frames[0][:] = 0  # a consumer may write into its frame: the ring stays intact
    assert np.array_equal(frames[RING], synthetic_frame(0, 64, 48))


class GatedReadCamera:
    """A capture without grab/retrieve (``read`` only) whose frames arrive when the test
    releases them."""

    def __init__(self) -> None:
        self.gate = threading.Semaphore(0)
        self.sent = 0
        self.opened = True

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        while not self.gate.acquire(timeout=0.05):
            if not self.opened:
                return False, None
        self.sent += 1
        return True, np.full((4, 4, 3), self.sent, np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.opened = False


class CountingCondition(threading.Condition):
    """Counts the waits of one thread (the reader): a polling reader waits hundreds of
    times a second, one woken by arrivals a few times."""

    def __init__(self) -> None:
        super().__init__()
        self.reader: int | None = None
        self.reader_waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        if threading.get_ident() == self.reader:
            self.reader_waits += 1
        return super().wait(timeout)


def _aged_source(age: float) -> tuple[LiveSource, GatedReadCamera, CountingCondition]:
    """A 1 FPS read-only live source whose first frame is ``age`` seconds old."""
    camera = GatedReadCamera()
    source = LiveSource("fake", lambda: camera,
                        SourceOptions(reconnect_attempts=0, fps=1.0), finite=True)
    cond = CountingCondition()
    source._cond = cond  # noqa: SLF001 - the capture thread waits in read(), not on it
    camera.gate.release()
    wait_until(lambda: source._latest is not None)  # noqa: SLF001
    first = source._latest  # noqa: SLF001
    time.sleep(max(0.0, first.timestamp + age - time.monotonic()))
    return source, camera, cond


def _read_in_thread(source: LiveSource, cond: CountingCondition,
                    got: list[object]) -> threading.Thread:
    def read() -> None:
        cond.reader = threading.get_ident()
        got.append(source.read())

    reader = threading.Thread(target=read)
    reader.start()
    return reader


def test_a_reader_late_in_the_interval_waits_for_the_fresher_frame_without_polling() -> None:
    source, camera, cond = _aged_source(0.7)  # older than the next (due in 0.3 s) is away
    try:
        got: list[object] = []
        reader = _read_in_thread(source, cond, got)
        wait_until(lambda: source._readers == 1)  # noqa: SLF001
        time.sleep(0.2)  # a polling reader would wait ~40 times meanwhile
        camera.gate.release()  # the next frame arrives
        reader.join(timeout=10)
        assert [f.index for f in got] == [1]  # type: ignore[attr-defined]
        assert source.dropped == 1  # the older one, superseded
        assert cond.reader_waits <= 3
    finally:
        source.close()


def test_when_the_next_frame_is_late_the_reader_takes_the_newest() -> None:
    source, _camera, cond = _aged_source(0.7)
    try:
        got: list[object] = []
        reader = _read_in_thread(source, cond, got)
        reader.join(timeout=10)
        frame = got[0]
        assert frame.index == 0  # type: ignore[attr-defined]
        # it waited for the due frame until 1.5 intervals after the newest's capture
        assert time.monotonic() >= frame.timestamp + 1.5  # type: ignore[attr-defined]
        assert cond.reader_waits <= 3 and source.dropped == 0
    finally:
        source.close()


@pytest.fixture
def grab_camera(monkeypatch: pytest.MonkeyPatch) -> GrabCamera:
    import segedge.runtime.engine as engine

    real = engine.open_source
    camera = GrabCamera(frames=40, period=0.004)

    def opener(uri: str, options: SourceOptions | None = None) -> object:
        if uri == CAMERA:
            return LiveSource(uri, lambda: camera, SourceOptions(reconnect_attempts=0),
                              finite=True)
        return real(uri, options)

    monkeypatch.setattr(engine, "open_source", opener)
    return camera


def test_capture_to_output_parts_add_up_and_match_the_frame_records(
        grab_camera: GrabCamera, models: dict[str, Path], tmp_path: Path) -> None:
    stats = run(RunConfig(model=models["labels"], source=CAMERA, display=False,
                          save_masks=tmp_path / "m"))
    assert stats.mode == "latency" and stats.frames_processed >= 1
    # every frame the camera delivered was processed or counted as dropped, and only the
    # processed ones were decoded
    assert stats.frames_read + stats.frames_dropped == 40
    assert len(grab_camera.retrieved) == stats.frames_read == stats.frames_processed
    capture, parts = stats.capture_to_output_ms, stats.capture_breakdown_ms
    assert capture is not None and parts is not None
    assert list(parts) == list(BREAKDOWN)
    records = stats.frame_records
    assert len(records) == stats.frames_processed == capture["count"]
    for record in records:
        total = sum(record[f"{name}_ms"] for name in BREAKDOWN)
        assert total == pytest.approx(record["total_ms"], abs=0.01)
        assert all(record[f"{name}_ms"] >= 0.0 for name in BREAKDOWN)
    totals = [r["total_ms"] for r in records]
    assert capture["p50_ms"] == pytest.approx(float(np.percentile(totals, 50)), abs=0.002)
    assert capture["p90_ms"] == pytest.approx(float(np.percentile(totals, 90)), abs=0.002)
    # means add up exactly: the parts are consecutive intervals of one clock
    assert sum(p["mean_ms"] for p in parts.values()) == pytest.approx(capture["mean_ms"],
                                                                      abs=0.01)
    assert [r["index"] for r in records] == sorted(r["index"] for r in records)
    line = next(ln for ln in stats.summary_lines() if ln.startswith("capture to output p50 "))
    assert line == "capture to output p50 by part: " + ", ".join(
        f"{name} {parts[name]['p50_ms']:.1f}" for name in BREAKDOWN) + " ms"


def test_a_file_run_has_no_capture_breakdown(models: dict[str, Path], video: Path) -> None:
    stats = run(RunConfig(model=models["labels"], source=str(video), display=False,
                          max_frames=3))
    assert stats.capture_breakdown_ms is None and stats.frame_records == ()


def test_stream_names_and_image_folders_come_from_the_source_kinds_capabilities() -> None:
    register_source("stills", None, "segedge.runtime.sources.images", schemes=("stills",),
                    still_images=True, naming=lambda uri: "album-" + uri.rsplit("/", 1)[-1])
    try:
        assert is_image_source("stills://host/summer")
        assert stream_name("stills://host/summer") == "album-summer"
    finally:
        SOURCES.unregister("stills")
    assert is_image_source("shots/*.jpg") and not is_image_source("clip.mp4")
    assert not is_image_source("synthetic://?live=1")
    assert stream_name("nope://somehost/x") == "somehost"  # no kind takes it
