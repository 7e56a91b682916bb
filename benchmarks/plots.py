"""PNG plots (matplotlib, Agg: no display needed): latency, precision ladder, stages.

Each plot is written atomically; a plot without data is not drawn and the
reason is returned instead, so the report can say why it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segedge.benchmarks.cells import Record
from segedge.runtime.io import atomic_path
from segedge.runtime.precisions import precisions

STAGE_COLOURS = {"decode": "#4c72b0", "preprocess": "#dd8452", "infer": "#55a868",
                 "postprocess": "#c44e52", "draw": "#8172b3", "encode": "#937860"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        _pyplot().close(fig)
    return str(path)


def _name(r: Record) -> str:
    size = "x".join(map(str, r.imgsz)) if r.imgsz else ""
    batch = f" b{r.batch}" if r.batch != 1 else ""
    return f"{r.model} {size}{batch} | {r.backend} {r.precision}"


def latency_plot(records: Sequence[Record], path: Path) -> str | None:
    rows = [r for r in records if r.ok and r.kind == "model" and r.p50_ms]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.4))
    ys = list(range(len(rows)))
    ax.barh([y + 0.2 for y in ys], [r.p99_ms for r in rows], height=0.4, color="#c44e52",
            label="p99")
    ax.barh([y - 0.2 for y in ys], [r.p50_ms for r in rows], height=0.4, color="#4c72b0",
            label="p50")
    ax.set_yticks(ys, [_name(r) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms per batch (log scale)")
    ax.set_title("Model-only latency: p50 and p99")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3, which="both")
    return _save(fig, path)


def ladder_plot(records: Sequence[Record], path: Path) -> str | None:
    rows = [r for r in records if r.ok and r.kind == "model" and r.miou is not None
            and r.p50_ms]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # one marker per precision, in registration order (fp32 o, fp16 s, bf16 D, int8 ^)
    markers = dict(zip((p.name for p in precisions()), "osD^v*", strict=False))
    for r in rows:
        ax.scatter(r.p50_ms, r.miou, marker=markers.get(r.precision, "o"), s=60)
        ax.annotate(f"{r.backend} {r.precision}", (r.p50_ms, r.miou), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms, log scale (lower is better)")
    ax.set_ylabel("mIoU % (higher is better)")
    ax.set_title("Precision ladder: latency vs mIoU (" +
                 ", ".join(sorted({r.model for r in rows})) + ")")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def stages_plot(summaries: Sequence[dict[str, Any]], path: Path) -> str | None:
    bars: list[tuple[str, dict[str, float], float | None]] = []
    for s in summaries:
        for run in ("segrun", "plain-loop"):
            stages = s["stages_mean_ms"].get(run) or {}
            if stages:
                bars.append((f"{s['model']}\n{run}", stages, s["wall_per_frame_ms"].get(run)))
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.0 * len(bars) + 1.5))
    for y, (_label, stages, wall) in enumerate(bars):
        left = 0.0
        for name, colour in STAGE_COLOURS.items():
            value = stages.get(name, 0.0)
            ax.barh(y, value, left=left, color=colour, label=name if y == 0 else None)
            left += value
        if wall:
            ax.plot([wall, wall], [y - 0.45, y + 0.45], color="black", linewidth=2,
                    label="wall ms per frame" if y == 0 else None)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mean ms per frame per stage (segrun's stages overlap in time)")
    ax.set_title("End to end: where the time goes")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4)
    return _save(fig, path)


def write_plots(records: Sequence[Record], summaries: Sequence[dict[str, Any]],
                folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(title -> written path, title -> why not drawn)."""
    folder = Path(folder)
    made: dict[str, str] = {}
    missing: dict[str, str] = {}
    for title, draw, why in (
        ("latency p50 and p99", lambda: latency_plot(records, folder / "latency.png"),
         "no measured cells"),
        ("latency vs mIoU", lambda: ladder_plot(records, folder / "ladder.png"),
         "no cell has an mIoU (give --images and --labels)"),
        ("end-to-end stages", lambda: stages_plot(summaries, folder / "stages.png"),
         "no end-to-end run (give --video)"),
    ):
        written = draw()
        if written:
            made[title] = written
        else:
            missing[title] = why
    return made, missing
