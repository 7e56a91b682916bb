"""INT8: static Q/DQ quantization (precision/int8.py) calibrated on --calib frames.

The only calibrated mode: it needs calibration frames and keeps layers in FP32
until its accuracy budget (--max-miou-drop / --int8-min-agreement) holds.  Its
lowering is a sequence of named steps (``INT8.lower``): calibrate, the speed probe,
the calibration search, sensitivity and keep-in-float (modes/int8_steps.py, the
speed verdict in modes/int8_speed.py), then the artifact and its report
(modes/int8_finish.py).  This file stays free of torch / onnxruntime imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from segedge.export.precision.modes.base import LowerRequest, PrecisionMode
from segedge.runtime import precisions
from segedge.runtime.errors import InputError

if TYPE_CHECKING:
    from segedge.export.config import PrecisionOptions
    from segedge.export.precision.modes.base import Lowered

Int8Target = str  # a name in runtime/precisions.INT8_TARGETS
CalibMethod = Literal["minmax", "entropy", "percentile"]
# The Q/DQ flavours (precision/int8.py) are runtime/precisions' INT8 targets, in its order;
# the ones TensorRT cannot build (not symmetric) run on a CPU, whose speed is measured here.
INT8_TARGETS: tuple[Int8Target, ...] = tuple(t.name for t in precisions.INT8_TARGETS)
CPU_TARGETS: tuple[Int8Target, ...] = tuple(t.name for t in precisions.INT8_TARGETS
                                            if not t.symmetric)
CALIB_METHODS: tuple[CalibMethod, ...] = ("minmax", "entropy", "percentile")
SHOWN = 8  # kept layers named in the summary line (the report lists them all)


class INT8(PrecisionMode):
    name = "int8"
    flag_help = ("Static INT8 (Q/DQ ONNX) calibrated on --calib, kept within the accuracy "
                 "budget (--max-miou-drop / --int8-min-agreement).")

    def validate(self, opts: PrecisionOptions) -> None:
        if not opts.calib:
            raise InputError("--int8", "--calib DIR|VIDEO|GLOB (calibration frames)", "none")
        if opts.int8_stop_if_slower is False and opts.int8_target not in CPU_TARGETS:
            raise InputError("--int8-even-if-slower", "--int8-target " + " or ".join(
                CPU_TARGETS) + " (the INT8 speed stop is for a CPU target)",
                f"--int8-target {opts.int8_target}")

    def ungated(self, opts: PrecisionOptions) -> PrecisionOptions:
        return self._open(opts, int8_min_agreement=0.0, max_miou_drop=None)

    def lower(self, req: LowerRequest) -> Lowered:
        """Quantize, choosing on the held-out selection frames, reporting on the report
        frames; the peak resident memory during all of it goes into the report."""
        from segedge.export.precision.memory import PeakRSS

        with PeakRSS() as peak:
            lowered = self._steps(req)
        lowered.section["resources"] = {**peak.info(), "steps": lowered.section.pop("_steps")}
        return lowered

    def _steps(self, req: LowerRequest) -> Lowered:
        """The named steps in order (each looked up on its module: tests replace one)."""
        from segedge.export.precision.modes import int8_finish, int8_speed, int8_steps
        from segedge.export.precision.sensitivity import Budget

        run = int8_steps.open_run(req)
        opts = run.opts
        quantizer, full, calib_info = int8_steps.calibrate_step(run)
        slow = int8_speed.speed_first(run, full)  # may stop a CPU target here
        budget = Budget(opts.max_miou_drop, opts.int8_min_agreement)
        user_set = opts.max_miou_drop is not None or opts.int8_min_agreement is not None
        searched: list[dict[str, Any]] = []
        per_channel = True
        if not user_set:  # with a user budget the user's calibration stands
            quantizer, full, calib_info, per_channel, searched = int8_steps.search_step(
                run, quantizer, full, calib_info, budget)
        found, pts = int8_steps.fallback_step(run, full, budget)
        return int8_finish.finish(run, quantizer, found, pts, calib_info, per_channel,
                                  searched, budget, user_set, slow)

    def report_lines(self, section: dict[str, Any]) -> list[str]:
        lines = super().report_lines(section)
        held = section.get("held_out") or {}
        if held.get("split"):
            lines.append(f"held-out frames: {held['selection']['frames']} chose the calibration "
                         f"and the layers kept, {held['report']['frames']} others measured the "
                         "drop above")
        elif held.get("note"):
            lines.append(f"note: {held['note']}")
        calib = section.get("calibration") or {}
        if len(calib.get("searched") or []) > 1:
            lines.append(f"calibration searched ({len(calib['searched'])} tried): "
                         f"{calib['method']}, {calib['frames']} frames, per-channel "
                         f"{'on' if section.get('per_channel', True) else 'off'}")
        searched_on = section.get("search_runtimes") or {}
        if searched_on.get("left_out"):  # measured on fewer runtimes than the gate checks
            lines.append("INT8 budget searched on " + ", ".join(searched_on["measured_on"])
                         + " only: " + "; ".join(f"{rt} left out ({why})" for rt, why in
                                                 searched_on["left_out"].items()))
        lines.extend(fragile_lines(section.get("fragile_seed")))
        kept = section.get("kept_fp32") or []
        if kept:
            layers = section.get("layers") or {}
            shown = ", ".join(kept[:SHOWN]) + (f" and {len(kept) - SHOWN} more" if
                                               len(kept) > SHOWN else "")
            counts = f"{layers['int8']} of {layers['total']} layers INT8; " if layers else ""
            lines.append(f"kept in fp32 to meet the budget ({section['budget']['rule']}): "
                         f"{counts}{shown}")
        spread = section.get("agreement_spread")
        if spread and spread.get("ci95"):
            lo, hi = spread["ci95"]
            lines.append(f"agreement per frame: 95% interval {lo:.2f}-{hi:.2f}% over "
                         f"{spread['frames']} report frames (sd {spread['per_frame_sd']:.2f})"
                         + ("" if spread["enough"] else
                            f"; {spread['frames_for_half_point']} frames would pin it to "
                            "+-0.5 point: give more --eval-images"))
        res = section.get("resources")
        if res and res.get("peak_rss_mb") is not None:
            lines.append(f"int8 peak memory {res['peak_rss_mb']:.0f} MB resident (process "
                         f"high-water {res['process_max_rss_mb']:.0f} MB)")
        speed = section.get("speed")
        if speed:
            nums = speed["latency_ms"][speed["backend"]]
            lines.append(f"int8 speed on {speed['backend']}: " + ", ".join(
                f"{k} {v:.1f} ms" for k, v in nums.items())
                + f" (x{speed['int8_speedup_vs_fp32']:.2f} vs fp32)")
            if speed.get("warning"):
                lines.append(f"warning: {speed['warning']}")
        return lines


def fragile_lines(seed: dict[str, Any] | None) -> list[str]:
    """What measuring the fragile units together decided (sensitivity.seed_fragile)."""
    if not seed or "recovered_share" not in seed:
        return []
    units = seed["units"]
    shown = ", ".join(units[:SHOWN]) + (f" and {len(units) - SHOWN} more" if
                                        len(units) > SHOWN else "")
    full, kept = seed["full"], seed["fragile_in_float"]
    figures = (f"agreement {full['agreement']:.2f}% all INT8, {kept['agreement']:.2f}% with "
               f"them in float, {seed['recovered_share']:.0%} of the loss won back")
    if seed["seeded"]:
        return [f"started in float (they collapse in INT8): {shown} ({figures})"]
    return [f"fragile units quantized like the others (measured: {figures}; needed "
            f"{seed['needed_share']:.0%})"]
