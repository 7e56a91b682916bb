"""A recording fake of cuda-python's runtime module (``cuda.bindings.runtime`` / ``cuda.cudart``).

Functions keep the real names, parameter names and ``(cudaError_t, *values)``
returns (checked against the installed cuda-python by test_fakes_match_api).
Memory is simulated: device allocations are bytearrays behind fake pointers,
pinned and mapped host allocations are real ctypes buffers (the backend
writes into them through numpy), and a mapped buffer's device alias resolves
to the same bytes.  The current device is per host thread, as in CUDA.
Every call is recorded; misuse (a copy of the wrong kind or size, a freed or
unknown pointer, a dead stream) is recorded as a violation and answered with
the error CUDA would give.  ``fail_at`` makes the n-th call of a function fail.

``driver_version=0`` plays a machine without a CUDA driver, as the real bindings
do there (tests/real_bindings checks it): cuda-python before 12.9
(``cuda_python``) raises ``RuntimeError: Failed to dlopen libcuda.so.1`` on the
first call that needs the driver and ``Function "cuInit" not found`` after;
12.9+ return ``cudaErrorInsufficientDriver`` (``cudaDriverGetVersion``: success
and 0).  Errors come with None values, as in cuda-python.
"""

from __future__ import annotations

import ctypes
import enum
import inspect
import itertools
import threading
import types
from dataclasses import dataclass, field
from typing import Any


class cudaError_t(enum.IntEnum):  # noqa: N801 - the real name
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


cudaHostAllocDefault, cudaHostAllocPortable, cudaHostAllocMapped = 0, 1, 2  # noqa: N816


@dataclass(frozen=True)
class FakeDevice:
    name: str = "NVIDIA Fake RTX"
    major: int = 8
    minor: int = 9
    integrated: bool = False  # True: a Jetson (one memory for CPU and GPU)
    total_memory: int = 16 << 30


ORIN = FakeDevice("Orin", 8, 7, integrated=True, total_memory=32 << 30)


class cudaDeviceProp:  # noqa: N801
    def __init__(self, device: FakeDevice) -> None:
        self.name = device.name.encode().ljust(256, b"\0")
        self.major, self.minor = device.major, device.minor
        self.integrated = int(device.integrated)
        self.canMapHostMemory = 1
        self.totalGlobalMem = device.total_memory
        self.multiProcessorCount = 16


class cudaStream_t:  # noqa: N801
    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __int__(self) -> int:
        return self._handle

    def getPtr(self) -> int:  # noqa: N802 - the real name
        return self._handle


@dataclass
class _Host:
    buffer: Any  # ctypes array: the bytes live in this process
    size: int
    mapped: bool
    alias: int | None = None


@dataclass
class _Device:
    data: bytearray
    device: int


