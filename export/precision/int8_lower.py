"""INT8 lowering as named steps: calibrate, search, sensitivity, fallback, report.

Each long step is a ``steps.Step``: an estimate from its first measured unit, a time
bound checked after every unit inside the step (``--int8-time-limit`` shared out over
the steps), and progress on a terminal or in a log.  Activation ranges are computed
once per (graph, frames, method) in a run (``Int8Run.ranges``' memo) and kept in one
content-keyed cache file; every candidate that only re-quantizes reuses them.  Memory
is bounded: calibration frames are prepared as they are read and collected in chunks
sized from one frame's measured activations (precision/int8.py); the peak resident
set during INT8 is in the report (``resources``).

Choosing and reporting use different frames (int8_search.split_held); the reported
agreement, its per-frame spread and the gate are the same figure.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from segedge.export.evaluation.evaluate import LabelledFrames
from segedge.export.onnx import tools as onnx_tools
from segedge.export.precision import calibration, int8_search, points
from segedge.export.precision import int8 as q8
from segedge.export.precision.graph import compute_nodes
from segedge.export.precision.ladder import (
    Lowered,
    _common,
    per_runtime,
    run_labels,
    runtime_failure,
    speed_section,
)
from segedge.export.precision.memory import PeakRSS
from segedge.export.precision.modes.base import LowerRequest
from segedge.export.precision.modes.int8 import CalibMethod
from segedge.export.precision.sensitivity import Budget, Measure, SearchResult, search
from segedge.export.precision.steps import BoundReached, Step
from segedge.export.verify.compare import agreement
from segedge.runtime.errors import InputError
from segedge.runtime.preprocess import prepare

RANK_FRAMES = 16  # selection frames used to rank point sensitivity (the budget uses all)
# shares of the time left when each step starts (the rest is kept for the report checks)
# (about 15 % of --int8-time-limit stays for the report frames on both runtimes)
SHARES = {"calibration": 0.5, "calibration search": 0.35, "INT8 sensitivity": 0.6,
          "keep-in-float search": 0.6}
HALF_WIDTH = 0.5  # points: the agreement interval the default frame count aims at


@dataclass
class Int8Run:
    """One INT8 lowering: frames, references, the ranges memo and the clock."""

    req: LowerRequest
    pre: Path
    calib: LabelledFrames
    parts: int8_search.HeldOut
    ref: list[np.ndarray]
    ref_miou: float | None
    deadline: float
    held_source: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    memo: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)

    @property
    def opts(self) -> Any:
        return self.req.cfg.precision

    def step(self, name: str, total: int | None, unit: str) -> Step:
        left = max(0.0, self.deadline - time.monotonic())
        return Step(name, total, unit, limit_s=round(left * SHARES[name], 1),
                    quiet=self.req.cfg.quiet)

    def ranges(self, frames: LabelledFrames, method: CalibMethod, name: str = "calibration"
               ) -> tuple[Path, dict[str, Any]]:
        """Ranges for (graph, frames, method): memo, then the one cache file, then a pass."""
        import onnxruntime

        key = calibration.cache_key(self.pre.read_bytes(), frames.tensors, method=method,
                                    target=self.opts.int8_target, ort=onnxruntime.__version__)
        if key in self.memo:
            path, info = self.memo[key]
            return path, {**info, "reused_in_run": True}
        cache = self.opts.calib_cache or self.req.out.with_suffix(".calib.json")
        out = self.req.workdir / f"ranges_{len(self.memo)}.json"
        start = time.perf_counter()
        hit = calibration.load_cache(cache, key, out)
        extra: dict[str, Any] = {}
        if not hit:
            step = self.step(name, len(frames), "frame")
            with step:
                got = q8.calibrate_bounded(self.pre, frames.tensors, self.req.meta.input.name,
                                           method, self.req.workdir, step.tick)
            q8.write_ranges(got.data, out)
            extra = {"chunk_frames": got.chunk, "activation_mb_per_frame": got.activation_mb}
            step.stopped = got.frames < len(frames)  # calibrate_bounded caught the bound
            self.steps.append(step.info())
            if got.frames < len(frames):
                extra.update(stopped=f"time bound: ranges from {got.frames} of "
                                     f"{len(frames)} frames", frames_requested=len(frames))
            else:  # only complete calibrations are cached
                calibration.save_cache(cache, key, out, {"method": method,
                                                         "frames": len(frames),
                                                         "source": frames.source})
        info = {"method": method, "frames": len(frames), "source": frames.source,
                "cache": str(cache), "cache_hit": hit,
                "seconds": round(time.perf_counter() - start, 2), **extra}
        if "frames_requested" in extra:  # what the ranges really saw
            info["frames"] = got.frames
        self.memo[key] = (out, info)
        return out, info

    def measure(self, path: Path) -> Measure:
        held = self.parts.selection
        got = run_labels(path, held, self.req.meta)
        s = held.score(got, self.req.meta.classes, self.opts.ignore_index)
        return Measure(agreement(got, self.ref), s.miou if s else None, self.ref_miou)

    def agreement_of(self, path: Path) -> float:
        held = self.parts.selection
        frames = replace(held, tensors=held.tensors[:RANK_FRAMES],
                         geoms=held.geoms[:RANK_FRAMES], truths=None)
        return agreement(run_labels(path, frames, self.req.meta), self.ref[:RANK_FRAMES])


def _strict(step: Step) -> Any:
    """A tick whose BoundReached escapes calibrate_bounded (a search candidate is dropped
    whole, never calibrated on part of its frames)."""
    from segedge.export.precision.steps import BoundReached

    class _Escape(Exception):
        pass

    def tick() -> None:
        try:
            step.tick()
        except BoundReached:
            raise _Escape from None

    tick.escape = _Escape  # type: ignore[attr-defined]
    return tick


def _subset(frames: LabelledFrames, count: int) -> LabelledFrames:
    """`count` calibration frames spread over the pool (all of them when count >= pool)."""
    if count >= len(frames):
        return frames
    idx = calibration.spread(list(range(len(frames))), count)
    return replace(frames, tensors=[frames.tensors[i] for i in idx],
                   geoms=[frames.geoms[i] for i in idx], truths=None,
                   source=f"{frames.source}, {count} spread")


def _say(run: Int8Run, text: str) -> None:
    if not run.req.cfg.quiet:
        print(text, file=sys.stderr, flush=True)


def open_run(req: LowerRequest) -> Int8Run:
    """Frames (calibration prepared as read), the held-out split and the FP32 reference."""
    opts, meta = req.cfg.precision, req.meta
    if not opts.calib:  # PrecisionOptions refuses this already; keeps the type narrow
        raise InputError("--int8", "--calib DIR|VIDEO|GLOB (calibration frames)", "none")
    spec = replace(meta.input, batch=meta.input.batch or 1)

    def convert(img: np.ndarray) -> tuple[np.ndarray, Any]:
        tensor, geoms = prepare([img] * (spec.batch or 1), spec)
        return tensor, geoms[0]

    split = calibration.split_frames(opts.calib, opts.calib_count, opts.eval_images,
                                     opts.eval_labels, opts.eval_count, convert=convert)
    calib = LabelledFrames([t for t, _ in split.calib.frames],
                           [g for _, g in split.calib.frames], None, split.calib.source)
    held_all = LabelledFrames.load(split.held.frames, meta.input, split.held.source,
                                   split.truths)
    parts = int8_search.split_held(held_all)
    pre = q8.preprocess(req.fp32, req.workdir)
    ref = run_labels(req.fp32, parts.selection, meta)
    ref_s = parts.selection.score(ref, meta.classes, opts.ignore_index)
    return Int8Run(req, pre, calib, parts, ref, ref_s.miou if ref_s else None,
                   time.monotonic() + opts.int8_time_limit, held_all.source)


def calibrate_step(run: Int8Run) -> tuple[q8.Quantizer, Path, dict[str, Any]]:
    """The user's method on every calibration frame, then the fully quantized graph."""
    ranges, info = run.ranges(run.calib, run.opts.calib_method)
    quantizer = q8.Quantizer.open(run.pre, ranges, run.opts.int8_target,
                                  run.opts.calib_method)
    return quantizer, quantizer.quantize(run.req.workdir / "int8_full.onnx"), info


