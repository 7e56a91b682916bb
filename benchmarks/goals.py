"""Issue 22's goals, measured side by side in one run (interleaved repeats, fresh processes).

On one default artifact (``segexport MODEL --imgsz H W``: no precision flags) and one video:

* (a) ``segrun`` whole-process FPS (``--backend auto``, ``--mode auto``: throughput for a
  file; and ``--mode latency`` next to it) against OpenVINO used directly in its default
  latency configuration (``compile_model(.., {"PERFORMANCE_HINT": "LATENCY"})``, its own
  default precision, one synchronous request), model only;
* (b) N streams in one run (auto: throughput) aggregate FPS against one stream's
  model-only throughput (the backend segrun picked, one call after another), and the
  same streams in latency mode;
* (c) a live synthetic camera (``synthetic://?live=1``, latency mode): capture-to-output
  p50/p90 against the model-only time per frame, and where the p50 goes (frame age,
  preprocess, queue, inference, handoff, postprocess, sinks);
* the ceilings of (a) and (b) on this CPU (``--ceiling``, on by default): one stream's CPU
  ms per frame outside the model (decode, preprocess, postprocess + draw, encode) and the
  model's best throughput (one call at a time, throughput mode, a batched artifact when
  given), measured in one process: the most frames per second these cores can give with
  every core busy.  The ceiling is measured in every repeat, between the runs it bounds,
  and each bound is that repeat's ceiling FPS over the same repeat's denominator
  (OpenVINO direct for (a), model-only for (b)), as the goals themselves are: a ceiling
  measured at another time, against another process's model-only figure, differs by
  however much the machine's load moved in between.  Next to it, segrun's own process
  CPU per frame over its run (``RunStats.cpu_ms_per_frame``) less the model's: what the
  pipeline really spends outside the model, against the sum of the parts.

Every measurement runs in its own spawned process, in the same order each repeat, so a
load spike from elsewhere hits all of them alike; the load average is recorded around
each.  The result is a markdown section, replaced in place in RESULTS.md / STREAMS.md
between markers (the rest of those files is segbench's)."""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from segedge.benchmarks import isolate
from segedge.benchmarks.bench_streams import StreamsJob
from segedge.benchmarks.bench_streams import measure as measure_streams
from segedge.benchmarks.ceiling import COSTS, CeilingJob, ceiling_of, measure_ceiling
from segedge.benchmarks.e2e import resolve_backend
from segedge.benchmarks.env import cpu_features, cpu_model, load_average
from segedge.benchmarks.measure import (
    DirectJob,
    LiveJob,
    ModesJob,
    SegrunJob,
    measure_backend_modes,
    measure_live,
    measure_openvino_direct,
    measure_segrun,
)
from segedge.benchmarks.stats import known_median, median, ratio

TARGET_DEFAULT_VS_DIRECT = 1.0
TARGET_STREAMS_VS_MODEL = 1.15
TARGET_LIVE_VS_MODEL = 1.5
BEGIN, END = "<!-- issue-22-goals:begin -->", "<!-- issue-22-goals:end -->"
MODES_BEGIN, MODES_END = "<!-- issue-22-modes:begin -->", "<!-- issue-22-modes:end -->"


@dataclass(frozen=True)
class GoalsPlan:
    artifact: str
    video: str
    threads: int
    repeats: int = 3
    frames: int = 120  # segrun frames per run (per stream for the streams runs)
    streams: int = 4
    live_seconds: float = 8.0
    live_fps: float = 30.0
    batched: str | None = None  # the same model exported with a static batch (the ceiling)
    ceiling: bool = True  # measure the ceilings in every repeat


