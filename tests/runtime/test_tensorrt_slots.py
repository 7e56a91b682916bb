"""TensorRT throughput slots against the recording TensorRT/CUDA fakes: a context, a stream and
buffers per slot, one optimization profile per slot of a dynamic plan, concurrent calls on
distinct contexts with their own results, fewer slots where a plan has fewer profiles (or
profiles that differ), and a later slot that cannot open leaving the run on the slots that
opened."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from segedge.export.tensorrt.build import EngineConfig, build_engine
from segedge.runtime.backends import tensorrt as trt_backend
from segedge.runtime.backends.base import BackendOptions, open_backend
from segedge.runtime.batching import BatchPolicy
from segedge.runtime.config import RunConfig
from segedge.runtime.errors import SegedgeError
from segedge.runtime.modes import resolve_mode
from segedge.runtime.pipeline import run
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture
from tests.runtime.onnx_fixtures import make_labels_model

Gpu = Callable[..., FakeGpu]
PROFILE = EngineConfig(min_hw=(16, 16), opt_hw=(32, 48), max_hw=(64, 64))
BUSY = BackendOptions(mode="throughput")


def _plan(tmp_path: Path, dynamic: bool = True, **cfg: object) -> Path:
    onnx_path = make_labels_model(tmp_path / "m.onnx", size=None if dynamic else (32, 48))
    config = PROFILE if dynamic else EngineConfig()
    build_engine(onnx_path, tmp_path / "m.plan", EngineConfig(**{**config.__dict__, **cfg}))
    return tmp_path / "m.plan"


def _frame(red: int, h: int = 32, w: int = 48) -> np.ndarray:
    x = np.zeros((1, h, w, 3), np.uint8)
    x[..., 0] = red  # labels = red > 127, confidence = red / 255
    return x


def _check(out: dict[str, np.ndarray], red: int, h: int = 32, w: int = 48) -> None:
    assert out["labels"].shape == (1, h, w) and (out["labels"] == int(red > 127)).all()
    np.testing.assert_allclose(out["confidence"], red / 255, atol=1e-6)


@pytest.mark.parametrize("dynamic", [True, False])
def test_two_slots_take_a_context_stream_and_buffers_each(
        tmp_path: Path, fake_gpu: Gpu, dynamic: bool) -> None:  # noqa: F811
    fake_gpu()
    plan = _plan(tmp_path, dynamic)
    gpu = fake_gpu()
    backend = open_backend(plan, options=BUSY)
    assert backend.max_in_flight == 2 and resolve_mode("throughput", [], backend)[2] == 2
    assert backend.active == "TensorRT 10.3.0 on NVIDIA Fake RTX (sm 8.9), 2 execution slots"
    assert gpu.trt.names().count("create_execution_context") == 2
    streams = [c for c in gpu.cuda.calls if c[0] == "cudaStreamCreate"]
    assert len(streams) == 2
    malloc = [c[1] for c in gpu.cuda.calls if c[0] == "cudaMalloc"]
    big = 64 * 64 if dynamic else 32 * 48  # every slot sized for the profile maximum
    assert malloc == [big * 3, big, big * 4] * 2
    addresses = [c[2] for c in gpu.trt.calls if c[0] == "set_tensor_address"]
    assert len(addresses) == 6 == len(set(addresses))  # no buffer shared between slots
    selected = [c[1] for c in gpu.trt.calls if c[0] == "set_optimization_profile_async"]
    assert selected == ([0, 1] if dynamic else [])  # a static plan keeps its default profile
    if dynamic:  # each context selects its profile before it sets any input shape
        names = gpu.trt.names()
        for nth in (0, 1):
            pick = [i for i, n in enumerate(names) if n == "set_optimization_profile_async"][nth]
            context = [i for i, n in enumerate(names) if n == "create_execution_context"][nth]
            first_shape = next(i for i, n in enumerate(names) if i > context and
                               n == "set_input_shape")
            assert context < pick < first_shape
    handles = [int(s) for s in (backend._slots[0].stream, backend._slots[1].stream)]  # type: ignore[attr-defined]
    gpu.cuda.calls.clear()
    backend.close()
    destroyed = [c[1] for c in gpu.cuda.calls if c[0] == "cudaStreamDestroy"]
    assert destroyed == handles[::-1]  # the last slot is freed first
    freed = [c[1] for c in gpu.cuda.calls if c[0] == "cudaFree"]
    assert len(freed) == 6 and freed[:3] == addresses[3:][::-1]  # slot 2's, last buffer first
    gpu.assert_clean()


def test_latency_mode_keeps_one_slot(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    backend = open_backend(plan)
    assert getattr(backend, "max_in_flight", 1) == 1 and backend.options.mode == "latency"  # type: ignore[attr-defined]
    assert backend.active == "TensorRT 10.3.0 on NVIDIA Fake RTX (sm 8.9)"
    assert gpu.trt.names().count("create_execution_context") == 1
    _check(backend.infer(_frame(200)), 200)
    backend.close()
    gpu.assert_clean()


def test_concurrent_calls_run_on_distinct_contexts_and_get_their_own_results(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    backend = open_backend(plan, options=BUSY)
    cls = gpu.trt.module.IExecutionContext
    real = cls.execute_async_v3
    both_inside = threading.Barrier(2, timeout=10)  # one slot only: the second never arrives
    executing: list[tuple[int, int]] = []

    def meet(self: Any, stream_handle: int) -> bool:
        executing.append((id(self), int(stream_handle)))
        both_inside.wait()
        return bool(real(self, stream_handle))

    monkeypatch.setattr(cls, "execute_async_v3", meet)
    jobs = [(200, 24, 40), (50, 32, 48)]
    got: dict[int, dict[str, np.ndarray]] = {}

    def call(job: tuple[int, int, int]) -> None:
        red, h, w = job
        got[red] = backend.infer(_frame(red, h, w))

    threads = [threading.Thread(target=call, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({ctx for ctx, _ in executing}) == 2 and len({s for _, s in executing}) == 2
    for red, h, w in jobs:
        _check(got[red], red, h, w)
    monkeypatch.setattr(cls, "execute_async_v3", real)
    reds = list(range(0, 256, 9))
    sizes = [(16 + 8 * (i % 7), 64 - 8 * (i % 5)) for i in range(len(reds))]
    with ThreadPoolExecutor(2) as pool:  # many calls: every result belongs to its own frame
        results = list(pool.map(lambda i: backend.infer(_frame(reds[i], *sizes[i])),
                                range(len(reds))))
    for red, (h, w), out in zip(reds, sizes, results, strict=True):
        _check(out, red, h, w)
    backend.close()
    gpu.assert_clean()


def test_a_dynamic_plan_with_one_profile_gets_one_slot_and_says_why_once(
        tmp_path: Path, fake_gpu: Gpu, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    fake_gpu()
    plan = _plan(tmp_path, dynamic_profiles=1)
    gpu = fake_gpu()
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        backend = open_backend(plan, options=BUSY)
    assert backend.max_in_flight == 1  # type: ignore[attr-defined]
    assert backend.active.endswith(", 1 execution slot")
    assert gpu.trt.names().count("create_execution_context") == 1
    why = [r.getMessage() for r in caplog.records if "execution slot" in r.getMessage()]
    assert why == ["m.plan: 1 execution slot(s), not 2: a dynamic plan runs one execution "
                   "context at a time per optimization profile and this plan has 1; rebuild "
                   "it with segexport --engine, which gives a dynamic plan 2 optimization "
                   "profiles (--engine-profiles 2)"]
    _check(backend.infer(_frame(200)), 200)
    backend.close()
    gpu.assert_clean()


def test_two_contexts_on_one_profile_of_a_dynamic_plan_are_refused_by_the_fake(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The fake holds TensorRT's rule: a backend that forgot to select a profile per slot
    fails here (so the tests above would catch it)."""
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    monkeypatch.setattr(trt_backend, "is_dynamic", lambda trt, engine: False)
    backend = open_backend(plan, options=BUSY)
    with pytest.raises(SegedgeError, match="execute_async_v3 failed"):
        backend.infer(_frame(200))
    assert gpu.trt.violations == ["two execution contexts of a dynamic engine share "
                                  "optimization profile 0"]
    backend.close()