def speed_first(run: Int8Run, full: Path) -> str | None:
    """INT8 vs FP32/bf16 on the measured runtime *before* the long search (a short probe)."""
    try:
        sec = speed_section(run.req.fp32, full, run.calib.tensors[0], run.req.meta,
                            run.opts.int8_target, budget_s=0.5)
    except Exception:  # noqa: BLE001 - a probe: the final speed section says it again
        return None
    if sec.get("warning"):
        _say(run, f"warning: {sec['warning']} (measured before the INT8 search)")
    return sec.get("warning")


def search_step(run: Int8Run, quantizer: q8.Quantizer, full: Path, info: dict[str, Any],
                budget: Budget) -> tuple[q8.Quantizer, Path, dict[str, Any], bool,
                                         list[dict[str, Any]]]:
    """Default budget only: method x frame count x per-channel, first meeting the budget."""
    per_channel = True
    left = max(0.0, run.deadline - time.monotonic())
    limit = min(int8_search.SEARCH_S, left * SHARES["calibration search"])

    def build(c: int8_search.Candidate) -> tuple[q8.Quantizer, Path, dict[str, Any]]:
        from segedge.export.precision.steps import BoundReached

        frames = _subset(run.calib, c.frames)
        tick = _strict(Step("calibration search", len(frames), "frame",
                            limit_s=max(0.0, limit - (time.monotonic() - started)),
                            quiet=True))
        try:
            ranges_c, info_c = _ranges_strict(run, frames, c.method, tick)
        except tick.escape:  # type: ignore[attr-defined]
            raise BoundReached("calibration search") from None
        qz = q8.Quantizer.open(run.pre, ranges_c, run.opts.int8_target,
                               c.method, per_channel=c.per_channel)  # type: ignore[arg-type]
        name = f"int8_full_{c.method}_{c.frames}_{'pc' if c.per_channel else 'pt'}.onnx"
        return qz, qz.quantize(run.req.workdir / name), info_c

    started = time.monotonic()
    first = int8_search.Candidate(run.opts.calib_method, len(run.calib), True)
    chosen, built, searched = int8_search.search(
        first, run.measure(full), budget, build, lambda b: run.measure(b[1]), limit_s=limit)
    run.steps.append({"step": "calibration search", "seconds":
                      round(time.monotonic() - started, 2), "bound_s": round(limit, 1),
                      "candidates": len(searched)})
    if built is not None:
        quantizer, full, info = built
        per_channel = chosen.per_channel
    return quantizer, full, info, per_channel, searched


