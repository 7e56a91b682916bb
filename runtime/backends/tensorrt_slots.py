"""TensorRT execution slots: an execution context, its own CUDA stream and its own bound
buffers each, so that the native backend can run several ``infer`` calls at once.

An IExecutionContext is not re-entrant, and TensorRT lets several of them share one
engine (NvInferRuntime.h, IExecutionContext: "Multiple execution contexts may exist for
one ICudaEngine instance, allowing the same engine to be used for the execution of
multiple batches simultaneously.  If the engine supports dynamic shapes, each execution
context in concurrent use must use a separate optimization profile").  So a slot of a
dynamic plan selects its own profile with ``set_optimization_profile_async`` on its own
stream before any input shape is set (the developer guide's order: the stream given is the
one later work is enqueued on); a static plan's slots all keep the default profile.
Buffers are sized once for the profile's maximum shape, so per-frame shapes cost no
allocation.  Discrete GPUs get pinned host buffers and explicit copies; integrated GPUs
(Jetson: one memory for CPU and GPU) get mapped host memory the GPU reads in place.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segedge.runtime.backends.cuda import cuda_call
from segedge.runtime.errors import (
    ArtifactError,
    BackendUnavailableError,
    InputError,
    SegedgeError,
    ShapeError,
)

Shape = tuple[int, ...]
Profile = tuple[Shape, Shape, Shape]

# TensorRT DataType member name -> numpy dtype; BF16/FP8/INT4/FP4 have no numpy twin.
TRT_TO_NUMPY: dict[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
}


def numpy_dtype(trt_dtype_name: str, tensor: str = "tensor") -> np.dtype:
    """numpy dtype for a TensorRT DataType name; an engine I/O type numpy lacks is refused."""
    try:
        return TRT_TO_NUMPY[trt_dtype_name]
    except KeyError:
        raise ArtifactError(
            f"engine I/O {tensor!r}: expected one of {', '.join(TRT_TO_NUMPY)}, got "
            f"{trt_dtype_name} (no numpy type; keep I/O in fp32/fp16/uint8 when exporting)"
        ) from None


def check_in_profile(name: str, shape: Shape, profile: Profile) -> None:
    """Raise ShapeError unless ``min <= shape <= max`` elementwise (same rank)."""
    low, _, high = profile
    if len(shape) != len(low):
        raise ShapeError(f"input {name!r}: expected rank {len(low)} (profile {low}..{high}), "
                         f"got shape {shape}")
    if any(s < lo or s > hi for s, lo, hi in zip(shape, low, high, strict=True)):
        raise ShapeError(f"input {name!r}: expected a shape within the engine profile "
                         f"min {low} .. max {high}, got {shape}; rebuild the engine with a "
                         "wider profile or resize frames")


def validate_input(tensor: np.ndarray, name: str, dtype: np.dtype, profile: Profile) -> np.ndarray:
    """The tensor as the engine wants it: C-contiguous, right dtype, shape in profile.

    Float tensors are converted between fp32 and fp16 (engine I/O may be fp16
    while preprocessing yields fp32); any other dtype mismatch is an error.
    """
    if not isinstance(tensor, np.ndarray):
        raise InputError(f"input {name!r}", "a numpy array", type(tensor).__name__)
    check_in_profile(name, tuple(int(d) for d in tensor.shape), profile)
    if tensor.dtype != dtype:
        if not (tensor.dtype.kind == "f" and dtype.kind == "f"):
            raise InputError(f"input {name!r} dtype", str(dtype), str(tensor.dtype))
        tensor = tensor.astype(dtype)
    return np.ascontiguousarray(tensor)


def dims(value: Any) -> Shape:
    """A TensorRT Dims (tuple-like, but typed without __iter__) as a tuple of ints."""
    return tuple(int(value[i]) for i in range(len(value)))


def io_tensors(trt: Any, engine: Any) -> list[tuple[str, bool]]:
    """(name, is input) of every engine I/O tensor, in the engine's order."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    return [(n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT) for n in names]


