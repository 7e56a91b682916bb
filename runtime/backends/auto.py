"""``--backend auto``: the fastest verified backend this machine has, chosen by measuring.

The rule, in order (every backend fact asked of its descriptor, runtime.backends.base):

1. a file only one backend runs (a TensorRT .plan) runs on it;
2. an explicit ``--provider`` (cpu, cuda, tensorrt) names the file's own backend (ONNX
   Runtime for an .onnx);
3. an .onnx runs on a GPU provider when one really executes it (read back by the backend,
   never assumed);
4. on the CPU, every CPU candidate (``CPU_CANDIDATE`` in its file: ONNX Runtime, OpenVINO) is
   opened at every precision the export report verified for this very file and timed on the
   artifact at its input size, in interleaved rounds (runtime.timing), re-measured while the
   rounds spread too wide; the smallest median wins (the measuring: auto_probe).  The verdict
   is cached per artifact sha256, CPU model, thread count, precision hints, probe size and
   library versions (runtime.backends.auto_cache), so the probe costs a second or two once
   per artifact and machine.
5. a run that contradicts the verdict (its inference time per frame more than
   ``CONTRADICTION`` worse than another candidate's probe) tells the cache so through
   ``after_run``; the next run measures again and says "re-measured".

Why measured, not guessed: which CPU runtime wins depends on the model and the CPU
(OpenVINO's bf16/AMX kernels halve LR-ASPP's latency on one x86; on another ONNX Runtime is
ahead in f32), and a rule of thumb would be wrong somewhere.

A reduced inference precision (OpenVINO's bf16/f16 hint) is used only when the user asks
(``--precision-hint``) or the export report beside the artifact (runtime.report) says its
gate passed for this file (the report's sha256 equal to the artifact's): never unverified.

``SEGEDGE_AUTO_BACKEND=onnxruntime|openvino`` answers step 4 without measuring (fleets that
pinned a backend; the test suite, so results never hinge on a timing probe).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from segedge.runtime.backends import auto_probe
from segedge.runtime.backends.auto_cache import (
    CacheKey,
    DecisionCache,
    Verdict,
    cpu_candidates,
    file_sha256,
)
from segedge.runtime.backends.base import (
    Backend,
    BackendOptions,
    backend_for,
    backend_for_uri,
    describe,
    descriptor,
    open_backend,
)
from segedge.runtime.errors import InputError, SegedgeError
from segedge.runtime.platform import cpu_model
from segedge.runtime.precisions import GRAPH_HINT, find
from segedge.runtime.report import read_report
from segedge.runtime.tasks import get_task

log = logging.getLogger("segedge.runtime")

PIN_ENV = "SEGEDGE_AUTO_BACKEND"
CONTRADICTION = 1.25  # a run this much slower than another candidate's probe re-opens the case

Probe = Callable[[Mapping[str, Backend], np.ndarray], dict[str, float]]
Opener = Callable[[Path, str, BackendOptions], Backend]


def verified_hints(path: Path, sha256: str, backend: str) -> tuple[str, ...]:
    """The reduced precisions of ``backend`` this artifact's export report gated against FP32
    and passed; () without a report, or with a report of another file."""
    report = read_report(path)
    if report is None or not report.describes(sha256):
        return ()
    return tuple(h for h in report.verified(backend) if h in descriptor(backend).precisions)


@dataclass(frozen=True)
class AutoChoice:
    """The backend ``auto`` opened, the one line saying why, and (for a measured CPU verdict)
    what ``after_run`` needs to check the verdict against the run."""

    backend: Backend
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    key: CacheKey | None = None
    verdict: Verdict | None = None
    cache: DecisionCache | None = field(default=None, compare=False)


def label(backend: Backend) -> str:
    """'openvino CPU (f32)', 'onnxruntime CPU' - how the reason names a backend."""
    return describe(backend).label(backend)


def _close_all(backends: Mapping[str, Backend], keep: str | None = None) -> None:
    for name, backend in backends.items():
        if name != keep:
            with contextlib.suppress(Exception):
                backend.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


@contextlib.contextmanager
def _closing_on_error(backend: Backend) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            backend.close()
        raise


def _key_name(backend: str, hint: str, first: bool) -> str:
    return backend if first else f"{backend}:{hint}"


@dataclass(frozen=True)
class Candidate:
    """One backend at one inference precision, as the probe and the cache name it."""

    key: str  # 'openvino', or 'openvino:f16' for a second verified precision
    backend: str
    options: BackendOptions


# The auto choice behind each backend ``open_auto`` returned, for ``after_run``.
_CHOICES: weakref.WeakKeyDictionary[Backend, AutoChoice] = weakref.WeakKeyDictionary()


class AutoSelector:
    """Steps 1-4 of the module docstring; every collaborator injectable for tests."""

    def __init__(self, *, opener: Opener = open_backend,
                 probe: Probe = auto_probe.interleaved_probe,
                 cache: DecisionCache | None = None, cpu: str | None = None,
                 gpu_providers: Callable[[], list[str]] | None = None,
                 available: Callable[[str], tuple[bool, str]] | None = None,
                 versions: Callable[[], tuple[tuple[str, str], ...]] = (
                     auto_probe.library_versions),
                 pin: str | None = None,
                 compile_check: Callable[[Path, BackendOptions], str | None] | None = None
                 ) -> None:
        self.opener = opener
        self.probe = probe
        self.cache = cache if cache is not None else DecisionCache()
        self.cpu = cpu or cpu_model()
        self._gpu_providers = gpu_providers
        self._available = available or (lambda name: descriptor(name).available())
        self._versions = versions
        self.compile_check = compile_check
        self.pin = pin if pin is not None else os.environ.get(PIN_ENV, "").strip().lower()

    def select(self, path: Path, options: BackendOptions) -> AutoChoice:
        """Open the chosen backend: where nothing is timed (a plan, a named provider, a GPU)
        directly in ``options.mode``, so that a run never opens it twice; the CPU candidates
        in latency mode (one call's time is what the probe compares; the caller switches the
        winner to its mode)."""
        path = Path(path)
        kind = backend_for(path)
        if kind not in cpu_candidates():
            backend = self.opener(path, kind, options)
            return AutoChoice(backend, f"{label(backend)}: a {path.suffix} plan runs on {kind}")
        if options.provider != "auto":
            backend = self.opener(path, kind, options)
            return AutoChoice(backend, f"{label(backend)}: --provider {options.provider} "
                                       f"names {kind}")
        gpus = descriptor(kind).gpu_provider_names
        offered = (self._gpu_providers or descriptor(kind).gpu_providers)()
        if any(p in gpus for p in offered):
            backend = self.opener(path, kind, options)
            if backend.active in gpus:
                return AutoChoice(backend, f"{label(backend)}: a GPU executes it")
            backend.close()
        return self._cpu(path, replace(options, mode="latency"))

    def _cpu(self, path: Path, options: BackendOptions) -> AutoChoice:
        cpu_options = replace(options, provider="cpu")
        reference = cpu_candidates()[0]
        if self.pin:
            if self.pin not in cpu_candidates():
                raise InputError(PIN_ENV, f"one of {', '.join(cpu_candidates())}",
                                 repr(self.pin))
            pinned = cpu_options if self.pin == reference else \
                self._candidates(path, cpu_options, file_sha256(path), (self.pin,))[0].options
            backend = self.opener(path, self.pin, pinned)
            return AutoChoice(backend, f"{label(backend)}: pinned by {PIN_ENV}")
        live, why = [], ""
        for name in auto_probe.challengers():
            ok, said = self._available(name)
            if ok:
                live.append(name)
            else:
                why = why or said
        if not live:
            backend = self.opener(path, reference, cpu_options)
            return AutoChoice(backend, f"{label(backend)}: {why}")
        ref = self.opener(path, reference, cpu_options)
        with _closing_on_error(ref):
            if not get_task(ref.metadata.task).label_maps:  # argmax agreement gates only those
                return AutoChoice(ref, f"{label(ref)}: {', '.join(live)} is verified on semantic "
                                       f"artifacts only, this one is {ref.metadata.task!r}")
            sha = file_sha256(path)
            cands = self._candidates(path, cpu_options, sha, tuple(live))
            hw = auto_probe.probe_hw(ref)
            hints = "+".join(c.options.precision_hint or GRAPH_HINT for c in cands)
            key = CacheKey(sha, self.cpu, options.threads, hints, hw, self._versions())
            verdict = self.cache.get(key)
            if verdict is not None and verdict.contradicted:
                return self._measure(path, ref, key, options, cands,
                                     f"re-measured ({verdict.contradicted})")
            if verdict is not None:
                return self._from_cache(path, ref, key, verdict, options, cands)
            return self._measure(path, ref, key, options, cands, "measured")

    def _candidates(self, path: Path, options: BackendOptions, sha: str,
                    names: tuple[str, ...]) -> list[Candidate]:
        """Each challenger at the user's hint, else at every reduced precision the export
        verified for this file (f32 where it verified none): reduced precision never unverified."""
        out = []
        for name in names:
            given = options.precision_hint
            hints = (given,) if given is not None else (verified_hints(path, sha, name)
                                                        or (GRAPH_HINT,))
            out += [Candidate(_key_name(name, h, i == 0), name,
                              replace(options, precision_hint=h)) for i, h in enumerate(hints)]
        return out

    def _check(self, path: Path, cand: Candidate) -> str | None:
        if self.compile_check is not None:
            return self.compile_check(path, cand.options)
        return auto_probe.compile_in_child(path, cand.options, cand.backend)

    def _measure(self, path: Path, ref: Backend, key: CacheKey, options: BackendOptions,
                 cands: list[Candidate], how: str) -> AutoChoice:
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        spec = find(ref.metadata.precision)
        if spec is not None and spec.quantized:  # some Q/DQ forms crash OpenVINO's compiler
            crashes = [(c, self._check(path, c)) for c in cands]
            kept = [c for c, crash in crashes if crash is None]
            if not kept:
                crash = str(crashes[0][1])
                self.cache.put(key, Verdict(ref.name, {}, key.probe_hw, now, note=crash))
                return AutoChoice(ref, f"{label(ref)}: {cands[0].backend} cannot compile it "
                                       f"({crash})")
            cands = kept
        opened: dict[str, Backend] = {ref.name: ref}
        failure = ""
        for cand in cands:
            try:
                opened[cand.key] = self.opener(path, cand.backend, cand.options)
            except SegedgeError as err:  # foreign ONNX, an op it cannot compile, ...
                failure = failure or f"{cand.backend} cannot run it ({_first_line(err)})"
        if len(opened) == 1:
            return AutoChoice(ref, f"{label(ref)}: {failure}")
        try:
            timings = self.probe(opened, auto_probe.probe_tensor(ref, key.probe_hw))
        except Exception as err:  # noqa: BLE001 - failing the probe is losing it
            _close_all(opened, keep=ref.name)
            return AutoChoice(ref, f"{label(ref)}: the probe failed ({_first_line(err)})")
        verdict = Verdict(auto_probe.pick(timings), timings, key.probe_hw, now,
                          labels={k: label(b) for k, b in opened.items()},
                          probe_frames=max(1, ref.metadata.input.batch or 1), how=how)
        self.cache.put(key, verdict)
        _close_all(opened, keep=verdict.backend)
        return self._chosen(opened[verdict.backend], verdict, how, options, cands, key)

    def _from_cache(self, path: Path, ref: Backend, key: CacheKey, verdict: Verdict,
                    options: BackendOptions, cands: list[Candidate]) -> AutoChoice:
        """Open only the winner: a cached verdict costs no OpenVINO compile when ONNX Runtime
        won, and no ONNX Runtime session when OpenVINO did."""
        if verdict.note:
            names = ", ".join(dict.fromkeys(c.backend for c in cands))
            return AutoChoice(ref, f"{label(ref)}: {names} cannot compile it ({verdict.note}; "
                                   "found earlier, cached)")
        how = "measured earlier (cached)"
        if verdict.backend == ref.name:
            return self._chosen(ref, verdict, how, options, cands, key)
        cand = next((c for c in cands if c.key == verdict.backend), None)
        if cand is None:  # a verdict about candidates this run does not have: measure again
            return self._measure(path, ref, key, options, cands, "measured")
        try:
            winner = self.opener(path, cand.backend, cand.options)
        except SegedgeError as err:
            return AutoChoice(ref, f"{label(ref)}: {cand.backend} cannot run it "
                                   f"({_first_line(err)})")
        ref.close()
        return self._chosen(winner, verdict, how, options, cands, key)

    def _chosen(self, winner: Backend, verdict: Verdict, how: str, options: BackendOptions,
                cands: list[Candidate], key: CacheKey) -> AutoChoice:
        verified = tuple(c.options.precision_hint or GRAPH_HINT for c in cands)
        choice = AutoChoice(winner, reason(winner, verdict, how, options, verified),
                            verdict.timings_ms, key, verdict, self.cache)
        with contextlib.suppress(TypeError):  # a backend that cannot be weakly referenced
            _CHOICES[winner] = choice
        return choice


def reason(winner: Backend, verdict: Verdict, how: str, asked: BackendOptions,
           hints: tuple[str, ...]) -> str:
    """'openvino CPU (f32): 21.4 ms vs onnxruntime CPU 43.1 ms at 544x960, 2 threads,
    measured; bf16 not verified by the export report, so f32' (one line)."""
    h, w = verdict.probe_hw
    t = verdict.timings_ms
    threads = "default threads" if asked.threads is None else \
        f"{asked.threads} thread{'' if asked.threads == 1 else 's'}"
    others = ", ".join(f"{verdict.labels.get(k, k)} {v:.1f} ms" for k, v in t.items()
                       if k != verdict.backend)
    text = (f"{label(winner)}: {t[verdict.backend]:.1f} ms vs {others} at {h}x{w}, {threads}, "
            f"{how}")
    if asked.precision_hint is None:
        reduced = [hint for hint in dict.fromkeys(hints) if hint != GRAPH_HINT]
        text += (f"; {'+'.join(reduced)} verified by the export report" if reduced
                 else "; bf16 not verified by the export report, so f32")
    return text