@pytest.mark.parametrize("fail,knobs,match", [
    ({"cudaStreamCreate": 2}, {}, r"CUDA cudaStreamCreate: expected cudaSuccess, got "
     r"cudaErrorInvalidValue$"),
    ({"cudaMalloc": 4}, {}, r"CUDA cudaMalloc: expected cudaSuccess, got "
     r"cudaErrorMemoryAllocation$"),
    ({"cudaMallocHost": 5}, {}, r"CUDA cudaMallocHost: expected cudaSuccess, got "
     r"cudaErrorMemoryAllocation$"),
    ({}, {"contexts_before_failure": 1}, r".*m\.plan: TensorRT could not create an execution "
     r"context: expected free device memory .*execution slot 2 of 2; --mode latency needs one "
     r"slot\)$"),
])
def test_a_failure_opening_slot_2_runs_on_slot_1_and_frees_slot_2s_half(
        tmp_path: Path, fake_gpu: Gpu, caplog: pytest.LogCaptureFixture,  # noqa: F811
        fail: dict[str, int], knobs: dict[str, object], match: str) -> None:
    """Out of device memory for a second context is one warning, not a failed backend: the
    first slot worked and keeps working."""
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu(**knobs)
    gpu.cuda.fail_at.update(fail)
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        backend = open_backend(plan, options=BUSY)
    assert gpu.trt.names().count("create_execution_context") == 2  # it got to slot 2
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and said[0].startswith("m.plan: running 1 execution slot(s), not 2: ")
    assert re.match(match, said[0].split("not 2: ", 1)[1]), said[0]
    assert backend.max_in_flight == 1 and resolve_mode("throughput", [], backend)[2] == 1  # type: ignore[attr-defined]
    assert backend.active.endswith(", 1 execution slot")
    assert gpu.cuda.live()["streams"] == 1  # slot 2's half is freed, slot 1 kept
    assert gpu.cuda.live()["device"] == 3 == gpu.cuda.live()["host"]
    _check(backend.infer(_frame(200, 24, 40)), 200, 24, 40)
    backend.close()
    gpu.assert_clean()


