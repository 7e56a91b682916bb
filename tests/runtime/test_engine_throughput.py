"""Throughput mode on real backends: several requests really in flight, results in order.

The mode reaches the backend (BackendOptions.mode): ONNX Runtime opens one CPU session
per slot, OpenVINO compiles with its THROUGHPUT hint and keeps one infer request per
slot; calls made at once from several threads each get their own input's outputs, and
a run's masks are the same frame for frame in both modes.  A latency-mode run ends by
checking the auto chooser's verdict (runtime.backends.auto.after_run).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import segedge.runtime.engine as engine
import segedge.runtime.segmenter as segmenter_module
from segedge.runtime.backends.base import BackendOptions, open_backend
from segedge.runtime.backends.onnxruntime import slot_threads
from segedge.runtime.batching import BatchPolicy
from segedge.runtime.config import RunConfig
from segedge.runtime.errors import InputError
from segedge.runtime.pipeline import run
from segedge.runtime.segmenter import Segmenter

BACKENDS = ["onnxruntime", "openvino"]


def _need(backend: str) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")


def _frames(count: int) -> list[np.ndarray]:
    """Different inputs per call (uint8 NHWC 32x48): a mix-up of results shows."""
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (1, 32, 48, 3), dtype=np.uint8) for _ in range(count)]


def test_the_mode_is_checked_and_onnxruntime_splits_its_threads() -> None:
    with pytest.raises(InputError, match=r"^mode: expected latency \| throughput, got 'fast'"):
        BackendOptions(mode="fast")
    cpu = ["CPUExecutionProvider"]
    assert slot_threads(BackendOptions(threads=2), cpu) == [2]  # latency: one session
    assert slot_threads(BackendOptions(threads=2, mode="throughput"), cpu) == [1, 1]
    assert slot_threads(BackendOptions(threads=5, mode="throughput"), cpu) == [3, 2]
    assert slot_threads(BackendOptions(threads=1, mode="throughput"), cpu) == [1]
    gpu = [("CUDAExecutionProvider", {}), "CPUExecutionProvider"]
    assert slot_threads(BackendOptions(threads=2, mode="throughput"), gpu) == [2]


@pytest.mark.parametrize("name", BACKENDS)
def test_concurrent_calls_each_get_their_own_outputs(models: dict[str, Path],
                                                     name: str) -> None:
    _need(name)
    latency = open_backend(models["labels"], name, BackendOptions(threads=2))
    busy = open_backend(models["labels"], name, BackendOptions(threads=2, mode="throughput"))
    try:
        assert getattr(latency, "max_in_flight", 1) == 1 and busy.mode == "throughput"
        slots = busy.max_in_flight
        if name == "openvino":  # the THROUGHPUT hint, the explicit precision kept
            assert busy.compiled.get_property("PERFORMANCE_HINT") == "THROUGHPUT"
            assert latency.compiled.get_property("PERFORMANCE_HINT") == "LATENCY"
            assert slots == busy.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            assert busy.active == "CPU (f32)"
        else:
            assert busy.slot_threads == (1, 1) and slots == 2
        frames = _frames(24)
        expected = [latency.infer(f) for f in frames]
        peak, running, lock = [0], [0], threading.Lock()
        slow = [_Slow(busy._idle.get(), peak, running, lock) for _ in range(slots)]
        for worker in slow:  # each session / infer request takes 10 ms longer: overlap shows
            busy._idle.put(worker)
        with ThreadPoolExecutor(max(2, slots)) as pool:
            got = list(pool.map(busy.infer, frames))
        assert peak[0] == slots >= 2  # every slot was busy at once, never more
        assert all(w.calls > 0 for w in slow)
        for want, have in zip(expected, got, strict=True):
            assert want.keys() == have.keys()
            for key in want:
                np.testing.assert_allclose(have[key], want[key], rtol=1e-5, atol=1e-5)
    finally:
        latency.close()
        busy.close()


class _Slow:
    """An ONNX Runtime session or OpenVINO infer request that counts callers inside it."""

    def __init__(self, inner: Any, peak: list[int], running: list[int],
                 lock: threading.Lock) -> None:
        self.inner, self.peak, self.running, self.lock, self.calls = inner, peak, running, \
            lock, 0

    def _timed(self, method: str, *args: Any, **kw: Any) -> Any:
        with self.lock:
            self.running[0] += 1
            self.calls += 1
            self.peak[0] = max(self.peak[0], self.running[0])
        try:
            time.sleep(0.01)
            return getattr(self.inner, method)(*args, **kw)
        finally:
            with self.lock:
                self.running[0] -= 1

    def run(self, *args: Any, **kw: Any) -> Any:  # onnxruntime.InferenceSession
        return self._timed("run", *args, **kw)

    def infer(self, *args: Any, **kw: Any) -> Any:  # openvino.InferRequest
        return self._timed("infer", *args, **kw)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(backend, mode) of every backend the Segmenter opens."""
    seen: list[tuple[str, str]] = []

    def spy(path: Any, backend: str = "auto", options: BackendOptions | None = None) -> Any:
        opened_backend = open_backend(path, backend, options)
        seen.append((opened_backend.name, (options or BackendOptions()).mode))
        return opened_backend

    monkeypatch.setattr(segmenter_module, "open_backend", spy)
    return seen


