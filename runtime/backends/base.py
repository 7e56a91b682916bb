"""Backend contract and registry: one file per backend, chosen by artifact kind.

Like Polygraphy's runners: a backend is constructed from a loaded artifact,
exposes `infer(tensor) -> {output name: array}` and says which device or
provider actually runs it (read back after creation, never assumed).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.redact import redact

HW = tuple[int, int]


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

    def __post_init__(self) -> None:
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


# A file backend gets a Path; a served model (triton://...) gets its URI as a str.
BackendFactory = Callable[[Path | str, BackendOptions], Backend]


@dataclass(frozen=True)
class _Entry:
    name: str
    suffixes: tuple[str, ...]
    module: str  # imported lazily: the TensorRT backend must not load where TensorRT is absent
    factory: str
    schemes: tuple[str, ...] = ()  # URI schemes it serves (a model on a server, not a file)


_REGISTRY: dict[str, _Entry] = {}
_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://")


def register_backend(name: str, suffixes: tuple[str, ...], module: str, factory: str,
                     schemes: tuple[str, ...] = ()) -> None:
    _REGISTRY[name] = _Entry(name, suffixes, module, factory, schemes)


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def backend_for(path: Path) -> str:
    suffix = path.suffix.lower()
    for entry in _REGISTRY.values():
        if suffix in entry.suffixes:
            return entry.name
    known = sorted({s for e in _REGISTRY.values() for s in e.suffixes})
    raise ArtifactError(
        f"{path}: expected an artifact ending in {', '.join(known)}, got {suffix!r}"
    )


def backend_for_uri(model: str | Path) -> str | None:
    """The backend a model URI's scheme names (``triton://...``), None for a file path."""
    match = _SCHEME.match(model) if isinstance(model, str) else None
    if match is None:
        return None
    scheme = match.group("scheme").lower()
    for entry in _REGISTRY.values():
        if scheme in entry.schemes:
            return entry.name
    known = [f"{s}://" for e in _REGISTRY.values() for s in e.schemes]
    raise ArtifactError(f"{redact(model)}: expected a model file or a {' or '.join(known)} "
                        f"URI, got scheme {scheme}://")


def open_backend(path: str | Path, backend: str = "auto",
                 options: BackendOptions | None = None) -> Backend:
    """Open an artifact with the named backend, or the one its file kind (or URI) implies."""
    served = backend_for_uri(path)
    if served is not None:  # a model on a server: its scheme names the only backend
        if backend not in ("auto", served):
            raise InputError("backend", f"auto or {served} for a {served} URI", repr(backend))
        entry = _REGISTRY[served]
        factory: BackendFactory = getattr(importlib.import_module(entry.module), entry.factory)
        return factory(str(path), options or BackendOptions())
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: expected a model file, got no such file")
    name = backend_for(path) if backend == "auto" else backend
    if name not in _REGISTRY:
        raise InputError("backend", f"one of {', '.join(['auto', *backend_names()])}", repr(name))
    entry = _REGISTRY[name]
    if entry.schemes and not entry.suffixes:
        raise InputError("backend", f"a backend for files ({name} serves "
                         f"{', '.join(f'{s}://' for s in entry.schemes)} URIs)", repr(name))
    factory = getattr(importlib.import_module(entry.module), entry.factory)
    return factory(path, options or BackendOptions())


register_backend("onnxruntime", (".onnx",), "segedge.runtime.backends.onnxruntime", "create")
register_backend("tensorrt", (".engine", ".plan"), "segedge.runtime.backends.tensorrt", "create")
# Same .onnx artifacts; chosen by name (--backend openvino) or by the auto rule, never by suffix.
register_backend("openvino", (".onnx",), "segedge.runtime.backends.openvino", "create")
# A model on a Triton Inference Server, chosen by the URI's scheme (HTTP or gRPC).
register_backend("triton", (), "segedge.runtime.backends.triton", "create",
                 schemes=("triton", "triton+grpc"))
