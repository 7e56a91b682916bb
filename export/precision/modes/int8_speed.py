"""INT8's speed verdict: INT8 vs FP32 (and bf16 where a runtime runs it natively) on the
CPU runtimes installed here, the verdict on the one that runs real INT8 kernels.

Measured twice: a short probe on the fully quantized graph right after calibration,
*before* the long search (issue 21: on some CPUs INT8 is slower than FP32 or bf16, and
a user should learn that before minutes of searching), and on the final artifact for
the report (there the reference runtime's figures are the report's own CPU latency,
measured once).  On a CPU target (``CPU_TARGETS``) a slower INT8 stops the export
there (``SlowerThanFloatError``, exit 3) unless the user confirmed with
``--int8-even-if-slower`` (``PrecisionOptions.int8_stop_if_slower`` False); on the
TensorRT target the CPU figures are for reference only, so it warns and goes on.

A stop must not fire on noise: the graphs of one runtime are timed in interleaved
rounds (runtime.timing, as the auto chooser times backends), and INT8 counts as slower
only when its median is more than ``MARGIN`` above the other's *and* the middle halves
of the two sets of calls do not overlap (``slower``); a tie is not slower.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segedge.export.precision import runtimes
from segedge.export.precision.modes.int8 import CPU_TARGETS
from segedge.runtime.errors import VerificationError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.precisions import GRAPH_HINT, precision, reference
from segedge.runtime.timing import Timing

if TYPE_CHECKING:
    from segedge.export.precision.modes.int8_steps import Int8Run

PROBE_BUDGET_S = 1.5  # seconds of interleaved rounds per runtime in the probe before the search
MARGIN = 0.05  # INT8 must be more than 5 % slower (and outside the spread) to count as slower


class SlowerThanFloatError(VerificationError):
    """INT8 measured slower than FP32/bf16 on the CPU it targets: stopped before the search."""


def _quartiles(t: Timing) -> tuple[float, float]:
    """The middle half of the calls (the median twice for fewer than 4 calls)."""
    if len(t.samples_ms) < 4:
        return t.median_ms, t.median_ms
    q1, _, q3 = statistics.quantiles(t.samples_ms, n=4, method="inclusive")
    return q1, q3


def slower(int8: Timing, other: Timing, margin: float = MARGIN) -> bool:
    """INT8 slower than ``other`` beyond noise: median more than ``margin`` above, and its
    lower quartile above the other's upper quartile (a tie or an overlap is not slower)."""
    if int8.median_ms <= other.median_ms * (1.0 + margin):
        return False
    return _quartiles(int8)[0] > _quartiles(other)[1]


