"""Native TensorRT backend: a serialized plan + its JSON sidecar, run through cuda-python.

Written against the TensorRT 10 name-based I/O API (num_io_tensors,
get_tensor_name/mode/dtype, set_input_shape, set_tensor_address,
execute_async_v3), which TensorRT 11 keeps; TensorRT 8 (JetPack 5) is refused
by the availability probe.  One image input; buffers sized once for the
profile's maximum shape (runtime.backends.tensorrt_slots).  Latency mode runs
one execution slot (context + stream + buffers); throughput mode runs
THROUGHPUT_SLOTS of them (``max_in_flight``), each ``infer`` on an idle one, and
a dynamic plan gets at most one slot per optimization profile it was built with.
Slots are contexts on one engine: a mode change (``use_mode``) opens or frees slots and
never deserializes the plan again; a slot after the first that cannot open runs the
backend with fewer slots.

No GPU runs here: the TensorRT and CUDA calls are exercised in CI against
recording fakes (tests/fakes) checked against the real TensorRT and cuda-python
bindings (tests/real_bindings); ``segdoctor`` proves them on a real device.  A
stack that cannot initialise (TypeError from the bindings' factories, RuntimeError
from older cuda-python) is one BackendUnavailableError (``trt_object``, ``cuda_run``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from segedge.runtime.backends.base import Backend, BackendOptions
from segedge.runtime.backends.cuda import (
    ThreadDevice,
    device_count,
    gpu_identity,
    gpu_info,
    import_cudart,
    one_line,
)
from segedge.runtime.backends.tensorrt_slots import Profile, Slot, is_dynamic, profiles_agree
from segedge.runtime.errors import (
    ArtifactError,
    BackendClosedError,
    BackendUnavailableError,
    SegedgeError,
)
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.sidecar import EngineSidecar, is_stale, read_sidecar

__all__ = ["THROUGHPUT_SLOTS", "BackendClosedError", "TensorRTBackend", "create",
           "gpu_identity", "import_cudart", "slot_count", "tensorrt_available", "trt_object"]

log = logging.getLogger("segedge.runtime")
MIN_TENSORRT_MAJOR = 10  # name-based I/O, strongly typed networks; JetPack 6 ships 10.3
# Execution slots in throughput mode, and the optimization profiles segexport gives a dynamic
# plan (one per slot: TensorRT's rule).  Two is double buffering: while one slot's kernels
# run, the other's copies and the host's pre/post-processing go on, on its own stream.  Each
# further slot costs another set of activation memory and I/O buffers (and, on a dynamic
# plan, another profile: build time, plan size) for overlap two already give; the CPU
# backends keep two as well.  Not yet timed on a GPU (tools/gpu_check.sh will).
THROUGHPUT_SLOTS = 2
# How long close() waits for ``infer`` calls still running on a slot; a call still running
# after that frees its own slot when it returns (never freed under it).
CLOSE_WAIT_S = 10.0


def check_runtime_match(sidecar: EngineSidecar, plan: Path, trt_version: str,
                        gpu_name: str, gpu_cc: str) -> None:
    """Refuse a plan built for another TensorRT or GPU (TensorRT would fail obscurely)."""
    reason = is_stale(sidecar, None, trt_version, gpu_name=gpu_name, gpu_cc=gpu_cc)
    if reason:
        raise ArtifactError(f"{plan}: cannot run this plan here: {reason}; rebuild it on "
                            "this machine (segexport ... --engine)")


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


def slot_count(mode: str, dynamic: bool, profiles: int) -> int:
    """Execution slots for a plan: one in latency mode, THROUGHPUT_SLOTS in throughput mode,
    and never more than a dynamic plan's optimization profiles (each context in concurrent
    use needs its own); a static plan's contexts share its default profile."""
    wanted = 1 if mode == "latency" else THROUGHPUT_SLOTS
    return max(1, min(wanted, profiles)) if dynamic else wanted


