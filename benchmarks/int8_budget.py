"""INT8 export budget at 1024x512: peak resident memory and wall time (issue 21).

Target: with the default calibration count (``--calib-count 300``) an INT8 export of a
real-time road-scene network at 1024x512 stays under 4 GB resident and under 15
minutes on 2 cores.  Exports a zoo network (default ``ddrnet23_slim``, random weights
unless a checkpoint is given) to INT8 with CamVid calibration frames, samples the
process's resident set for the whole export, and writes the figures with the CPU model
to ``benchmarks/INT8_BUDGET.md`` (and the JSON beside it).

A benchmark, not a test: run it by hand (``python -m segedge.benchmarks.int8_budget``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"
GB = 4.0
MINUTES = 15.0


def measure(model: str, calib: Path, count: int, size: tuple[int, int],
            checkpoint: Path | None, time_limit: float) -> dict[str, Any]:
    from segedge.export.config import EngineOptions, ExportConfig, PrecisionOptions
    from segedge.export.pipeline import export
    from segedge.export.precision.memory import PeakRSS
    from segedge.runtime.errors import SegedgeError

    out_dir = Path(tempfile.mkdtemp(prefix="int8_budget_"))
    out = out_dir / f"{model}_int8.onnx"
    cfg = ExportConfig(
        model=model, checkpoint=checkpoint, weights="random" if checkpoint is None else "auto",
        imgsz=size, output=out, quiet=True, engine=EngineOptions(build=False),
        precision=PrecisionOptions(mode="int8", calib=str(calib), calib_count=count,
                                   int8_time_limit=time_limit, int8_keep_closest=True))
    start = time.monotonic()
    error = None
    with PeakRSS(interval_s=0.1) as peak:
        try:
            report = export(cfg)
        except SegedgeError as err:  # a missed budget still measured memory and time
            error = str(err)
            failed = out.with_suffix(".failed.report.json")
            report = json.loads(failed.read_text()) if failed.is_file() else {}
    seconds = time.monotonic() - start
    sec = report.get("precision_report") or {}
    return {"model": model, "size": list(size), "calib_count": count,
            "weights": str(checkpoint) if checkpoint else "random",
            "seconds": round(seconds, 1), "memory": peak.info(),
            "int8_resources": sec.get("resources"),
            "agreement": sec.get("argmax_agreement"), "budget": sec.get("budget"),
            "calibration": {k: v for k, v in (sec.get("calibration") or {}).items()
                            if k != "searched"},
            "error": error, "output": str(out_dir)}


def cpu_model() -> str:
    try:
        from segedge.benchmarks.env import cpu_model as env_cpu

        return env_cpu()
    except Exception:  # noqa: BLE001 - the benchmark still writes its figures
        return platform.processor() or "unknown"


def write(result: dict[str, Any], path: Path) -> None:
    mem = result["memory"]
    ok_mem = (mem["peak_rss_mb"] or 0) < GB * 1024
    ok_time = result["seconds"] < MINUTES * 60
    lines = [
        "# INT8 export budget (benchmarks/int8_budget.py)", "",
        f"- CPU: {result['cpu']} ({result['cores']} logical cores usable); load average "
        f"{result['load'][0]} at the start, {result['load'][1]} at the end (above the core "
        "count: other work shared the CPU, times are upper bounds)",
        f"- model: `{result['model']}` at {result['size'][1]}x{result['size'][0]}, weights "
        f"{result['weights']}, `--calib-count {result['calib_count']}` (CamVid train frames)",
        f"- peak resident memory, whole export: {mem['peak_rss_mb']:.0f} MB "
        f"(target < {GB:.0f} GB: {'met' if ok_mem else 'MISSED'})",
        f"- wall time, whole export (FP32 export + verify + INT8): {result['seconds']:.0f} s "
        f"(target < {MINUTES:.0f} min: {'met' if ok_time else 'MISSED'})",
    ]
    res = result.get("int8_resources") or {}
    if res:
        lines.append(f"- INT8 steps alone: peak {res.get('peak_rss_mb')} MB resident")
        for step in res.get("steps", []):
            done = (f", {step['done']} {step['units']}(s) of {step.get('total')}"
                    if "done" in step else f", {step.get('candidates')} candidate(s)")
            est = f", estimate {step['estimate_s']} s" if step.get("estimate_s") else ""
            lines.append(f"  - {step.get('step')}: {step.get('seconds')} s{done}{est}, bound "
                         f"{step.get('bound_s')} s"
                         f"{', stopped by the bound' if step.get('stopped_by_bound') else ''}")
    cal = result.get("calibration") or {}
    if cal:
        lines.append(f"- calibration: {cal.get('method')}, {cal.get('frames')} frames, "
                     f"{cal.get('chunk_frames')} frame(s) per pass, "
                     f"{cal.get('activation_mb_per_frame')} MB activations a frame, "
                     f"{cal.get('seconds')} s")
    lines.append(f"- INT8 agreement with FP32 (report frames): {result.get('agreement')}; "
                 f"budget {result.get('budget')}")
    if result.get("error"):
        lines.append(f"- export refused (budget): {result['error'][:300]}")
    lines += ["", f"Measured {result['date']} with `python -m segedge.benchmarks.int8_budget`;"
              " JSON: INT8_BUDGET.json.", ""]
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ddrnet23_slim")
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--calib", type=Path, default=DATA / "train")
    ap.add_argument("--calib-count", type=int, default=300)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--time-limit", type=float, default=720.0)
    ap.add_argument("--out", type=Path, default=HERE / "INT8_BUDGET.md")
    args = ap.parse_args(argv)
    if not args.calib.is_dir():
        print(f"int8_budget: no calibration frames at {args.calib}", file=sys.stderr)
        return 2
    load0 = round(os.getloadavg()[0], 1)
    result = measure(args.model, args.calib, args.calib_count, (args.height, args.width),
                     args.checkpoint, args.time_limit)
    result["load"] = [load0, round(os.getloadavg()[0], 1)]
    result.update(cpu=cpu_model(), cores=len(os.sched_getaffinity(0))
                  if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    write(result, args.out)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
