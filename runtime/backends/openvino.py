"""OpenVINO backend: the same segedge .onnx artifacts on Intel/AMD x86 CPUs (and iGPU/NPU).

Why a second CPU runtime: on CPUs with AVX-512 BF16/AMX or VNNI, OpenVINO runs
bf16 and real INT8 kernels (fused Q/DQ) that ONNX Runtime's CPU provider only
emulates, about 2x faster at equal masks. It is also the second independent
runtime the precision gates check artifacts on.

The inference precision is always set explicitly (INFERENCE_PRECISION_HINT):
OpenVINO's CPU plugin silently defaults to bf16 where the CPU has it, which
changes results; the precision that really runs is read back and reported.

Modes (``BackendOptions.mode``): *latency* compiles with the LATENCY hint and
runs one synchronous infer request; *throughput* compiles with the THROUGHPUT
hint (several CPU streams) and keeps one infer request per slot, as many as
the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS (``max_in_flight``): the
run engine calls ``infer`` from that many threads at once (each call takes an
idle request and waits on it with the GIL released), results in its order.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

from segedge.runtime.backends.base import BackendOptions, BenchRow
from segedge.runtime.backends.onnxruntime import output_names
from segedge.runtime.errors import ArtifactError, BackendUnavailableError, InputError
from segedge.runtime.metadata import ArtifactMetadata

log = logging.getLogger("segedge.runtime")

PRECISION_HINTS = ("f32", "bf16", "f16")
DEVICES = ("CPU", "GPU", "NPU", "AUTO")
# The descriptor's answers (runtime.backends.base.BackendDescriptor).
PRECISIONS = PRECISION_HINTS  # INFERENCE_PRECISION_HINT values it can be asked for
CPU_CANDIDATE = True  # the auto chooser times it against ONNX Runtime on the CPU
BENCH_ROWS = (BenchRow("openvino-cpu", "cpu",
                       "segedge: OpenVINO backend on the CPU (precision hint read back)"),)
# OPTIMIZATION_CAPABILITIES entry that makes a reduced hint native (not emulated) on the CPU.
_NATIVE = {"bf16": "BF16", "f16": "FP16"}


_CORE: Any = None
_CORE_LOCK = threading.Lock()


def shared_core() -> Any:
    """The process's one openvino.Core, created on first use and never destroyed.

    Why one: each Core loads its own CPU plugin instance, which installs a signal
    alternate stack and restores the previous one when destroyed.  Two Cores
    destroyed in creation order (not LIFO) leave the thread on a freed alternate
    stack, and the next SIGINT/SIGTERM kills the process with SIGSEGV instead of
    reaching segrun's handler (measured with OpenVINO 2026.4).
    """
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE


def openvino_available() -> tuple[bool, str]:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False, "the openvino package is not installed (pip install 'segedge[openvino]')"
    return True, "ok"


available = openvino_available  # the descriptor's hook


def version() -> str:
    import openvino

    return str(openvino.__version__).split("-")[0]


def native_precisions(device: str = "CPU") -> tuple[str, ...]:
    """The hints ``device`` runs natively: f32 always, bf16 with AVX-512 BF16/AMX, f16 with
    AMX-FP16 (as OpenVINO's OPTIMIZATION_CAPABILITIES says); () without OpenVINO."""
    if not openvino_available()[0]:
        return ()
    try:
        caps = {str(c).upper() for c in
                shared_core().get_property(device, "OPTIMIZATION_CAPABILITIES")}
    except Exception:  # noqa: BLE001 - no such device here
        return ()
    return ("f32", *(hint for hint, cap in _NATIVE.items() if cap in caps))


def read_metadata(model: Any, path: Path | str) -> ArtifactMetadata | None:
    """segedge metadata: OpenVINO keeps ONNX metadata_props under rt_info['framework']."""
    if not model.has_rt_info(["framework"]):
        return None
    props = {str(k): model.get_rt_info(["framework", str(k)]).astype(str)
             for k in model.get_rt_info(["framework"]).astype(dict)}
    return ArtifactMetadata.from_props(props, str(path))


class OpenVinoBackend:
    """One compiled model + one infer request per slot (one in latency mode); ``infer``
    returns the outputs the metadata names."""

    name = "openvino"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        ok, why = openvino_available()
        if not ok:
            raise BackendUnavailableError(f"backend openvino: expected OpenVINO, got {why}")
        self.path = Path(path)
        hint = options.precision_hint or "f32"
        if hint not in PRECISION_HINTS:
            raise InputError("--precision-hint", f"one of {', '.join(PRECISION_HINTS)}", hint)
        device = (options.device or "CPU").upper()
        if device not in DEVICES:
            raise InputError("--device", f"one of {', '.join(DEVICES)}", device)
        core = shared_core()
        if device != "AUTO" and device not in core.available_devices:
            raise BackendUnavailableError(f"OpenVINO device {device}: expected one of "
                                          f"{core.available_devices}, got none such here")
        try:
            model = core.read_model(str(self.path))
        except Exception as err:  # noqa: BLE001 - OpenVINO raises its own types: one line
            raise ArtifactError(f"{self.path}: expected an ONNX OpenVINO can read, got "
                                f"{type(err).__name__}: {_first(err)}") from None
        meta = read_metadata(model, self.path)
        if meta is None:
            raise ArtifactError(f"{self.path}: expected a segedge artifact (metadata) for the "
                                "OpenVINO backend, got a foreign ONNX; use --backend onnxruntime "
                                "with --mean/--std/--classes for it")
        self.metadata = meta
        self.input_name = meta.input.name
        self.output_names = output_names(meta)
        have = {n for o in model.outputs for n in o.get_names()}
        missing = [n for n in self.output_names if n not in have]
        if missing:
            raise ArtifactError(f"{self.path}: expected graph outputs {self.output_names} (from "
                                f"metadata), got {sorted(have)}")
        self.options = options
        self.mode = options.mode
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "THROUGHPUT" if self.mode == "throughput" else "LATENCY"}
        if device in ("CPU", "GPU"):
            config["INFERENCE_PRECISION_HINT"] = hint
        if options.threads is not None:
            if options.threads < 1:
                raise InputError("--threads", "a positive integer", options.threads)
            config["INFERENCE_NUM_THREADS"] = options.threads
        try:
            self._compiled = core.compile_model(model, device, config)
        except Exception as err:  # noqa: BLE001 - e.g. mixed-precision BatchNormalization
            raise ArtifactError(f"{self.path}: OpenVINO cannot compile it for {device}: "
                                f"{type(err).__name__}: {_first(err)}") from None
        slots = 1
        if self.mode == "throughput":  # as many requests as the compiled streams can run
            slots = max(1, int(self._read_back("OPTIMAL_NUMBER_OF_INFER_REQUESTS", 1)))
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(slots):
            self._idle.put(self._compiled.create_infer_request())
        self.max_in_flight = slots
        self._device = device
        self._precision = self._read_back("INFERENCE_PRECISION_HINT", hint)
        self._threads = self._read_back("INFERENCE_NUM_THREADS", options.threads)
        port = next(p for p in self._compiled.inputs if self.input_name in p.get_names())
        self._input_dtype = np.dtype(port.get_element_type().to_dtype())
        shape = port.get_partial_shape()
        self._batch = shape[0].get_length() if shape[0].is_static else 1
        self._ports = {n: next(p for p in self._compiled.outputs if n in p.get_names())
                       for n in self.output_names}

    def _read_back(self, key: str, default: Any) -> Any:
        """What the compiled model really uses (an element type reads back as e.g. 'bf16')."""
        try:
            value = self._compiled.get_property(key)
        except Exception:  # noqa: BLE001 - not every device reports every property
            return default
        return value.get_type_name() if hasattr(value, "get_type_name") else value

    @property
    def active(self) -> str:
        """Device and the inference precision OpenVINO really uses, e.g. 'CPU (f32)'."""
        return f"{self._device} ({self._precision})"

    @property
    def compiled(self) -> Any:
        """The openvino.CompiledModel (benchmarks read its runtime graph)."""
        return self._compiled

    @property
    def precision(self) -> str:
        return str(self._precision)

    @property
    def threads(self) -> Any:
        return self._threads

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        if tensor.dtype != self._input_dtype:
            tensor = tensor.astype(self._input_dtype)
        n = tensor.shape[0]
        if n < self._batch:  # static batch > 1: pad, then drop the padding
            tensor = np.concatenate([tensor, np.repeat(tensor[-1:], self._batch - n, axis=0)])
        request = self._idle.get()  # never waits with at most max_in_flight callers
        try:
            # share_inputs: OpenVINO reads the caller's buffer instead of copying it first;
            # the outputs are copies (share_outputs off): the request is reused at once
            results = request.infer({self.input_name: np.ascontiguousarray(tensor)},
                                    share_inputs=True)
            return {name: np.asarray(results[port])[:n] for name, port in self._ports.items()}
        finally:
            self._idle.put(request)

    def close(self) -> None:
        self._idle = queue.SimpleQueue()


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""


def create(path: Path, options: BackendOptions) -> OpenVinoBackend:
    return OpenVinoBackend(path, options)
