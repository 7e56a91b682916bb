"""Lower a verified FP32 ONNX to FP16 or INT8 and measure what it cost.

Precision lives in the ONNX: both transforms run and are checked here on a
CPU with ONNX Runtime, against the FP32 graph (itself verified against
PyTorch), on real frames the calibration never saw.  The result is a report
section; a miss (FP16 gate, INT8 budget) is returned, not raised, so the
exporter can write the failure report before refusing to publish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from segedge.export.config import ExportConfig, PrecisionOptions
from segedge.export.evaluation.evaluate import LabelledFrames, Scores, labels_from_outputs
from segedge.export.frames import load_frames
from segedge.export.onnx import tools as onnx_tools
from segedge.export.onnx.tools import session
from segedge.export.precision import calibration
from segedge.export.precision import int8 as q8
from segedge.export.precision.fp16 import convert_fp16
from segedge.export.precision.modes.base import LowerRequest
from segedge.export.precision.sensitivity import Budget, Measure, search
from segedge.export.verify.compare import agreement
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ArtifactMetadata

RANK_FRAMES = 16  # held-out frames used to rank layer sensitivity (the budget uses all)


@dataclass(frozen=True)
class Lowered:
    path: Path
    meta: ArtifactMetadata
    section: dict[str, Any]
    failure: str | None = None  # why the artifact must not be published


def run_labels(path: Path, frames: LabelledFrames, meta: ArtifactMetadata) -> list[np.ndarray]:
    sess = session(path)
    names = [o.name for o in sess.get_outputs()]
    return [labels_from_outputs(dict(zip(names, sess.run(None, {meta.input.name: t}),
                                         strict=True)), meta) for t in frames.tensors]


def cpu_latency_ms(path: Path, tensor: np.ndarray, name: str, budget_s: float = 2.0) -> float:
    """Median ONNX Runtime CPU latency of one inference (3..30 runs, about `budget_s`)."""
    sess = session(path)
    sess.run(None, {name: tensor})
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (len(times) < 30 and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        sess.run(None, {name: tensor})
        times.append(time.perf_counter() - t0)
    return round(1000.0 * float(np.median(times)), 3)


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
    passed = agree >= opts.fp16_min_agreement
    section.update(argmax_agreement=agree,
                   gate={"min_argmax_agreement": opts.fp16_min_agreement, "passed": passed},
                   kept_fp32=list(result.fp32_nodes), casts=result.casts,
                   clamped_weights=result.clamped_weights)
    failure = None if passed else (
        f"FP16 gate: expected argmax agreement >= {opts.fp16_min_agreement}% against FP32, got "
        f"{agree:.3f}% on {len(frames)} frames")
    return Lowered(path, new_meta, section, failure)


def _ranges(opts: PrecisionOptions, quiet: bool, pre: Path, calib: LabelledFrames,
            meta: ArtifactMetadata, workdir: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    """Activation ranges from the cache when the graph and frames match, else calibrate."""
    import onnxruntime
    from tqdm import tqdm

    key = calibration.cache_key(pre.read_bytes(), calib.tensors, method=opts.calib_method,
                                ort=onnxruntime.__version__)
    cache = opts.calib_cache or out.with_suffix(".calib.json")
    ranges = workdir / "ranges.json"
    start = time.perf_counter()
    hit = calibration.load_cache(cache, key, ranges)
    if not hit:
        bar = tqdm(total=len(calib), desc="calibrating", unit="frame", disable=quiet,
                   leave=False)
        q8.write_ranges(q8.calibrate(pre, calib.tensors, meta.input.name, opts.calib_method,
                                     workdir, bar.update), ranges)
        bar.close()
        calibration.save_cache(cache, key, ranges, {"method": opts.calib_method,
                                                    "frames": len(calib), "source": calib.source})
    return ranges, {"method": opts.calib_method, "frames": len(calib), "source": calib.source,
                    "cache": str(cache), "cache_hit": hit,
                    "seconds": round(time.perf_counter() - start, 2)}


def lower_int8(req: LowerRequest) -> Lowered:
    from tqdm import tqdm

    opts, fp32, meta, workdir = req.cfg.precision, req.fp32, req.meta, req.workdir
    quiet = req.cfg.quiet
    if not opts.calib:  # PrecisionOptions refuses this already; keeps the type narrow
        raise InputError("--int8", "--calib DIR|VIDEO|GLOB (calibration frames)", "none")
    split = calibration.split_frames(opts.calib, opts.calib_count, opts.eval_images,
                                     opts.eval_labels, opts.eval_count)
    calib = LabelledFrames.load(split.calib.frames, meta.input, split.calib.source)
    held = LabelledFrames.load(split.held.frames, meta.input, split.held.source, split.truths)
    pre = q8.preprocess(fp32, workdir)
    ranges, calib_info = _ranges(opts, quiet, pre, calib, meta, workdir, req.out)
    target, method = opts.int8_target, opts.calib_method
    ref = run_labels(fp32, held, meta)
    ref_scores = held.score(ref, meta.classes, opts.ignore_index)
    rank_frames = replace(held, tensors=held.tensors[:RANK_FRAMES], truths=None)
    rank_ref = ref[:RANK_FRAMES]

    def measure(path: Path) -> Measure:
        got = run_labels(path, held, meta)
        s = held.score(got, meta.classes, opts.ignore_index)
        return Measure(agreement(got, ref), s.miou if s else None,
                       ref_scores.miou if ref_scores else None)

    def agreement_of(path: Path) -> float:
        return agreement(run_labels(path, rank_frames, meta), rank_ref)

    quantizer = q8.Quantizer.open(pre, ranges, target, method)
    full = quantizer.quantize(workdir / "int8_full.onnx")
    budget = Budget(opts.max_miou_drop, opts.int8_min_agreement)
    bars: list[Any] = []  # created on the first trial: no bar when full INT8 meets the budget

    def tick() -> None:
        if not bars:
            bars.append(tqdm(desc="INT8 sensitivity", unit="trial", disable=quiet,
                             leave=False))
        bars[0].update()

    found = search(
        full, measure(full), budget, quantizer.candidates,
        only=lambda n: quantizer.quantize(workdir / "int8_one.onnx", only=[n]),
        excluding=lambda kept: quantizer.quantize(workdir / "int8_kept.onnx", exclude=kept),
        measure=measure, agreement_of=agreement_of, tick=tick)
    for bar in bars:
        bar.close()
    model = onnx.load(str(found.path))
    new_meta = meta.with_changes(precision="int8", opset=onnx_tools.opset_of(model), extra={
        **meta.extra, "int8": {"target": target, "calibration": method,
                               "calibration_frames": len(calib),
                               "kept_fp32": list(found.kept_fp32)}})
    onnx_tools.set_metadata(model, new_meta)
    model = onnx_tools.check(model)
    path = workdir / "int8.onnx"
    onnx.save(model, str(path))
    got = run_labels(path, held, meta)
    section = _common(fp32, path, held, meta, "int8", ref_scores,
                      held.score(got, meta.classes, opts.ignore_index))
    section.update(
        target=target, argmax_agreement=agreement(got, ref),
        budget={"rule": budget.describe(held.truths is not None), "met": found.met,
                "user_set": opts.max_miou_drop is not None or
                opts.int8_min_agreement is not None},
        kept_fp32=list(found.kept_fp32),
        quantized_layers=len(q8.quantized_layers(model)),
        calibration=calib_info,
        sensitivity=[{"layer": n, "changed_pixels_percent": s} for n, s in found.ranking],
        trials=list(found.trials))
    failure = None if found.met else (
        f"INT8 budget: expected {budget.describe(held.truths is not None)}, got agreement "
        f"{found.measure.agreement:.3f}%" + (f", mIoU drop {found.measure.miou_drop:.3f}"
                                             if found.measure.miou_drop is not None else "")
        + f" even with {len(found.kept_fp32)} layer(s) kept in FP32")
    return Lowered(path, new_meta, section, failure)
