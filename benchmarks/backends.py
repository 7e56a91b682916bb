"""Benchmark backends: a small registry, one module per runtime, imported lazily.

Each module provides ``probe(name) -> reason | None`` (can this machine run
it?), ``needs(name, precision) -> Needs | reason`` (which artifact, or why
that precision makes no sense there) and ``load(name, job) -> Loaded`` (in
the measuring process).  Nothing heavy is imported until a backend is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from segedge.benchmarks.jobs import Loaded, ModelJob, Needs
from segedge.runtime.errors import InputError


@dataclass(frozen=True)
class BenchBackend:
    name: str
    module: str
    device: str  # cpu | cuda
    description: str

    def _mod(self) -> ModuleType:
        return importlib.import_module(self.module)

    def probe(self) -> str | None:
        reason: str | None = self._mod().probe(self.name)
        return reason

    def needs(self, precision: str) -> Needs | str:
        needed: Needs | str = self._mod().needs(self.name, precision)
        return needed

    def load(self, job: ModelJob) -> Loaded:
        loaded: Loaded = self._mod().load(self.name, job)
        return loaded


_REGISTRY: dict[str, BenchBackend] = {}


def register(name: str, module: str, device: str, description: str) -> None:
    _REGISTRY[name] = BenchBackend(name, module, device, description)


def get(name: str) -> BenchBackend:
    if name not in _REGISTRY:
        raise InputError("--backends", f"names from {', '.join(_REGISTRY)}", repr(name))
    return _REGISTRY[name]


def names() -> list[str]:
    return list(_REGISTRY)


_PKG = "segedge.benchmarks"
register("pytorch-cpu", f"{_PKG}.bench_pytorch", "cpu", "PyTorch eager on the CPU (baseline)")
register("pytorch-cuda", f"{_PKG}.bench_pytorch", "cuda", "PyTorch eager on a CUDA GPU")
register("plain-ort", f"{_PKG}.bench_plain", "cpu",
         "plain loop: numpy normalise + ONNX Runtime, default threads (logits) + numpy argmax "
         "(baseline)")
register("ort-cpu", f"{_PKG}.bench_ort", "cpu", "segedge: ONNX Runtime CPU provider")
register("ort-cuda", f"{_PKG}.bench_ort", "cuda", "segedge: ONNX Runtime CUDA provider")
register("ort-tensorrt", f"{_PKG}.bench_ort", "cuda", "segedge: ONNX Runtime TensorRT provider")
register("tensorrt", f"{_PKG}.bench_tensorrt", "cuda", "segedge: native TensorRT plan")
register("openvino-cpu", f"{_PKG}.bench_openvino", "cpu",
         "segedge: OpenVINO backend on the CPU (precision hint read back)")
register("openvino-direct", f"{_PKG}.bench_openvino", "cpu",
         "OpenVINO used directly: Core().compile_model, same artifact and threads (peer)")