def _jobs(plan: GoalsPlan, tmp: str) -> dict[str, tuple[Callable[[Any], dict[str, Any]], Any]]:
    seg = dict(artifact=plan.artifact, video=plan.video, threads=plan.threads,
               max_frames=plan.frames)
    streams = dict(artifact=plan.artifact, video=plan.video, streams=plan.streams,
                   threads=plan.threads, backend="auto", frames=plan.frames // 2,
                   model_frames=40, wait_ms=4.0, workdir=tmp)
    return {
        "openvino-direct": (measure_openvino_direct, DirectJob(plan.artifact, plan.video)),
        "model-only": (measure_streams, StreamsJob(kind="model-only", **streams)),
        "segrun": (measure_segrun, SegrunJob(output=f"{tmp}/a.mp4", **seg)),
        "segrun-latency": (measure_segrun, SegrunJob(output=f"{tmp}/b.mp4", mode="latency",
                                                     **seg)),
        "streams": (measure_streams, StreamsJob(kind="streams-unbatched", **streams)),
        "streams-latency": (measure_streams, StreamsJob(kind="streams-latency", **streams)),
        "live": (measure_live, LiveJob(plan.artifact, (960, 540), plan.live_fps,
                                       int(plan.live_seconds * plan.live_fps), plan.threads)),
        **({"ceiling": (measure_ceiling, CeilingJob(plan.artifact, plan.video, plan.threads,
                                                    backend="auto",
                                                    batched_artifact=plan.batched))}
           if plan.ceiling else {}),
    }


