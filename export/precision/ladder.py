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
from segedge.export.evaluation.evaluate import LabelledFrames, Scores
from segedge.export.frames import load_frames
from segedge.export.onnx import tools as onnx_tools
from segedge.export.onnx.tools import session
from segedge.export.precision import calibration, int8_search, runtimes
from segedge.export.precision import int8 as q8
from segedge.export.precision.fp16 import convert_fp16
from segedge.export.precision.modes.base import LowerRequest
from segedge.export.precision.modes.int8 import CalibMethod
from segedge.export.precision.sensitivity import Budget, Measure, search
from segedge.export.verify.compare import agreement
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.progress import progress

RANK_FRAMES = 16  # selection frames used to rank layer sensitivity (the budget uses all)


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
    sess.run(None, {name: tensor})
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (len(times) < 30 and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        sess.run(None, {name: tensor})
        times.append(time.perf_counter() - t0)
    return round(1000.0 * float(np.median(times)), 3)


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


def _ranges(opts: PrecisionOptions, quiet: bool, pre: Path, calib: LabelledFrames,
            meta: ArtifactMetadata, workdir: Path, out: Path, primary: bool = True,
            method: CalibMethod | None = None) -> tuple[Path, dict[str, Any]]:
    """Activation ranges from the cache when the graph and frames match, else calibrate.

    `primary`: the user's method on all calibration frames, cached at --calib-cache (or
    <output>.calib.json); a (method, frame count) tried by the calibration search gets its
    own file beside it.
    """
    import onnxruntime

    method = method or opts.calib_method
    key = calibration.cache_key(pre.read_bytes(), calib.tensors, method=method,
                                target=opts.int8_target, ort=onnxruntime.__version__)
    default = opts.calib_cache or out.with_suffix(".calib.json")
    cache = default if primary else default.with_name(
        f"{default.stem}.{method}.{len(calib)}{default.suffix}")
    ranges = workdir / f"ranges_{method}_{len(calib)}.json"
    start = time.perf_counter()
    hit = calibration.load_cache(cache, key, ranges)
    if not hit:
        bar = progress(total=len(calib), desc="calibrating", unit="frame", quiet=quiet)
        q8.write_ranges(q8.calibrate(pre, calib.tensors, meta.input.name, method,
                                     workdir, bar.update), ranges)
        bar.close()
        calibration.save_cache(cache, key, ranges, {"method": method,
                                                    "frames": len(calib), "source": calib.source})
    return ranges, {"method": method, "frames": len(calib), "source": calib.source,
                    "cache": str(cache), "cache_hit": hit,
                    "seconds": round(time.perf_counter() - start, 2)}


def _subset(frames: LabelledFrames, count: int) -> LabelledFrames:
    """`count` calibration frames spread over the pool (all of them when count >= pool)."""
    if count >= len(frames):
        return frames
    idx = calibration.spread(list(range(len(frames))), count)
    return replace(frames, tensors=[frames.tensors[i] for i in idx],
                   geoms=[frames.geoms[i] for i in idx], truths=None,
                   source=f"{frames.source}, {count} spread")


def lower_int8(req: LowerRequest) -> Lowered:
    """Quantize, choosing on the held-out selection frames, reporting on the report frames."""
    opts, fp32, meta, workdir = req.cfg.precision, req.fp32, req.meta, req.workdir
    quiet = req.cfg.quiet
    if not opts.calib:  # PrecisionOptions refuses this already; keeps the type narrow
        raise InputError("--int8", "--calib DIR|VIDEO|GLOB (calibration frames)", "none")
    split = calibration.split_frames(opts.calib, opts.calib_count, opts.eval_images,
                                     opts.eval_labels, opts.eval_count)
    calib = LabelledFrames.load(split.calib.frames, meta.input, split.calib.source)
    held_all = LabelledFrames.load(split.held.frames, meta.input, split.held.source,
                                   split.truths)
    parts = int8_search.split_held(held_all)
    held, rep = parts.selection, parts.report
    pre = q8.preprocess(fp32, workdir)
    ranges, calib_info = _ranges(opts, quiet, pre, calib, meta, workdir, req.out)
    target, method = opts.int8_target, opts.calib_method
    ref = run_labels(fp32, held, meta)
    ref_scores = held.score(ref, meta.classes, opts.ignore_index)
    rank_frames = replace(held, tensors=held.tensors[:RANK_FRAMES],
                          geoms=held.geoms[:RANK_FRAMES], truths=None)
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
    user_set = opts.max_miou_drop is not None or opts.int8_min_agreement is not None
    searched: list[dict[str, Any]] = []
    per_channel = True
    if not user_set:
        # default budget: the tool also chooses the calibration (method, frame count,
        # per-channel) before keeping layers in FP32; with a user budget, theirs stands
        def build(c: int8_search.Candidate) -> tuple[q8.Quantizer, Path, dict[str, Any]]:
            ranges_c, info = _ranges(opts, quiet, pre, _subset(calib, c.frames), meta,
                                     workdir, req.out, primary=False,
                                     method=c.method)  # type: ignore[arg-type]
            qz = q8.Quantizer.open(pre, ranges_c, target, c.method,  # type: ignore[arg-type]
                                   per_channel=c.per_channel)
            name = f"int8_full_{c.method}_{c.frames}_{'pc' if c.per_channel else 'pt'}.onnx"
            return qz, qz.quantize(workdir / name), info

        first = int8_search.Candidate(method, len(calib), True)
        chosen, built, searched = int8_search.search(
            first, measure(full), budget, build, lambda b: measure(b[1]))
        if built is not None:
            quantizer, full, calib_info = built
            method, per_channel = quantizer.method, chosen.per_channel
    bars: list[Any] = []  # created on the first trial: no bar when full INT8 meets the budget

    def tick() -> None:
        if not bars:
            bars.append(progress(desc="INT8 sensitivity", unit="trial", quiet=quiet))
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
                               "calibration_frames": calib_info["frames"],
                               "per_channel": per_channel,
                               "kept_fp32": list(found.kept_fp32)}})
    onnx_tools.set_metadata(model, new_meta)
    model = onnx_tools.check(model)
    path = workdir / "int8.onnx"
    onnx.save(model, str(path))
    # the drop the report states: on the report frames, which chose nothing
    rep_ref = run_labels(fp32, rep, meta) if parts.split else ref
    got = run_labels(path, rep, meta)
    section = _common(fp32, path, rep, meta, "int8",
                      rep.score(rep_ref, meta.classes, opts.ignore_index),
                      rep.score(got, meta.classes, opts.ignore_index))
    rule = budget.describe(held.truths is not None)
    section.update(
        target=target, argmax_agreement=agreement(got, rep_ref),
        budget={"rule": rule, "met": found.met, "user_set": user_set},
        kept_fp32=list(found.kept_fp32), per_channel=per_channel,
        quantized_layers=len(q8.quantized_layers(model)),
        calibration={**calib_info, "searched": searched,
                     "search_space": "method x frame count x per-channel" if not user_set
                     else "none (a user budget keeps the user's calibration)"},
        sensitivity=[{"layer": n, "changed_pixels_percent": s} for n, s in found.ranking],
        trials=list(found.trials))
    failure = None if found.met else (
        f"INT8 budget: expected {rule}, got agreement "
        f"{found.measure.agreement:.3f}%" + (f", mIoU drop {found.measure.miou_drop:.3f}"
                                             if found.measure.miou_drop is not None else "")
        + f" even with {len(found.kept_fp32)} layer(s) kept in FP32")
    checked = per_runtime(fp32, path, rep, meta, opts.ignore_index, "int8")
    section["runtimes"] = checked
    section["held_out"] = {"frames": len(held_all), "source": held_all.source,
                           "disjoint_from_calibration": True, **parts.describe(),
                           "selection_measure": found.measure.to_dict(),
                           "miou_drop": {rt: e["miou"]["drop"] for rt, e in checked.items()
                                         if "miou" in e}}
    report_miss = runtime_failure(
        checked, lambda e: budget.met(Measure(
            e["argmax_agreement"], e["miou"]["int8"] if "miou" in e else None,
            e["miou"]["fp32"] if "miou" in e else None)), rule,
        "INT8 budget (report frames)" if parts.split else "INT8 budget", len(rep))
    failure = failure or report_miss
    section["budget"]["met"] = failure is None
    section["speed"] = speed_section(fp32, path, rep.tensors[0], meta, target)
    return Lowered(path, new_meta, section, failure)


