"""INT8's speed verdict: INT8 vs FP32 (and OpenVINO bf16) on the runtime the target runs.

Measured twice: a short probe on the fully quantized graph right after calibration,
*before* the long search (issue 21: on some CPUs INT8 is slower than FP32 or bf16, and
a user should learn that before minutes of searching), and on the final artifact for
the report.  On a CPU target (``CPU_TARGETS``) a slower INT8 stops the export there
(``SlowerThanFloatError``, exit 3) unless the user confirmed with
``--int8-even-if-slower`` (``PrecisionOptions.int8_stop_if_slower`` False); on the
TensorRT target the CPU figures are for reference only, so it warns and goes on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segedge.export.precision import runtimes
from segedge.export.precision.modes.int8 import CPU_TARGETS
from segedge.runtime.errors import VerificationError
from segedge.runtime.metadata import ArtifactMetadata

if TYPE_CHECKING:
    from segedge.export.precision.modes.int8_steps import Int8Run

PROBE_BUDGET_S = 0.5  # seconds per timed graph in the probe before the search


class SlowerThanFloatError(VerificationError):
    """INT8 measured slower than FP32/bf16 on the CPU it targets: stopped before the search."""


def speed_section(fp32: Path, int8: Path, tensor: np.ndarray, meta: ArtifactMetadata,
                  target: str, budget_s: float = 2.0) -> dict[str, Any]:
    """INT8 vs FP32 (and vs OpenVINO bf16 where the CPU has it) latency, with a verdict.

    The target backend decides which numbers the verdict reads: OpenVINO CPU
    for ``--int8-target cpu`` where installed (it runs real INT8 kernels; ONNX
    Runtime's CPU provider emulates Q/DQ and is noted too), TensorRT for
    ``tensorrt`` (measured by the engine build on the device, not here).
    """
    ms: dict[str, dict[str, float]] = {runtimes.ORT: {
        "fp32": runtimes.latency_ms(fp32, tensor, meta, budget_s=budget_s),
        "int8": runtimes.latency_ms(int8, tensor, meta, budget_s=budget_s)}}
    if runtimes.OPENVINO in runtimes.available() and \
            runtimes.probe(int8, runtimes.OPENVINO) is None:
        ov = {"fp32": runtimes.latency_ms(fp32, tensor, meta, runtimes.OPENVINO, "f32",
                                          budget_s),
              "int8": runtimes.latency_ms(int8, tensor, meta, runtimes.OPENVINO, "f32",
                                          budget_s)}
        if runtimes.has_bf16():
            ov["bf16"] = runtimes.latency_ms(fp32, tensor, meta, runtimes.OPENVINO, "bf16",
                                             budget_s)
        ms[runtimes.OPENVINO] = ov
    backend = runtimes.OPENVINO if runtimes.OPENVINO in ms else runtimes.ORT
    if target in CPU_TARGETS:
        backend_note = f"target CPU: verdict on {backend}"
    else:
        backend_note = ("target TensorRT is not measured here; CPU numbers for reference, "
                        f"verdict on {backend}")
    nums = ms[backend]
    speedup = round(nums["fp32"] / nums["int8"], 2) if nums["int8"] > 0 else 0.0
    faster_than = [k for k in ("fp32", "bf16") if k in nums and nums["int8"] < nums[k]]
    slower_than = [k for k in ("fp32", "bf16") if k in nums and nums["int8"] >= nums[k]]
    warning = None
    if slower_than:
        warning = (f"INT8 is not faster than {' or '.join(slower_than)} on {backend} "
                   f"({nums['int8']:.1f} ms vs " + ", ".join(
                       f"{k} {nums[k]:.1f} ms" for k in slower_than) + ")")
    return {"latency_ms": ms, "backend": backend, "note": backend_note,
            "int8_speedup_vs_fp32": speedup, "faster_than": faster_than, "warning": warning}


def speed_first(run: Int8Run, full: Path) -> str | None:
    """INT8 vs FP32/bf16 *before* the long search (a short probe); the warning, if any.

    Raises SlowerThanFloatError on a CPU target when INT8 is slower and the user did not
    confirm; a probe that cannot measure says nothing (the final speed section will)."""
    opts = run.opts
    try:
        sec = speed_section(run.req.fp32, full, run.calib.tensors[0], run.req.meta,
                            opts.int8_target, budget_s=PROBE_BUDGET_S)
    except Exception:  # noqa: BLE001 - a probe: the final speed section says it again
        return None
    warning = sec.get("warning")
    if not warning:
        return None
    if opts.int8_target in CPU_TARGETS and opts.int8_stop_if_slower:
        raise SlowerThanFloatError(stop_message(warning, opts.int8_target))
    if not run.req.cfg.quiet:
        print(f"warning: {warning} (measured before the INT8 search)", file=sys.stderr,
              flush=True)
    return str(warning)


def stop_message(warning: str, target: str) -> str:
    """The one line a CPU-target export stops with when INT8 is the slower choice."""
    return (f"INT8 speed: expected INT8 faster than FP32/bf16 on the CPU it targets "
            f"(--int8-target {target}), got {warning}, measured before the INT8 search; "
            "stopped, no artifact written (--int8-even-if-slower quantizes anyway, reusing "
            "the calibration cache; FP32 or --fp16 may serve this CPU better)")