def run_goals(plan: GoalsPlan, tick: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    chosen = resolve_backend(Path(plan.artifact), "auto", plan.threads)  # probe once, cached
    runs: dict[str, list[dict[str, Any]]] = {}
    loads: list[Any] = [load_average()]
    with tempfile.TemporaryDirectory(prefix="segbench-goals-") as tmp:
        jobs = _jobs(plan, tmp)
        for rep in range(plan.repeats):
            for name, (fn, job) in jobs.items():
                tick(f"{name} #{rep + 1}")
                runs.setdefault(name, []).append(isolate.call(fn, job))
                loads.append(load_average())
    return summarize(plan, runs, chosen.reason, loads)


def ceiling_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The ceilings of every repeat: the median of each per-frame cost (what RESULTS.md
    lists) and, per repeat, the ceiling's FPS over that repeat's own denominators (the
    bounds: medians over repeats), how much of it segrun and the streams reached, and
    their CPU per frame outside the model against the parts' sum."""
    found = runs["ceiling"]
    costs: dict[str, Any] = {"cores": found[-1]["cores"], "provider": found[-1]["provider"],
                             "throughput_slots": found[-1].get("throughput_slots")}
    for key in COSTS:
        if all(key in r for r in found):
            costs[key] = [round(median([float(r[key][i]) for r in found]), 2) for i in (0, 1)]
    per: list[dict[str, float | None]] = []
    for i, c in enumerate(found):
        one = ceiling_of({k: v for k, v in c.items() if k != "model_batched"})  # one file
        several = ceiling_of(c)
        seg, streams = runs["segrun"][i], runs["streams"][i]
        per.append({
            "a_fps": one["ceiling_fps"], "b_fps": several["ceiling_fps"],
            "a_bound": ratio(one["ceiling_fps"], float(runs["openvino-direct"][i]["fps"])),
            "b_bound": ratio(several["ceiling_fps"], float(runs["model-only"][i]["fps"])),
            "segrun_of_ceiling": ratio(float(seg["fps"]), one["ceiling_fps"]),
            "streams_of_ceiling": ratio(float(streams["fps"]), several["ceiling_fps"]),
            "parts_cpu_ms": one["other_cpu_ms"],
            "segrun_outside_cpu_ms": _outside(seg, c),
            "streams_outside_cpu_ms": _outside(streams, c)})
    bounds = {key: _rounded(known_median([p[key] for p in per])) for key in per[0]}
    return {"costs": costs, **ceiling_of(costs), "bounds": bounds, "per_repeat": per}


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _outside(run: dict[str, Any], costs: dict[str, Any]) -> float | None:
    """A run's process CPU per frame (over the run) less the model's in the run's mode."""
    cpu = run.get("run_cpu_ms_per_frame")
    model = costs.get(f"model_{run.get('mode') or 'throughput'}")
    if cpu is None or model is None:
        return None
    return round(float(cpu) - float(model[0]), 2)


def ceiling_line(c: dict[str, Any], streams: int) -> str:
    """The ceiling as RESULTS.md / STREAMS.md say it."""
    k, b = c["costs"], c["bounds"]
    parts = ", ".join(f"{name.replace('_', ' + ' if name == 'postprocess_draw' else ' ')} "
                      f"{k[name][0]}" for name in COSTS[:4])
    models = "; ".join(f"{name.replace('model_', '')} {k[name][1]} ms wall / {k[name][0]} "
                       "ms CPU" for name in COSTS[4:] if name in k)
    return (f"- (b) ceiling on this CPU ({k['cores']} cores, {k['provider']}): outside the "
            f"model a stream costs {c['other_cpu_ms']} CPU ms per frame ({parts}); the model "
            f"per frame: {models} (best: {c['best_model'].replace('model_', '')}, "
            f"{c['best_model_vs_model_only']}x one call at a time).  With every core busy "
            f"and nothing idle, {streams} streams reach at most {b['b_fps']} FPS = "
            f"**{b['b_bound']}x** one stream's model-only (each repeat's ceiling over the same "
            f"repeat's model-only run; median): min(best model FPS, cores x 1000 / (model "
            f"CPU + {c['other_cpu_ms']}) ms).  The streams reached {b['streams_of_ceiling']} "
            f"of it, spending {b['streams_outside_cpu_ms']} CPU ms per frame outside the "
            "model (the whole process over the run less the model's)")


def ceiling_a_line(s: dict[str, Any]) -> str:
    """Goal (a)'s ceiling: one file through segrun pays the same per-frame costs as a stream,
    and the model in its best one-file configuration (no batched artifact)."""
    b = s["ceiling"]["bounds"]
    return (f"- (a) ceiling on this CPU: one file pays the same {b['parts_cpu_ms']} CPU ms "
            f"per frame outside the model: at most {b['a_fps']} FPS = **{b['a_bound']}x** "
            "OpenVINO direct (each repeat's ceiling over the same repeat's OpenVINO direct; "
            f"median).  segrun reached {b['segrun_of_ceiling']} of it, spending "
            f"{b['segrun_outside_cpu_ms']} CPU ms per frame outside the model (the whole "
            "process over the run less the model's; the parts alone: "
            f"{b['parts_cpu_ms']} ms)")


def summarize(plan: GoalsPlan, runs: dict[str, list[dict[str, Any]]], reason: str,
              loads: list[Any]) -> dict[str, Any]:
    ceiling = ceiling_summary(runs) if runs.get("ceiling") else None
    runs = {k: v for k, v in runs.items() if k != "ceiling"}
    fps = {k: [float(r["fps"]) for r in v] for k, v in runs.items()}
    med = {k: round(median(v), 3) for k, v in fps.items()}
    live = runs["live"]
    p50s = [float(r["capture_to_output_ms"].get("p50_ms") or 0) for r in live]
    p90s = [float(r["capture_to_output_ms"].get("p90_ms") or 0) for r in live]
    model_ms = 1000.0 / med["model-only"] if med["model-only"] else None
    live_p50 = round(median(p50s), 2)
    parts = [r.get("capture_breakdown_ms") or {} for r in live]
    breakdown = {name: round(median([float(p[name]["p50_ms"]) for p in parts]), 2)
                 for name in (parts[0] if parts and all(parts) else {})}
    per_repeat = [{
        "segrun_vs_direct": ratio(s, d), "streams_vs_model": ratio(m4, m),
        "live_p50_vs_model": ratio(p, 1000.0 / m) if m else None}
        for s, d, m4, m, p in zip(fps["segrun"], fps["openvino-direct"], fps["streams"],
                                  fps["model-only"], p50s, strict=True)]
    return {
        "artifact": plan.artifact, "video": plan.video, "threads": plan.threads,
        "repeats": plan.repeats, "frames": plan.frames, "streams": plan.streams,
        "cpu": f"{cpu_model()} ({', '.join(cpu_features()) or 'no AVX-512 BF16/AMX/VNNI'})",
        "auto_choice": reason,
        "segrun_backends": sorted({str(r.get("backend_reason")) for r in runs["segrun"]}),
        "segrun_modes": {k: runs[k][-1].get("mode") for k in ("segrun", "segrun-latency")},
        "direct_precision": runs["openvino-direct"][-1].get("precision"),
        "fps_runs": fps, "fps_median": med,
        "segrun_vs_direct": ratio(med["segrun"], med["openvino-direct"]),
        "segrun_latency_vs_direct": ratio(med["segrun-latency"], med["openvino-direct"]),
        "model_only_vs_direct": ratio(med["model-only"], med["openvino-direct"]),
        "streams_vs_model": ratio(med["streams"], med["model-only"]),
        "streams_latency_vs_model": ratio(med["streams-latency"], med["model-only"]),
        "live_p50_ms": live_p50, "live_p90_ms": round(median(p90s), 2),
        "live_infer_p50_ms": median([float(r["infer_p50_ms"] or 0) for r in live]),
        "live_frames": [r["frames"] for r in live], "live_mode": live[-1]["mode"],
        "live_dropped": [r.get("dropped") for r in live], "live_breakdown_p50_ms": breakdown,
        "model_only_ms": round(model_ms, 2) if model_ms else None,
        "live_p50_vs_model": ratio(live_p50, model_ms),
        "per_repeat": per_repeat, "load_average": loads,
        **({"ceiling": ceiling} if ceiling else {}),
        "targets": {"segrun_vs_direct": TARGET_DEFAULT_VS_DIRECT,
                    "streams_vs_model": TARGET_STREAMS_VS_MODEL,
                    "live_p50_vs_model": TARGET_LIVE_VS_MODEL},
    }


def _met(value: float | None, target: float, above: bool = True) -> str:
    if value is None:
        return "not measured"
    return "met" if (value >= target if above else value <= target) else "NOT met"


def markdown(s: dict[str, Any]) -> str:
    med, runs = s["fps_median"], s["fps_runs"]
    t = s["targets"]

    def row(key: str, what: str) -> str:
        return (f"| {key} | {what} | {med[key]:.2f} | "
                f"{', '.join(f'{v:.2f}' for v in runs[key])} |")

    return "\n".join([
        BEGIN,
        "## Fast by default: default export, throughput and live latency (issue 22)",
        "",
        f"- CPU: {s['cpu']}; {s['threads']} threads; {s['repeats']} interleaved repeats, each "
        "measurement in a fresh process; load average (1, 5, 15 min) before the first and "
        f"after each measurement: {s['load_average']}",
        f"- Artifact: `{Path(s['artifact']).name}` (default `segexport`, no precision flags); "
        f"video `{Path(s['video']).name}`, {s['frames']} frames per segrun run; "
        f"auto chose: {s['auto_choice']}",
        f"- OpenVINO used directly (LATENCY hint, its default precision "
        f"{s['direct_precision']}, one synchronous request)",
        "- Reproduce: `segexport lraspp_mobilenet_v3_large --imgsz 544 960 -o lraspp.onnx`, "
        "then `python -m segedge.benchmarks.goals lraspp.onnx --video "
        "../shared/data/video/solidWhiteRight.mp4 --results benchmarks/RESULTS.md --results "
        "benchmarks/STREAMS.md` (`--backend-modes`: the backends-alone section)",
        "",
        "| run | what | FPS (median) | runs |", "|---|---|---|---|",
        row("openvino-direct", "OpenVINO directly, default latency configuration, model only"),
        row("model-only", "the backend segrun picked, one call after another, model only"),
        row("segrun", f"segrun (auto: {s['segrun_modes']['segrun']} mode), decode to "
            "overlay video"),
        row("segrun-latency", "the same with --mode latency"),
        row("streams", f"{s['streams']} streams in one run (auto: throughput), overlay "
            "video each, aggregate"),
        row("streams-latency", "the same with --mode latency"),
        "",
        f"- (a) default export + segrun / OpenVINO direct: **{s['segrun_vs_direct']}** "
        f"(target {t['segrun_vs_direct']}: {_met(s['segrun_vs_direct'], t['segrun_vs_direct'])}"
        f"); latency mode {s['segrun_latency_vs_direct']}; segrun's backend alone "
        f"{s['model_only_vs_direct']}",
        f"- (b) {s['streams']} streams aggregate / one stream's model-only: "
        f"**{s['streams_vs_model']}** (target {t['streams_vs_model']}: "
        f"{_met(s['streams_vs_model'], t['streams_vs_model'])}); latency mode "
        f"{s['streams_latency_vs_model']}",
        *([ceiling_line(s["ceiling"], s["streams"]), ceiling_a_line(s)]
          if s.get("ceiling") else []),
        f"- (c) live synthetic camera ({s['live_mode']} mode, frames "
        f"{s['live_frames']}): capture-to-output p50 {s['live_p50_ms']} ms, p90 "
        f"{s['live_p90_ms']} ms; model-only {s['model_only_ms']} ms per frame (the run's own "
        f"inference p50 {s['live_infer_p50_ms']} ms): p50 / model = "
        f"**{s['live_p50_vs_model']}** (target <= {t['live_p50_vs_model']}: "
        f"{_met(s['live_p50_vs_model'], t['live_p50_vs_model'], above=False)})",
        *([f"- (c) where the live p50 goes (median over repeats of each part's p50, ms; the "
           f"parts' p50s need not add up to the total's): {s['live_breakdown_p50_ms']}; "
           f"frames dropped by the newest-frame capture: {s.get('live_dropped')}"]
          if s.get("live_breakdown_p50_ms") else []),
        f"- Per repeat: {s['per_repeat']}",
        "- On a busy machine (load average above the core count) a process with more "
        "runnable threads (segrun's stages, several streams) gets a larger share of the cores "
        "than a loop making one call at a time, so these ratios lean towards segrun there; "
        "the absolute FPS are far below an idle machine's (see the headline table).",
        "",
        END,
    ])


def modes_markdown(found: dict[str, Any], job: ModesJob) -> str:
    """The backends alone, latency against throughput mode, as a section of its own."""
    fps, flight = found["fps_runs"], found["in_flight"]
    med = {k: median(v) for k, v in fps.items()}
    lines = [MODES_BEGIN, "## Backends alone: latency mode against throughput mode (issue 22)",
             "", f"- CPU: {cpu_model()} ({', '.join(cpu_features())}); {job.threads} threads "
             "in all per backend; "
             f"`{Path(job.artifact).name}`; {job.rounds} interleaved rounds of {job.frames} "
             f"calls in one process; 1-min load average {found['load1']}", "",
             "| backend and mode | runs as | calls in flight | FPS (median) | rounds |",
             "|---|---|---|---|---|"]
    for key, runs in fps.items():
        lines.append(f"| {key} | {found['active'][key]} | {flight[key]} | {med[key]:.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in runs)} |")
    for name in ("onnxruntime", "openvino"):
        lines.append(f"- {name}: throughput / latency mode = "
                     f"{ratio(med[f'{name} throughput'], med[f'{name} latency'])}")
    return "\n".join([*lines, "", MODES_END])


def replace_section(path: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Put ``section`` between the markers in ``path`` (appended the first time)."""
    text = path.read_text() if path.is_file() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@click.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False))
@click.option("--video", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--frames", type=int, default=120, show_default=True)
@click.option("--results", "results", multiple=True, type=click.Path(dir_okay=False),
              help="Markdown files to put the section in (RESULTS.md, STREAMS.md).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
@click.option("--backend-modes", is_flag=True,
              help="Only the backends alone in latency and throughput mode.")
@click.option("--ceiling/--no-ceiling", default=True, show_default=True,
              help="Measure the ceilings of (a) and (b) on this CPU in every repeat (per-frame "
              "costs, best model).")
@click.option("--batched", type=click.Path(exists=True, dir_okay=False),
              help="The same model exported with --batch N: its throughput joins the ceiling.")
def main(artifact: str, video: str, threads: int, repeats: int, frames: int,
         results: tuple[str, ...], json_path: str | None, backend_modes: bool,
         ceiling: bool, batched: str | None) -> None:
    """Measure issue 22's goals on ARTIFACT (a default segexport of the model)."""
    if backend_modes:
        job = ModesJob(artifact, video, threads, rounds=repeats)
        section = modes_markdown(isolate.call(measure_backend_modes, job), job)
        for path in results:
            replace_section(Path(path), section, MODES_BEGIN, MODES_END)
        click.echo(section)
        return
    start = time.perf_counter()
    plan = GoalsPlan(artifact, video, threads, repeats, frames, batched=batched,
                     ceiling=ceiling)
    tick = lambda what: click.echo(f"segbench goals: {what}", err=True)  # noqa: E731
    summary = run_goals(plan, tick=tick)
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2))
    section = markdown(summary)
    for path in results:
        replace_section(Path(path), section)
    click.echo(section)


if __name__ == "__main__":
    main()