def speed_section(fp32: Path, int8: Path, tensor: np.ndarray, meta: ArtifactMetadata,
                  target: str) -> dict[str, Any]:
    """INT8 vs FP32 (and vs OpenVINO bf16 where the CPU has it) latency, with a verdict.

    The target backend decides which numbers the verdict reads: OpenVINO CPU
    for ``--int8-target cpu`` where installed (it runs real INT8 kernels; ONNX
    Runtime's CPU provider emulates Q/DQ and is noted too), TensorRT for
    ``tensorrt`` (measured by the engine build on the device, not here).
    """
    ms: dict[str, dict[str, float]] = {runtimes.ORT: {
        "fp32": runtimes.latency_ms(fp32, tensor, meta), "int8": runtimes.latency_ms(
            int8, tensor, meta)}}
    if runtimes.OPENVINO in runtimes.available() and \
            runtimes.probe(int8, runtimes.OPENVINO) is None:
        ov = {"fp32": runtimes.latency_ms(fp32, tensor, meta, runtimes.OPENVINO, "f32"),
              "int8": runtimes.latency_ms(int8, tensor, meta, runtimes.OPENVINO, "f32")}
        if runtimes.has_bf16():
            ov["bf16"] = runtimes.latency_ms(fp32, tensor, meta, runtimes.OPENVINO, "bf16")
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
