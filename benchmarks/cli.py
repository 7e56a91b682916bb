"""`segbench`: latency (with its tail), throughput, memory and accuracy, on this machine.

The CLI only parses: plans come from `defaults` or from the arguments, the
run from `suite`, the files from `report` and `plots`.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from segedge.runtime.cli_support import run_cli, version_option
from segedge.runtime.errors import DegradedRunError, InputError

DEFAULT_WORKDIR = Path.home() / ".cache" / "segedge" / "bench"


def split_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """`--backends a,b --backends c` -> (a, b, c), order kept, duplicates dropped."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item and item not in out:
                out.append(item)
    return tuple(out)


def _bench_rows() -> tuple[str, ...]:
    from segedge.benchmarks.backends import default_rows

    return default_rows()


def build_config(models: tuple[str, ...], o: dict[str, Any], command: str) -> Any:
    from segedge.benchmarks import backends
    from segedge.benchmarks.cells import PRECISIONS
    from segedge.benchmarks.defaults import default_set
    from segedge.benchmarks.e2e import E2EPlan
    from segedge.benchmarks.plan import DEFAULT_BACKENDS, ModelPlan
    from segedge.benchmarks.suite import SuiteConfig

    threads = o["threads"] or os.cpu_count() or 1
    workdir = o["workdir"] or DEFAULT_WORKDIR
    if o["default"]:
        if models:
            raise InputError("MODEL_OR_ARTIFACT", "no models with --default", " ".join(models))
        cfg = default_set(workdir, threads, command, not o["no_isolate"], not o["quiet"],
                          o["fresh"], data=o["data"])
        if o["settle"]:
            cfg = replace(cfg, settle_s=o["settle"], settle_budget_s=8 * o["settle"])
        return cfg
    if not models:
        raise InputError("MODEL_OR_ARTIFACT", "one or more zoo names or artifacts, or --default",
                         "none")
    if o["data"] is not None:
        raise InputError("--data", "--default as well (it names the default set's data)",
                         f"--data {o['data']} alone")
    chosen = split_list(o["backends"]) or DEFAULT_BACKENDS
    for name in chosen:
        backends.get(name)
    precisions = split_list(o["precisions"]) or PRECISIONS
    for p in precisions:
        if p not in PRECISIONS:
            raise InputError("--precisions", f"names from {', '.join(PRECISIONS)}", repr(p))
    if (o["images"] is None) != (o["labels"] is None):
        raise InputError("--images/--labels", "both (labelled images for mIoU) or neither",
                         "only one")
    for flag in ("iters", "warmup"):
        if o[flag] < (1 if flag == "iters" else 0):
            raise InputError(f"--{flag}", "a positive number" if flag == "iters"
                             else "zero or more", o[flag])
    if o["max_seconds"] is not None and not o["max_seconds"] > 0:  # NaN too
        raise InputError("--max-seconds", "a positive number of seconds", o["max_seconds"])
    sizes = tuple(tuple(s) for s in o["imgsz"]) or (None,)
    video = str(o["video"]) if o["video"] else None
    common = dict(weights=o["weights"], checkpoint=str(o["checkpoint"]) if o["checkpoint"]
                  else None, num_classes=o["num_classes"])
    plans = tuple(ModelPlan(
        m, sizes=sizes, batches=tuple(o["batch"]) or (1,), backends=chosen,
        precisions=precisions, eval_images=o["images"], eval_labels=o["labels"],
        calib=o["calib"] or video, iters=o["iters"], warmup=o["warmup"],
        max_seconds=o["max_seconds"], **common) for m in models)  # type: ignore[arg-type]
    e2e = ()
    if video is not None:
        for m in models:
            if ModelPlan(m).is_artifact:
                click.echo(f"segbench: end-to-end mode needs a zoo model (it exports the plain "
                           f"loop's logits graph of the same network); not run for {m}", err=True)
        e2e = tuple(E2EPlan(m, video, threads, imgsz=sizes[0], frames=o["e2e_frames"],
                            repeats=o["e2e_repeats"], **common)  # type: ignore[arg-type]
                    for m in models if not ModelPlan(m).is_artifact)
    return SuiteConfig(plans=plans, e2e=e2e, threads=threads, frame_source=video,
                       workdir=workdir, isolated=not o["no_isolate"], fresh=o["fresh"],
                       progress=not o["quiet"], command=command, settle_s=o["settle"],
                       settle_budget_s=8 * o["settle"])


