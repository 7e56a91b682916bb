"""JSON, CSV and Markdown from one run's records (all written atomically).

The Markdown is what `benchmarks/RESULTS.md` is: the regenerate command and
the machine first, then the headline with ratios against both baselines,
the end-to-end check, the precision ladder, every cell, and every skip with
its reason.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segedge.benchmarks.cells import PEER_TOLERANCE, PLAIN_BASELINE, PYTORCH_BASELINE, Record
from segedge.benchmarks.suite import SuiteResult
from segedge.runtime.io import write_text_atomic

CSV_FIELDS = ("model", "backend", "precision", "imgsz", "batch", "kind", "status", "reason",
              "p50_ms", "p90_ms", "p99_ms", "max_ms", "min_ms", "mean_ms", "std_ms", "fps",
              "iters", "warmup", "threads", "provider", "model_size_bytes", "export_s",
              "export_cached", "load_s", "peak_rss_mib", "rss_before_load_mib", "gpu_mem_mib",
              "load1", "idle_before", "cpu_ms_per_iter", "weights", "agreement_vs_fp32", "miou",
              "pixel_accuracy", "vs_pytorch", "pytorch_threads", "vs_plain", "plain_threads",
              "vs_peer", "peer_threads", "artifact")
# Every results file names the machine: these columns repeat it on each CSV row.
CSV_MACHINE = ("cpu_model", "openvino", "onnxruntime", "torch")


def write_json(result: SuiteResult, path: Path) -> Path:
    return write_text_atomic(Path(path), json.dumps(result.to_dict(), indent=2, default=str)
                             + "\n")


def write_csv(records: Sequence[Record], path: Path,
              environment: dict[str, Any] | None = None) -> Path:
    envd = environment or {}
    libs = envd.get("libraries", {})
    machine = {"cpu_model": envd.get("cpu", {}).get("model", ""),
               **{k: libs.get(k, "") for k in CSV_MACHINE[1:]}}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=(*CSV_FIELDS, *CSV_MACHINE), extrasaction="ignore")
    writer.writeheader()
    for rec in records:
        row = rec.to_dict()
        row["imgsz"] = "x".join(map(str, rec.imgsz)) if rec.imgsz else ""
        writer.writerow({**row, **machine})
    return write_text_atomic(Path(path), buf.getvalue())


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _xt(value: float | None, baseline_threads: int | None, threads: int | None) -> str:
    """A ratio with the thread counts of both sides: '1.85x (2t vs 2t)', baseline first."""
    if value is None:
        return "–"
    return f"{value:.2f}x ({_t(baseline_threads)} vs {_t(threads)})"


def _t(threads: int | None) -> str:
    return "?t" if threads is None else f"{threads}t"


def _size(rec: Record) -> str:
    return "x".join(map(str, rec.imgsz)) if rec.imgsz else "–"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def environment_lines(envd: dict[str, Any]) -> list[str]:
    cpu = envd.get("cpu", {})
    libs = envd.get("libraries", {})
    gpus = envd.get("gpus") or []
    lines = [
        f"- Machine: `{envd.get('host', '?')}`, {envd.get('os', '')}, Python "
        f"{envd.get('python', '')}; measured {envd.get('timestamp', '')}",
        f"- CPU: {cpu.get('model', '?')}, {cpu.get('usable_cores', cpu.get('logical_cores'))} "
        f"usable cores ({cpu.get('physical_cores', '?')} physical), "
        f"{cpu.get('memory_gib', '?')} GiB RAM; segedge rows use {envd.get('threads')} threads",
        "- CPU features that decide the CPU rows: "
        + (", ".join(cpu.get("features") or []) or "none of " + "/".join(("avx512_bf16",
                                                                          "amx", "vnni"))),
        f"- Load average (1, 5, 15 min): {envd.get('load_average_start')} at start, "
        f"{envd.get('load_average_end')} at end (the end value includes this run); share of "
        f"the CPUs idle just before the run {_pct(envd.get('cpu_idle_start'))} and just after "
        f"it {_pct(envd.get('cpu_idle_end'))}",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items()),
        f"- ONNX Runtime providers: {', '.join(envd.get('onnxruntime_providers', []))}",
    ]
    if gpus:
        lines += [f"- GPU: {g.get('name')} (driver {g.get('driver_version')}, SM clock "
                  f"{g.get('clocks.sm')}, memory clock {g.get('clocks.mem')})" for g in gpus]
    else:
        lines.append("- GPU: none (GPU rows are skipped with their reason below)")
    if envd.get("jetson"):
        lines.append(f"- Jetson: {envd['jetson']}")
    lines.append(f"- Whole run: {envd.get('wall_s')} s")
    return lines


def _median_of(summary: dict[str, Any], key: str) -> float | None:
    values = sorted(r[key] for r in summary.get("per_repeat", []) if r.get(key) is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _idle_note(summary: dict[str, Any]) -> str:
    idle = [v for v in summary.get("idle_before", []) if v is not None]
    if not idle:
        return ""
    return "; share of CPUs idle before each measurement: " + ", ".join(_pct(v) for v in idle)


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.0f}%"


def quiet_line(result: SuiteResult) -> str:
    """How quiet the machine was when each measurement started (from --settle samples)."""
    idle = [r.idle_before for r in result.records if r.idle_before is not None]
    for summary in result.e2e:
        idle += [v for v in summary.get("idle_before", []) if v is not None]
    if not idle:
        return "- Other work on the machine: not sampled (run with `--settle` to sample it)"
    busy = sum(1 for v in idle if v < 0.8)
    verdict = "every one started on idle CPUs" if not busy else \
        f"{busy} of {len(idle)} started while other work held over 20% of the CPUs (noisy)"
    mid = sorted(idle)[len(idle) // 2]
    return (f"- Other work on the machine: share of the CPUs idle just before each of the "
            f"{len(idle)} measurements: min {_pct(min(idle))}, median {_pct(mid)}; {verdict}")


def headline_rows(records: Sequence[Record]) -> list[list[str]]:
    rows = []
    for r in records:
        if r.ok and r.kind == "model" and r.batch == 1:
            rows.append([r.model, _size(r), r.backend, r.precision, _t(r.threads),
                         _f(r.p50_ms, 2), _f(r.p99_ms, 2), _f(r.fps),
                         _xt(r.vs_pytorch, r.pytorch_threads, r.threads),
                         _xt(r.vs_plain, r.plain_threads, r.threads),
                         _xt(r.vs_peer, r.peer_threads, r.threads),
                         _f(r.agreement_vs_fp32, 2), _f(r.miou, 2)])
    return rows


HEADLINE_HEADER = ("model", "input", "backend", "precision", "threads", "p50 ms", "p99 ms",
                   "FPS", "vs PyTorch", "vs plain loop", "vs OpenVINO direct",
                   "agreement vs fp32 %", "mIoU %")


def peer_lines(records: Sequence[Record]) -> list[str]:
    """segedge's OpenVINO rows against OpenVINO used directly (the 5 % bound)."""
    rows = [r for r in records if r.ok and r.kind == "model" and r.vs_peer is not None]
    if not rows:
        return []
    lines = [f"segedge's OpenVINO backend must be within {PEER_TOLERANCE:.0%} of OpenVINO used "
             "directly (same artifact, tensor, precision and threads): ratio = direct p50 / "
             "segedge p50, both timed interleaved in one process (the `openvino-direct` rows "
             "were timed on their own, a little apart).", ""]
    lines += _table(("model", "input", "batch", "precision", "segedge p50 ms", "ratio",
                     "within 5 %"),
                    [[r.model, _size(r), str(r.batch), r.precision, _f(r.p50_ms, 2),
                      _xt(r.vs_peer, r.peer_threads, r.threads),
                      "yes" if (r.vs_peer or 0) >= 1 - PEER_TOLERANCE else "NO"]
                     for r in rows])
    return [*lines, ""]


