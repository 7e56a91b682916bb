"""Install the fakes through ``sys.modules``: ``import tensorrt`` and cuda-python's runtime
module then resolve to them for the test's duration (monkeypatch undoes it).

Use in a test module with ``from tests.fakes.gpu import fake_gpu  # noqa: F401`` and
``def test_x(fake_gpu): gpu = fake_gpu(generation=11)``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.cuda_fake import FakeCuda, FakeDevice
from tests.fakes.trt_fake import FakeTensorRT

CUDART_PATHS = ("cuda.bindings.runtime", "cuda.cudart")


@dataclass
class FakeGpu:
    cuda: FakeCuda
    trt: FakeTensorRT

    def assert_clean(self) -> None:
        """No misuse recorded and nothing left allocated."""
        assert self.trt.violations == [], self.trt.violations
        assert self.cuda.violations == [], self.cuda.violations
        assert self.cuda.live() == {"device": 0, "host": 0, "streams": 0}, self.cuda.live()


def install(monkeypatch: pytest.MonkeyPatch, *, generation: int = 10,
            devices: tuple[FakeDevice, ...] = (FakeDevice(),), num_dla_cores: int = 0,
            cudart: str | None = None, driver_version: int = 12060,
            cuda_python: str = "12.9.0", **knobs: Any) -> FakeGpu:
    """Fake TensorRT ``generation`` (8, 10, 11) over fake CUDA ``devices``.

    ``cuda_python`` picks the release played (12.3-12.5: only ``cuda.cudart``; before 12.9 a
    missing driver raises RuntimeError); ``driver_version=0``: no CUDA driver here;
    ``cudart`` forces the one import path that resolves (the other raises ImportError).
    """
    cuda = FakeCuda(devices=devices, driver_version=driver_version, cuda_python=cuda_python)
    trt = FakeTensorRT(cuda, generation, num_dla_cores=num_dla_cores, **knobs)
    monkeypatch.setitem(sys.modules, "tensorrt", trt.module)
    paths = (cudart,) if cudart is not None else cuda.module_paths()
    for path in CUDART_PATHS:  # a path this release lacks raises ImportError
        monkeypatch.setitem(sys.modules, path, cuda.module if path in paths else None)
    from segedge.runtime.backends import ort_tensorrt

    ort_tensorrt._gpu.cache_clear()
    ort_tensorrt._tensorrt_version.cache_clear()
    return FakeGpu(cuda, trt)


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeGpu]]:
    yield functools.partial(install, monkeypatch)
    from segedge.runtime.backends import ort_tensorrt

    ort_tensorrt._gpu.cache_clear()
    ort_tensorrt._tensorrt_version.cache_clear()