def test_the_run_mode_reaches_the_backend(opened: list[tuple[str, str]],
                                          models: dict[str, Path], video: Path) -> None:
    """A file is opened in throughput mode at once; a source only its opening shows to be
    file-like is reopened; ``--mode latency`` keeps latency; ``--backend auto`` probes in
    latency mode and reopens its choice in the run's; the stats say the mode."""
    def one(source: str, mode: str = "auto", backend: str = "onnxruntime") -> str:
        opened.clear()
        stats = run(RunConfig(model=models["labels"], source=source, display=False,
                              max_frames=4, backend=backend,
                              backend_options=BackendOptions(threads=2)),
                    batching=BatchPolicy(mode=mode))  # type: ignore[arg-type]
        assert stats.frames_processed == 4
        return stats.mode

    assert one(str(video)) == "throughput"
    assert opened == [("onnxruntime", "throughput")]
    assert one("synthetic://?frames=4&size=48x32") == "throughput"
    assert opened == [("onnxruntime", "latency"), ("onnxruntime", "throughput")]
    assert one(str(video), "latency") == "latency"
    assert opened == [("onnxruntime", "latency")]
    assert one(str(video), backend="auto") == "throughput"  # pinned to onnxruntime by conftest
    assert opened == [("onnxruntime", "latency"), ("onnxruntime", "throughput")]
    assert one(str(video), "latency", backend="auto") == "latency"
    assert opened == [("onnxruntime", "latency")]


def _masks(folder: Path) -> list[np.ndarray]:
    files = sorted(folder.glob("*.png"))
    return [cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files]


@pytest.mark.parametrize("name", BACKENDS)
def test_masks_are_identical_in_both_modes(models: dict[str, Path], video: Path,
                                           tmp_path: Path, name: str) -> None:
    _need(name)
    masks = {}
    for mode in ("latency", "throughput"):
        stats = run(RunConfig(model=models["logits"], source=str(video), display=False,
                              backend=name, save_masks=tmp_path / mode,
                              backend_options=BackendOptions(threads=2)),
                    batching=BatchPolicy(mode=mode))  # type: ignore[arg-type]
        assert stats.mode == mode and stats.frames_processed == 40
        masks[mode] = _masks(tmp_path / mode)
    assert len(masks["latency"]) == len(masks["throughput"]) == 40
    assert len({m.tobytes() for m in masks["latency"]}) > 1  # the frames really differ
    for a, b in zip(masks["latency"], masks["throughput"], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def after_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, float, Any]]:
    calls: list[tuple[Any, float, Any]] = []
    real: Callable[..., Any] = engine.after_run

    def spy(backend: Any, ms: float, hw: Any = None) -> Any:
        calls.append((backend, ms, hw))
        return real(backend, ms, hw)

    monkeypatch.setattr(engine, "after_run", spy)
    return calls


def test_a_latency_run_checks_the_auto_choice_with_one_calls_time(
        after_runs: list[tuple[Any, float, Any]], models: dict[str, Path],
        video: Path) -> None:
    config = RunConfig(model=models["labels_dynamic"], source=str(video), display=False,
                       max_frames=6)
    stats = run(config, batching=BatchPolicy(mode="latency"))
    assert stats.mode == "latency" and len(after_runs) == 1
    backend, ms, hw = after_runs[0]
    assert backend.name == "onnxruntime" and ms > 0
    assert hw == (48, 64)  # the run's network input (the 64x48 frames at stride 8)


@pytest.mark.parametrize(("frames", "busy_ms", "wall_s", "judged"), [
    (60, 40.0, 2.5, True),   # busy 2.4 s of 2.5: the stage was the bottleneck
    (60, 40.0, 3.0, False),  # busy 2.4 s of 3.0 (0.8): it waited on its source
    (49, 40.0, 2.0, False),  # saturated, but too few frames (cold first calls weigh in)
])
def test_a_throughput_run_is_judged_only_when_its_inference_was_the_bottleneck(
        after_runs: list[tuple[Any, float, Any]], frames: int, busy_ms: float,
        wall_s: float, judged: bool) -> None:
    """Files run in throughput mode by default; the stage's busy time per frame is no
    slower than one call at a time only when the stage was saturated over enough frames
    (a source-bound stage runs single calls on a throughput slot's fewer threads)."""
    from types import SimpleNamespace

    class Chosen:  # weak-referenceable, as a backend is
        pass

    chosen = Chosen()
    eng = SimpleNamespace(mode="throughput", error=lambda: None)
    seg = SimpleNamespace(backend=chosen, input_hw=(48, 64))
    stats = SimpleNamespace(aggregate={"infer_busy_ms_per_frame": busy_ms,
                                       "frames_processed": frames, "wall_s": wall_s,
                                       "infer_ms_per_frame": {"p50_ms": 99.0}})
    engine._check_auto_choice(eng, seg, stats)  # type: ignore[arg-type]
    assert after_runs == ([(chosen, busy_ms, (48, 64))] if judged else [])


def test_reopening_in_throughput_mode_keeps_the_auto_verdict(models: dict[str, Path]) -> None:
    """The chosen backend is probed in latency mode and reopened for a file's throughput
    mode: the verdict that chose it must follow, or the run-end check finds nothing."""
    from segedge.runtime.backends import auto

    seg = Segmenter(models["logits"], backend="onnxruntime")
    probed = seg.backend
    verdict = auto.AutoChoice(probed, "measured")
    auto._CHOICES[probed] = verdict
    seg.use_mode("throughput")
    assert seg.backend is not probed and auto._CHOICES.get(seg.backend) is verdict
    assert auto._CHOICES.get(probed) is None
    seg.close()