def _ranges_strict(run: Int8Run, frames: LabelledFrames, method: str, tick: Any
                   ) -> tuple[Path, dict[str, Any]]:
    """Ranges for a search candidate: memo / cache first; a pass is dropped whole at the
    bound (tick raises its escape through calibrate_bounded)."""
    import onnxruntime

    key = calibration.cache_key(run.pre.read_bytes(), frames.tensors, method=method,
                                target=run.opts.int8_target, ort=onnxruntime.__version__)
    if key not in run.memo:
        cache = run.opts.calib_cache or run.req.out.with_suffix(".calib.json")
        out = run.req.workdir / f"ranges_{len(run.memo)}.json"
        start = time.perf_counter()
        hit = calibration.load_cache(cache, key, out)
        if not hit:
            got = q8.calibrate_bounded(run.pre, frames.tensors, run.req.meta.input.name,
                                       method, run.req.workdir, tick)  # type: ignore[arg-type]
            q8.write_ranges(got.data, out)
            calibration.save_cache(cache, key, out, {"method": method, "frames": len(frames),
                                                     "source": frames.source})
        run.memo[key] = (out, {"method": method, "frames": len(frames),
                               "source": frames.source, "cache": str(cache),
                               "cache_hit": hit,
                               "seconds": round(time.perf_counter() - start, 2)})
        return run.memo[key]
    path, info = run.memo[key]
    return path, {**info, "reused_in_run": True}


