"""Native TensorRT backend: a serialized plan + its JSON sidecar, run through cuda-python.

Written against the TensorRT 10 name-based I/O API (num_io_tensors,
get_tensor_name/mode/dtype, set_input_shape, set_tensor_address,
execute_async_v3), which TensorRT 11 keeps; TensorRT 8 (JetPack 5) is refused
by the availability probe.  One optimisation profile (index 0), one image
input, buffers sized once for the profile's maximum shape, so per-frame shapes
cost no allocation.  Discrete GPUs get pinned host buffers and explicit
copies; integrated GPUs (Jetson: one memory for CPU and GPU) get mapped
host memory that the GPU reads in place (zero copy).

No GPU runs here: the TensorRT and CUDA calls are exercised in CI against
recording fakes (tests/fakes) checked against the real TensorRT and cuda-python
bindings (tests/real_bindings); ``segdoctor`` proves them on a real device.  A
stack that cannot initialise (TypeError from the bindings' factories, RuntimeError
from older cuda-python) is one BackendUnavailableError (``trt_object``, ``cuda_run``).
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segedge.runtime.backends.base import Backend, BackendOptions
from segedge.runtime.backends.cuda import (
    ThreadDevice,
    cuda_call,
    device_count,
    gpu_identity,
    gpu_info,
    import_cudart,
    one_line,
)
from segedge.runtime.errors import (
    ArtifactError,
    BackendUnavailableError,
    InputError,
    SegedgeError,
    ShapeError,
)
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.sidecar import EngineSidecar, is_stale, read_sidecar

__all__ = ["TensorRTBackend", "create", "gpu_identity", "import_cudart", "tensorrt_available",
           "trt_object"]

log = logging.getLogger("segedge.runtime")
MIN_TENSORRT_MAJOR = 10  # name-based I/O, strongly typed networks; JetPack 6 ships 10.3

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


def check_runtime_match(sidecar: EngineSidecar, plan: Path, trt_version: str,
                        gpu_name: str, gpu_cc: str) -> None:
    """Refuse a plan built for another TensorRT or GPU (TensorRT would fail obscurely)."""
    reason = is_stale(sidecar, None, trt_version, gpu_name=gpu_name, gpu_cc=gpu_cc)
    if reason:
        raise ArtifactError(f"{plan}: cannot run this plan here: {reason}; rebuild it on "
                            "this machine (segexport ... --tensorrt)")


def _dims(dims: Any) -> Shape:
    """A TensorRT Dims (tuple-like, but typed without __iter__) as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def tensorrt_major(version: str) -> int:
    """Major version from ``trt.__version__`` ('10.3.0.30' -> 10); 0 when unreadable."""
    head = str(version).split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def tensorrt_available(device_id: int = 0) -> tuple[bool, str]:
    """(usable, why): never raises; the reason is one line fit for a CLI."""
    try:
        import tensorrt as trt
    except Exception as err:  # noqa: BLE001 - ImportError, or OSError from a broken libnvinfer
        return False, f"Python package 'tensorrt' cannot be imported ({one_line(err)})"
    if not hasattr(trt, "Runtime"):
        return False, ("'tensorrt' is only type stubs or an empty namespace here, not the "
                       "TensorRT library (pip install tensorrt on a CUDA machine)")
    version = str(getattr(trt, "__version__", "unknown"))
    if tensorrt_major(version) < MIN_TENSORRT_MAJOR:
        return False, (f"TensorRT: expected {MIN_TENSORRT_MAJOR}.x or newer (JetPack 6+), got "
                       f"{version}; JetPack 5's TensorRT 8 cannot build or run segedge engines "
                       "(use ONNX Runtime's CUDA provider there)")
    try:
        cudart = import_cudart()
    except Exception as err:  # noqa: BLE001
        return False, f"cuda-python cannot be imported ({one_line(err)}); pip install cuda-python"
    try:
        count = device_count(cudart)
    except Exception as err:  # noqa: BLE001 - BackendUnavailableError, or whatever a binding raises
        return False, f"no usable CUDA GPU ({one_line(err)})"
    if device_id >= count:
        return False, f"CUDA device {device_id} requested, {count} device(s) present"
    try:
        trt_object(trt.Runtime, trt.Logger(trt.Logger.ERROR), what="Runtime")
    except BackendUnavailableError as err:
        return False, str(err)
    return True, f"TensorRT {version}, {count} CUDA device(s)"


