"""What FP16 and INT8 share: measuring a lowered graph against the verified FP32 one.

Each mode owns its lowering (precision/modes/fp16.py, modes/int8.py and its steps);
both report the same comparisons, kept here once: agreement and mIoU against FP32 on
each installed runtime (each runtime compared with its own FP32 run), the one-line
failure naming the runtime that missed, and the report section's common part (sizes,
CPU latency, mIoU / accuracies on labelled frames).

Precision lives in the ONNX: both transforms are checked here on a CPU with ONNX
Runtime and, where installed, OpenVINO, against the FP32 graph (itself verified against
PyTorch).  A miss is returned as ``Lowered.failure``, not raised, so the exporter can
write the failure report before refusing to publish.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from segedge.export.evaluation.evaluate import LabelledFrames, Scores
from segedge.export.precision import runtimes
from segedge.export.verify.compare import agreement
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.precisions import GRAPH_HINT

__all__ = ["Labels", "common_section", "compare", "per_runtime", "reference_labels",
           "runtime_failure"]

# (FP32 label maps, low-precision label maps) of the same frames on one runtime
Labels = tuple[list[np.ndarray], list[np.ndarray]]


def reference_labels(fp32: Path, low: Path, frames: LabelledFrames, meta: ArtifactMetadata
                     ) -> Labels:
    """Both graphs' label maps on the reference runtime, each run once: the mode's headline
    (compare) and per_runtime (``known``) read the same maps."""
    return runtimes.run_labels(fp32, frames, meta), runtimes.run_labels(low, frames, meta)


def per_runtime(fp32: Path, low: Path, frames: LabelledFrames, meta: ArtifactMetadata,
                ignore: int | None, precision: str,
                known: Mapping[str, Labels] | None = None) -> dict[str, dict[str, Any]]:
    """Agreement (and mIoU) of `low` against `fp32` on each installed runtime.

    Each runtime is compared with its own FP32 run, so what is measured is what
    the lowering changed there; a runtime that cannot load the artifact (its
    compile probe, in a child process) gets an ``error`` instead of numbers.
    `known` holds label maps a caller already computed on exactly these `frames`
    (runtime -> (FP32, low)): those runtimes are not run again (the report frames cost
    a full pass of both graphs per runtime).
    """
    known = known or {}
    for rt, (ref, got) in known.items():
        if len(ref) != len(frames) or len(got) != len(frames):
            raise ValueError(f"per_runtime: expected {len(frames)} known label maps per graph "
                             f"on {rt}, got {len(ref)} (fp32) and {len(got)} ({precision})")
    found: dict[str, dict[str, Any]] = {}
    for rt in runtimes.available():
        why = runtimes.probe(low, rt)
        if why is not None:
            found[rt] = {"error": why}
            continue
        if rt in known:
            ref, got = known[rt]
        else:
            ref = runtimes.run_labels(fp32, frames, meta, rt)
            got = runtimes.run_labels(low, frames, meta, rt)
        entry: dict[str, Any] = {"argmax_agreement": agreement(got, ref)}
        ref_s = frames.score(ref, meta.classes, ignore)
        low_s = frames.score(got, meta.classes, ignore)
        if ref_s is not None and low_s is not None:
            entry["miou"] = {"fp32": ref_s.miou, precision: low_s.miou,
                             "drop": round(ref_s.miou - low_s.miou, 4)}
        if runtimes.takes_hint(rt):  # it could have run a reduced precision: say it did not
            entry["precision_hint"] = GRAPH_HINT
        found[rt] = entry
    return found


def runtime_failure(found: dict[str, dict[str, Any]], passes: Callable[[dict[str, Any]], bool],
                    rule: str, what: str, frames: int) -> str | None:
    """One line naming the first runtime where `passes(entry)` is false (or that failed)."""
    for rt, entry in found.items():
        if "error" in entry:
            return f"{what}: expected the artifact to load in {rt}, got {entry['error']}"
        if not passes(entry):
            got = f"agreement {entry['argmax_agreement']:.3f}%"
            if "miou" in entry:
                got += f", mIoU drop {entry['miou']['drop']:.3f}"
            return f"{what} on {rt}: expected {rule} against FP32, got {got} on {frames} frames"
    return None


def compare(labels: Labels, frames: LabelledFrames, meta: ArtifactMetadata,
            ignore: int | None) -> tuple[float, Scores | None, Scores | None]:
    """Agreement of the low-precision maps with the FP32 ones (reference_labels; the one
    comparator), and both scored on the truth."""
    ref, got = labels
    return (agreement(got, ref), frames.score(ref, meta.classes, ignore),
            frames.score(got, meta.classes, ignore))


def common_section(fp32: Path, low: Path, frames: LabelledFrames, meta: ArtifactMetadata,
                   precision: str, ref_scores: Scores | None, low_scores: Scores | None
                   ) -> dict[str, Any]:
    """The report section's part every reduced mode has: sizes, CPU latency (the reference
    runtime, both graphs timed in interleaved rounds: runtimes.latencies), scores."""
    timed = runtimes.latencies({"fp32": (fp32, GRAPH_HINT), precision: (low, GRAPH_HINT)},
                               frames.tensors[0], meta)
    section: dict[str, Any] = {
        "precision": precision, "reference": "fp32 ONNX (verified against PyTorch)",
        "frames": len(frames), "source": frames.source,
        "size_bytes": {"fp32": fp32.stat().st_size, precision: low.stat().st_size},
        "cpu_latency_ms": runtimes.medians_ms(timed),
    }
    if ref_scores is not None and low_scores is not None:
        section["miou"] = {"fp32": ref_scores.miou, precision: low_scores.miou,
                           "drop": round(ref_scores.miou - low_scores.miou, 4)}
        section["pixel_accuracy"] = {"fp32": ref_scores.pixel_accuracy,
                                     precision: low_scores.pixel_accuracy}
        section["class_accuracy"] = {"fp32": ref_scores.class_accuracy,
                                     precision: low_scores.class_accuracy}
        section["per_class_iou"] = {"fp32": ref_scores.per_class_iou,
                                    precision: low_scores.per_class_iou}
    return section
