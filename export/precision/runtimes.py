"""The runtimes a lowered artifact is checked on: every CPU backend installed here.

Why several: ONNX Runtime's CPU provider emulates Q/DQ and accepts any mix of
FP16/FP32 inputs, so a graph can pass there and fail (or mean something else)
on a runtime with real INT8 / FP16 kernels.  OpenVINO fuses Q/DQ like
TensorRT and is strict about types, so an artifact that agrees with FP32 on
both is portable in the sense the report claims.  A runtime that can be asked
for a reduced inference precision always runs with an explicit f32 hint here
(OpenVINO's CPU plugin would pick bf16 silently), so the check measures the
artifact, not the runtime's own reduced precision.

The runtimes are the backends' descriptors (``runtime/backends``): the CPU
candidates the auto chooser times, in registration order, the first (ONNX Runtime)
the in-process reference.  Each artifact is opened through its descriptor on the CPU;
nothing here names a backend.  Every other runtime is first asked to compile the
artifact in a child process (``BackendDescriptor.compile_probe``): on some Q/DQ forms
a compiler crashes the process (measured, see precision/int8.py), and a crash must
become one report line, not a dead segexport.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from segedge.export.evaluation.evaluate import LabelledFrames, labels_from_outputs
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.precisions import GRAPH_HINT
from segedge.runtime.timing import Rounds, Timing, interleaved

# The names the report uses (tests and callers pass them to the registry; never compared).
ORT, OPENVINO = "onnxruntime", "openvino"
Infer = Callable[[np.ndarray], dict[str, np.ndarray]]
Graphs = Mapping[str, tuple[Path, str]]  # label -> (ONNX, inference precision hint)


def available() -> tuple[str, ...]:
    """The CPU backends installed here, the reference first (ONNX Runtime; then OpenVINO
    where its package imports)."""
    from segedge.runtime.backends.auto_cache import cpu_candidates
    from segedge.runtime.backends.base import descriptor

    return tuple(name for name in cpu_candidates() if descriptor(name).available()[0])


def reference() -> str:
    """The in-process reference runtime (the first CPU candidate: ONNX Runtime)."""
    from segedge.runtime.backends.auto_cache import cpu_candidates

    return cpu_candidates()[0]


def takes_hint(runtime: str) -> bool:
    """Whether ``runtime`` can be asked for a reduced inference precision (so the report
    records the f32 it was asked for)."""
    from segedge.runtime.backends.base import descriptor

    return descriptor(runtime).precisions != (GRAPH_HINT,)


def probe(path: Path, runtime: str) -> str | None:
    """None when `runtime` compiles `path` (f32 hint) in a child process, else why not (one
    line, the backend descriptor's wording).  The reference, in-process, is not probed: its
    load errors are the comparison's own."""
    if runtime == reference():
        return None
    from segedge.runtime.backends.base import BackendOptions, descriptor

    return descriptor(runtime).compile_probe(path, BackendOptions(precision_hint=GRAPH_HINT))


def runner(path: Path, meta: ArtifactMetadata, runtime: str | None = None,
           hint: str = GRAPH_HINT, threads: int | None = None) -> Infer:
    """One inference function (uint8 tensor in, named outputs out): ``path`` opened on the
    CPU by ``runtime``'s descriptor (None: the reference) with inference precision ``hint``."""
    from segedge.runtime.backends.base import BackendOptions, descriptor

    options = BackendOptions(provider="cpu", precision_hint=hint, threads=threads,
                             metadata=meta)
    return descriptor(runtime or reference()).open(path, options).infer


def run_labels(path: Path, frames: LabelledFrames, meta: ArtifactMetadata,
               runtime: str | None = None) -> list[np.ndarray]:
    """The label map of every frame, ``path`` run by ``runtime`` (None: the reference)."""
    infer = runner(path, meta, runtime)
    return [labels_from_outputs(infer(t), meta) for t in frames.tensors]


def latencies(graphs: Graphs, tensor: np.ndarray, meta: ArtifactMetadata,
              runtime: str | None = None, budget_s: float = 2.0) -> dict[str, Timing]:
    """Per-call times of each graph on ``runtime``, timed in interleaved rounds
    (runtime.timing, as the auto chooser times backends): one warm-up each, then 5..30
    rounds within about ``budget_s``, so a load spike hits every graph alike and the
    spread says how noisy the figures are.  The one latency measurement of the gates."""
    infers = {label: runner(path, meta, runtime, hint) for label, (path, hint) in graphs.items()}
    steps = {label: (lambda f=f: f(tensor)) for label, f in infers.items()}
    return interleaved(steps, Rounds(warmup=1, min_rounds=5, max_rounds=30, budget_s=budget_s))


def medians_ms(timings: Mapping[str, Timing]) -> dict[str, float]:
    return {label: round(t.median_ms, 3) for label, t in timings.items()}


def native_hint(runtime: str, hint: str) -> bool:
    """Whether ``runtime`` runs inference precision ``hint`` natively on this CPU."""
    from segedge.runtime.backends.base import descriptor

    return hint in descriptor(runtime).native_precisions()
