"""How benchmarks/int8_budget.py writes its figures: INT8_BUDGET.md, the JSON beside it, and
the short section in RESULTS.md (between markers, replaced in place).  Fields a run did
not record are left out, never written as None."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GB = 4.0
MINUTES = 15.0
BEGIN, END = "<!-- issue-21-int8-budget:begin -->", "<!-- issue-21-int8-budget:end -->"


def _loaded(result: dict[str, Any]) -> bool:
    return max(result["load"]) > result["cores"]


def summary(result: dict[str, Any]) -> list[str]:
    """The lines both files share: machine, load, targets, steps, frames used of asked."""
    mem = result["memory"]
    ok_mem = (mem["peak_rss_mb"] or 0) < GB * 1024
    ok_time = result["seconds"] < MINUTES * 60
    cal = result.get("calibration") or {}
    asked = result["calib_count"]
    used = cal.get("frames")
    lines = [
        f"- CPU: {result['cpu']} ({result['cores']} logical cores usable); 1-min load average "
        f"{result['load'][0]} at the start, {result['load'][1]} at the end"
        + (" (ABOVE the core count: other work shared the CPU, times are upper bounds; "
           "provisional, re-run on a quiet machine)" if _loaded(result) else ""),
        f"- model: `{result['model']}` at {result['size'][1]}x{result['size'][0]}, weights "
        f"{result['weights']}, `--calib-count {asked}` "
        + (f"frames from `{result['calib']}`" if result.get("calib")
           else "(CamVid train frames)"),
        f"- calibration frames used: **{used} of {asked} asked**"
        + (f" ({cal['stopped']})" if cal.get("stopped") else "")
        + _calibration_parts(cal),
        f"- peak resident memory, whole export: {mem['peak_rss_mb']:.0f} MB "
        f"(target < {GB:.0f} GB: {'met' if ok_mem else 'MISSED'})",
        f"- wall time, whole export (FP32 export + verify + INT8): {result['seconds']:.0f} s "
        f"(target < {MINUTES:.0f} min: {'met' if ok_time else 'MISSED'})",
    ]
    res = result.get("int8_resources") or {}
    if res:
        steps = res.get("steps", [])
        in_steps = sum(float(s.get("seconds") or 0) for s in steps)
        lines.append(f"- INT8 steps: peak {res.get('peak_rss_mb')} MB resident; "
                     f"{in_steps:.0f} s in the bounded steps below, "
                     f"{result['seconds'] - in_steps:.0f} s in everything else (FP32 export, "
                     "verification, pre-processing, quantizing, report checks)")
        lines += [f"  - {step_line(step)}" for step in steps]
    runtimes = result.get("runtimes") or {}
    lines.append(f"- INT8 agreement with FP32 (report frames): {result.get('agreement')}"
                 + "".join(f", on {rt} {value}" for rt, value in runtimes.items())
                 + f"; budget {result.get('budget')}")
    if result.get("error"):
        lines.append(f"- export refused: {result['error'][:300]}")
    return lines


def _calibration_parts(cal: dict[str, Any]) -> str:
    """"; method, pass size, activation size": only the fields the calibration recorded (a
    streamed percentile calibration makes no passes, so it has no pass size)."""
    fields = (("method", "{}"), ("chunk_frames", "{} frame(s) a pass"),
              ("activation_mb_per_frame", "{} MB activations a frame"))
    parts = [form.format(cal[key]) for key, form in fields if cal.get(key) is not None]
    return f"; {', '.join(parts)}" if parts else ""


def step_line(step: dict[str, Any]) -> str:
    """One bounded INT8 step: time, units done (of a total where the step has one: the
    keep-in-float search does not know its trial count in advance), estimate, bound."""
    text = f"{step.get('step')}: {step.get('seconds')} s"
    if "done" in step:
        total = f" of {step['total']}" if step.get("total") is not None else ""
        per = (f", {step['seconds'] / step['done']:.2f} s a {step['units']}"
               if step.get("done") and step.get("seconds") is not None else "")
        text += f", {step['done']} {step['units']}(s){total}{per}"
    elif step.get("candidates") is not None:
        text += f", {step['candidates']} candidate(s)"
    if step.get("estimate_s") is not None:
        text += f", estimate {step['estimate_s']} s"
    if step.get("bound_s") is not None:
        text += f", bound {step['bound_s']} s"
    return text + (", stopped by the bound" if step.get("stopped_by_bound") else "")


def reproduce(result: dict[str, Any]) -> str:
    """The command line that measured these results, as given (older results did not record
    it: said so rather than guessed)."""
    command = result.get("command")
    return f"`{command}`" if command else "command line not recorded"


def profile_lines(profiles: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for p in profiles:
        pf = p["per_frame_s"]
        allf = p["all_frames"]
        d = allf["sampled_vs_exact"]
        lines += [
            f"- calibration per frame, `{p['model']}` (percentile, same "
            f"{pf['stream exact']['frames']} frames, one run, load {p['load_start']} -> "
            f"{p['load_end']}): ONNX Runtime's "
            f"HistogramCalibrater {pf['ort HistogramCalibrater']['median']} s (before), streamed "
            f"exact {pf['stream exact']['median']} s, streamed sampled "
            f"{pf['stream sampled']['median']} s (after, the default); exact vs ORT's ranges: "
            f"max {p['exact_vs_ort'].get('max_pct')} % apart",
            f"  - all {p['frames']} calibration frames, one network run each feeding both: "
            f"network {allf['per_frame_s']['network']} s, exact histograms "
            f"{allf['per_frame_s']['exact']} s, sampled ({allf['sample_per_tensor_frame']} "
            f"elements a tensor a frame) {allf['per_frame_s']['sampled']} s a frame; sampled vs "
            f"exact range over {d.get('tensors')} tensors: median {d.get('median_pct')} %, "
            f"p95 {d.get('p95_pct')} %, max {d.get('max_pct')} %, {d.get('over_1pct')} over 1 %",
        ]
    return lines


def write(result: dict[str, Any], path: Path, results_md: Path | None) -> None:
    head = summary(result) if not result.get("export_skipped") else [
        f"- CPU: {result['cpu']}; 1-min load average {result['load'][0]} at the start, "
        f"{result['load'][1]} at the end; export skipped (--skip-export): profile only"]
    lines = ["# INT8 export budget (benchmarks/int8_budget.py)", "", *head,
             *profile_lines(result.get("profiles") or []), "",
             f"Measured {result['date']}; reproduce: {reproduce(result)}; JSON: "
             f"{path.with_suffix('.json').name}.", ""]
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(result, indent=2))
    if results_md is not None:
        from segedge.benchmarks.goals import replace_section

        section = "\n".join([
            BEGIN, "## INT8 export at 1024x512 within 4 GB and 15 minutes (issue 21)", "",
            *summary(result), *profile_lines(result.get("profiles") or []),
            f"- Measured {result['date']}; reproduce: {reproduce(result)} (details: {path.name})",
            "", END])
        replace_section(results_md, section, BEGIN, END)