def fallback_step(run: Int8Run, full: Path, budget: Budget) -> tuple[SearchResult,
                                                                      list[points.Point]]:
    """Sensitivity per unit (a compute layer's points together, points.units), then the
    smallest most-sensitive set kept in float (fragile units measured first, so a bound
    still leaves them ranked)."""
    qmodel, pre = onnx.load(str(full)), onnx.load(str(run.pre))
    found = points.find(qmodel, pre)
    grouped = points.units(found, compute_nodes(qmodel))
    groups = {u.name: u.points for u in grouped}
    fragile = {u.name for u in grouped if u.fragile}
    order = [u for u in groups if u in fragile] + [u for u in groups if u not in fragile]
    every = {p.name for p in found}
    work = run.req.workdir

    def save(model: onnx.ModelProto, path: Path) -> Path:
        onnx.save(model, str(path))
        return path

    def only(unit: str) -> Path:
        return save(points.keep_float(qmodel, pre, every - set(groups[unit])),
                    work / "int8_one.onnx")

    def excluding(kept: tuple[str, ...]) -> Path:
        names = [p for unit in kept for p in groups[unit]]
        return save(points.keep_float(qmodel, pre, names), work / f"int8_kept_{len(kept)}.onnx")

    full_m = run.measure(full)
    rank = run.step("INT8 sensitivity", len(order), "point")
    keep: Step | None = None

    def keep_tick() -> None:
        nonlocal keep
        if keep is None:  # ranking is over: its own figures, then the keep-k clock
            run.steps.append(rank.info())
            keep = run.step("keep-in-float search", None, "trial").__enter__()
        keep.tick()

    def rank_tick() -> None:
        try:
            rank.tick()
        except BoundReached:
            rank.stopped = True
            raise

    with rank:
        result = search(full, full_m, budget, order, only=only, excluding=excluding,
                        measure=run.measure, agreement_of=run.agreement_of, tick=rank_tick,
                        keep_tick=keep_tick)
    if keep is not None:
        keep.stopped = any("stopped" in t for t in result.trials)
        keep.__exit__(None, None, None)
        run.steps.append(keep.info())
    elif rank.done:
        run.steps.append(rank.info())
    return result, found


