"""``--backend auto``: the fastest verified backend this machine has, chosen by measuring.

The rule, in order:

1. a TensorRT plan (.plan/.engine) runs on TensorRT;
2. an explicit ``--provider`` (cpu, cuda, tensorrt) names ONNX Runtime;
3. an .onnx runs on ONNX Runtime's TensorRT/CUDA provider when a GPU really
   executes it (read back by the ONNX Runtime backend, never assumed);
4. on the CPU, OpenVINO and ONNX Runtime are both opened and timed on the
   artifact at its input size, interleaved; the faster median wins.  The
   verdict is cached per artifact sha256, CPU model, thread count, precision
   hint, probe size and library versions (runtime.backends.auto_cache), so the
   probe costs a second or two once per artifact and machine.

Why measured, not guessed: which CPU runtime wins depends on the model and the
CPU (OpenVINO's bf16/AMX kernels halve LR-ASPP's latency on one x86; on another
ONNX Runtime is ahead in f32), and a rule of thumb would be wrong somewhere.

OpenVINO's precision hint is f32 unless the user asks (``--precision-hint``)
or the artifact's export report says bf16 passed its gate for this very file
(``report["openvino"]["bf16"]["gate"]["passed"]`` with the report's sha256
equal to the artifact's): reduced precision is never picked unverified.

``SEGEDGE_AUTO_BACKEND=onnxruntime|openvino`` answers step 4 without measuring
(fleets that pinned a backend; the test suite, so results never hinge on a
timing probe).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from segedge.runtime.backends.auto_cache import (
    CPU_CANDIDATES,
    CacheKey,
    DecisionCache,
    Verdict,
    cpu_model,
    file_sha256,
)
from segedge.runtime.backends.base import (
    Backend,
    BackendOptions,
    backend_for,
    backend_for_uri,
    open_backend,
)
from segedge.runtime.errors import InputError, SegedgeError

log = logging.getLogger("segedge.runtime")

PIN_ENV = "SEGEDGE_AUTO_BACKEND"
PROBE_HW = (352, 480)  # probe size of a dynamic-size artifact (rounded to its stride)
PROBE_WARMUP = 2
PROBE_MIN_ROUNDS = 3
PROBE_MAX_ROUNDS = 9
PROBE_BUDGET_S = 4.0  # interleaved rounds stop after this (never below PROBE_MIN_ROUNDS)
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

Probe = Callable[[Mapping[str, Backend], np.ndarray], dict[str, float]]
Opener = Callable[[Path, str, BackendOptions], Backend]


def pick(timings_ms: Mapping[str, float]) -> str:
    """The rule itself: the smallest median wins; an exact tie keeps ONNX Runtime."""
    usable = {k: v for k, v in timings_ms.items() if k in CPU_CANDIDATES and v > 0}
    if not usable:
        raise InputError("probe timings", f"a positive median for one of {CPU_CANDIDATES}",
                         dict(timings_ms))
    return min(usable, key=lambda k: (usable[k], CPU_CANDIDATES.index(k)))


def bf16_verified(path: Path, sha256: str) -> bool:
    """Did this artifact's export report gate bf16 (OpenVINO) against FP32 and pass?"""
    report_path = Path(path).with_suffix(".report.json")
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(report, dict) or report.get("sha256") != sha256:
        return False  # a report of another file verifies nothing about this one
    gate = ((report.get("openvino") or {}).get("bf16") or {}).get("gate") or {}
    return gate.get("passed") is True


@dataclass(frozen=True)
class AutoChoice:
    """The backend ``auto`` opened and the one line saying why."""

    backend: Backend
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)


def label(backend: Backend) -> str:
    """'openvino CPU (f32)', 'onnxruntime CPU' - how the reason names a backend."""
    if backend.active.startswith(f"{backend.name} "):  # 'triton http://h:8000 model m v1'
        return backend.active
    if backend.name == "onnxruntime":
        active = backend.active
        short = active.removesuffix("ExecutionProvider")
        return f"onnxruntime {short}"
    return f"{backend.name} {backend.active}"