def e2e_lines(summaries: Sequence[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for s in summaries:
        med, tgt = s["fps_median"], s["targets"]
        h, w = s["imgsz"]
        lines += [
            f"**{s['model']}** at {h}x{w} on `{Path(s['video']).name}` "
            f"({s['frames']} frames, {s['threads']} threads, median of {s['repeats']} "
            f"interleaved repeat(s)); `segrun --backend auto` ran "
            f"`{s.get('backend', '?')}` {s.get('precision', '')}: "
            f"{s.get('backend_reason', '?')}", "",
            *_table(("measurement", "FPS (median)", "FPS per repeat", "ratio", "target"), [
                ["model only (runtime backend, 1 frame)", _f(med["model-only"], 2),
                 ", ".join(_f(v, 2) for v in s["fps_runs"]["model-only"]), "–", "–"],
                [f"segrun (decode → overlay video; "
                 f"{(s.get('segrun_modes') or {}).get('segrun', '?')} mode)", _f(med["segrun"], 2),
                 ", ".join(_f(v, 2) for v in s["fps_runs"]["segrun"]),
                 f"{_f(s['segrun_vs_model_only'], 3)} of model-only",
                 f">= {tgt['segrun_vs_model_only']}"],
                *([["segrun --mode latency (one inference call at a time)",
                    _f(med["segrun-latency"], 2),
                    ", ".join(_f(v, 2) for v in s["fps_runs"]["segrun-latency"]),
                    f"{_f(s.get('segrun_latency_vs_model_only'), 3)} of model-only; "
                    f"throughput mode is {_x(s.get('throughput_vs_latency'))}", "–"]]
                  if "segrun-latency" in med else []),
                [f"plain loop (ONNX Runtime default, {_t(s.get('plain_threads'))}; one "
                 "Python thread)", _f(med["plain-loop"], 2),
                 ", ".join(_f(v, 2) for v in s["fps_runs"]["plain-loop"]),
                 f"segrun is {_x(s['segrun_vs_plain'])}", f">= {tgt['segrun_vs_plain']}x"],
            ]), "",
            f"Ratios of the medians above; the medians of the per-repeat ratios are "
            f"{_f(_median_of(s, 'segrun_vs_model_only'), 3)} and "
            f"{_f(_median_of(s, 'segrun_vs_plain'), 2)}x.", "",
            f"Physical ceiling of segrun / model-only on this CPU: "
            f"{_f(s.get('ceiling_vs_model_only'), 3)} (segrun's CPU ms per frame spread over "
            f"every core, against the model's wall ms per frame). Real time: segrun "
            f"{_f(med['segrun'], 1)} FPS against >= {tgt.get('segrun_fps', '–')}.", "",
            *_live_lines(s.get("live"), tgt),
            f"Targets {'met' if s['meets_targets'] else 'NOT met'}; dropped frames "
            f"{s['dropped']}; 1-min load at each repeat: {s['load1']}{_idle_note(s)}.", "",
            "Per-stage mean ms per frame (segrun's stages run concurrently on their own "
            "threads, so they overlap; the plain loop's add up):", "",
        ]
        stages = s["stages_mean_ms"]
        names = list(stages["segrun"]) + [n for n in stages["plain-loop"]
                                          if n not in stages["segrun"]]
        cpu = s.get("cpu_ms_per_frame", {})
        lines += _table(("run", *names, "wall ms/frame", "CPU ms/frame (all threads)"), [
            [run, *[_f(stages[run].get(n), 1) for n in names],
             _f(s["wall_per_frame_ms"][run], 1), _f(cpu.get(run), 1)]
            for run in ("segrun", "plain-loop")])
        if cpu.get("model-only") is not None:
            lines += ["", f"Model only: {_f(s['wall_per_frame_ms']['model-only'], 1)} ms wall "
                          f"and {_f(cpu['model-only'], 1)} ms CPU per frame."]
        lines.append("")
    return lines


def _live_lines(live: dict[str, Any] | None, tgt: dict[str, Any]) -> list[str]:
    """The end-to-end latency row of a live synthetic source."""
    if not live:
        return []
    return [f"Live source (`{live.get('source')}`, {live.get('mode')} mode, frames "
            f"{live.get('frames')}): capture-to-output p50 {_f(live.get('p50_ms'), 1)} ms, p90 "
            f"{_f(live.get('p90_ms'), 1)} ms; model-only {_f(live.get('model_only_ms'), 1)} ms "
            f"per frame (the run's own inference p50 {_f(live.get('infer_p50_ms'), 1)} ms): "
            f"p50 / model = {_f(live.get('p50_vs_model'), 2)} (target <= "
            f"{tgt.get('live_p50_vs_model', '–')}).", ""]


def ladder_rows(records: Sequence[Record]) -> list[list[str]]:
    return [[r.model, _size(r), r.backend, r.precision, _f(r.p50_ms, 2), _f(r.p99_ms, 2),
             _f(r.miou, 2), _f(r.pixel_accuracy, 2), _f(r.agreement_vs_fp32, 2),
             _f((r.model_size_bytes or 0) / 1e6, 2)]
            for r in records if r.ok and r.miou is not None]


def matrix_rows(records: Sequence[Record]) -> list[list[str]]:
    rows = []
    for r in records:
        if not r.ok or r.kind != "model":
            continue
        rows.append([r.model, _size(r), str(r.batch), r.backend, r.precision, _f(r.p50_ms, 2),
                     _f(r.p90_ms, 2), _f(r.p99_ms, 2), _f(r.max_ms, 2), _f(r.mean_ms, 2),
                     _f(r.std_ms, 2), _f(r.fps), str(r.iters), _t(r.threads),
                     _xt(r.vs_pytorch, r.pytorch_threads, r.threads),
                     _xt(r.vs_plain, r.plain_threads, r.threads),
                     _xt(r.vs_peer, r.peer_threads, r.threads),
                     _f((r.model_size_bytes or 0) / 1e6, 2),
                     _f(r.export_s) + (" (cached)" if r.export_cached else ""),
                     _f(r.load_s, 2), _f(r.peak_rss_mib, 0), _f(r.gpu_mem_mib, 0),
                     _f(r.cpu_ms_per_iter, 1), _f(r.load1, 2),
                     "–" if r.idle_before is None else _pct(r.idle_before)])
    return rows


MATRIX_HEADER = ("model", "input", "batch", "backend", "precision", "p50", "p90", "p99", "max",
                 "mean", "std", "FPS", "iters", "threads", "vs PyTorch", "vs plain",
                 "vs OpenVINO direct", "size MB",
                 "export s", "load s", "peak RSS MiB", "GPU MiB", "CPU ms", "load1",
                 "idle before")


def markdown(result: SuiteResult, plots: dict[str, str], plot_notes: dict[str, str],
             md_path: Path | None = None) -> str:
    recs = result.records
    lines = ["# segedge benchmarks", "",
             "Regenerate on the machine you are on (the tables and plots below are its output):",
             "", "```", result.command or "segbench --default", "```", "",
             "## Where these numbers come from", "", *environment_lines(result.environment),
             quiet_line(result), "",
             "## Headline (batch 1, model only)", "",
             f"Latency is one network-sized frame to a label map. `{PYTORCH_BASELINE}` (segedge's "
             f"thread count) and `{PLAIN_BASELINE}` (ONNX Runtime's default threads) are the "
             "baselines, `openvino-direct` the peer of the `openvino-cpu` rows; the ratios are "
             "baseline p50 / row p50 (higher is faster), each with the thread counts of both "
             "sides (baseline first; `2t` = 2 threads).", "",
             *_table(HEADLINE_HEADER, headline_rows(recs)), "", *peer_lines(recs)]
    if result.e2e:
        lines += ["## End to end on a video", "", *e2e_lines(result.e2e)]
    ladder = ladder_rows(recs)
    lines += ["## Precision ladder (speed and accuracy together)", ""]
    if ladder:
        lines += _table(("model", "input", "backend", "precision", "p50 ms", "p99 ms", "mIoU %",
                         "pixel acc %", "agreement vs fp32 %", "size MB"), ladder)
    else:
        lines.append("No labelled images were given (`--images DIR --labels DIR`), so no "
                     "accuracy columns.")
    scored = sorted({f"{r.model}: {r.accuracy_note}" for r in recs
                     if r.accuracy_note and r.miou is not None})
    notes = sorted({f"{r.model} {r.backend}: {r.accuracy_note}" for r in recs
                    if r.accuracy_note and r.miou is None and r.ok})
    lines += ["", *[f"- scored on {n}" for n in scored],
              *[f"- accuracy not measured for {n}" for n in notes], ""]
    lines += ["## Every measured cell", "",
              "Milliseconds per batch; FPS counts images. No outlier clipping: p99 and max "
              "include every timed iteration.", "", *_table(MATRIX_HEADER, matrix_rows(recs)),
              ""]
    skipped = [r for r in recs if not r.ok]
    if skipped:
        lines += ["## Skipped or failed on this machine", "",
                  *_table(("model", "backend", "precision", "input", "batch", "status",
                           "reason"),
                          [[r.model, r.backend, r.precision, _size(r), str(r.batch), r.status,
                            r.reason.replace("|", "/")] for r in skipped]), ""]
    if plots or plot_notes:
        lines += ["## Plots", ""]
        base = md_path.parent if md_path is not None else Path.cwd()
        for title, path in plots.items():
            lines += [f"![{title}]({os.path.relpath(path, base)})", ""]
        lines += [f"- {title}: not drawn ({why})" for title, why in plot_notes.items()]
        lines.append("")
    lines += ["## Method", "",
              "- Each cell runs in a fresh process: load, warm-up iterations, then timed "
              "iterations (a per-cell time budget may stop it early, never below 10); peak RSS "
              "is that process's maximum resident set.",
              "- `ort-*` and `tensorrt` rows time the runtime backend's `infer` on the tensor "
              "`segedge.runtime.preprocess.prepare` makes (normalisation and argmax are baked "
              "into the graph). `pytorch-*` rows time uint8 frame → normalise → forward → "
              "argmax with segedge's thread count. `plain-ort` times numpy normalise → a "
              "default ONNX Runtime session (its default threads, counted) (logits) → numpy "
              "argmax.",
              "- `openvino-cpu` rows are segedge's OpenVINO backend with an explicit precision "
              "hint read back after compiling (bf16/fp16: the FP32 artifact with that hint; a "
              "CPU that does not honour it skips the row); int8 is the Q/DQ artifact. Their "
              "agreement is measured against the FP32 artifact on ONNX Runtime. "
              "`openvino-direct` is `Core().compile_model` on the same artifact with the same "
              "threads and hint, called on the same tensor.",
              "- `CPU ms` is CPU time of all the process's threads per iteration (about "
              "threads x wall when the cores were free; close to wall when another process held "
              "one). `idle before` is the share of the CPUs idle in the half second before timing "
              "started (`--settle` waits for a quiet gap on shared machines).",
              "- End-to-end rows: FPS is frames / wall time of the whole run; their p50/p99 are "
              "per-frame latency (segrun: capture to written frame, with frames in flight; "
              "plain loop: one loop iteration).",
              "- fp16/int8 artifacts are made by `segexport` (gates off: the benchmark measures "
              "accuracy instead); the agreement column is their argmax agreement with fp32 from "
              "the export's own check.", ""]
    return "\n".join(lines)


def write_markdown(result: SuiteResult, path: Path, plots: dict[str, str],
                   plot_notes: dict[str, str]) -> Path:
    return write_text_atomic(Path(path), markdown(result, plots, plot_notes, Path(path)))


def write_streams(summary: dict[str, Any], env: dict[str, Any], json_path: Path | None,
                  md_path: Path | None) -> list[Path]:
    """The multi-stream benchmark's files (bench_streams); both name the CPU (``env``)."""
    from segedge.benchmarks.bench_streams import markdown as streams_markdown

    written = []
    if json_path is not None:
        written.append(write_text_atomic(Path(json_path), json.dumps(
            {"environment": env, "streams": summary}, indent=2, sort_keys=True) + "\n"))
    if md_path is not None:
        written.append(write_text_atomic(Path(md_path), streams_markdown(summary, env)))
    return written