def rebind(old: Backend, new: Backend) -> None:
    """``new`` replaces ``old`` (the chosen backend reopened in another mode, Segmenter.
    use_mode): the verdict that chose it goes with it, so the run-end check finds it."""
    choice = _CHOICES.pop(old, None)
    if choice is not None:
        _CHOICES[new] = choice


def after_run(ran: Backend | AutoChoice, infer_ms_per_frame: float,
              hw: tuple[int, int] | None = None) -> str | None:
    """The engine's hook at the end of a run: its measured inference time per frame against
    the verdict that chose ``ran``.  More than ``CONTRADICTION`` x another candidate's probe
    marks the cached verdict contradicted (the next run re-measures and says so); returns
    that line, None when the run agrees (or the choice was not a measured CPU verdict, or the
    run's network input ``hw`` was not the probe's, or is unknown for a dynamic artifact).

    The engine calls it once at the end of a run: in latency mode with one call's time
    (``batch["infer_ms_per_frame"]["p50_ms"]``), in throughput mode with the inference
    stage's busy wall time per frame (``infer_busy_ms_per_frame``)."""
    choice = ran if isinstance(ran, AutoChoice) else _CHOICES.get(ran)
    if choice is None or choice.verdict is None or choice.key is None or choice.cache is None:
        return None
    verdict = choice.verdict
    if hw is None and choice.backend.metadata.input.size is None:
        return None  # a dynamic-size artifact: the run's frames may not be the probe's size
    if verdict.note or (hw is not None and tuple(hw) != verdict.probe_hw) \
            or not infer_ms_per_frame > 0:
        return None
    others = {k: v / verdict.probe_frames for k, v in verdict.timings_ms.items()
              if k != verdict.backend}
    if not others:
        return None
    best, best_ms = min(others.items(), key=lambda kv: kv[1])
    if infer_ms_per_frame <= CONTRADICTION * best_ms:
        return None
    why = (f"a run took {infer_ms_per_frame:.1f} ms per frame on "
           f"{verdict.labels.get(verdict.backend, verdict.backend)}, "
           f"{verdict.labels.get(best, best)} probed {best_ms:.1f} ms")
    choice.cache.put(choice.key, replace(verdict, contradicted=why))
    log.warning("auto backend: %s; the next run measures again", why)
    return why


def open_auto(path: str | Path, options: BackendOptions | None = None, *,
              opener: Opener = open_backend) -> AutoChoice:
    """``--backend auto`` for segrun, Segmenter and segeval (``opener`` opens each backend)."""
    served = backend_for_uri(path)
    if served is not None:  # a model on a server (triton://...): nothing here to measure
        backend = opener(path, served, options or BackendOptions())  # type: ignore[arg-type]
        return AutoChoice(backend, f"{label(backend)}: a served model, nothing to probe here")
    return AutoSelector(opener=opener).select(Path(path), options or BackendOptions())
