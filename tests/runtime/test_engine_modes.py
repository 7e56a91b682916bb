"""--mode: latency (newest frame, one in flight) for one live source, throughput (frames
queued, several inference calls in flight, order kept) for files and several streams."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from segedge.runtime import Segmenter
from segedge.runtime.backends.base import BackendOptions
from segedge.runtime.batching import Batcher, BatchPolicy, BatchRecorder, Mux
from segedge.runtime.config import RunConfig
from segedge.runtime.errors import InputError
from segedge.runtime.pipeline import run
from segedge.runtime.sources.base import SourceOptions
from segedge.runtime.sources.live import LiveSource
from segedge.runtime.streams import run_many

CAMERA = "fake-camera://fast"


class Recorder:
    """What the batcher needs of a lane: its recorder and where results go (taking each
    back at once, as the lane's postprocess stage does)."""

    def __init__(self, share: Any) -> None:
        self.share = share
        self.rec = SimpleNamespace(add=lambda stage, ms: None)
        self.got: list[int] = []
        self.ended = False

    def deliver(self, item: Any) -> bool:
        assert not self.ended
        self.got.append(int(item.outputs["frame"]))
        self.share.release()
        return True

    def deliver_end(self) -> bool:
        self.ended = True
        return True


def test_calls_in_flight_complete_in_the_order_they_started() -> None:
    """Later calls finish first (shorter sleeps); each lane still gets its frames in order,
    its end after its last frame, and more than one call really ran at once."""
    mux = Mux(2, 4)
    lanes = [Recorder(mux.lanes[0]), Recorder(mux.lanes[1])]
    running, peak, calls, lock = [0], [0], [0], threading.Lock()

    def infer_many(tensors: list[np.ndarray]) -> list[dict[str, Any]]:
        with lock:
            calls[0] += 1
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            delay = 0.03 if calls[0] % 3 == 1 else 0.005
        time.sleep(delay)
        with lock:
            running[0] -= 1
        return [{"frame": t[0, 0]} for t in tensors]

    batcher = Batcher(mux, lanes, infer_many, limit=1, wait_s=0.0, abort=threading.Event(),
                      recorder=BatchRecorder(1, None, 0.0), in_flight=3)
    never = threading.Event()

    def feed(k: int) -> None:
        for i in range(20):
            item = SimpleNamespace(tensor=np.full((1, 1), 100 * k + i), outputs=None)
            assert mux.lanes[k].put(item, never)
        mux.lanes[k].end()

    feeders = [threading.Thread(target=feed, args=(k,)) for k in range(2)]
    for thread in feeders:
        thread.start()
    batcher.loop()
    for thread in feeders:
        thread.join(5)
    assert lanes[0].got == list(range(20)) and lanes[1].got == list(range(100, 120))
    assert lanes[0].ended and lanes[1].ended
    assert peak[0] >= 2 and batcher.recorder.to_dict()["batch"]["calls"] == 40


def test_busy_time_counts_overlapping_calls_once() -> None:
    """The stage's busy time is the union of its calls' spans: two calls overlapping over
    0-3 s are 3 s, not 4; an idle gap (3-5 s) is not counted; per frame over the frames."""
    now = [0.0]
    rec = BatchRecorder(2, None, 0.0, clock=lambda: now[0])
    for at, event in [(0, "start"), (1, "start"), (2, "end"), (3, "end"), (5, "start"),
                      (6, "end")]:
        now[0] = float(at)
        (rec.call_started if event == "start" else rec.call_ended)()
    assert rec.busy_s == 4.0
    for _ in range(3):
        rec.add(2, 0.0, 10.0)  # 6 frames: 4 s / 6 frames
    assert rec.to_dict()["infer_busy_ms_per_frame"] == 666.667
    assert BatchRecorder(1, None, 0.0).to_dict()["infer_busy_ms_per_frame"] is None


def test_a_lane_releasing_a_frame_wakes_only_its_own_reader() -> None:
    """Every hand-off wakes only the thread it concerns: a frame of lane 0 leaving the
    shared stage wakes lane 0's reader (blocked, its lane full), never lane 1's (its wait
    only times out), and no reader is woken by the inference thread taking frames."""
    mux = Mux(2, 1)
    never = threading.Event()
    notified = {0: 0, 1: 0}
    for k, lane in enumerate(mux.lanes):
        real_wait = lane.room.wait

        def wait(timeout: float | None = None, k: int = k, real: Any = real_wait) -> bool:
            woken = real(timeout)
            notified[k] += int(woken)  # True: notified, False: its 0.1 s wait timed out
            return woken

        lane.room.wait = wait  # type: ignore[method-assign]
        assert lane.put(SimpleNamespace(index=0), never)  # the lane is now full
    done = {0: threading.Event(), 1: threading.Event()}
    put: dict[int, bool] = {}

    def reader(k: int) -> None:
        put[k] = mux.lanes[k].put(SimpleNamespace(index=1), never)  # blocks: no room
        done[k].set()

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    batch = mux.take(2, 0.0, never)
    assert batch is not None and len(batch.items) == 2
    for _ in range(3):
        mux.lanes[0].release()  # lane 0's frame left: only its reader may go on
        done[0].wait(5)
    time.sleep(0.15)
    assert done[0].is_set() and not done[1].is_set()
    assert notified[0] == 1 and notified[1] == 0
    mux.close()  # closing wakes every reader
    threads[1].join(5)
    assert not threads[1].is_alive() and notified[1] == 1
    assert put == {0: True, 1: False}  # lane 1's frame was refused: the run is ending


@pytest.fixture
def concurrent_backend(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Slow each call down and count how many overlapped (ONNX Runtime opened in throughput
    mode with 2 threads runs 2 single-threaded sessions: ``max_in_flight`` 2)."""
    seen = {"running": 0, "peak": 0, "calls": 0}
    lock = threading.Lock()
    real = Segmenter.infer_many

    def slow(self: Segmenter, tensors: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        with lock:
            seen["running"] += 1
            seen["calls"] += 1
            seen["peak"] = max(seen["peak"], seen["running"])
        time.sleep(0.02)
        try:
            return real(self, tensors)
        finally:
            with lock:
                seen["running"] -= 1

    monkeypatch.setattr(Segmenter, "infer_many", slow)
    return seen


def test_a_file_runs_in_throughput_mode_with_two_calls_in_flight_in_order(
        concurrent_backend: dict[str, int], models: dict[str, Path], video: Path,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="segedge")
    stats = run(RunConfig(model=models["labels"], source=str(video), display=False,
                          save_masks=tmp_path / "m", max_frames=16,
                          backend_options=BackendOptions(threads=2)))
    assert stats.mode == "throughput" and stats.frames_processed == 16
    assert concurrent_backend["calls"] == 16 and concurrent_backend["peak"] == 2
    first = caplog.messages[0]
    assert first.startswith(f"model {models['labels']} on onnxruntime CPU: ")
    assert first.endswith("; mode throughput (auto: not a live source): up to 3 frame(s) per "
                          "stream and 2 inference call(s) in flight"), first
    seg = Segmenter(models["labels"])
    cap = cv2.VideoCapture(str(video))
    for i in range(16):  # every mask is its own frame's: the order survived
        ok, frame = cap.read()
        assert ok
        mask = cv2.imread(str(tmp_path / "m" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, seg(frame).labels)
    cap.release()


def test_latency_mode_keeps_one_call_in_flight_even_when_the_backend_runs_more(
        concurrent_backend: dict[str, int], models: dict[str, Path], video: Path) -> None:
    stats = run(RunConfig(model=models["labels"], source=str(video), display=False,
                          max_frames=8, backend_options=BackendOptions(threads=2)),
                batching=BatchPolicy(mode="latency"))
    assert stats.mode == "latency" and stats.frames_processed == 8
    assert concurrent_backend["peak"] == 1


def test_several_streams_default_to_throughput(models: dict[str, Path], video: Path) -> None:
    stats = run_many([RunConfig(model=models["labels"], source=str(video), display=False,
                                max_frames=3) for _ in range(2)])
    assert stats.aggregate["mode"] == "throughput"
    assert [s.mode for s in stats.streams] == ["throughput", "throughput"]
    with pytest.raises(InputError, match=r"^--mode: expected auto \| latency \| throughput"):
        BatchPolicy(mode="fast")  # type: ignore[arg-type]


class FastCamera:
    """cv2.VideoCapture's part a LiveSource reads: a frame every 5 ms, ``frames`` in all."""

    def __init__(self, frames: int) -> None:
        self.frames, self.opened = frames, True

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames <= 0 or not self.opened:
            return False, None
        time.sleep(0.005)
        self.frames -= 1
        return True, np.zeros((48, 64, 3), np.uint8)

    def get(self, prop: int) -> float:
        return 200.0

    def release(self) -> None:
        self.opened = False


INFER_MS = 80.0  # the model's time per call, made long so the queueing is what is measured


@pytest.fixture
def fast_camera_slow_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import segedge.runtime.engine as engine

    real_open = engine.open_source

    def opener(uri: str, options: SourceOptions | None = None) -> object:
        if uri == CAMERA:  # 2.5 s of frames: about 30 inferences
            return LiveSource(uri, lambda: FastCamera(500), SourceOptions(reconnect_attempts=0),
                              finite=True)
        return real_open(uri, options)

    real = Segmenter.infer_many

    def slow(self: Segmenter, tensors: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        time.sleep(INFER_MS / 1e3)
        return real(self, tensors)

    monkeypatch.setattr(engine, "open_source", opener)
    monkeypatch.setattr(Segmenter, "infer_many", slow)


def test_one_live_source_gets_the_newest_frame_within_one_and_a_half_model_times(
        fast_camera_slow_model: None, models: dict[str, Path]) -> None:
    """The issue's goal, as a behaviour: in latency mode (auto for one live source) a frame
    is captured, then inferred at once; in throughput mode it queues behind three."""
    config = RunConfig(model=models["labels"], source=CAMERA, display=False)
    latency = run(config)
    assert latency.mode == "latency" and latency.frames_processed >= 10
    capture = latency.capture_to_output_ms
    assert capture is not None and capture["count"] == latency.frames_processed
    assert INFER_MS <= capture["p50_ms"] <= 1.5 * INFER_MS
    one_slot = replace(config, backend_options=BackendOptions(threads=1))  # 1 call in flight
    queued = run(one_slot, batching=BatchPolicy(mode="throughput"))
    assert queued.mode == "throughput" and queued.capture_to_output_ms is not None
    assert queued.capture_to_output_ms["p50_ms"] >= 2.5 * INFER_MS  # 3 frames queued ahead