def test_a_plan_whose_profiles_differ_runs_one_slot_and_says_why(
        tmp_path: Path, fake_gpu: Gpu, caplog: pytest.LogCaptureFixture,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Slot 0's profile is the one frames are checked against: a second slot on a narrower
    profile would refuse frames the first accepts, so it is not opened."""
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    cls = gpu.trt.module.ICudaEngine
    real = cls.get_tensor_profile_shape

    def narrower(self: Any, name: str, profile_index: int) -> list[Any]:
        low, opt, high = real(self, name, profile_index)
        if profile_index == 1:
            high = type(high)([high[0], 32, 48, high[3]])
        return [low, opt, high]

    monkeypatch.setattr(cls, "get_tensor_profile_shape", narrower)
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        backend = open_backend(plan, options=BUSY)
    assert backend.max_in_flight == 1  # type: ignore[attr-defined]
    assert gpu.trt.names().count("create_execution_context") == 1
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == ["m.plan: 1 execution slot, not 2: the plan's optimization profiles differ "
                    "in shape and every slot must accept the same frames; rebuild it with "
                    "segexport --engine (identical profiles)"]
    _check(backend.infer(_frame(200, 64, 64)), 200, 64, 64)  # slot 0's own maximum
    backend.close()
    gpu.assert_clean()


def test_a_throughput_run_on_a_plan_keeps_frame_order(
        tmp_path: Path, fake_gpu: Gpu, models: dict[str, Path], video: Path) -> None:  # noqa: F811
    """segrun's engine with two TensorRT slots in flight: the masks equal ONNX Runtime's
    frame for frame (the fake executes the same graph)."""
    gpu = fake_gpu()
    build_engine(models["logits"], tmp_path / "logits.plan")
    masks: dict[str, list[np.ndarray]] = {}
    for name, model, mode in (("onnxruntime", models["logits"], "latency"),
                              ("tensorrt", tmp_path / "logits.plan", "throughput")):
        stats = run(RunConfig(model=model, source=str(video), display=False, backend=name,
                              save_masks=tmp_path / name,
                              backend_options=BackendOptions(threads=2)),
                    batching=BatchPolicy(mode=mode))  # type: ignore[arg-type]
        assert stats.mode == mode and stats.frames_processed == 40
        masks[name] = [np.asarray(cv2.imread(str(f), cv2.IMREAD_UNCHANGED))
                       for f in sorted((tmp_path / name).glob("*.png"))]
    assert len(masks["onnxruntime"]) == len(masks["tensorrt"]) == 40
    assert len({m.tobytes() for m in masks["onnxruntime"]}) > 1  # the frames really differ
    for a, b in zip(masks["onnxruntime"], masks["tensorrt"], strict=True):
        np.testing.assert_array_equal(a, b)
    streams = {c[1] for c in gpu.trt.calls if c[0] == "execute_async_v3"}
    assert len(streams) == 2  # both slots ran
    gpu.assert_clean()