@dataclass
class FakeCuda:
    devices: tuple[FakeDevice, ...] = (FakeDevice(),)
    driver_version: int = 12060  # 0: no CUDA driver on this machine
    runtime_version: int = 12060
    cuda_python: str = "12.9.0"  # the cuda-python release played (module path, failure style)
    fail_at: dict[str, int] = field(default_factory=dict)  # function -> failing call number
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._local = threading.local()
        self._device_mem: dict[int, _Device] = {}
        self._host_mem: dict[int, _Host] = {}
        self._aliases: dict[int, int] = {}  # mapped device alias -> host pointer
        self._streams: dict[int, int] = {}  # handle -> device
        self._next = itertools.count(0x7F00_0000_1000, 0x1_0000)
        self._count: dict[str, int] = {}
        self._dlopen_tried = False
        self.module = self._module()

    def raises_without_driver(self) -> bool:
        """cuda-python 12.3-12.8 raise RuntimeError where libcuda cannot be opened."""
        major, minor = (int(p) for p in (self.cuda_python.split(".") + ["0"])[:2])
        return (major, minor) < (12, 9)

    def module_paths(self) -> tuple[str, ...]:
        """Import paths this release has: 12.3-12.5 only ``cuda.cudart``."""
        major, minor = (int(p) for p in (self.cuda_python.split(".") + ["0"])[:2])
        if (major, minor) < (12, 6):
            return ("cuda.cudart",)
        return ("cuda.bindings.runtime", "cuda.cudart") if major < 13 else \
            ("cuda.bindings.runtime",)

    def _no_driver(self, name: str, values: int) -> tuple[Any, ...]:
        """What ``name`` does where no CUDA driver is installed."""
        self.calls.append((name, "no driver"))
        if self.raises_without_driver():
            if not self._dlopen_tried:
                self._dlopen_tried = True
                raise RuntimeError("Failed to dlopen libcuda.so.1")
            driver_fn = "cuDriverGetVersion" if name == "cudaDriverGetVersion" else "cuInit"
            raise RuntimeError(f'Function "{driver_fn}" not found')
        if name == "cudaDriverGetVersion":
            return cudaError_t.cudaSuccess, 0
        return (cudaError_t.cudaErrorInsufficientDriver, *([None] * values))

    # -- bookkeeping -----------------------------------------------------------------------
    def current_device(self) -> int:
        return int(getattr(self._local, "device", 0))

    def live(self) -> dict[str, int]:
        """What is still allocated: must be all zero after a backend closes."""
        return {"device": len(self._device_mem), "host": len(self._host_mem),
                "streams": len(self._streams)}

    def names(self, prefix: str = "") -> list[str]:
        return [c[0] for c in self.calls if c[0].startswith(prefix)]

    def stream_is_live(self, handle: int) -> bool:
        return handle in self._streams

    def device_bytes(self, ptr: int, nbytes: int) -> memoryview | None:
        """Writable view of ``nbytes`` at a device pointer (or a mapped alias); None if invalid."""
        if ptr in self._device_mem:
            data = self._device_mem[ptr].data
            return memoryview(data)[:nbytes] if nbytes <= len(data) else None
        if ptr in self._aliases:
            host = self._host_mem[self._aliases[ptr]]
            if nbytes > host.size:
                return None
            return memoryview(host.buffer).cast("B")[:nbytes]
        return None

    def device_of(self, ptr: int) -> int | None:
        if ptr in self._device_mem:
            return self._device_mem[ptr].device
        return 0 if ptr in self._aliases else None

    def _enter(self, name: str, *args: Any) -> cudaError_t | None:
        self.calls.append((name, *args, self.current_device()))
        self._count[name] = self._count.get(name, 0) + 1
        if self.fail_at.get(name) == self._count[name]:
            return (cudaError_t.cudaErrorMemoryAllocation if "alloc" in name.lower()
                    else cudaError_t.cudaErrorInvalidValue)
        return None

    def _violate(self, message: str) -> tuple[cudaError_t]:
        self.violations.append(message)
        return (cudaError_t.cudaErrorInvalidValue,)

    # -- the API ----------------------------------------------------------------------------
    def _module(self) -> types.ModuleType:
        fake = self

        def cudaGetDeviceCount():  # noqa: N802
            if err := fake._enter("cudaGetDeviceCount"):
                return err, None
            if not fake.devices:
                return cudaError_t.cudaErrorNoDevice, None
            return cudaError_t.cudaSuccess, len(fake.devices)

        def cudaSetDevice(device):  # noqa: N802
            if err := fake._enter("cudaSetDevice", device):
                return (err,)
            if not 0 <= device < len(fake.devices):
                return (cudaError_t.cudaErrorInvalidDevice,)
            fake._local.device = device
            return (cudaError_t.cudaSuccess,)

        def cudaGetDevice():  # noqa: N802
            fake._enter("cudaGetDevice")
            return cudaError_t.cudaSuccess, fake.current_device()

        def cudaGetDeviceProperties(device):  # noqa: N802
            if err := fake._enter("cudaGetDeviceProperties", device):
                return err, None
            if not 0 <= device < len(fake.devices):
                return cudaError_t.cudaErrorInvalidDevice, None
            return cudaError_t.cudaSuccess, cudaDeviceProp(fake.devices[device])

        def cudaDriverGetVersion():  # noqa: N802
            fake._enter("cudaDriverGetVersion")
            return cudaError_t.cudaSuccess, fake.driver_version

        def cudaRuntimeGetVersion():  # noqa: N802
            fake._enter("cudaRuntimeGetVersion")
            return cudaError_t.cudaSuccess, fake.runtime_version

        def cudaMalloc(size):  # noqa: N802
            if err := fake._enter("cudaMalloc", size):
                return err, None
            ptr = next(fake._next)
            fake._device_mem[ptr] = _Device(bytearray(size), fake.current_device())
            return cudaError_t.cudaSuccess, ptr

        def cudaFree(devPtr):  # noqa: N802, N803
            fake._enter("cudaFree", devPtr)
            if fake._device_mem.pop(int(devPtr), None) is None:
                return fake._violate(f"cudaFree of unknown device pointer {devPtr:#x}")
            return (cudaError_t.cudaSuccess,)

        def _host(size: int, mapped: bool) -> int:
            buffer = (ctypes.c_ubyte * size)()
            ptr = ctypes.addressof(buffer)
            fake._host_mem[ptr] = _Host(buffer, size, mapped)
            return ptr

        def cudaMallocHost(size):  # noqa: N802
            if err := fake._enter("cudaMallocHost", size):
                return err, None
            return cudaError_t.cudaSuccess, _host(size, False)

        def cudaHostAlloc(size, flags):  # noqa: N802
            if err := fake._enter("cudaHostAlloc", size, flags):
                return err, None
            return cudaError_t.cudaSuccess, _host(size, bool(flags & cudaHostAllocMapped))

        def cudaHostGetDevicePointer(pHost, flags):  # noqa: N802, N803
            if err := fake._enter("cudaHostGetDevicePointer", pHost, flags):
                return err, None
            host = fake._host_mem.get(int(pHost))
            if host is None or not host.mapped:
                return fake._violate(f"cudaHostGetDevicePointer of unmapped {pHost:#x}")[0], None
            host.alias = host.alias or next(fake._next)
            fake._aliases[host.alias] = int(pHost)
            return cudaError_t.cudaSuccess, host.alias

        def cudaFreeHost(ptr):  # noqa: N802
            fake._enter("cudaFreeHost", ptr)
            host = fake._host_mem.pop(int(ptr), None)
            if host is None:
                return fake._violate(f"cudaFreeHost of unknown host pointer {ptr:#x}")
            if host.alias is not None:
                fake._aliases.pop(host.alias, None)
            return (cudaError_t.cudaSuccess,)

        def cudaMemcpyAsync(dst, src, count, kind, stream):  # noqa: N802
            if err := fake._enter("cudaMemcpyAsync", dst, src, count, kind, int(stream)):
                return (err,)
            if int(stream) not in fake._streams:
                return fake._violate("cudaMemcpyAsync on a dead stream")
            if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
                host, device = fake._host_mem.get(int(src)), fake.device_bytes(int(dst), count)
                if host is None or device is None or count > host.size:
                    return fake._violate(f"H2D copy of {count} bytes: src {src:#x} is not a "
                                         f"pinned buffer that large or dst {dst:#x} no device "
                                         "buffer that large")
                device[:count] = ctypes.string_at(int(src), count)
            elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
                host, device = fake._host_mem.get(int(dst)), fake.device_bytes(int(src), count)
                if host is None or device is None or count > host.size:
                    return fake._violate(f"D2H copy of {count} bytes: dst {dst:#x} is not a "
                                         f"pinned buffer that large or src {src:#x} no device "
                                         "buffer that large")
                ctypes.memmove(int(dst), bytes(device[:count]), count)
            else:
                return fake._violate(f"unexpected copy kind {kind!r}")
            return (cudaError_t.cudaSuccess,)

        def cudaStreamCreate():  # noqa: N802
            if err := fake._enter("cudaStreamCreate"):
                return err, None
            handle = next(fake._next)
            fake._streams[handle] = fake.current_device()
            return cudaError_t.cudaSuccess, cudaStream_t(handle)

        def cudaStreamSynchronize(stream):  # noqa: N802
            if err := fake._enter("cudaStreamSynchronize", int(stream)):
                return (err,)
            if int(stream) not in fake._streams:
                return fake._violate("cudaStreamSynchronize on a dead stream")
            return (cudaError_t.cudaSuccess,)

        def cudaStreamDestroy(stream):  # noqa: N802
            fake._enter("cudaStreamDestroy", int(stream))
            if fake._streams.pop(int(stream), None) is None:
                return fake._violate("cudaStreamDestroy of a dead stream")
            return (cudaError_t.cudaSuccess,)

        def cudaMemGetInfo():  # noqa: N802
            fake._enter("cudaMemGetInfo")
            total = fake.devices[fake.current_device()].total_memory if fake.devices else 0
            used = sum(len(d.data) for d in fake._device_mem.values())
            return cudaError_t.cudaSuccess, total - used, total

        def needs_driver(fn: Any, values: int) -> Any:
            def call(*args: Any) -> Any:
                if fake.driver_version <= 0:
                    return fake._no_driver(fn.__name__, values)
                return fn(*args)

            call.__name__ = call.__qualname__ = fn.__name__
            call.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
            return call

        module = types.ModuleType(self.module_paths()[0])
        for fn in (cudaGetDeviceCount, cudaSetDevice, cudaGetDevice, cudaGetDeviceProperties,
                   cudaDriverGetVersion, cudaRuntimeGetVersion, cudaMalloc, cudaFree,
                   cudaMallocHost, cudaHostAlloc, cudaHostGetDevicePointer, cudaFreeHost,
                   cudaMemcpyAsync, cudaStreamCreate, cudaStreamSynchronize, cudaStreamDestroy,
                   cudaMemGetInfo):
            wrapped = fn if fn is cudaRuntimeGetVersion else needs_driver(fn, _VALUES[fn.__name__])
            setattr(module, fn.__name__, wrapped)
        for value in (cudaError_t, cudaMemcpyKind, cudaDeviceProp, cudaStream_t):
            setattr(module, value.__name__, value)
        module.cudaHostAllocDefault = cudaHostAllocDefault  # type: ignore[attr-defined]
        module.cudaHostAllocPortable = cudaHostAllocPortable  # type: ignore[attr-defined]
        module.cudaHostAllocMapped = cudaHostAllocMapped  # type: ignore[attr-defined]
        return module


