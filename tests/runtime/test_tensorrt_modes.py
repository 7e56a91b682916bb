"""TensorRT backend lifetime against the recording TensorRT/CUDA fakes: a run's mode is reached
on the one engine the plan was deserialized into (``--backend auto`` and a mode switch never
load it twice), and ``close`` while ``infer`` calls run or wait neither hangs nor frees a slot
under a running call."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segedge.export.tensorrt.build import EngineConfig, build_engine
from segedge.runtime.backends.base import BackendOptions, open_backend
from segedge.runtime.errors import BackendClosedError
from segedge.runtime.segmenter import Segmenter
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture
from tests.runtime.onnx_fixtures import make_labels_model

Gpu = Callable[..., FakeGpu]
WAIT_S = 10  # generous bound for a thread that must finish; never reached when it works


def _plan(tmp_path: Path) -> Path:
    onnx_path = make_labels_model(tmp_path / "m.onnx", size=None)
    build_engine(onnx_path, tmp_path / "m.plan",
                 EngineConfig(min_hw=(16, 16), opt_hw=(32, 48), max_hw=(64, 64)))
    return tmp_path / "m.plan"


def _frame(red: int) -> np.ndarray:
    x = np.zeros((1, 32, 48, 3), np.uint8)
    x[..., 0] = red  # labels = red > 127
    return x


def _counts(gpu: FakeGpu) -> tuple[int, int]:
    names = gpu.trt.names()
    return names.count("deserialize_cuda_engine"), names.count("create_execution_context")


@pytest.mark.parametrize("backend", ["auto", "tensorrt"])
def test_a_throughput_segmenter_deserializes_the_plan_once(
        tmp_path: Path, fake_gpu: Gpu, backend: str) -> None:  # noqa: F811
    """``segrun x.plan clip.mp4`` (auto, throughput): one engine with two contexts, not a
    latency copy and then a throughput copy (twice the GPU memory on a Jetson)."""
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    seg = Segmenter(plan, backend=backend, options=BackendOptions(mode="throughput"))
    assert _counts(gpu) == (1, 2)
    assert seg.backend.max_in_flight == 2  # type: ignore[attr-defined]
    assert seg.active == "TensorRT 10.3.0 on NVIDIA Fake RTX (sm 8.9), 2 execution slots"
    why = "a .plan plan runs on tensorrt" if backend == "auto" else "--backend tensorrt"
    assert seg.backend_reason == ("tensorrt TensorRT 10.3.0 on NVIDIA Fake RTX (sm 8.9), 2 "
                                  f"execution slots: {why}")
    assert (seg.infer(_frame(200))["labels"] == 1).all()
    seg.close()
    gpu.assert_clean()


def test_a_mode_switch_opens_and_frees_slots_on_the_same_engine(
        tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    """What runtime.engine does when the sources contradict the artifact's mode."""
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    seg = Segmenter(plan, backend="auto")
    assert _counts(gpu) == (1, 1) and seg.backend.max_in_flight == 1  # type: ignore[attr-defined]
    seg.use_mode("throughput")
    assert _counts(gpu) == (1, 2) and seg.backend.max_in_flight == 2  # type: ignore[attr-defined]
    selected = [c[1] for c in gpu.trt.calls if c[0] == "set_optimization_profile_async"]
    assert selected == [0, 1]  # the added slot takes the second profile
    backend = seg.backend
    assert backend.options.mode == "throughput"  # type: ignore[attr-defined]
    gpu.cuda.calls.clear()
    seg.use_mode("latency")
    assert seg.backend is backend and backend.max_in_flight == 1  # type: ignore[attr-defined]
    destroyed = [c[1] for c in gpu.cuda.calls if c[0] == "cudaStreamDestroy"]
    assert len(destroyed) == 1 and gpu.cuda.live() == {"device": 3, "host": 3, "streams": 1}
    assert backend.active == "TensorRT 10.3.0 on NVIDIA Fake RTX (sm 8.9)"
    seg.use_mode("throughput")
    assert _counts(gpu) == (1, 3) and backend.max_in_flight == 2  # type: ignore[attr-defined]
    assert (seg.infer(_frame(30))["labels"] == 0).all()
    seg.close()
    with pytest.raises(BackendClosedError, match=r"m\.plan: backend is closed$"):
        backend.use_mode("latency")  # type: ignore[attr-defined]
    gpu.assert_clean()


class Gate:
    """execute_async_v3 that holds its caller until released: an ``infer`` in flight."""

    def __init__(self, gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inside, self.release = threading.Event(), threading.Event()
        cls = gpu.trt.module.IExecutionContext
        real = cls.execute_async_v3

        def held(ctx: Any, stream_handle: int) -> bool:
            self.inside.set()
            assert self.release.wait(WAIT_S)
            return bool(real(ctx, stream_handle))

        monkeypatch.setattr(cls, "execute_async_v3", held)


def _start(target: Callable[[], Any], out: dict[str, Any], key: str) -> threading.Thread:
    def run() -> None:
        try:
            out[key] = target()
        except BaseException as err:  # noqa: BLE001 - the test reads it
            out[key] = err

    thread = threading.Thread(target=run, daemon=True)  # a hung one must not hang pytest
    thread.start()
    return thread


def test_close_wakes_a_waiting_call_and_waits_for_the_running_one(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    backend = open_backend(plan)  # latency: one slot, so a second call waits for it
    gate = Gate(gpu, monkeypatch)
    got: dict[str, Any] = {}
    running = _start(lambda: backend.infer(_frame(200)), got, "running")
    assert gate.inside.wait(WAIT_S)
    waiting = _start(lambda: backend.infer(_frame(50)), got, "waiting")
    waiting.join(0.2)  # let it reach the wait for a slot (it raises the same if not yet)
    closing = _start(backend.close, got, "close")
    waiting.join(WAIT_S)
    assert not waiting.is_alive(), "a call waiting for a slot hangs after close()"
    assert isinstance(got["waiting"], BackendClosedError)
    assert str(got["waiting"]).endswith("m.plan: backend is closed")
    closing.join(0.2)
    assert closing.is_alive()  # close() waits for the running call ...
    assert gpu.cuda.live()["host"] == 3  # ... and has freed nothing under it
    gate.release.set()
    running.join(WAIT_S)
    closing.join(WAIT_S)
    assert not running.is_alive() and not closing.is_alive()
    assert got["close"] is None
    assert (got["running"]["labels"] == 1).all()  # the running call's own result, intact
    with pytest.raises(BackendClosedError):
        backend.infer(_frame(200))
    gpu.assert_clean()  # no copy into or out of a freed buffer, everything freed


def test_a_call_still_running_when_close_stops_waiting_frees_its_own_slot(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    backend = open_backend(plan, options=BackendOptions(mode="throughput"))
    backend.close_wait_s = 0.1  # type: ignore[attr-defined]
    gate = Gate(gpu, monkeypatch)
    got: dict[str, Any] = {}
    running = _start(lambda: backend.infer(_frame(200)), got, "running")
    assert gate.inside.wait(WAIT_S)
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        backend.close()  # returns after close_wait_s
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == ["m.plan: closing with 1 infer call(s) still running after 0.1 s; their "
                    "execution slots are freed when they return"]
    assert gpu.cuda.live() == {"device": 3, "host": 3, "streams": 1}  # the idle slot only
    gate.release.set()
    running.join(WAIT_S)
    assert not running.is_alive() and (got["running"]["labels"] == 1).all()
    gpu.assert_clean()  # the running call freed its slot after its last copy