def is_dynamic(trt: Any, engine: Any) -> bool:
    """Does any input have a runtime dimension (-1), i.e. does the plan need a profile?"""
    return any(is_input and any(d < 0 for d in dims(engine.get_tensor_shape(name)))
               for name, is_input in io_tensors(trt, engine))


def profiles_agree(trt: Any, engine: Any, count: int) -> bool:
    """Do optimization profiles 0..count-1 give every input the same (min, opt, max)?  Slot
    0's profile stands for all slots (validation, the shapes a caller may send), so slots
    on profiles that differ would accept or refuse frames depending on the slot they got."""
    inputs = [name for name, is_input in io_tensors(trt, engine) if is_input]
    shapes = [[tuple(dims(d) for d in engine.get_tensor_profile_shape(name, k))
               for name in inputs] for k in range(count)]
    return all(s == shapes[0] for s in shapes[1:])


@dataclass
class Binding:
    name: str
    is_input: bool
    dtype: np.dtype
    profile: Profile  # outputs: (max, max, max) after max input shapes were set
    nbytes: int
    host_ptr: int
    device_ptr: int  # == host_ptr's device alias for mapped (zero-copy) memory
    host: np.ndarray  # flat view over the pinned or mapped host buffer
    mapped: bool = False


def host_buffer(cudart: Any, nbytes: int, zero_copy: bool) -> tuple[int, int, bool]:
    """(host pointer, device pointer, mapped) for one I/O tensor; frees itself on failure."""
    if zero_copy:
        host = cuda_call(cudart.cudaHostAlloc(nbytes, cudart.cudaHostAllocMapped),
                         "cudaHostAlloc(mapped)")
        try:
            device = cuda_call(cudart.cudaHostGetDevicePointer(host, 0),
                               "cudaHostGetDevicePointer")
        except BaseException:
            cudart.cudaFreeHost(host)
            raise
        return int(host), int(device), True
    host = cuda_call(cudart.cudaMallocHost(nbytes), "cudaMallocHost")
    try:
        device = cuda_call(cudart.cudaMalloc(nbytes), "cudaMalloc")
    except BaseException:
        cudart.cudaFreeHost(host)
        raise
    return int(host), int(device), False


