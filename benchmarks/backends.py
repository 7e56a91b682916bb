"""Benchmark backends: segedge's runtime backends (asked of their descriptors) plus baselines.

Every runtime backend registered in ``runtime/backends/base.py`` brings its own rows
(``BENCH_ROWS`` of its descriptor: ``ort-cpu`` is onnxruntime with provider cpu); nothing
here names one.  A row is measured by ``segedge.benchmarks.bench_<backend>`` where that module
exists (backend-specific artifact rules, peers, agreement), else by the generic
``bench_runtime`` (open through the runtime, check what really runs, time ``infer``).  So a
new backend is a row of segbench with no edit here.

The baselines and peers are not runtime backends (PyTorch eager, a plain ONNX Runtime loop,
OpenVINO used directly) and are registered below.

Each module provides ``probe(name) -> reason | None`` (can this machine run it?),
``needs(name, precision) -> Needs | reason`` (which artifact, or why that precision makes
no sense there) and ``load(name, job) -> Loaded`` (in the measuring process).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from segedge.benchmarks.jobs import Loaded, ModelJob, Needs
from segedge.runtime.backends.base import BenchRow, descriptors
from segedge.runtime.errors import InputError

_PKG = "segedge.benchmarks"
GENERIC = f"{_PKG}.bench_runtime"


@dataclass(frozen=True)
class BenchBackend:
    name: str
    module: str
    device: str  # cpu | cuda
    description: str
    runtime: str | None = None  # the runtime backend this row times (None: a baseline/peer)
    peer_of: str | None = None  # the runtime row this peer is held against (its vs_peer)

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


_BASELINES: dict[str, BenchBackend] = {}


def register(name: str, module: str, device: str, description: str,
             peer_of: str | None = None) -> None:
    """A row that is not a runtime backend: a baseline, or the peer of runtime row
    ``peer_of`` (the library used directly, which that row is held against)."""
    _BASELINES[name] = BenchBackend(name, module, device, description, peer_of=peer_of)


def peers() -> dict[str, str]:
    """{runtime row: its peer row}."""
    return {b.peer_of: b.name for b in _BASELINES.values() if b.peer_of}


def bench_module(runtime: str) -> str:
    """``bench_<runtime>`` where it exists, else the generic runtime row."""
    own = f"{_PKG}.bench_{runtime}"
    return own if importlib.util.find_spec(own) is not None else GENERIC


def runtime_row(name: str) -> tuple[str, BenchRow] | None:
    """(runtime backend, its row) for a segbench row name, None for a baseline."""
    for entry in descriptors():
        for row in entry.bench_rows:
            if row.row == name:
                return entry.name, row
    return None


def _registry() -> dict[str, BenchBackend]:
    rows: dict[str, BenchBackend] = {}
    for entry in descriptors():
        for row in entry.bench_rows:
            rows[row.row] = BenchBackend(row.row, bench_module(entry.name), row.device,
                                         row.description, entry.name)
    return {**_BASELINES, **rows}


def get(name: str) -> BenchBackend:
    known = _registry()
    if name not in known:
        raise InputError("--backends", f"names from {', '.join(known)}", repr(name))
    return known[name]


def names() -> list[str]:
    return list(_registry())


def default_rows() -> tuple[str, ...]:
    """Every row, CPU ones first; within a device: baselines, runtime rows (in registration
    order), then peers."""
    rows = _registry().values()

    def rank(row: BenchBackend) -> tuple[int, int]:
        return (row.device != "cpu", 2 if row.peer_of else 1 if row.runtime else 0)

    return tuple(r.name for r in sorted(rows, key=rank))  # sorted() is stable


register("pytorch-cpu", f"{_PKG}.bench_pytorch", "cpu", "PyTorch eager on the CPU (baseline)")
register("pytorch-cuda", f"{_PKG}.bench_pytorch", "cuda", "PyTorch eager on a CUDA GPU")
register("plain-ort", f"{_PKG}.bench_plain", "cpu",
         "plain loop: numpy normalise + ONNX Runtime, default threads (logits) + numpy argmax "
         "(baseline)")
register("openvino-direct", f"{_PKG}.bench_openvino", "cpu",
         "OpenVINO used directly: Core().compile_model, same artifact and threads (peer)",
         peer_of="openvino-cpu")
