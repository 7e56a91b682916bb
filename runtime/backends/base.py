"""Backend contract and registry: one file per backend, chosen by artifact kind.

Like Polygraphy's runners: a backend is constructed from a loaded artifact,
exposes `infer(tensor) -> {output name: array}` and says which device or
provider actually runs it (read back after creation, never assumed).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.redact import redact
from segedge.runtime.registry import Registry
from segedge.runtime.uri import scheme as uri_scheme

HW = tuple[int, int]
RUN_MODES = ("latency", "throughput")  # BackendOptions.mode (segrun --mode auto resolves to one)


@dataclass(frozen=True)
class BackendOptions:
    """Knobs shared by backends; a backend ignores what does not apply to it."""

    provider: str = "auto"  # onnxruntime: auto|cpu|cuda|tensorrt
    threads: int | None = None  # CPU intra-op threads
    fp16: bool = False  # TensorRT EP: allow FP16 kernels
    int8: bool | None = None  # TensorRT EP: INT8 (Q/DQ) kernels; None: on for a Q/DQ graph
    cache_dir: Path | None = None  # TensorRT EP engine/timing cache root
    # TensorRT EP profile for dynamic height/width: ((min H, W), (opt H, W), (max H, W));
    # None: from the artifact's metadata where it says, else built at the first frame.
    trt_profile: tuple[HW, HW, HW] | None = None
    device_id: int = 0
    metadata: ArtifactMetadata | None = None  # for a foreign ONNX without segedge metadata
    # OpenVINO: INFERENCE_PRECISION_HINT (f32 | bf16 | f16), always set explicitly (its CPU
    # plugin would silently pick bf16 where the CPU has it); None means f32.
    precision_hint: str | None = None
    device: str | None = None  # OpenVINO device: CPU (default), GPU, NPU, AUTO
    # How the run uses it (runtime.engine): latency (one call at a time, the newest frame) or
    # throughput (the backend may run ``max_in_flight`` calls at once: OpenVINO's THROUGHPUT
    # hint and one infer request per slot, ONNX Runtime one CPU session per slot, TensorRT
    # one execution context + CUDA stream + buffer set per slot).
    mode: str = "latency"

    def __post_init__(self) -> None:
        if self.mode not in RUN_MODES:
            raise InputError("mode", " | ".join(RUN_MODES), repr(self.mode))
        if self.device_id < 0:
            raise InputError("device_id", "a CUDA device index >= 0", self.device_id)
        if self.trt_profile is not None:
            try:
                hws = tuple((int(h), int(w)) for h, w in self.trt_profile)
            except (TypeError, ValueError):
                hws = ()
            if len(hws) != 3 or any(h <= 0 or w <= 0 for h, w in hws) or not all(
                    a <= b <= c for a, b, c in zip(*hws, strict=True)):
                raise InputError("trt_profile", "((min H, W), (opt H, W), (max H, W)), "
                                 "positive and ascending", self.trt_profile)


class Backend(Protocol):
    name: str
    metadata: ArtifactMetadata
    input_name: str

    @property
    def active(self) -> str:
        """What really executes (e.g. 'CPUExecutionProvider'), read back from the library."""
        ...

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    # Optional: ``max_in_flight`` (int) - how many ``infer`` calls may run at once from
    # different threads, each one independent (default 1); ``options`` (BackendOptions) -
    # what it was opened with (runtime.segmenter reopens it in the run's mode); ``use_mode(mode)``
    # - switch to a run mode in place (TensorRT adds or frees execution slots on the plan it
    # already holds instead of deserializing it twice); ``infer`` after ``close`` raises
    # errors.BackendClosedError.


# A file backend gets a Path; a served model (triton://...) gets its URI as a str.
BackendFactory = Callable[[Path | str, BackendOptions], Backend]


COMPILE_TIMEOUT_S = 300  # a compile probe that takes longer counts as failed


@dataclass(frozen=True)
class BenchRow:
    """One way a backend is timed as a segbench row: ``ort-cuda`` is onnxruntime asked for
    provider ``cuda``, whose ``active`` must read back ``CUDAExecutionProvider``."""

    row: str
    device: str  # cpu | cuda
    description: str
    provider: str = "auto"  # BackendOptions.provider for this row
    expects: str | None = None  # what ``active`` must read back, else the row is a skip


@dataclass(frozen=True)
class BackendDescriptor:
    """Everything the rest of segedge asks of a backend (in the spirit of Polygraphy's runners
    and mmdeploy's backend managers): segrun --backend, the auto chooser, segbench.

    The registry line names the module; the module is imported lazily (the TensorRT backend
    must not load where TensorRT is absent) and answers through optional module-level hooks,
    each with a default, so a new backend needs only ``create``:

    * ``available() -> (ok, why)`` - can this machine run it at all (default: yes);
    * ``version() -> str`` - the library version (keys the auto chooser's cache);
    * ``PRECISIONS`` - inference precisions it can be asked for (``BackendOptions.precision_hint``;
      default ``("f32",)``: it runs the graph's own precision); ``native_precisions()`` those
      this machine runs natively (segexport gates the reduced ones against FP32);
    * ``PROVIDERS`` - the library's names for where it runs, GPU ones first
      (``GPU_PROVIDERS`` the subset that means a GPU);
    * ``CPU_CANDIDATE = True`` - the auto chooser times it against the others on the CPU;
    * ``BENCH_ROWS`` - its segbench rows (``BenchRow``); default one row named after it;
    * ``label(backend) -> str`` - how one-line reasons name an opened instance;
    * ``gpu_providers() -> list[str]`` - which of its GPU providers this install offers.
    """

    name: str
    suffixes: tuple[str, ...]
    module: str
    factory: str
    schemes: tuple[str, ...] = ()  # URI schemes it serves (a model on a server, not a file)
    device: str = "cpu"  # where its default segbench row runs (cpu | cuda)

    def _mod(self) -> ModuleType:
        return importlib.import_module(self.module)

    def _hook(self, attr: str, default: Any) -> Any:
        return getattr(self._mod(), attr, default)

    def open(self, path: Path | str, options: BackendOptions) -> Backend:
        """Its factory, loaded by the one registry loader (``BACKENDS.load``: imported once)."""
        factory: BackendFactory = BACKENDS.load(self.name)
        return factory(path, options)

    def available(self) -> tuple[bool, str]:
        try:
            hook = self._hook("available", None)
        except ImportError as err:
            return False, f"backend {self.name} cannot be imported ({err})"
        return (True, "ok") if hook is None else hook()

    def version(self) -> str:
        hook = self._hook("version", None)
        try:
            return "?" if hook is None else str(hook())
        except ImportError:
            return "absent"

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self._hook("PRECISIONS", ("f32",)))

    def native_precisions(self) -> tuple[str, ...]:
        """The precisions this machine runs natively (not emulated): the export gates those.
        Default: every one it can be asked for."""
        hook = self._hook("native_precisions", None)
        return self.precisions if hook is None else tuple(hook())

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._hook("PROVIDERS", ()))

    @property
    def gpu_provider_names(self) -> tuple[str, ...]:
        return tuple(self._hook("GPU_PROVIDERS", ()))

    def gpu_providers(self) -> list[str]:
        """The GPU providers this install offers (a request; ``active`` says what ran)."""
        hook = self._hook("gpu_providers", None)
        return [] if hook is None else list(hook())

    @property
    def cpu_candidate(self) -> bool:
        return bool(self._hook("CPU_CANDIDATE", False))

    @property
    def bench_rows(self) -> tuple[BenchRow, ...]:
        rows = self._hook("BENCH_ROWS", None)
        return tuple(rows) if rows is not None else (
            BenchRow(self.name, self.device, f"segedge: {self.name} backend"),)

    def label(self, backend: Backend) -> str:
        """'openvino CPU (f32)', 'onnxruntime CPU' - how a reason names an opened backend."""
        hook = self._hook("label", None)
        return hook(backend) if hook is not None else f"{self.name} {backend.active}"

    def bench_row(self, backend: Backend) -> str | None:
        """The segbench row that times what ``backend`` (opened by this descriptor) runs."""
        for row in self.bench_rows:
            if row.expects is None or row.expects == backend.active:
                return row.row
        return None

    def compile_probe(self, path: Path, options: BackendOptions,
                      timeout_s: float = COMPILE_TIMEOUT_S) -> str | None:
        """None when this backend opens ``path`` with ``options`` in a child process, else why
        not (one line): a compiler that crashes on a graph must cost the probe, not the caller."""
        from segedge.runtime.backends.child import compile_in_child

        return compile_in_child(self.module, self.factory, path, options, timeout_s)


# name -> "module:factory" (the generic lazy registry), with info ``descriptor``
BACKENDS: Registry[BackendFactory] = Registry(
    "backend", unknown=lambda known, name: InputError(
        "backend", f"one of {', '.join(['auto', *known])}", repr(name)))


def register_backend(name: str, suffixes: tuple[str, ...], module: str, factory: str,
                     schemes: tuple[str, ...] = (), device: str = "cpu") -> BackendDescriptor:
    """One line per backend: its file (``module``, imported on first use) and what it claims."""
    found = BackendDescriptor(name, suffixes, module, factory, schemes, device)
    BACKENDS.register(name, f"{module}:{factory}", descriptor=found)
    return found


def descriptor(name: str) -> BackendDescriptor:
    """The registered backend ``name``; an unknown one is InputError naming the known ones."""
    found: BackendDescriptor = BACKENDS.get(name).info["descriptor"]
    return found


def descriptors() -> list[BackendDescriptor]:
    """Every registered backend, in registration order."""
    return [e.info["descriptor"] for e in BACKENDS.entries()]


def describe(backend: Backend) -> BackendDescriptor:
    """The descriptor of an opened backend (by its ``name``)."""
    return descriptor(backend.name)


def backend_names() -> list[str]:
    return BACKENDS.names()


def backend_for(path: Path) -> str:
    suffix = path.suffix.lower()
    for entry in descriptors():
        if suffix in entry.suffixes:
            return entry.name
    known = sorted({s for e in descriptors() for s in e.suffixes})
    raise ArtifactError(
        f"{path}: expected an artifact ending in {', '.join(known)}, got {suffix!r}"
    )


def backend_for_uri(model: str | Path) -> str | None:
    """The backend a model URI's scheme names (``triton://...``), None for a file path."""
    scheme = uri_scheme(model) if isinstance(model, str) else None
    if scheme is None:
        return None
    for entry in descriptors():
        if scheme in entry.schemes:
            return entry.name
    known = [f"{s}://" for e in descriptors() for s in e.schemes]
    raise ArtifactError(f"{redact(model)}: expected a model file or a {' or '.join(known)} "
                        f"URI, got scheme {scheme}://")


def open_backend(path: str | Path, backend: str = "auto",
                 options: BackendOptions | None = None) -> Backend:
    """Open an artifact with the named backend, or the one its file kind (or URI) implies."""
    served = backend_for_uri(path)
    if served is not None:  # a model on a server: its scheme names the only backend
        if backend not in ("auto", served):
            raise InputError("backend", f"auto or {served} for a {served} URI", repr(backend))
        return descriptor(served).open(str(path), options or BackendOptions())
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: expected a model file, got no such file")
    entry = descriptor(backend_for(path) if backend == "auto" else backend)
    if entry.schemes and not entry.suffixes:
        raise InputError("backend", f"a backend for files ({entry.name} serves "
                         f"{', '.join(f'{s}://' for s in entry.schemes)} URIs)", repr(entry.name))
    return entry.open(path, options or BackendOptions())


register_backend("onnxruntime", (".onnx",), "segedge.runtime.backends.onnxruntime", "create")
register_backend("tensorrt", (".engine", ".plan"), "segedge.runtime.backends.tensorrt", "create",
                 device="cuda")
# Same .onnx artifacts; chosen by name (--backend openvino) or by the auto rule, never by suffix.
register_backend("openvino", (".onnx",), "segedge.runtime.backends.openvino", "create")
# A model on a Triton Inference Server, chosen by the URI's scheme (HTTP or gRPC).
register_backend("triton", (), "segedge.runtime.backends.triton", "create",
                 schemes=("triton", "triton+grpc"))
