"""Lower a verified FP32 ONNX to FP16 and measure what it cost; the checks INT8 shares.

INT8's own steps live in precision/int8_lower.py (calibrate, search, sensitivity,
fallback, report); this module keeps FP16's lowering and the comparisons both use.

Precision lives in the ONNX: both transforms run and are checked here on a
CPU with ONNX Runtime, against the FP32 graph (itself verified against
PyTorch), on real frames the calibration never saw.  The result is a report
section; a miss (FP16 gate, INT8 budget) is returned, not raised, so the
exporter can write the failure report before refusing to publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from segedge.export.config import ExportConfig
from segedge.export.evaluation.evaluate import LabelledFrames, Scores
from segedge.export.frames import load_frames
from segedge.export.onnx import tools as onnx_tools
from segedge.export.onnx.tools import session
from segedge.export.precision import calibration, runtimes
from segedge.export.precision.fp16 import convert_fp16
from segedge.export.precision.modes.base import LowerRequest
from segedge.export.verify.compare import agreement
from segedge.runtime.metadata import ArtifactMetadata


@dataclass(frozen=True)
class Lowered:
    path: Path
    meta: ArtifactMetadata
    section: dict[str, Any]
    failure: str | None = None  # why the artifact must not be published


def run_labels(path: Path, frames: LabelledFrames, meta: ArtifactMetadata,
               runtime: str = runtimes.ORT) -> list[np.ndarray]:
    return runtimes.run_labels(path, frames, meta, runtime)


def cpu_latency_ms(path: Path, tensor: np.ndarray, name: str, budget_s: float = 2.0) -> float:
    """Median ONNX Runtime CPU latency of one inference (3..30 runs, about `budget_s`)."""
    sess = session(path)
    return runtimes.median_ms(lambda: sess.run(None, {name: tensor}), budget_s)


def per_runtime(fp32: Path, low: Path, frames: LabelledFrames, meta: ArtifactMetadata,
                ignore: int | None, precision: str) -> dict[str, dict[str, Any]]:
    """Agreement (and mIoU) of `low` against `fp32` on each installed runtime.

    Each runtime is compared with its own FP32 run, so what is measured is what
    the lowering changed there; a runtime that cannot load the artifact gets
    an ``error`` instead of numbers.
    """
    found: dict[str, dict[str, Any]] = {}
    for rt in runtimes.available():
        why = runtimes.probe(low, rt)
        if why is not None:
            found[rt] = {"error": why}
            continue
        ref = run_labels(fp32, frames, meta, rt)
        got = run_labels(low, frames, meta, rt)
        entry: dict[str, Any] = {"argmax_agreement": agreement(got, ref)}
        ref_s = frames.score(ref, meta.classes, ignore)
        low_s = frames.score(got, meta.classes, ignore)
        if ref_s is not None and low_s is not None:
            entry["miou"] = {"fp32": ref_s.miou, precision: low_s.miou,
                             "drop": round(ref_s.miou - low_s.miou, 4)}
        if rt == runtimes.OPENVINO:
            entry["precision_hint"] = "f32"
        found[rt] = entry
    return found


def runtime_failure(found: dict[str, dict[str, Any]], passes: Any, rule: str,
                    what: str, frames: int) -> str | None:
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


def _eval_frames(cfg: ExportConfig, meta: ArtifactMetadata, size: tuple[int, int]
                 ) -> LabelledFrames:
    """FP16 check frames: the eval images (with labels when given), else the parity frames."""
    opts = cfg.precision
    if opts.eval_images:
        fs, truths = calibration.eval_frames(opts.eval_images, opts.eval_labels, opts.eval_count)
        return LabelledFrames.load(fs.frames, meta.input, fs.source, truths)
    fs = load_frames(cfg.verify.images, max(cfg.verify.count, 8), size)
    return LabelledFrames.load(fs.frames, meta.input, fs.source)


def _compare(fp32: Path, low: Path, frames: LabelledFrames, meta: ArtifactMetadata,
             ignore: int | None) -> tuple[float, Scores | None, Scores | None]:
    """Agreement of `low` with `fp32` (the one comparator), and both scored on the truth."""
    ref = run_labels(fp32, frames, meta)
    got = run_labels(low, frames, meta)
    return (agreement(got, ref), frames.score(ref, meta.classes, ignore),
            frames.score(got, meta.classes, ignore))


def _common(fp32: Path, low: Path, frames: LabelledFrames, meta: ArtifactMetadata,
            precision: str, ref_scores: Scores | None, low_scores: Scores | None
            ) -> dict[str, Any]:
    tensor = frames.tensors[0]
    section: dict[str, Any] = {
        "precision": precision, "reference": "fp32 ONNX (verified against PyTorch)",
        "frames": len(frames), "source": frames.source,
        "size_bytes": {"fp32": fp32.stat().st_size, precision: low.stat().st_size},
        "cpu_latency_ms": {"fp32": cpu_latency_ms(fp32, tensor, meta.input.name),
                           precision: cpu_latency_ms(low, tensor, meta.input.name)},
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


def lower_fp16(req: LowerRequest) -> Lowered:
    cfg, fp32, meta, opts = req.cfg, req.fp32, req.meta, req.cfg.precision
    result = convert_fp16(onnx.load(str(fp32)))
    new_meta = meta.with_changes(precision="fp16", extra={
        **meta.extra, "fp16": {"fp32_nodes": list(result.fp32_nodes)}})
    model = result.model
    onnx_tools.set_metadata(model, new_meta)
    model = onnx_tools.check(model)
    path = req.workdir / "fp16.onnx"
    onnx.save(model, str(path))
    frames = _eval_frames(cfg, meta, req.size)
    agree, ref_s, low_s = _compare(fp32, path, frames, meta, opts.ignore_index)
    section = _common(fp32, path, frames, meta, "fp16", ref_s, low_s)
    found = per_runtime(fp32, path, frames, meta, opts.ignore_index, "fp16")
    rule = f"argmax agreement >= {opts.fp16_min_agreement}%"
    failure = runtime_failure(
        found, lambda e: e["argmax_agreement"] >= opts.fp16_min_agreement, rule, "FP16 gate",
        len(frames))
    section.update(argmax_agreement=agree, runtimes=found,
                   gate={"min_argmax_agreement": opts.fp16_min_agreement,
                         "runtimes": list(found), "passed": failure is None},
                   kept_fp32=list(result.fp32_nodes), casts=result.casts,
                   clamped_weights=result.clamped_weights,
                   folded_batchnorms=result.folded_batchnorms)
    return Lowered(path, new_meta, section, failure)


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
    if target == "tensorrt":
        backend_note = ("target TensorRT is not measured here; CPU numbers for reference, "
                        f"verdict on {backend}")
    else:
        backend_note = f"target CPU: verdict on {backend}"
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
