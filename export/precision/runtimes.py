"""The runtimes a lowered artifact is checked on: ONNX Runtime and, where installed, OpenVINO.

Why two: ONNX Runtime's CPU provider emulates Q/DQ and accepts any mix of
FP16/FP32 inputs, so a graph can pass there and fail (or mean something else)
on a runtime with real INT8 / FP16 kernels.  OpenVINO fuses Q/DQ like
TensorRT and is strict about types, so an artifact that agrees with FP32 on
both is portable in the sense the report claims.  OpenVINO always runs with
an explicit f32 hint here (its CPU plugin would pick bf16 silently), so the
check measures the artifact, not the runtime's own reduced precision.

OpenVINO is first asked to compile the artifact in a child process: on some
Q/DQ forms its compiler crashes the process (measured, see precision/int8.py),
and a crash must become one report line, not a dead segexport.  That probe is the
backend's own (``BackendDescriptor.compile_probe``, runtime/backends/child.py), the
one the auto chooser uses too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from segedge.export.evaluation.evaluate import LabelledFrames, labels_from_outputs
from segedge.export.onnx.tools import session
from segedge.runtime.metadata import ArtifactMetadata

ORT, OPENVINO = "onnxruntime", "openvino"
Infer = Callable[[np.ndarray], dict[str, np.ndarray]]


def available() -> tuple[str, ...]:
    """ONNX Runtime always; OpenVINO where its package imports."""
    from segedge.runtime.backends.openvino import openvino_available

    return (ORT, OPENVINO) if openvino_available()[0] else (ORT,)


def probe(path: Path, runtime: str) -> str | None:
    """None when `runtime` compiles `path` (f32 hint) in a child process, else why not (one
    line, the backend descriptor's wording).  ONNX Runtime, the in-process reference, is not
    probed: its load errors are the comparison's own."""
    if runtime == ORT:
        return None
    from segedge.runtime.backends.base import BackendOptions, descriptor

    return descriptor(runtime).compile_probe(path, BackendOptions(precision_hint="f32"))


def runner(path: Path, meta: ArtifactMetadata, runtime: str, hint: str = "f32",
           threads: int | None = None) -> Infer:
    """One inference function: uint8 tensor in, named outputs out."""
    if runtime == OPENVINO:
        from segedge.runtime.backends.base import BackendOptions
        from segedge.runtime.backends.openvino import OpenVinoBackend

        backend = OpenVinoBackend(path, BackendOptions(precision_hint=hint, threads=threads))
        return backend.infer
    sess = session(path)
    names = [o.name for o in sess.get_outputs()]
    return lambda t: dict(zip(names, sess.run(None, {meta.input.name: t}), strict=True))


def run_labels(path: Path, frames: LabelledFrames, meta: ArtifactMetadata,
               runtime: str = ORT) -> list[np.ndarray]:
    infer = runner(path, meta, runtime)
    return [labels_from_outputs(infer(t), meta) for t in frames.tensors]


def latency_ms(path: Path, tensor: np.ndarray, meta: ArtifactMetadata, runtime: str = ORT,
               hint: str = "f32", budget_s: float = 2.0) -> float:
    """Median latency of one inference (3..30 runs, about `budget_s`)."""
    infer = runner(path, meta, runtime, hint)
    return median_ms(lambda: infer(tensor), budget_s)


def median_ms(step: Callable[[], object], budget_s: float) -> float:
    """One warm-up call, then 3..30 timed calls within about `budget_s` (runtime.timing)."""
    from segedge.runtime.timing import Rounds, time_one

    timing = time_one(step, Rounds(warmup=1, min_rounds=3, max_rounds=30, budget_s=budget_s))
    return round(timing.median_ms, 3)


def has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin has native bf16 here (AVX-512 BF16 / AMX): the backend's
    own answer (its descriptor's native precisions), asked in one place."""
    from segedge.runtime.backends.base import descriptor
    from segedge.runtime.precisions import precision

    return precision("bf16").hint in descriptor(OPENVINO).native_precisions()