def speed_section(fp32: Path, int8: Path, tensor: np.ndarray, meta: ArtifactMetadata,
                  target: str, budget_s: float = 2.0,
                  measured: Mapping[str, float] | None = None,
                  probed: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """INT8 vs FP32 (and vs bf16 where a runtime has it natively) latency, with a verdict.

    Every installed CPU runtime that loads the INT8 graph is timed; the verdict reads the
    last of them (OpenVINO where installed: it runs real INT8 kernels; ONNX Runtime's CPU
    provider, the reference, emulates Q/DQ and is noted too); ``tensorrt`` is measured by
    the engine build on the device, not here.  ``measured``: the reference runtime's
    medians already in the report (``cpu_latency_ms``), reused instead of timing again.
    ``probed``: each runtime's compile-probe verdict on `int8` already known (None: it
    loads), so the graph is not compiled in a child a second time; a runtime missing
    from it is probed here.
    """
    ref_name, ref_hint = reference().name, GRAPH_HINT
    bf16 = precision("bf16")
    found: dict[str, dict[str, Timing]] = {}
    for rt in runtimes.available():
        why = probed[rt] if probed is not None and rt in probed else runtimes.probe(int8, rt)
        if why is not None:
            continue
        if rt == runtimes.reference() and measured is not None:
            found[rt] = {k: Timing((float(v),)) for k, v in measured.items()}
            continue
        graphs = {ref_name: (fp32, ref_hint), "int8": (int8, ref_hint)}
        if runtimes.native_hint(rt, bf16.hint) and runtimes.takes_hint(rt):
            graphs[bf16.name] = (fp32, bf16.hint)
        found[rt] = runtimes.latencies(graphs, tensor, meta, rt, budget_s)
    backend = list(found)[-1]
    if target in CPU_TARGETS:
        backend_note = f"target CPU: verdict on {backend}"
    else:
        backend_note = ("target TensorRT is not measured here; CPU numbers for reference, "
                        f"verdict on {backend}")
    timed = found[backend]
    nums = runtimes.medians_ms(timed)
    speedup = round(nums[ref_name] / nums["int8"], 2) if nums["int8"] > 0 else 0.0
    others = [k for k in (ref_name, bf16.name) if k in timed]
    faster_than = [k for k in others if nums["int8"] < nums[k]]
    slower_than = [k for k in others if slower(timed["int8"], timed[k])]
    warning = None
    if slower_than:
        warning = (f"INT8 is not faster than {' or '.join(slower_than)} on {backend} "
                   f"({nums['int8']:.1f} ms vs " + ", ".join(
                       f"{k} {nums[k]:.1f} ms" for k in slower_than) + ")")
    return {"latency_ms": {rt: runtimes.medians_ms(t) for rt, t in found.items()},
            "spread": {rt: {k: round(v.spread, 3) for k, v in t.items()}
                       for rt, t in found.items()},
            "backend": backend, "note": backend_note, "int8_speedup_vs_fp32": speedup,
            "faster_than": faster_than, "warning": warning,
            "rule": f"slower: median more than {MARGIN:.0%} above and outside the spread"}


def speed_first(run: Int8Run, full: Path) -> str | None:
    """INT8 vs FP32/bf16 *before* the long search (a short probe); the warning, if any.

    Raises SlowerThanFloatError on a CPU target when INT8 is slower and the user did not
    confirm; a probe that cannot measure says nothing (the final speed section will)."""
    opts = run.opts
    # the search's runtime pick probed this graph already (int8_steps.calibrate_step); this
    # runs before any budget measurement (modes/int8.py), so left_out holds that probe's
    # verdicts on `full` only, never a runtime that failed on a later candidate
    probed = None if run.search_on is None else {**dict.fromkeys(run.search_on),
                                                  **run.left_out}
    try:
        sec = speed_section(run.req.fp32, full, run.calib.tensors[0], run.req.meta,
                            opts.int8_target, budget_s=PROBE_BUDGET_S, probed=probed)
    except Exception:  # noqa: BLE001 - a probe: the final speed section says it again
        return None
    warning = sec.get("warning")
    if not warning:
        return None
    if opts.int8_target in CPU_TARGETS and opts.int8_stop_if_slower:
        raise SlowerThanFloatError(stop_message(warning, opts.int8_target))
    if not run.req.cfg.quiet:
        print(f"warning: {warning} (measured before the INT8 search){_for_whom(opts)}",
              file=sys.stderr, flush=True)
    return str(warning)


def _for_whom(opts: Any) -> str:
    """What the CPU figures mean for a TensorRT target (the default, often exported on a
    machine with no GPU for a Jetson): reference only, and how a CPU deployment stops."""
    if opts.int8_target in CPU_TARGETS:
        return ""
    return (f"; the INT8 target is {opts.int8_target}, so these CPU figures are for "
            "reference and the search goes on (for a CPU deployment, --int8-target cpu "
            "stops here instead)")


def stop_message(warning: str, target: str) -> str:
    """The one line a CPU-target export stops with when INT8 is the slower choice."""
    return (f"INT8 speed: expected INT8 faster than FP32/bf16 on the CPU it targets "
            f"(--int8-target {target}), got {warning}, measured before the INT8 search; "
            "stopped, no artifact written (--int8-even-if-slower quantizes anyway, reusing "
            "the calibration cache; FP32 or --fp16 may serve this CPU better)")
