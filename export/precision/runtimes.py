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
and a crash must become one report line, not a dead segexport.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segedge.export.evaluation.evaluate import LabelledFrames, labels_from_outputs
from segedge.export.onnx.tools import session
from segedge.runtime.metadata import ArtifactMetadata

ORT, OPENVINO = "onnxruntime", "openvino"
PROBE_TIMEOUT_S = 300
Infer = Callable[[np.ndarray], dict[str, np.ndarray]]


def available() -> tuple[str, ...]:
    """ONNX Runtime always; OpenVINO where its package imports."""
    from segedge.runtime.backends.openvino import openvino_available

    return (ORT, OPENVINO) if openvino_available()[0] else (ORT,)


def probe(path: Path, runtime: str) -> str | None:
    """None when `runtime` compiles `path` in a child process, else why not (one line)."""
    if runtime != OPENVINO:
        return None
    code = ("import sys; from pathlib import Path; "
            "from segedge.runtime.backends.base import BackendOptions; "
            "from segedge.runtime.backends.openvino import OpenVinoBackend; "
            "OpenVinoBackend(Path(sys.argv[1]), BackendOptions(precision_hint='f32'))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"OpenVINO did not compile it within {PROBE_TIMEOUT_S} s"
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if proc.returncode < 0:
        return f"OpenVINO crashed compiling it (signal {-proc.returncode})"
    return lines[-1][:240] if lines else f"OpenVINO exited {proc.returncode}"


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

    return "bf16" in descriptor(OPENVINO).native_precisions()


def bf16_gate(path: Path, meta: ArtifactMetadata, images: list[np.ndarray],
              min_agreement: float) -> dict[str, object]:
    """OpenVINO bf16 against ONNX Runtime FP32 on the verification frames (the export report's
    ``openvino.bf16`` section): bf16 is a runtime hint, not a graph, so it is verified per
    artifact and `segrun --backend auto` uses it only where this gate passed."""
    from segedge.runtime.preprocess import prepare

    if OPENVINO not in available():
        return {"checked": False, "reason": "OpenVINO is not installed"}
    if not has_bf16():
        return {"checked": False, "reason": "this CPU has no native bf16 (AVX-512 BF16 / AMX)"}
    fp32, bf16 = runner(path, meta, ORT), runner(path, meta, OPENVINO, hint="bf16")
    same = total = 0
    for image in images:
        tensor, _ = prepare([image], meta.input)
        a = labels_from_outputs(fp32(tensor), meta)
        b = labels_from_outputs(bf16(tensor), meta)
        same += int(np.count_nonzero(a == b))
        total += int(a.size)
    agreement = round(100.0 * same / max(total, 1), 3)
    return {"checked": True, "runtime": "openvino CPU bf16 vs onnxruntime fp32",
            "frames": len(images), "argmax_agreement": agreement,
            "gate": {"min_argmax_agreement": min_agreement, "passed": agreement >= min_agreement}}