def print_summary(result: Any) -> None:
    from segedge.benchmarks.report import HEADLINE_HEADER, headline_rows

    rows = headline_rows(result.records)
    if rows:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADLINE_HEADER)]
        click.echo("  ".join(h.ljust(w) for h, w in zip(HEADLINE_HEADER, widths, strict=True)))
        for r in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    for s in result.e2e:
        click.echo(f"end to end {s['model']} on {Path(s['video']).name}: segrun "
                   f"{s['fps_median']['segrun']:.2f} FPS = {s['segrun_vs_model_only']:.3f} of "
                   f"model-only ({s['fps_median']['model-only']:.2f}), "
                   f"{s['segrun_vs_plain']:.2f}x the plain loop "
                   f"({s['fps_median']['plain-loop']:.2f}); ceiling "
                   f"{s.get('ceiling_vs_model_only')}; {s.get('backend')} "
                   f"{s.get('precision')} - targets {'met' if s['meets_targets'] else 'NOT met'}")
    skipped = [r for r in result.records if not r.ok]
    if skipped:
        click.echo(f"{len(skipped)} cell(s) skipped or failed (reasons in the JSON/Markdown); "
                   "first: " + "; ".join(f"{r.backend} {r.precision}: {r.reason}"
                                         for r in skipped[:3]))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@version_option("segbench")
@click.argument("models", nargs=-1, metavar="MODEL_OR_ARTIFACT...")
@click.option("--default", "default", is_flag=True,
              help="The default set (what benchmarks/RESULTS.md shows).")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --default: the data folder holding video/solidWhiteRight.mp4 (e.g. "
                   "../shared/data); without it the cells that need that video are skipped.")
@click.option("--backends", multiple=True, metavar="A,B",
              help=f"{', '.join(_bench_rows())} [all]: baselines, each runtime "
                   "backend's rows (its descriptor), peers.")
@click.option("--precisions", multiple=True, metavar="A,B",
              help="fp32, fp16, bf16 (OpenVINO), int8 [all].")
@click.option("--imgsz", type=int, nargs=2, multiple=True, metavar="H W",
              help="Input size (repeat for several) [the model's own].")
@click.option("--batch", type=int, multiple=True, help="Batch size (repeat for several) [1].")
@click.option("--iters", type=int, default=100, show_default=True, help="Timed iterations.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed iterations.")
@click.option("--max-seconds", type=float,
              help="Stop a cell's timing after this many seconds (> 0; >= 10 iters).")
@click.option("--threads", type=int,
              help="CPU threads for segedge, PyTorch and OpenVINO rows [all cores]; the plain "
                   "loop keeps ONNX Runtime's default.")
@click.option("--settle", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Shared machines: wait up to this long before each measurement for the CPUs "
                   "to be 85 percent idle (8x this in all); the default set uses 15.")
@click.option("--video", type=click.Path(exists=True, dir_okay=False),
              help="End-to-end mode on this file (segrun vs model-only vs plain loop); also the "
                   "frame cells are timed on and the default int8 calibration source.")
@click.option("--e2e-frames", type=int, help="End to end: at most this many frames [all].")
@click.option("--e2e-repeats", type=int, default=1, show_default=True,
              help="End to end: interleaved repeats (medians are reported).")
@click.option("--images", type=click.Path(exists=True), help="Labelled images for mIoU.")
@click.option("--labels", type=click.Path(exists=True, file_okay=False),
              help="Label PNGs named like --images.")
@click.option("--ignore-index", type=int, default=255, show_default=True)
@click.option("--calib", help="INT8 calibration frames (folder, glob or video) [--video].")
@click.option("--weights", type=click.Choice(["auto", "random", "pretrained"]), default="auto",
              show_default=True, help="Zoo weights.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--num-classes", type=int)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write records here.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path))
@click.option("--markdown", "md_path", type=click.Path(path_type=Path))
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for latency.png, ladder.png, stages.png.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help=f"Exports and generated data [{DEFAULT_WORKDIR}].")
@click.option("--fresh", is_flag=True, help="Re-export even when a cached artifact exists.")
@click.option("--no-isolate", is_flag=True,
              help="Measure in this process (faster start; peak memory then covers the run).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--streams", type=int, metavar="N",
              help="Several streams in one segrun: N copies of the dash-cam clip (--data DIR) "
                   "or --video through one run, against one stream's model-only throughput; "
                   "writes --json/--markdown [WORKDIR/streams.json, .md].")