# The descriptor's hooks (runtime.backends.base.BackendDescriptor): segbench, the auto chooser
# and segdoctor ask ``descriptor("tensorrt")``, never this module by name.
def available() -> tuple[bool, str]:
    """Can this machine run TensorRT plans (on CUDA device 0)? Never raises."""
    return tensorrt_available(0)


def version() -> str:
    """TensorRT's version ('10.3.0.30'); 'absent' where it cannot be imported."""
    try:
        import tensorrt as trt
    except Exception:  # noqa: BLE001 - ImportError, or OSError from a broken libnvinfer
        return "absent"
    return str(getattr(trt, "__version__", "unknown"))


def trt_object(factory: Any, *args: Any, what: str) -> Any:
    """A TensorRT object from its factory (``trt.Builder(logger)``, ``trt.Runtime(logger)``).

    The real bindings answer a library that cannot initialise (no CUDA driver, a driver
    too old for this TensorRT, no GPU memory) with ``TypeError: pybind11::init(): factory
    function returned nullptr``; other versions may return None or raise RuntimeError.
    All of them become one BackendUnavailableError that says so.
    """
    try:
        made = factory(*args)
    except Exception as err:  # noqa: BLE001 - TypeError (pybind11 nullptr), RuntimeError, ...
        raise BackendUnavailableError(
            f"TensorRT could not create a {what}: expected TensorRT to initialise CUDA, got "
            f"{type(err).__name__}: {one_line(err)} (a CUDA driver too old for this TensorRT, "
            "no GPU memory, or CUDA/TensorRT libraries from different releases)") from None
    if made is None:
        raise BackendUnavailableError(f"TensorRT could not create a {what}: expected an "
                                      "object, got None (see the TensorRT log)")
    return made


@dataclass
class _Binding:
    name: str
    is_input: bool
    dtype: np.dtype
    profile: Profile  # outputs: (max, max, max) after max input shapes were set
    nbytes: int
    host_ptr: int
    device_ptr: int  # == host_ptr's device alias for mapped (zero-copy) memory
    host: np.ndarray  # flat view over the pinned or mapped host buffer
    mapped: bool = False


