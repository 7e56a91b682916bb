"""INT8 export budget at 1024x512: peak resident memory and wall time (issue 21).

Target: with the default calibration count (``--calib-count 300``) an INT8 export of a
real-time road-scene network at 1024x512 stays under 4 GB resident and under 15
minutes on 2 cores.  Exports a zoo network (default ``ddrnet23_slim``, random weights
unless a checkpoint is given: ``tools/camvid_realtime.py`` trains one briefly on CamVid in
the authors' layout, ``--checkpoint FILE --num-classes 11``, because how INT8 behaves is a
property of trained weights) to INT8 with CamVid calibration frames, samples the
process's resident set for the whole export, and writes the figures with the CPU model,
the load average at the start and the end, every INT8 step's time and the calibration
frames used of those asked to ``benchmarks/INT8_BUDGET.md`` (JSON beside it) and a
short section in ``benchmarks/RESULTS.md`` (between markers, replaced in place).

Then, in the same run (``--profile-models``, after the export so it never slows it):
per calibration frame, ONNX Runtime's own ``HistogramCalibrater`` (the path before
precision/histograms.py) against the streamed collection on the same frames, and the
range difference of the sampled histograms against the exact ones on every calibration
frame (one network run per frame feeds both), per model: the benchmark's model and the
shipped CamVid-trained ``demo`` (trained weights: realistic activation tails).

A benchmark, not a test: run it by hand, naming the calibration frames (it never searches
for data): ``python -m segedge.benchmarks.int8_budget --calib ../shared/data/camvid/train
--checkpoint FILE --num-classes 11``.  The command line, as given, is written with the
results (their reproduce line).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from segedge.benchmarks.int8_budget_report import write

HERE = Path(__file__).resolve().parent
PROG = "python -m segedge.benchmarks.int8_budget"


def measure(model: str, calib: Path, count: int, size: tuple[int, int],
            checkpoint: Path | None, time_limit: float,
            num_classes: int | None = None) -> dict[str, Any]:
    """The whole export (FP32 + verify + INT8), its peak resident set and wall time."""
    from segedge.export.config import EngineOptions, ExportConfig, PrecisionOptions
    from segedge.export.pipeline import export
    from segedge.export.precision.memory import PeakRSS
    from segedge.runtime.errors import SegedgeError

    out_dir = Path(tempfile.mkdtemp(prefix="int8_budget_"))
    out = out_dir / f"{model}_int8.onnx"
    cfg = ExportConfig(
        model=model, checkpoint=checkpoint, weights="random" if checkpoint is None else "auto",
        num_classes=num_classes, imgsz=size, output=out, quiet=True,
        engine=EngineOptions(build=False),
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
            "runtimes": {rt: e["argmax_agreement"] if "argmax_agreement" in e
                         else f"cannot load: {e.get('error')}"
                         for rt, e in (sec.get("runtimes") or {}).items()},
            "calibration": {k: v for k, v in (sec.get("calibration") or {}).items()
                            if k != "searched"},
            "error": error, "output": str(out_dir)}


def _frames(calib: Path, count: int, fp32: Path) -> list[np.ndarray]:
    """The export's own calibration frames (same split), prepared as the runtime does."""
    from segedge.export.onnx.tools import read_metadata
    from segedge.export.precision.calibration import split_frames
    from segedge.runtime.preprocess import prepare

    meta = read_metadata(fp32)
    assert meta is not None
    spec = replace(meta.input, batch=meta.input.batch or 1)
    split = split_frames(str(calib), count, convert=lambda img: prepare([img], spec)[0])
    return list(split.calib.frames)


def _threshold(data: Any) -> dict[str, float]:
    """Tensor -> max(|lowest|, |highest|): what a symmetric INT8 scale is made of."""
    return {k: max(abs(float(v.range_value[0])), abs(float(v.range_value[1])))
            for k, v in data.items()}