def segbench(models: tuple[str, ...], **o: Any) -> None:
    """Benchmark MODEL_OR_ARTIFACT... (zoo names, .onnx or .plan) on this machine."""
    from segedge.benchmarks import plots, report
    from segedge.benchmarks.suite import Suite

    logging.basicConfig(level=logging.ERROR, format="segbench: %(message)s")
    obj = click.get_current_context().obj or {}
    command = obj.get("command") or "segbench " + shlex.join(sys.argv[1:])
    start = time.perf_counter()
    if o["json_path"] is not None:  # before any measuring: an unwritable --json is one line
        from segedge.runtime.io import check_writable

        check_writable(o["json_path"], "--json")
    if o["streams"] is not None:
        streams_bench(models, o)
        return
    cfg = build_config(models, o, command)
    result = Suite(cfg, log=lambda m: None if o["quiet"] else click.echo(m, err=True)).run()
    made: dict[str, str] = {}
    notes: dict[str, str] = {}
    if o["plot_dir"] is not None:
        made, notes = plots.write_plots(result.records, result.e2e, o["plot_dir"])
    if o["json_path"] is not None:
        report.write_json(result, o["json_path"])
    if o["csv_path"] is not None:
        report.write_csv(result.records, o["csv_path"], result.environment)
    if o["md_path"] is not None:
        report.write_markdown(result, o["md_path"], made, notes)
    print_summary(result)
    click.echo(f"segbench: {len(result.records)} records in {time.perf_counter() - start:.0f} s",
               err=True)
    nothing_measured(result.records)


def streams_bench(models: tuple[str, ...], o: dict[str, Any]) -> None:
    """`segbench --streams N`: the multi-stream benchmark (benchmarks/bench_streams.py)."""
    from segedge.benchmarks import env, report
    from segedge.benchmarks.artifacts import ArtifactStore
    from segedge.benchmarks.bench_streams import run_streams, summary_lines
    from segedge.benchmarks.defaults import E2E_MODEL, STREAMS_REPEATS, streams_plan
    from segedge.runtime.io import check_writable

    if len(models) > 1 or o["default"]:
        raise InputError("MODEL", "at most one zoo name with --streams (and no --default)",
                         " ".join(models) or "--default")
    threads = o["threads"] or os.cpu_count() or 1
    workdir = o["workdir"] or DEFAULT_WORKDIR
    json_path = o["json_path"] or workdir / "streams.json"
    md_path = o["md_path"] or workdir / "streams.md"
    check_writable(md_path, "--markdown")
    given = click.get_current_context().get_parameter_source("e2e_repeats")
    repeats = (o["e2e_repeats"] if given is not click.core.ParameterSource.DEFAULT
               else STREAMS_REPEATS)
    plan = streams_plan(o["data"], threads, video=str(o["video"]) if o["video"] else None,
                        model=models[0] if models else E2E_MODEL, frames=o["e2e_frames"],
                        repeats=repeats, streams=o["streams"])
    if o["imgsz"]:
        plan = replace(plan, imgsz=tuple(o["imgsz"][0]))
    say = (lambda m: None) if o["quiet"] else (lambda m: click.echo(m, err=True))
    start = time.perf_counter()
    environment = env.environment(threads)
    settle = ((lambda: env.wait_for_idle(0.85, o["settle"])[0]) if o["settle"]
              else (lambda: None))
    summary = run_streams(plan, ArtifactStore(workdir / "artifacts", say, o["fresh"]),
                          not o["no_isolate"], say, settle)
    environment = env.finish(environment, time.perf_counter() - start)
    for path in report.write_streams(summary, environment, json_path, md_path):
        click.echo(f"segbench: wrote {path}", err=True)
    for line in summary_lines(summary):
        click.echo(line)


def nothing_measured(records: list[Any]) -> None:
    """A run none of whose cells measured anything did not do what was asked: exit 4
    (runtime.cli_support), one line, after its files were written."""
    if any(r.ok for r in records):
        return
    first = next((f"{r.backend} {r.precision}: {r.reason}" for r in records if r.reason), "")
    raise DegradedRunError(f"every one of the {len(records)} cell(s) failed or was skipped"
                           + (f" (first: {first})" if first else ""))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    run_cli("segbench", segbench, args, obj={"command": "segbench " + shlex.join(args)})


if __name__ == "__main__":
    main()