def probe_hw(backend: Backend) -> tuple[int, int]:
    """The artifact's input size; a dynamic one is probed at PROBE_HW rounded to its stride."""
    from segedge.runtime.preprocess import network_size

    return network_size(backend.metadata.input, PROBE_HW)


def probe_tensor(backend: Backend, hw: tuple[int, int]) -> np.ndarray:
    """A deterministic frame at ``hw``, through the runtime's own prepare."""
    from segedge.runtime.preprocess import prepare

    yy, xx = np.mgrid[0 : hw[0], 0 : hw[1]]
    frame = np.stack([(xx * 255 // max(1, hw[1] - 1)), (yy * 255 // max(1, hw[0] - 1)),
                      ((xx + yy) % 256)], axis=-1).astype(np.uint8)
    spec = backend.metadata.input
    tensor, _ = prepare([frame] * max(1, spec.batch or 1), spec)
    return tensor


def interleaved_probe(backends: Mapping[str, Backend], tensor: np.ndarray) -> dict[str, float]:
    """Median ms of one ``infer`` per backend, rounds interleaved so that load from other
    processes hits both alike."""
    for backend in backends.values():
        for _ in range(PROBE_WARMUP):
            backend.infer(tensor)
    samples: dict[str, list[float]] = {name: [] for name in backends}
    start = time.perf_counter()
    for rounds in range(1, PROBE_MAX_ROUNDS + 1):
        for name, backend in backends.items():
            t0 = time.perf_counter()
            backend.infer(tensor)
            samples[name].append((time.perf_counter() - t0) * 1e3)
        if rounds >= PROBE_MIN_ROUNDS and time.perf_counter() - start > PROBE_BUDGET_S:
            break
    return {name: round(statistics.median(v), 2) for name, v in samples.items()}


def library_versions() -> tuple[tuple[str, str], ...]:
    out = []
    for name in CPU_CANDIDATES:
        try:
            module = __import__(name)
            out.append((name, str(getattr(module, "__version__", "?"))))
        except ImportError:
            out.append((name, "absent"))
    return tuple(out)


def _close_all(backends: Mapping[str, Backend], keep: str | None = None) -> None:
    for name, backend in backends.items():
        if name != keep:
            with contextlib.suppress(Exception):
                backend.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


COMPILE_CHECK = ("import sys; from pathlib import Path; "
                 "from segedge.runtime.backends.base import BackendOptions; "
                 "from segedge.runtime.backends.openvino import OpenVinoBackend; "
                 "OpenVinoBackend(Path(sys.argv[1]), BackendOptions(precision_hint=sys.argv[2]))")
COMPILE_TIMEOUT_S = 300


def compile_in_child(path: Path, options: BackendOptions) -> str | None:
    """None when OpenVINO compiles ``path`` in a child process, else why not (one line): a
    compiler crash must cost the probe, not the segrun process."""
    try:
        proc = subprocess.run([sys.executable, "-c", COMPILE_CHECK, str(path),
                               options.precision_hint or "f32"],
                              capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"it did not compile within {COMPILE_TIMEOUT_S} s"
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        return f"its compiler crashed (signal {-proc.returncode})"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else f"the compile exited {proc.returncode}"


@contextlib.contextmanager
def _closing_on_error(backend: Backend) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            backend.close()
        raise


class AutoSelector:
    """Steps 1-4 of the module docstring; every collaborator injectable for tests."""

    def __init__(self, *, opener: Opener = open_backend, probe: Probe = interleaved_probe,
                 cache: DecisionCache | None = None, cpu: str | None = None,
                 gpu_providers: Callable[[], list[str]] | None = None,
                 openvino: Callable[[], tuple[bool, str]] | None = None,
                 versions: Callable[[], tuple[tuple[str, str], ...]] = library_versions,
                 pin: str | None = None,
                 compile_check: Callable[[Path, BackendOptions], str | None] = compile_in_child
                 ) -> None:
        self.opener = opener
        self.probe = probe
        self.cache = cache if cache is not None else DecisionCache()
        self.cpu = cpu or cpu_model()
        self._gpu_providers = gpu_providers or _ort_gpu_providers
        self._openvino = openvino or _openvino_available
        self._versions = versions
        self.compile_check = compile_check
        self.pin = pin if pin is not None else os.environ.get(PIN_ENV, "").strip().lower()

    def select(self, path: Path, options: BackendOptions) -> AutoChoice:
        path = Path(path)
        kind = backend_for(path)
        if kind != "onnxruntime":
            backend = self.opener(path, kind, options)
            return AutoChoice(backend, f"{label(backend)}: a {path.suffix} plan runs on {kind}")
        if options.provider != "auto":
            backend = self.opener(path, "onnxruntime", options)
            return AutoChoice(backend, f"{label(backend)}: --provider {options.provider} "
                                       "names onnxruntime")
        if any(p in GPU_PROVIDERS for p in self._gpu_providers()):
            backend = self.opener(path, "onnxruntime", options)
            if backend.active in GPU_PROVIDERS:
                return AutoChoice(backend, f"{label(backend)}: a GPU executes it")
            backend.close()
        return self._cpu(path, options)

    def _cpu(self, path: Path, options: BackendOptions) -> AutoChoice:
        cpu_options = replace(options, provider="cpu")
        if self.pin:
            if self.pin not in CPU_CANDIDATES:
                raise InputError(PIN_ENV, f"one of {', '.join(CPU_CANDIDATES)}", repr(self.pin))
            pinned = self._hinted(path, cpu_options) if self.pin == "openvino" else cpu_options
            backend = self.opener(path, self.pin, pinned)
            return AutoChoice(backend, f"{label(backend)}: pinned by {PIN_ENV}")
        ok, why = self._openvino()
        if not ok:
            backend = self.opener(path, "onnxruntime", cpu_options)
            return AutoChoice(backend, f"{label(backend)}: {why}")
        ort = self.opener(path, "onnxruntime", cpu_options)
        with _closing_on_error(ort):
            if ort.metadata.task != "semantic":
                return AutoChoice(ort, f"{label(ort)}: openvino is verified on semantic "
                                       f"artifacts only, this one is {ort.metadata.task!r}")
            sha = file_sha256(path)
            ov_options = self._hinted(path, cpu_options, sha)
            hw = probe_hw(ort)
            key = CacheKey(sha, self.cpu, options.threads, ov_options.precision_hint or "f32",
                           hw, self._versions())
            verdict = self.cache.get(key)
            if verdict is not None:
                return self._from_cache(path, ort, verdict, options, ov_options)
            return self._measure(path, ort, key, options, ov_options)

    def _measure(self, path: Path, ort: Backend, key: CacheKey, options: BackendOptions,
                 ov_options: BackendOptions) -> AutoChoice:
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        if ort.metadata.precision == "int8":  # some Q/DQ forms crash OpenVINO's compiler
            crash = self.compile_check(path, ov_options)
            if crash is not None:
                self.cache.put(key, Verdict("onnxruntime", {}, key.probe_hw, now, note=crash))
                return AutoChoice(ort, f"{label(ort)}: openvino cannot compile it ({crash})")
        try:
            ov = self.opener(path, "openvino", ov_options)
        except SegedgeError as err:  # foreign ONNX, an op it cannot compile, ...
            return AutoChoice(ort, f"{label(ort)}: openvino cannot run it ({_first_line(err)})")
        opened = {"onnxruntime": ort, "openvino": ov}
        try:
            timings = self.probe(opened, probe_tensor(ort, key.probe_hw))
        except Exception as err:  # noqa: BLE001 - failing the probe is losing it
            _close_all(opened, keep="onnxruntime")
            return AutoChoice(ort, f"{label(ort)}: the probe failed ({_first_line(err)})")
        verdict = Verdict(pick(timings), timings, key.probe_hw, now)
        self.cache.put(key, verdict)
        _close_all(opened, keep=verdict.backend)
        winner, loser = opened[verdict.backend], opened[_other(verdict.backend)]
        return AutoChoice(winner, reason(label(winner), label(loser), verdict, "measured",
                                         options, ov_options), verdict.timings_ms)

    def _from_cache(self, path: Path, ort: Backend, verdict: Verdict, options: BackendOptions,
                    ov_options: BackendOptions) -> AutoChoice:
        """Open only the winner: a cached verdict costs no OpenVINO compile when ONNX Runtime
        won, and no ONNX Runtime session when OpenVINO did."""
        if verdict.note:
            return AutoChoice(ort, f"{label(ort)}: openvino cannot compile it ({verdict.note}; "
                                   "found earlier, cached)")
        ov_label = f"openvino CPU ({ov_options.precision_hint or 'f32'})"
        if verdict.backend == "onnxruntime":
            return AutoChoice(ort, reason(label(ort), ov_label, verdict,
                                          "measured earlier (cached)", options, ov_options),
                              verdict.timings_ms)
        try:
            ov = self.opener(path, "openvino", ov_options)
        except SegedgeError as err:
            return AutoChoice(ort, f"{label(ort)}: openvino cannot run it ({_first_line(err)})")
        ort.close()
        return AutoChoice(ov, reason(label(ov), label(ort), verdict,
                                     "measured earlier (cached)", options, ov_options),
                          verdict.timings_ms)

    def _hinted(self, path: Path, options: BackendOptions,
                sha: str | None = None) -> BackendOptions:
        """OpenVINO's hint: the user's, else bf16 where the export verified it, else f32."""
        if options.precision_hint is not None:
            return options
        verified = bf16_verified(path, sha if sha is not None else file_sha256(path))
        return replace(options, precision_hint="bf16" if verified else "f32")


def reason(winner: str, loser: str, verdict: Verdict, how: str, asked: BackendOptions,
           used: BackendOptions) -> str:
    """'openvino CPU (f32): 21.4 ms vs onnxruntime CPU 43.1 ms at 544x960, 2 threads,
    measured; bf16 not verified by the export report, so f32' (one line)."""
    h, w = verdict.probe_hw
    t = verdict.timings_ms
    threads = "default threads" if asked.threads is None else \
        f"{asked.threads} thread{'' if asked.threads == 1 else 's'}"
    text = (f"{winner}: {t[verdict.backend]:.1f} ms vs {loser} "
            f"{t[_other(verdict.backend)]:.1f} ms at {h}x{w}, {threads}, {how}")
    if asked.precision_hint is None:
        text += ("; bf16 verified by the export report" if used.precision_hint == "bf16"
                 else "; bf16 not verified by the export report, so f32")
    return text


def _other(name: str) -> str:
    return next(n for n in CPU_CANDIDATES if n != name)


def _ort_gpu_providers() -> list[str]:
    import onnxruntime as ort

    return [p for p in ort.get_available_providers() if p in GPU_PROVIDERS]


def _openvino_available() -> tuple[bool, str]:
    from segedge.runtime.backends.openvino import openvino_available

    return openvino_available()


def open_auto(path: str | Path, options: BackendOptions | None = None, *,
              opener: Opener = open_backend) -> AutoChoice:
    """``--backend auto`` for segrun, Segmenter and segeval (``opener`` opens each backend)."""
    served = backend_for_uri(path)
    if served is not None:  # a model on a server (triton://...): nothing here to measure
        backend = opener(path, served, options or BackendOptions())  # type: ignore[arg-type]
        return AutoChoice(backend, f"{label(backend)}: a served model, nothing to probe here")
    return AutoSelector(opener=opener).select(Path(path), options or BackendOptions())