def _difference(got: dict[str, float], ref: dict[str, float]) -> dict[str, Any]:
    rel = np.array([abs(got[k] - ref[k]) / ref[k] for k in ref if ref[k] > 0])
    if rel.size == 0:
        return {"tensors": 0}
    return {"tensors": int(rel.size), "median_pct": round(float(np.median(rel)) * 100, 3),
            "p95_pct": round(float(np.percentile(rel, 95)) * 100, 3),
            "max_pct": round(float(rel.max()) * 100, 3),
            "over_1pct": int((rel > 0.01).sum())}


def profile(model: str, checkpoint: Path | None, calib: Path, count: int,
            size: tuple[int, int], ref_frames: int,
            num_classes: int | None = None) -> dict[str, Any]:
    """Per-frame time of ORT's HistogramCalibrater vs the stream, and the sampled ranges'
    difference from the exact histogram over every calibration frame (one run each)."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    from segedge.export.config import EngineOptions, ExportConfig
    from segedge.export.pipeline import export
    from segedge.export.precision import histograms
    from segedge.export.precision import int8 as q8

    work = Path(tempfile.mkdtemp(prefix="int8_profile_"))
    fp32 = work / f"{model}.onnx"
    export(ExportConfig(model=model, checkpoint=checkpoint, num_classes=num_classes,
                        weights="random" if checkpoint is None and model != "demo" else "auto",
                        imgsz=size, output=fp32, quiet=True, engine=EngineOptions(build=False)))
    pre = q8.preprocess(fp32, work)
    tensors = _frames(calib, count, fp32)
    name = _input_name(pre)
    out: dict[str, Any] = {"model": model, "frames": len(tensors), "load_start": _load()}

    # (1) before/after per frame on the same first frames, back to back in this process;
    # "sampled" histograms as many elements a frame as a calibration on every frame does
    few = tensors[:ref_frames + 1]  # the streams' first interval also holds their set-up
    cap = histograms.sample_cap(len(tensors))
    with q8._quiet():
        cal = create_calibrator(pre, augmented_model_path=str(work / "ort.onnx"),
                                calibrate_method=CalibrationMethod.Percentile,
                                providers=["CPUExecutionProvider"], extra_options={})
        ort_times = []
        for x in few:  # one frame per pass, as the chunking did at 292 MB a frame
            t0 = time.perf_counter()
            cal.collect_data(q8._Reader([x], name, lambda: None))
            ort_times.append(time.perf_counter() - t0)
        ref = _threshold(cal.compute_data())
        del cal
    per: dict[str, list[float]] = {}
    got: dict[str, dict[str, float]] = {}
    for label, sample in (("stream exact", None), ("stream sampled", cap)):
        stamps: list[float] = [time.perf_counter()]
        res = q8.calibrate_bounded(pre, few, name, "percentile", work,
                                   lambda s=stamps: s.append(time.perf_counter()),
                                   sample=sample)
        per[label] = list(np.diff(stamps)[1:])
        got[label] = _threshold(res.data)
    # the first frame left out everywhere: ORT's first histogram takes a faster path and
    # the streams' first interval holds their set-up
    out["per_frame_s"] = {"ort HistogramCalibrater": _stats(ort_times[1:]),
                          **{k: _stats(v) for k, v in per.items()}}
    out["exact_vs_ort"] = _difference(got["stream exact"], ref)

    # (2) every calibration frame: one run feeds the exact and the sampled histograms
    with q8._quiet():
        cal = create_calibrator(pre, augmented_model_path=str(work / "aug.onnx"),
                                calibrate_method=CalibrationMethod.Percentile,
                                providers=["CPUExecutionProvider"], extra_options={})
    exact, sampled = histograms.RangeStream(cal, None), histograms.RangeStream(cal, cap)
    names = [o.name for o in cal.infer_session.get_outputs()]
    keep = [(i, n) for i, n in enumerate(names) if n in cal.tensors_to_calibrate]
    spent = {"network": 0.0, "exact": 0.0, "sampled": 0.0}
    for x in tensors:
        t0 = time.perf_counter()
        outs = cal.infer_session.run(None, {name: x})
        t1 = time.perf_counter()
        frame = {n: outs[i] for i, n in keep}
        exact.add(frame)
        t2 = time.perf_counter()
        sampled.add(frame)
        t3 = time.perf_counter()
        del outs, frame
        spent["network"] += t1 - t0
        spent["exact"] += t2 - t1
        spent["sampled"] += t3 - t2
    out["all_frames"] = {
        "sample_per_tensor_frame": cap,
        "per_frame_s": {k: round(v / len(tensors), 4) for k, v in spent.items()},
        "sampled_vs_exact": _difference(_threshold(sampled.compute()),
                                        _threshold(exact.compute()))}
    out["load_end"] = _load()
    return out


def _input_name(pre: Path) -> str:
    import onnx

    model = onnx.load(str(pre), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in inits)


def _stats(values: list[float]) -> dict[str, Any]:
    return {"frames": len(values), "median": round(float(np.median(values)), 3) if values
            else None, "each": [round(v, 3) for v in values]}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def cpu_model() -> str:
    try:
        from segedge.benchmarks.env import cpu_model as env_cpu

        return env_cpu()
    except Exception:  # noqa: BLE001 - the benchmark still writes its figures
        import platform

        return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ddrnet23_slim")
    ap.add_argument("--checkpoint", type=Path,
                    help="trained weights in the model's layout (e.g. from "
                         "tools/camvid_realtime.py); random weights without it")
    ap.add_argument("--num-classes", type=int, help="the checkpoint's class count")
    ap.add_argument("--calib", type=Path,
                    help="folder of calibration frames (CamVid train: "
                         "../shared/data/camvid/train); required, never searched for")
    ap.add_argument("--calib-count", type=int, default=300)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--time-limit", type=float, default=720.0)
    ap.add_argument("--out", type=Path, default=HERE / "INT8_BUDGET.md")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"),
                    help="Markdown file that gets the short section ('' for none)")
    ap.add_argument("--profile-models", nargs="*", default=None,
                    help="models whose calibration is profiled after the export (default: "
                         "--model and the shipped trained demo; none: skip)")
    ap.add_argument("--profile-frames", type=int, default=4,
                    help="frames timed on ONNX Runtime's own calibrater (about 2 s each)")
    ap.add_argument("--skip-export", action="store_true", help="only the profile")
    given = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(given)
    if args.calib is None:
        print("int8_budget: expected --calib DIR (the calibration frames, e.g. "
              "../shared/data/camvid/train), got none", file=sys.stderr)
        return 2
    if not args.calib.is_dir():
        print(f"int8_budget: no calibration frames at {args.calib}", file=sys.stderr)
        return 2
    size = (args.height, args.width)
    load0 = _load()
    result: dict[str, Any] = {"model": args.model, "size": list(size),
                              "calib_count": args.calib_count, "weights": "random",
                              "seconds": 0.0, "memory": {"peak_rss_mb": None}}
    if not args.skip_export:
        result = measure(args.model, args.calib, args.calib_count, size, args.checkpoint,
                         args.time_limit, args.num_classes)
    result["load"] = [load0, _load()]
    result["calib"] = str(args.calib)
    result["command"] = " ".join([PROG, shlex.join(given)]).strip()
    models = [args.model, "demo"] if args.profile_models is None else args.profile_models
    result["profiles"] = [profile(m, args.checkpoint if m == args.model else None, args.calib,
                                  args.calib_count, size, args.profile_frames,
                                  args.num_classes if m == args.model else None)
                          for m in models]
    result.update(cpu=cpu_model(), cores=len(os.sched_getaffinity(0))
                  if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    result["export_skipped"] = args.skip_export
    write(result, args.out, Path(args.results) if args.results and not args.skip_export
          else None)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