class TensorRTBackend:
    """Backend over one deserialized plan; every failure on the way in frees what it took.

    One execution context, one CUDA stream and one set of bound buffers: ``infer`` is not
    re-entrant, so it declares no ``max_in_flight`` (throughput mode keeps one call in
    flight).  More slots need a context, stream and buffers each and, for a dynamic plan,
    an optimization profile each (a plan built with one profile cannot serve two contexts
    at once) - left until it can be measured on a GPU."""

    name = "tensorrt"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        import tensorrt as trt

        self._trt, self._cudart = trt, import_cudart()
        self.path = Path(path)
        self._bindings: list[_Binding] = []
        self._stream: Any = None
        self._context: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        self.sidecar = read_sidecar(self.path)
        # The plan's own metadata always wins: flags describe foreign ONNX, never a plan.
        self.metadata: ArtifactMetadata = self.sidecar.metadata
        if options.metadata is not None:
            log.warning("%s carries segedge metadata in its sidecar; --classes/--mean/--std/"
                        "--bgr/--stride ignored", self.path.name)
        self._thread_device = ThreadDevice(self._cudart, options.device_id)
        self._thread_device.ensure()
        gpu = gpu_info(options.device_id, self._cudart)
        check_runtime_match(self.sidecar, self.path, trt.__version__, gpu.name,
                            gpu.compute_capability)
        self._device = f"{gpu.name} (sm {gpu.compute_capability})"
        self.zero_copy = gpu.integrated and gpu.can_map_host_memory
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        self.input_name = self._input.name

    def _open(self) -> None:
        trt, sidecar = self._trt, self.sidecar
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt_object(trt.Runtime, self._logger, what="Runtime")
        if sidecar.dla_core is not None:  # must precede deserialisation
            self._runtime.DLA_core = sidecar.dla_core
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ArtifactError(f"{self.path}: TensorRT could not deserialize the plan (see log)")
        self._engine = engine
        context = engine.create_execution_context()
        if context is None:
            raise BackendUnavailableError(
                f"{self.path}: TensorRT could not create an execution context: expected free "
                "device memory for the engine's activations, got none (close other GPU "
                "processes or rebuild with a smaller profile)")
        self._context = context
        self._stream = cuda_call(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._allocate()
        inputs = [b for b in self._bindings if b.is_input]
        if len(inputs) != 1:
            raise ArtifactError(f"{self.path}: expected an engine with one input, got "
                                f"{[b.name for b in inputs]}")
        self._input = inputs[0]

    def _io(self) -> list[tuple[str, bool]]:
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return [(n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT) for n in names]

    def _buffer(self, nbytes: int) -> tuple[int, int, bool]:
        """(host pointer, device pointer, mapped) for one I/O tensor; frees itself on failure."""
        cudart = self._cudart
        if self.zero_copy:
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

    def _allocate(self) -> None:
        engine, context = self._engine, self._context
        io = self._io()
        profiles: dict[str, Profile] = {}
        for name, is_input in io:  # every input shape is set before any output shape is read
            if not is_input:
                continue
            shape = _dims(engine.get_tensor_shape(name))
            if all(d >= 0 for d in shape):
                profiles[name] = (shape, shape, shape)
            else:
                dims = engine.get_tensor_profile_shape(name, 0)  # [min, opt, max]
                profiles[name] = (_dims(dims[0]), _dims(dims[1]), _dims(dims[2]))
            if not context.set_input_shape(name, profiles[name][2]):
                raise ArtifactError(f"{self.path}: engine rejected its own max shape for {name!r}")
        for name, is_input in io:
            if is_input:
                profile = profiles[name]
            else:
                largest = _dims(context.get_tensor_shape(name))
                if any(d < 0 for d in largest):
                    raise ArtifactError(f"{self.path}: output {name!r} has a data-dependent "
                                        f"shape {largest}; expected shapes fixed by the input")
                profile = (largest, largest, largest)
            dtype = numpy_dtype(engine.get_tensor_dtype(name).name, name)
            nbytes = max(1, int(np.prod(profile[2], dtype=np.int64)) * dtype.itemsize)
            host_ptr, device_ptr, mapped = self._buffer(nbytes)
            raw = (ctypes.c_ubyte * nbytes).from_address(host_ptr)
            host = np.ctypeslib.as_array(raw).view(dtype)
            self._bindings.append(
                _Binding(name, is_input, dtype, profile, nbytes, host_ptr, device_ptr, host,
                         mapped))
            if not context.set_tensor_address(name, device_ptr):
                raise ArtifactError(f"{self.path}: TensorRT refused the address for {name!r}")

    @property
    def active(self) -> str:
        dla = "" if self.sidecar.dla_core is None else f", DLA core {self.sidecar.dla_core}"
        copy = ", zero-copy" if self.zero_copy else ""
        return f"TensorRT {self._trt.__version__} on {self._device}{dla}{copy}"

    @property
    def input_profile(self) -> Profile:
        return self._input.profile

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        if self._stream is None:
            raise SegedgeError(f"{self.path}: backend is closed")
        self._thread_device.ensure()  # this may be another thread than the one that opened it
        cudart, context, stream = self._cudart, self._context, self._stream
        inp = self._input
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
        for out in self._bindings:
            if out.is_input:
                continue
            shape = _dims(context.get_tensor_shape(out.name))
            shapes[out.name] = shape
            size = int(np.prod(shape, dtype=np.int64)) * out.dtype.itemsize
            if not out.mapped:
                cuda_call(cudart.cudaMemcpyAsync(out.host_ptr, out.device_ptr, size, d2h, stream),
                          "cudaMemcpyAsync D2H")
        cuda_call(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        results: dict[str, np.ndarray] = {}
        for out in self._bindings:
            if not out.is_input:
                n = int(np.prod(shapes[out.name], dtype=np.int64))
                results[out.name] = out.host[:n].reshape(shapes[out.name]).copy()
        return results

    def close(self) -> None:
        """Free everything this backend took; safe after any partial open and twice."""
        cudart = self._cudart
        try:
            self._thread_device.ensure()
        except (BackendUnavailableError, AttributeError):
            pass  # freeing still has to be tried
        if self._stream is not None:
            cudart.cudaStreamSynchronize(self._stream)
        for b in self._bindings:
            if not b.mapped:
                cudart.cudaFree(b.device_ptr)
            cudart.cudaFreeHost(b.host_ptr)
        self._bindings = []
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        # TensorRT objects are freed by reference count: context before engine before runtime.
        self._context = None
        self._engine = None
        self._runtime = None


def create(path: Path, options: BackendOptions) -> Backend:
    """Registry factory: refuse early, in one line, where TensorRT or a GPU is missing."""
    path = Path(path)
    ok, why = tensorrt_available(options.device_id)
    if not ok:
        raise BackendUnavailableError(f"tensorrt backend unavailable for {path.name}: {why}")
    return TensorRTBackend(path, options)
