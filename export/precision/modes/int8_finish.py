"""INT8's last step: the artifact and its report, measured on the report frames.

The kept-in-float set chosen by the search (modes/int8_steps.py) is written with its
metadata; the headline agreement, its per-frame spread and the gate are the same
figure, measured on the report frames on every runtime.  A miss is ``Lowered.failure``
(nothing published), with the closest artifact kept under a name that says it missed
when ``--int8-keep-closest`` asks for it.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from segedge.export.onnx import tools as onnx_tools
from segedge.export.precision import int8 as q8
from segedge.export.precision import points, runtimes
from segedge.export.precision.graph import compute_nodes
from segedge.export.precision.ladder import common_section, per_runtime, runtime_failure
from segedge.export.precision.modes.base import Lowered
from segedge.export.precision.modes.int8_speed import speed_section
from segedge.export.precision.modes.int8_steps import Int8Run
from segedge.export.precision.sensitivity import Budget, Measure, SearchResult
from segedge.export.verify.compare import agreement
from segedge.runtime.io import atomic_path

HALF_WIDTH = 0.5  # points: the agreement interval the default frame count aims at


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
    # the reference runtime's maps of the report frames, run once: the headline and the
    # gate (per_runtime's `known`) read the same ones (unsplit, they are the selection's)
    rep_ref = runtimes.run_labels(fp32, rep, meta) if parts.split else run.ref
    got = runtimes.run_labels(path, rep, meta)
    section = common_section(fp32, path, rep, meta, "int8",
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
        fragile_seed=found.fragile,
        search_runtimes=run.search_info(),
        _steps=run.steps)
    checked = per_runtime(fp32, path, rep, meta, opts.ignore_index, "int8",
                          known={runtimes.reference(): (rep_ref, got)})
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
                   + (f" less a {found.measure.margin:.3f}-point margin for unseen frames"
                      if found.measure.margin else "")
                   + (f", mIoU drop {found.measure.miou_drop:.3f}"
                      if found.measure.miou_drop is not None else "")
                   + f" on the selection frames with {len(kept_pts)} of {len(pts)} "
                     f"point(s) kept in float ({_tried(found)}{_on(run)})")
    if failure is None and layers["int8"] == 0:  # every layer in float is not an INT8 model
        failure = (f"INT8 budget: expected {rule} with at least one compute layer in INT8, got "
                   f"0 of {layers['total']}: nothing could be quantized within the budget "
                   f"({len(kept_pts)} of {len(pts)} point(s) had to stay in float; relax the "
                   "budget or export --fp16)")
    section["budget"]["met"] = failure is None
    # the reference runtime's figures are the ones common_section measured (one number)
    # ... and each runtime's compile probe is per_runtime's (an "error" entry: it failed)
    section["speed"] = speed_section(fp32, path, rep.tensors[0], meta, opts.int8_target,
                                     measured=section["cpu_latency_ms"],
                                     probed={rt: e.get("error") for rt, e in checked.items()})
    if failure is not None and opts.int8_keep_closest:
        closest = missed_path(req.out)
        with atomic_path(closest) as tmp:  # a failed copy leaves nothing behind
            shutil.copyfile(path, tmp)
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


def _on(run: Int8Run) -> str:
    """Which runtimes the selection figure is the worst of (nothing when only one)."""
    on = run.search_on or ()
    return f"; worst of {', '.join(on)}" if len(on) > 1 else ""