# How many values each function returns after its cudaError_t.
_VALUES = {"cudaGetDeviceCount": 1, "cudaSetDevice": 0, "cudaGetDevice": 1,
           "cudaGetDeviceProperties": 1, "cudaDriverGetVersion": 1, "cudaRuntimeGetVersion": 1,
           "cudaMalloc": 1, "cudaFree": 0, "cudaMallocHost": 1, "cudaHostAlloc": 1,
           "cudaHostGetDevicePointer": 1, "cudaFreeHost": 0, "cudaMemcpyAsync": 0,
           "cudaStreamCreate": 1, "cudaStreamSynchronize": 0, "cudaStreamDestroy": 0,
           "cudaMemGetInfo": 2}

# The functions the fake offers, for the check against the real module.
FUNCTIONS = ("cudaGetDeviceCount", "cudaSetDevice", "cudaGetDevice", "cudaGetDeviceProperties",
             "cudaDriverGetVersion", "cudaRuntimeGetVersion", "cudaMalloc", "cudaFree",
             "cudaMallocHost", "cudaHostAlloc", "cudaHostGetDevicePointer", "cudaFreeHost",
             "cudaMemcpyAsync", "cudaStreamCreate", "cudaStreamSynchronize", "cudaStreamDestroy",
             "cudaMemGetInfo")