class Slot:
    """One execution context, one CUDA stream, one set of bound buffers: one ``infer`` at a
    time (the backend hands each call an idle slot).  Frees what it took if opening fails.

    ``profile`` is the optimization profile this slot selects (a dynamic plan: one per slot),
    None for a static plan (every context keeps the default profile)."""

    def __init__(self, trt: Any, cudart: Any, engine: Any, path: Path, index: int,
                 count: int, profile: int | None, zero_copy: bool) -> None:
        self._trt, self._cudart, self._engine, self.path = trt, cudart, engine, path
        self.index, self.count, self.profile, self.zero_copy = index, count, profile, zero_copy
        self.context: Any = None
        self.stream: Any = None
        self.bindings: list[Binding] = []
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _label(self) -> str:
        return f"execution slot {self.index + 1} of {self.count}"

    def _open(self) -> None:
        context = self._engine.create_execution_context()
        if context is None:
            hint = "" if self.count == 1 else "; --mode latency needs one slot"
            raise BackendUnavailableError(
                f"{self.path}: TensorRT could not create an execution context: expected free "
                "device memory for the engine's activations, got none (close other GPU "
                f"processes or rebuild with a smaller profile; {self._label()}{hint})")
        self.context = context
        self.stream = cuda_call(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
        if self.profile is not None and not context.set_optimization_profile_async(
                self.profile, int(self.stream)):
            raise ArtifactError(f"{self.path}: TensorRT refused optimization profile "
                                f"{self.profile} for {self._label()} (see the TensorRT log)")
        self._allocate()
        inputs = [b for b in self.bindings if b.is_input]
        if len(inputs) != 1:
            raise ArtifactError(f"{self.path}: expected an engine with one input, got "
                                f"{[b.name for b in inputs]}")
        self.input = inputs[0]

    def _allocate(self) -> None:
        engine, context = self._engine, self.context
        io = io_tensors(self._trt, engine)
        profiles: dict[str, Profile] = {}
        for name, is_input in io:  # every input shape is set before any output shape is read
            if not is_input:
                continue
            shape = dims(engine.get_tensor_shape(name))
            if all(d >= 0 for d in shape):
                profiles[name] = (shape, shape, shape)
            else:  # [min, opt, max] of this slot's own profile
                low, opt, high = engine.get_tensor_profile_shape(name, self.profile or 0)
                profiles[name] = (dims(low), dims(opt), dims(high))
            if not context.set_input_shape(name, profiles[name][2]):
                raise ArtifactError(f"{self.path}: engine rejected its own max shape for {name!r}")
        for name, is_input in io:
            if is_input:
                profile = profiles[name]
            else:
                largest = dims(context.get_tensor_shape(name))
                if any(d < 0 for d in largest):
                    raise ArtifactError(f"{self.path}: output {name!r} has a data-dependent "
                                        f"shape {largest}; expected shapes fixed by the input")
                profile = (largest, largest, largest)
            dtype = numpy_dtype(engine.get_tensor_dtype(name).name, name)
            nbytes = max(1, int(np.prod(profile[2], dtype=np.int64)) * dtype.itemsize)
            host_ptr, device_ptr, mapped = host_buffer(self._cudart, nbytes, self.zero_copy)
            raw = (ctypes.c_ubyte * nbytes).from_address(host_ptr)
            host = np.ctypeslib.as_array(raw).view(dtype)
            self.bindings.append(
                Binding(name, is_input, dtype, profile, nbytes, host_ptr, device_ptr, host,
                        mapped))
            if not context.set_tensor_address(name, device_ptr):
                raise ArtifactError(f"{self.path}: TensorRT refused the address for {name!r}")

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Copy in, execute on this slot's stream, copy out, wait for this stream only."""
        cudart, context, stream, inp = self._cudart, self.context, self.stream, self.input
        tensor = validate_input(tensor, inp.name, inp.dtype, inp.profile)
        if not context.set_input_shape(inp.name, tensor.shape):
            raise ShapeError(f"input {inp.name!r}: TensorRT rejected shape {tensor.shape} "
                             f"(profile {inp.profile[0]}..{inp.profile[2]})")
        np.copyto(inp.host[: tensor.size], tensor.ravel())
        h2d, d2h = (cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        if not inp.mapped:
            cuda_call(cudart.cudaMemcpyAsync(inp.device_ptr, inp.host_ptr, tensor.nbytes, h2d,
                                             stream), "cudaMemcpyAsync H2D")
        if not context.execute_async_v3(int(stream)):
            raise SegedgeError(f"{self.path}: TensorRT execute_async_v3 failed (see log)")
        shapes: dict[str, Shape] = {}
        for out in self.bindings:
            if out.is_input:
                continue
            shape = dims(context.get_tensor_shape(out.name))
            shapes[out.name] = shape
            size = int(np.prod(shape, dtype=np.int64)) * out.dtype.itemsize
            if not out.mapped:
                cuda_call(cudart.cudaMemcpyAsync(out.host_ptr, out.device_ptr, size, d2h, stream),
                          "cudaMemcpyAsync D2H")
        cuda_call(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        results: dict[str, np.ndarray] = {}
        for out in self.bindings:
            if not out.is_input:
                n = int(np.prod(shapes[out.name], dtype=np.int64))
                results[out.name] = out.host[:n].reshape(shapes[out.name]).copy()
        return results

    def close(self) -> None:
        """Free this slot in reverse order of opening; safe after a partial open and twice."""
        cudart = self._cudart
        if self.stream is not None:
            cudart.cudaStreamSynchronize(self.stream)
        for b in reversed(self.bindings):
            if not b.mapped:
                cudart.cudaFree(b.device_ptr)
            cudart.cudaFreeHost(b.host_ptr)
        self.bindings = []
        if self.stream is not None:
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = None  # TensorRT frees it by reference count, before the engine
