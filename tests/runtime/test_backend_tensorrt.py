"""TensorRTBackend (__init__/_allocate/infer/close) against the recording TensorRT/CUDA fakes:
call order, addresses, copy sizes and kinds, dtypes, zero-copy, threads, and teardown on
every failure path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from segedge.export.tensorrt.build import EngineConfig, build_engine
from segedge.runtime.backends.base import BackendOptions, open_backend
from segedge.runtime.backends.tensorrt import TensorRTBackend
from segedge.runtime.errors import (
    ArtifactError,
    BackendUnavailableError,
    InputError,
    SegedgeError,
    ShapeError,
)
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.sidecar import read_sidecar, sha256_file, write_sidecar
from tests.fakes.cuda_fake import ORIN, FakeDevice, cudaMemcpyKind
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture
from tests.runtime.onnx_fixtures import make_labels_model, make_logits_model

Gpu = Callable[..., FakeGpu]
PROFILE = EngineConfig(min_hw=(16, 16), opt_hw=(32, 48), max_hw=(64, 64))


def _plan(tmp_path: Path, dynamic: bool = True, **cfg: object) -> Path:
    onnx_path = make_labels_model(tmp_path / "m.onnx", size=None if dynamic else (32, 48))
    config = PROFILE if dynamic else EngineConfig()
    build_engine(onnx_path, tmp_path / "m.plan", EngineConfig(**{**config.__dict__, **cfg}))
    return tmp_path / "m.plan"


def _frame(h: int = 32, w: int = 48) -> np.ndarray:
    x = np.zeros((1, h, w, 3), np.uint8)
    x[..., 0] = 200  # red: label 1, confidence 200/255
    return x


@pytest.mark.parametrize("generation", [10, 11])
def test_call_order_addresses_and_copies(tmp_path: Path, fake_gpu: Gpu,  # noqa: F811
                                         generation: int) -> None:
    gpu = fake_gpu(generation=generation)
    plan = _plan(tmp_path)
    gpu.trt.calls.clear()
    backend = open_backend(plan)
    names = [c[0] for c in gpu.trt.calls]
    # every input shape (the profile max) is set before any output shape is read
    assert names.index("set_input_shape") < names.index("get_tensor_shape")
    assert ("set_input_shape", "input", (1, 64, 64, 3)) in gpu.trt.calls
    addressed = {c[1] for c in gpu.trt.calls if c[0] == "set_tensor_address"}
    assert addressed == {"input", "labels", "confidence"}
    malloc = [c[1] for c in gpu.cuda.calls if c[0] == "cudaMalloc"]
    assert malloc == [64 * 64 * 3, 64 * 64, 64 * 64 * 4]  # sized for the profile maximum
    gpu.cuda.calls.clear()
    out = backend.infer(_frame(24, 40))
    assert out["labels"].shape == (1, 24, 40) and (out["labels"] == 1).all()
    np.testing.assert_allclose(out["confidence"], 200 / 255, atol=1e-6)
    copies = [(c[3], c[4]) for c in gpu.cuda.calls if c[0] == "cudaMemcpyAsync"]
    assert copies == [(24 * 40 * 3, cudaMemcpyKind.cudaMemcpyHostToDevice),
                      (24 * 40, cudaMemcpyKind.cudaMemcpyDeviceToHost),
                      (24 * 40 * 4, cudaMemcpyKind.cudaMemcpyDeviceToHost)]
    assert [c[0] for c in gpu.cuda.calls][-1] == "cudaStreamSynchronize"
    backend.close()
    backend.close()  # twice is harmless
    with pytest.raises(SegedgeError, match="backend is closed"):
        backend.infer(_frame())
    gpu.assert_clean()


def test_dtypes_float_inputs_are_cast_other_mismatches_refused(
        tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu()
    build_engine(make_logits_model(tmp_path / "f.onnx"), tmp_path / "f.plan")
    backend = open_backend(tmp_path / "f.plan")
    x = np.random.default_rng(0).random((1, 3, 32, 48)).astype(np.float64)
    out = backend.infer(x)["logits"]
    assert out.dtype == np.float32 and out.shape == (1, 3, 32, 48)
    backend.close()
    labels = open_backend(_plan(tmp_path, dynamic=False))
    with pytest.raises(InputError, match="dtype: expected uint8, got float32"):
        labels.infer(np.zeros((1, 32, 48, 3), np.float32))
    with pytest.raises(ShapeError, match="within the engine profile"):
        labels.infer(np.zeros((1, 48, 48, 3), np.uint8))
    labels.close()
    gpu.assert_clean()


def test_integrated_gpu_runs_zero_copy(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu(devices=(ORIN,))
    backend = open_backend(_plan(tmp_path))
    assert backend.active == "TensorRT 10.3.0 on Orin (sm 8.7), zero-copy"
    assert "cudaMalloc" not in gpu.cuda.names() and "cudaMallocHost" not in gpu.cuda.names()
    host = {c[1] for c in gpu.cuda.calls if c[0] == "cudaHostAlloc" and c[2] == 2}  # mapped
    assert len(host) == 3
    aliases = {c[2] for c in gpu.trt.calls if c[0] == "set_tensor_address"}
    assert len(aliases) == 3 and not aliases & {p for p in host}  # device aliases, not host
    out = backend.infer(_frame())
    assert (out["labels"] == 1).all() and "cudaMemcpyAsync" not in gpu.cuda.names()
    backend.close()
    gpu.assert_clean()


def test_another_thread_runs_on_the_opened_device(tmp_path: Path,
                                                  fake_gpu: Gpu) -> None:  # noqa: F811
    devices = (FakeDevice("A", 8, 9), FakeDevice("B", 8, 9))
    fake_gpu(devices=devices)
    build_engine(make_labels_model(tmp_path / "m.onnx"), tmp_path / "m.plan",
                 EngineConfig(device_id=1))
    gpu = fake_gpu(devices=devices)  # fresh CUDA state: the main thread is on device 0 again
    backend = open_backend(tmp_path / "m.plan", options=BackendOptions(device_id=1))
    results: list[object] = []

    def worker() -> None:  # like segrun's inference thread: CUDA's device is per thread
        try:
            results.append(backend.infer(_frame()))
        except Exception as err:  # noqa: BLE001
            results.append(err)

    thread = threading.Thread(target=worker, name="segrun-infer")
    thread.start()
    thread.join()
    assert isinstance(results[0], dict) and (results[0]["labels"] == 1).all()
    executes = [c for c in gpu.trt.calls if c[0] == "execute_async_v3"]
    assert [c[2] for c in executes] == [1]
    backend.close()
    gpu.assert_clean()


def test_plan_metadata_wins_over_foreign_flags(tmp_path: Path, fake_gpu: Gpu,  # noqa: F811
                                               caplog: pytest.LogCaptureFixture) -> None:
    fake_gpu()
    plan = _plan(tmp_path)
    hints = ArtifactMetadata(model="x", family="foreign", classes=("p", "q"), palette=())
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        backend = open_backend(plan, options=BackendOptions(metadata=hints))
    assert backend.metadata == read_sidecar(plan).metadata
    assert backend.metadata.input.format == "uint8" and backend.metadata.input.layout == "NHWC"
    assert "m.plan carries segedge metadata in its sidecar; --classes/--mean/--std/--bgr/" \
           "--stride ignored" in caplog.text
    backend.close()


# -- every failure path frees what was taken ---------------------------------------------------

@pytest.mark.parametrize("fail,error,match", [
    ({"cudaStreamCreate": 1}, BackendUnavailableError, "cudaStreamCreate"),
    ({"cudaMallocHost": 2}, BackendUnavailableError, "cudaMallocHost: expected cudaSuccess, "
                                                     "got cudaErrorMemoryAllocation"),
    ({"cudaMalloc": 3}, BackendUnavailableError, "cudaMalloc"),
    ({"cudaGetDeviceProperties": 1}, BackendUnavailableError, "cudaGetDeviceProperties"),
])
def test_cuda_failures_while_opening_free_everything(
        tmp_path: Path, fake_gpu: Gpu, fail: dict[str, int],  # noqa: F811
        error: type[Exception], match: str) -> None:
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    gpu.cuda.fail_at.update(fail)
    with pytest.raises(error, match=match):
        open_backend(plan)
    gpu.assert_clean()


def test_no_execution_context_is_a_clear_error(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu(context_fails=True)
    with pytest.raises(BackendUnavailableError, match="could not create an execution context: "
                                                      "expected free device memory"):
        open_backend(plan)
    gpu.assert_clean()


def test_a_plan_tensorrt_cannot_deserialize_is_an_artifact_error(
        tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    fake_gpu()
    plan = _plan(tmp_path)
    plan.write_bytes(b"not a plan")
    sidecar = read_sidecar(plan, verify=False)
    write_sidecar(plan, sidecar.__class__(**{**sidecar.__dict__,
                                             "plan_sha256": sha256_file(plan)}))
    gpu = fake_gpu()
    with pytest.raises(ArtifactError, match="could not deserialize the plan"):
        open_backend(plan)
    assert gpu.trt.violations == ["deserialize: not a plan"]
    assert gpu.cuda.live() == {"device": 0, "host": 0, "streams": 0}


def test_a_plan_from_another_tensorrt_is_refused_before_deserialising(
        tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    fake_gpu(generation=10)
    plan = _plan(tmp_path)
    gpu = fake_gpu(generation=11)
    with pytest.raises(ArtifactError, match="plan built with 10.3.0, running 11"):
        TensorRTBackend(plan, BackendOptions())
    assert "deserialize_cuda_engine" not in gpu.trt.names()
    gpu.assert_clean()


def test_execute_failure_is_reported(tmp_path: Path, fake_gpu: Gpu,  # noqa: F811
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = fake_gpu()
    backend = open_backend(_plan(tmp_path))
    context = backend._slots[0].context  # type: ignore[attr-defined]
    monkeypatch.setattr(context, "execute_async_v3", lambda stream_handle: False)
    with pytest.raises(SegedgeError, match="execute_async_v3 failed"):
        backend.infer(_frame())
    backend.close()
    gpu.assert_clean()


def test_a_refused_address_frees_everything(tmp_path: Path, fake_gpu: Gpu,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    monkeypatch.setattr(gpu.trt.module.IExecutionContext, "set_tensor_address",
                        lambda self, name, memory: name != "confidence")
    with pytest.raises(ArtifactError, match="TensorRT refused the address for 'confidence'"):
        open_backend(plan)
    gpu.assert_clean()


@pytest.mark.parametrize("knobs,match", [
    ({"driver_version": 0, "cuda_python": "12.8.0"},
     "RuntimeError: Failed to dlopen libcuda.so.1"),
    ({"driver_version": 0, "cuda_python": "12.9.0"}, "got cudaErrorInsufficientDriver"),
    ({"init_fails": True}, "TensorRT could not create a Runtime: expected TensorRT to initialise "
                           "CUDA, got TypeError: pybind11::init"),
])
def test_a_gpu_stack_that_cannot_initialise_refuses_the_plan_in_one_line(
        tmp_path: Path, fake_gpu: Gpu, knobs: dict[str, object], match: str) -> None:  # noqa: F811
    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu(**knobs)
    with pytest.raises(BackendUnavailableError, match=match) as info:
        open_backend(plan)
    assert str(info.value).startswith("tensorrt backend unavailable for m.plan: ")
    assert "\n" not in str(info.value)
    assert "deserialize_cuda_engine" not in gpu.trt.names()
    assert gpu.cuda.live() == {"device": 0, "host": 0, "streams": 0}


def test_a_runtime_that_fails_after_the_probe_frees_everything(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from segedge.runtime.backends import tensorrt as trt_backend

    fake_gpu()
    plan = _plan(tmp_path)
    gpu = fake_gpu()
    monkeypatch.setattr(trt_backend, "tensorrt_available", lambda device_id=0: (True, "ok"))
    gpu.trt.init_fails = True  # the real bindings' TypeError, after the probe passed
    with pytest.raises(BackendUnavailableError, match=r"^TensorRT could not create a Runtime: "
                       r"expected TensorRT to initialise CUDA, got TypeError"):
        open_backend(plan)
    gpu.assert_clean()


def test_no_driver_gives_no_driver_version() -> None:
    """cudaDriverGetVersion answers success and 0 without a driver (12.9+) or raises (12.3-12.8):
    neither is a driver version (segdoctor printed 'driver CUDA 0.0')."""
    from segedge.runtime.backends.cuda import versions
    from tests.fakes.cuda_fake import FakeCuda

    for release in ("12.3.0", "12.9.0"):
        assert versions(FakeCuda(driver_version=0, cuda_python=release).module) == \
            {"runtime": "12.6"}
    assert versions(FakeCuda().module) == {"driver": "12.6", "runtime": "12.6"}
