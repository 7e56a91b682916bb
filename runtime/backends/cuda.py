"""cuda-python's runtime bindings: the one way segedge talks to CUDA (no pycuda, no torch).

Every call returns ``(cudaError_t, *values)``; ``cuda_call`` turns a non-zero
error into a one-line BackendUnavailableError, so no CUDA error code is ever
dropped.  Not every failure is a code: cuda-python 12.3-12.8 raise
``RuntimeError: Failed to dlopen libcuda.so.1`` where no driver is installed
(12.9+ return ``cudaErrorInsufficientDriver``), so ``cuda_run`` makes both
the same BackendUnavailableError.  CUDA's current device is per host thread,
so a backend that runs on a worker thread sets it there too (``ThreadDevice``).
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from segedge.runtime.errors import BackendUnavailableError

# Module paths, newest first: cuda-python 12.6+/13 ship ``cuda.bindings.runtime``;
# older 12.x releases only ``cuda.cudart``.
CUDART_MODULES = ("cuda.bindings.runtime", "cuda.cudart")


def import_cudart() -> ModuleType:
    """cuda-python runtime bindings: ``cuda.bindings.runtime`` (12.6+/13), else ``cuda.cudart``."""
    try:
        return importlib.import_module(CUDART_MODULES[0])
    except ImportError:
        return importlib.import_module(CUDART_MODULES[1])


def cuda_call(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple, raising on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        raise BackendUnavailableError(f"CUDA {what}: expected cudaSuccess, got {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def cuda_run(fn: Any, *args: Any, what: str | None = None) -> Any:
    """Call a cuda-python function: an error code or any exception it raises (dlopen of
    libcuda, a missing driver symbol) becomes one BackendUnavailableError."""
    label = what if what is not None else str(getattr(fn, "__name__", "call"))
    try:
        result = fn(*args)
    except Exception as err:  # noqa: BLE001 - cuda-python raises RuntimeError, others
        text = one_line(err)
        if re.fullmatch(r'Function "cu\w+" not found', text):  # after a failed dlopen
            text += " (libcuda.so.1, the CUDA driver, did not load)"
        raise BackendUnavailableError(f"CUDA {label}: expected cudaSuccess, got "
                                      f"{type(err).__name__}: {text}") from None
    return cuda_call(result, label)


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


@dataclass(frozen=True)
class GpuInfo:
    """What CUDA says about one device; ``integrated`` is a Jetson-style shared-memory GPU."""

    name: str
    compute_capability: str  # "major.minor"
    integrated: bool
    can_map_host_memory: bool
    total_memory: int  # bytes

    def __post_init__(self) -> None:
        major, _, minor = self.compute_capability.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise BackendUnavailableError(f"GPU {self.name!r}: expected a compute capability "
                                          f"'major.minor', got {self.compute_capability!r}")


def gpu_info(device_id: int = 0, cudart: ModuleType | None = None) -> GpuInfo:
    """Name, compute capability and memory model of ``device_id`` as CUDA reports them."""
    cudart = cudart or import_cudart()
    prop = cuda_run(cudart.cudaGetDeviceProperties, device_id)
    name = prop.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
    return GpuInfo(str(name), f"{prop.major}.{prop.minor}", bool(prop.integrated),
                   bool(getattr(prop, "canMapHostMemory", False)), int(prop.totalGlobalMem))


def gpu_identity(device_id: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') as CUDA reports them."""
    info = gpu_info(device_id)
    return info.name, info.compute_capability


def device_count(cudart: ModuleType | None = None) -> int:
    """CUDA devices visible here; BackendUnavailableError when the driver has none."""
    cudart = cudart or import_cudart()
    return int(cuda_run(cudart.cudaGetDeviceCount))


def versions(cudart: ModuleType | None = None) -> dict[str, str]:
    """CUDA driver and runtime versions ('12.6'); a value CUDA will not give is left out.

    ``cudaDriverGetVersion`` answers success with 0 where no driver is installed
    (cuda-python 12.9+) or raises (12.3-12.8): either way there is no driver version.
    """
    cudart = cudart or import_cudart()
    out: dict[str, str] = {}
    for key, fn in (("driver", "cudaDriverGetVersion"), ("runtime", "cudaRuntimeGetVersion")):
        try:
            value = int(cuda_run(getattr(cudart, fn), what=fn))
        except (BackendUnavailableError, AttributeError, TypeError, ValueError):
            continue
        if value > 0:
            out[key] = f"{value // 1000}.{value % 1000 // 10}"
    return out


class ThreadDevice:
    """Make ``device_id`` current on whichever thread calls ``ensure`` (once per thread).

    CUDA keeps the current device per host thread: a backend opened on the main
    thread and run on a worker would otherwise run on device 0.
    """

    def __init__(self, cudart: ModuleType, device_id: int) -> None:
        if device_id < 0:
            raise BackendUnavailableError(f"CUDA device: expected an index >= 0, got {device_id}")
        self.cudart, self.device_id = cudart, device_id
        self._local = threading.local()

    def ensure(self) -> None:
        if getattr(self._local, "done", False):
            return
        cuda_run(self.cudart.cudaSetDevice, self.device_id,
                 what=f"cudaSetDevice({self.device_id})")
        self._local.done = True