class TensorRTBackend:
    """Backend over one deserialized plan and its execution slots (tensorrt_slots.Slot: a
    context, a CUDA stream and bound buffers each); every failure on the way in frees what
    it took.  ``infer`` is re-entrant across slots: ``max_in_flight`` calls may run at once,
    each on an idle slot; order is the caller's (runtime.engine keeps it).  ``use_mode``
    opens or frees slots on the same engine: a plan is deserialized once per backend."""

    name = "tensorrt"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        import tensorrt as trt

        # One lock guards the slots, the idle ones every call takes one from, the closed flag
        # and the number of calls holding a slot (close waits for those, never frees under one).
        self._cond = threading.Condition()
        self._slots: list[Slot] = []
        self._idle: list[Slot] = []
        self._in_flight = 0
        self._closed = False
        self._gave_up = False  # close() stopped waiting: a running call frees its own slot
        self.close_wait_s = CLOSE_WAIT_S
        self._trt, self._cudart = trt, import_cudart()
        self.path = Path(path)
        self.options = options  # the mode it runs in (use_mode changes it)
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
            self._load()
            self._resize(options.mode)
        except BaseException:
            self.close()
            raise
        self.input_name = self._slots[0].input.name
        self._input_profile = self._slots[0].input.profile

    def _load(self) -> None:
        """Deserialize the plan (once: every slot is a context on this one engine)."""
        trt, sidecar = self._trt, self.sidecar
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt_object(trt.Runtime, self._logger, what="Runtime")
        if sidecar.dla_core is not None:  # must precede deserialisation
            self._runtime.DLA_core = sidecar.dla_core
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ArtifactError(f"{self.path}: TensorRT could not deserialize the plan (see log)")
        self._engine = engine
        self._dynamic = is_dynamic(trt, engine)
        self._profiles = int(engine.num_optimization_profiles)

    def _wanted(self, mode: str) -> int:
        """Slots for ``mode`` on this plan, saying once why fewer than asked."""
        count = slot_count(mode, self._dynamic, self._profiles)
        if count < slot_count(mode, False, self._profiles):
            log.warning("%s: %d execution slot(s), not %d: a dynamic plan runs one execution "
                        "context at a time per optimization profile and this plan has %d; "
                        "rebuild it with segexport --engine, which gives a dynamic plan %d "
                        "optimization profiles (--engine-profiles %d)", self.path.name, count,
                        THROUGHPUT_SLOTS, self._profiles, THROUGHPUT_SLOTS, THROUGHPUT_SLOTS)
        if count > 1 and self._dynamic and not profiles_agree(self._trt, self._engine, count):
            log.warning("%s: 1 execution slot, not %d: the plan's optimization profiles differ "
                        "in shape and every slot must accept the same frames; rebuild it with "
                        "segexport --engine (identical profiles)", self.path.name, count)
            count = 1
        return count

    def _resize(self, mode: str) -> None:
        """Open or free slots for ``mode``, last slot freed first.  A slot after the first that
        cannot open (out of device memory) is one warning: the run keeps the slots that opened.
        The caller holds the lock, or is __init__; no call holds a slot."""
        target = self._wanted(mode)
        while len(self._slots) > target:
            slot = self._slots.pop()
            self._idle.remove(slot)
            slot.close()
        for index in range(len(self._slots), target):
            try:  # a Slot that fails frees its own half
                slot = Slot(self._trt, self._cudart, self._engine, self.path, index, target,
                            index if self._dynamic else None, self.zero_copy)
            except SegedgeError as err:
                if index == 0:
                    raise
                # the text only: the error's traceback holds the failed slot's frames, and
                # with them its execution context (device memory) for as long as it lives
                log.warning("%s: running %d execution slot(s), not %d: %s", self.path.name,
                            index, target, str(err))
                break
            self._slots.append(slot)
            self._idle.append(slot)

    def use_mode(self, mode: str) -> None:
        """Run in ``mode`` (``BackendOptions.mode``) on the same engine: slots are opened or
        freed, the plan is never deserialized a second time (two copies would double the GPU
        memory, on a Jetson shared with the CPU).  Waits (``close_wait_s``) for running calls."""
        wanted = replace(self.options, mode=mode)  # validates the mode
        with self._cond:
            if self._closed:
                raise BackendClosedError(f"{self.path}: backend is closed")
            if wanted == self.options:
                return
            if not self._cond.wait_for(lambda: self._in_flight == 0, self.close_wait_s):
                raise SegedgeError(f"{self.path}: cannot switch to {mode} mode: expected no "
                                   f"infer call running, got {self._in_flight} after "
                                   f"{self.close_wait_s:g} s")
            self._thread_device.ensure()
            self._resize(mode)
            self.options = wanted

    @property
    def max_in_flight(self) -> int:
        """Calls that may run at once: one per open slot."""
        return max(1, len(self._slots))

    @property
    def active(self) -> str:
        dla = "" if self.sidecar.dla_core is None else f", DLA core {self.sidecar.dla_core}"
        copy = ", zero-copy" if self.zero_copy else ""
        n = len(self._slots)
        slots = f", {n} execution slot{'s' if n != 1 else ''}" \
            if self.options.mode != "latency" else ""
        return f"TensorRT {self._trt.__version__} on {self._device}{dla}{copy}{slots}"

    @property
    def input_profile(self) -> Profile:
        return self._input_profile

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run on an idle slot (waiting for one); BackendClosedError once closed."""
        with self._cond:
            while not self._closed and not self._idle:
                self._cond.wait()
            if self._closed:
                raise BackendClosedError(f"{self.path}: backend is closed")
            slot = self._idle.pop(0)  # first in, first out: every slot takes turns
            self._in_flight += 1
        try:
            self._thread_device.ensure()  # this may be another thread than the one that opened it
            return slot.infer(tensor)
        finally:
            with self._cond:
                self._in_flight -= 1
                if self._gave_up:  # close() freed the rest already: this slot is freed here
                    self._slots.remove(slot)
                    slot.close()
                    if not self._slots:
                        self._engine = self._runtime = None
                else:
                    self._idle.append(slot)
                self._cond.notify_all()

    def close(self) -> None:
        """Free everything this backend took, last slot first; safe after any partial open
        and twice.  Calls waiting for a slot raise BackendClosedError at once; running ones
        are waited for (``close_wait_s``), and one still running then frees its own slot when
        it returns: a slot is never freed under a call (its pinned buffers written after)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._in_flight == 0, self.close_wait_s):
                self._gave_up = True
                log.warning("%s: closing with %d infer call(s) still running after %g s; "
                            "their execution slots are freed when they return",
                            self.path.name, self._in_flight, self.close_wait_s)
            free = [s for s in self._slots if s in self._idle]
            self._slots = [s for s in self._slots if s not in self._idle]
            self._idle = []
            release = not self._slots
        try:
            self._thread_device.ensure()
        except (BackendUnavailableError, AttributeError):
            pass  # freeing still has to be tried
        for slot in reversed(free):
            slot.close()
        if release:  # TensorRT frees by reference count: contexts before engine before runtime
            self._engine = None
            self._runtime = None


def create(path: Path, options: BackendOptions) -> Backend:
    """Registry factory: refuse early, in one line, where TensorRT or a GPU is missing."""
    path = Path(path)
    ok, why = tensorrt_available(options.device_id)
    if not ok:
        raise BackendUnavailableError(f"tensorrt backend unavailable for {path.name}: {why}")
    return TensorRTBackend(path, options)