def _interval(got: list[np.ndarray], ref: list[np.ndarray]) -> dict[str, Any]:
    """Per-frame agreement spread and a 95 % interval of the mean (normal approximation);
    how many frames a +-HALF_WIDTH point interval needs at this spread."""
    per = np.array([agreement([g], [r]) for g, r in zip(got, ref, strict=True)])
    n = len(per)
    sd = float(per.std(ddof=1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n) if n > 1 else float("nan")
    need = math.ceil((1.96 * sd / HALF_WIDTH) ** 2) if sd > 0 else n
    return {"frames": n, "per_frame_mean": round(float(per.mean()), 3),
            "per_frame_sd": round(sd, 3), "per_frame_min": round(float(per.min()), 3),
            "ci95": [round(float(per.mean()) - half, 3), round(float(per.mean()) + half, 3)]
            if n > 1 else None,
            "frames_for_half_point": need, "enough": n >= need}


def lower_int8(req: LowerRequest) -> Lowered:
    """Quantize, choosing on the held-out selection frames, reporting on the report frames."""
    with PeakRSS() as peak:
        lowered = _lower(req)
    lowered.section["resources"] = {**peak.info(), "steps": lowered.section.pop("_steps")}
    return lowered


def _lower(req: LowerRequest) -> Lowered:
    run = open_run(req)
    opts = run.opts
    quantizer, full, calib_info = calibrate_step(run)
    slow = speed_first(run, full)
    budget = Budget(opts.max_miou_drop, opts.int8_min_agreement)
    user_set = opts.max_miou_drop is not None or opts.int8_min_agreement is not None
    searched: list[dict[str, Any]] = []
    per_channel = True
    if not user_set:  # with a user budget the user's calibration stands
        quantizer, full, calib_info, per_channel, searched = search_step(
            run, quantizer, full, calib_info, budget)
    found, pts = fallback_step(run, full, budget)
    return finish(run, quantizer, found, pts, calib_info, per_channel, searched, budget,
                  user_set, slow)


def finish(run: Int8Run, quantizer: q8.Quantizer, found: SearchResult,
           pts: list[points.Point], calib_info: dict[str, Any], per_channel: bool,
           searched: list[dict[str, Any]], budget: Budget, user_set: bool,
           slow: str | None) -> Lowered:
    """Metadata, the report-frame measurement (headline = gate), keep-closest on a miss."""
    req, opts, meta, fp32 = run.req, run.opts, run.req.meta, run.req.fp32
    rep, parts = run.parts.report, run.parts
    kinds = {p.name: p for p in pts}
    model = onnx.load(str(found.path))
    units = {u.name: u for u in points.units(pts, compute_nodes(model))}
    kept_pts = [n for u in found.kept_fp32 for n in (units[u].points if u in units else (u,))]
    layers = {"int8": len(q8.int8_layers(model)), "total": len(compute_nodes(model))}
    new_meta = meta.with_changes(precision="int8", opset=onnx_tools.opset_of(model), extra={
        **meta.extra, "int8": {"target": opts.int8_target, "calibration": quantizer.method,
                               "calibration_frames": calib_info["frames"],
                               "per_channel": per_channel,
                               "kept_fp32": list(found.kept_fp32)}})
    onnx_tools.set_metadata(model, new_meta)
    model = onnx_tools.check(model)
    path = req.workdir / "int8.onnx"
    onnx.save(model, str(path))
    rep_ref = run_labels(fp32, rep, meta) if parts.split else run.ref
    got = run_labels(path, rep, meta)
    section = _common(fp32, path, rep, meta, "int8",
                      rep.score(rep_ref, meta.classes, opts.ignore_index),
                      rep.score(got, meta.classes, opts.ignore_index))
    rule = budget.describe(parts.selection.truths is not None)
    section.update(
        target=opts.int8_target, argmax_agreement=agreement(got, rep_ref),
        agreement_spread=_interval(got, rep_ref),
        budget={"rule": rule, "met": found.met, "user_set": user_set},
        kept_fp32=list(found.kept_fp32), per_channel=per_channel,
        kept_points=[{"point": n, "kind": kinds[n].kind} for n in kept_pts if n in kinds],
        layers=layers,
        points={"total": len(pts), "activation": sum(p.kind == "activation" for p in pts),
                "weight": sum(p.kind == "weight" for p in pts),
                "fragile": [p.name for p in pts if p.fragile]},
        quantized_layers=len(q8.quantized_layers(model)),
        calibration={**calib_info, "searched": searched,
                     "search_space": "method x frame count x per-channel" if not user_set
                     else "none (a user budget keeps the user's calibration)"},
        sensitivity=[{"layer": n, "changed_pixels_percent": s,
                      **({"kind": units[n].kind} if n in units else
                         {"kind": kinds[n].kind} if n in kinds else {}),
                      **({"points": list(units[n].points)}
                         if n in units and units[n].kind == "layer" else {}),
                      **({"measured": False} if s < 0 else {})} for n, s in found.ranking],
        trials=list(found.trials), speed_warning_before_search=slow,
        _steps=run.steps)
    checked = per_runtime(fp32, path, rep, meta, opts.ignore_index, "int8")
    section["runtimes"] = checked
    section["held_out"] = {"frames": parts.total, "source": run.held_source,
                           "disjoint_from_calibration": True, **parts.describe(),
                           "selection_measure": found.measure.to_dict(),
                           "miou_drop": {rt: e["miou"]["drop"] for rt, e in checked.items()
                                         if "miou" in e}}
    # the gate reads the figures the headline shows: the report frames, on every runtime
    failure = runtime_failure(
        checked, lambda e: budget.met(Measure(
            e["argmax_agreement"], e["miou"]["int8"] if "miou" in e else None,
            e["miou"]["fp32"] if "miou" in e else None)), rule,
        "INT8 budget (report frames)" if parts.split else "INT8 budget", len(rep))
    if failure is None and not found.met:
        failure = (f"INT8 budget: expected {rule}, got agreement {found.measure.agreement:.3f}%"
                   + (f", mIoU drop {found.measure.miou_drop:.3f}"
                      if found.measure.miou_drop is not None else "")
                   + f" on the selection frames with {len(kept_pts)} of {len(pts)} "
                     f"point(s) kept in float ({_tried(found)})")
    if failure is None and layers["int8"] == 0:  # every layer in float is not an INT8 model
        failure = (f"INT8 budget: expected {rule} with at least one compute layer in INT8, got "
                   f"0 of {layers['total']}: nothing could be quantized within the budget "
                   f"({len(kept_pts)} of {len(pts)} point(s) had to stay in float; relax the "
                   "budget or export --fp16)")
    section["budget"]["met"] = failure is None
    section["speed"] = speed_section(fp32, path, rep.tensors[0], meta, opts.int8_target)
    if failure is not None and opts.int8_keep_closest:
        closest = missed_path(req.out)
        tmp = closest.with_name(closest.name + ".tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(closest)
        section["closest_artifact"] = str(closest)
        failure += f"; closest kept as {closest} (it missed the budget)"
    return Lowered(path, new_meta, section, failure)


def missed_path(out: Path) -> Path:
    """Where --int8-keep-closest writes a miss: a name that cannot pass for the artifact."""
    return out.with_name(f"{out.stem}.missed-budget{out.suffix}")


def _tried(found: SearchResult) -> str:
    sets = [t for t in found.trials if "kept_fp32" in t]
    stopped = any("stopped" in t for t in found.trials)
    unmeasured = sum(1 for _, s in found.ranking if s < 0)
    return (f"tried {len(sets)} set(s) of the {len(found.ranking)} ranked unit(s)"
            + (f", {unmeasured} not measured" if unmeasured else "")
            + (", stopped by the time bound" if stopped else ""))
