"""INT8's named steps: open the run, calibrate, search re-quantizations, sensitivity and
the keep-in-float fallback (the mode's ``lower`` in modes/int8.py runs them in order;
modes/int8_finish.py writes the artifact and its report).

Each long step is a ``steps.Step``: an estimate from its first measured unit, a time
bound checked after every unit inside the step (``--int8-time-limit`` shared out over
the steps), and progress on a terminal or in a log.  Activation ranges are computed
once per (graph, frames, method) in a run (``Int8Run.ranges``' memo) and kept in one
content-keyed cache file; every candidate that only re-quantizes reuses them.  Memory
is bounded: calibration frames are prepared as they are read and collected in chunks
sized from one frame's measured activations (precision/int8.py).

Choosing and reporting use different frames (int8_search.split_held).

Runtimes: a candidate meets the budget only if it meets it on every installed CPU
runtime (``Int8Run.measure``: the worst of them, each against its own FP32 labels,
computed once per runtime), because the final gate (ladder.per_runtime) checks them
all and ONNX Runtime emulates Q/DQ where OpenVINO fuses real INT8 kernels: a graph at
99.07 % on one was measured at 98.96 % on the other.  A runtime whose compiler fails
on the fully quantized graph (runtimes.probe, in a child: some Q/DQ forms crash it)
is left out of the search, and the report says why (``search_runtimes``); the gate
still reports it.  Cost: each budget measurement (the full graph, every calibration
candidate, every keep-k trial) runs once per runtime, so with OpenVINO installed it
takes roughly twice as long (plus a compile per candidate); the per-unit ranking
(``agreement_of``, the step with the most runs) stays on the reference runtime only.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from segedge.export.evaluation.evaluate import LabelledFrames
from segedge.export.precision import calibration, int8_search, points, runtimes
from segedge.export.precision import int8 as q8
from segedge.export.precision.graph import compute_nodes
from segedge.export.precision.modes.base import LowerRequest
from segedge.export.precision.modes.int8 import CalibMethod
from segedge.export.precision.modes.int8_margin import per_frame, unseen_margin
from segedge.export.precision.sensitivity import Budget, Measure, SearchResult, search, worst
from segedge.export.precision.steps import BoundReached, Step
from segedge.export.verify.compare import agreement
from segedge.runtime.errors import InputError, SegedgeError
from segedge.runtime.preprocess import prepare

RANK_FRAMES = 16  # selection frames used to rank point sensitivity (the budget uses all)
# shares of the time left when each step starts (the rest is kept for the report checks:
# about 15 % of --int8-time-limit stays for the report frames on both runtimes).  The
# calibration search had 0.35: on a trained PIDNet-S it spent its whole 180 s for no gain
# beyond the noise while the keep-in-float search, the step that always converges, was
# stopped by its bound a bisection short of an artifact (it had 0.6, now 0.75: the last
# bounded step; a quarter of what is left still stays for the report frames)
SHARES = {"calibration": 0.5, "calibration search": 0.2, "INT8 sensitivity": 0.6,
          "keep-in-float search": 0.75}


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
    # the budget's runtimes (None: not chosen yet), those left out and why, and each one's
    # FP32 labels and mIoU on the selection frames (computed once per runtime)
    search_on: tuple[str, ...] | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    refs: dict[str, tuple[list[np.ndarray], float | None]] = field(default_factory=dict)
    # the cache key's hashes: pre.onnx once per run, a frame set once (keyed by its tensors'
    # identities: the subsets hold the calibration pool's own arrays)
    graph_digest: bytes | None = None
    frame_digests: dict[tuple[int, ...], tuple[bytes, ...]] = field(default_factory=dict)
    # budget measurements by the graph's content hash: the full graph is measured by the
    # calibration search and again by the fallback (a few ms of hashing saves a run of
    # the selection frames on every runtime)
    measured: dict[str, Measure] = field(default_factory=dict)

    @property
    def opts(self) -> Any:
        return self.req.cfg.precision

    def step(self, name: str, total: int | None, unit: str) -> Step:
        left = max(0.0, self.deadline - time.monotonic())
        return Step(name, total, unit, limit_s=round(left * SHARES[name], 1),
                    quiet=self.req.cfg.quiet)

    def key(self, frames: LabelledFrames, method: str) -> str:
        """The calibration cache key of (graph, frames, method), each hash computed once."""
        import onnxruntime

        if self.graph_digest is None:
            self.graph_digest = calibration.digest(self.pre.read_bytes())
        ids = tuple(map(id, frames.tensors))
        if ids not in self.frame_digests:
            self.frame_digests[ids] = calibration.frame_digests(frames.tensors)
        return calibration.key_of(self.graph_digest, self.frame_digests[ids], method=method,
                                  target=self.opts.int8_target, ort=onnxruntime.__version__)

    def ranges(self, frames: LabelledFrames, method: CalibMethod | str,
               name: str = "calibration", tick: Any = None) -> tuple[Path, dict[str, Any]]:
        """Ranges for (graph, frames, method): memo, then the one cache file, then a pass.

        Bounded (no `tick`): the pass is its own ``name`` step, stops at the step's bound
        with ranges from the frames seen (said in the info, not cached).  Strict (a search
        candidate's `tick`, int8_steps._strict): the tick's escape goes through the pass,
        so a candidate is dropped whole, never calibrated on part of its frames."""
        key = self.key(frames, method)
        if key in self.memo:
            path, info = self.memo[key]
            return path, {**info, "reused_in_run": True}
        cache = self.opts.calib_cache or self.req.out.with_suffix(".calib.json")
        out = self.req.workdir / f"ranges_{len(self.memo)}.json"
        start = time.perf_counter()
        hit = calibration.load_cache(cache, key, out)
        extra: dict[str, Any] = {}
        if not hit:
            step = self.step(name, len(frames), "frame") if tick is None else None
            with step if step is not None else nullcontext():
                got = q8.calibrate_bounded(self.pre, frames.tensors, self.req.meta.input.name,
                                           method, self.req.workdir,  # type: ignore[arg-type]
                                           step.tick if step is not None else tick)
            q8.write_ranges(got.data, out)
            if step is not None:
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

    def pick_runtimes(self, full: Path) -> tuple[str, ...]:
        """The runtimes every budget measurement runs on (chosen once per run): each
        installed CPU runtime whose compiler takes `full` in a child (runtimes.probe)."""
        if self.search_on is None:
            chosen = []
            for rt in runtimes.available():
                why = runtimes.probe(full, rt)
                if why is None:
                    chosen.append(rt)
                else:
                    self.left_out[rt] = why
            self.search_on = tuple(chosen) or (runtimes.reference(),)
        return self.search_on

    def search_info(self) -> dict[str, Any]:
        """The report's ``search_runtimes``: where the budget search measured, and why not."""
        return {"measured_on": list(self.search_on or ()), "rule": "worst of them, each "
                "against its own FP32", "left_out": dict(self.left_out)}

    def _fp32_on(self, rt: str) -> tuple[list[np.ndarray], float | None]:
        """FP32 labels and mIoU of the selection frames on `rt` (the reference's are
        open_run's; another runtime's are run once and kept)."""
        if rt == runtimes.reference():
            return self.ref, self.ref_miou
        if rt not in self.refs:
            held = self.parts.selection
            labels = runtimes.run_labels(self.req.fp32, held, self.req.meta, rt)
            s = held.score(labels, self.req.meta.classes, self.opts.ignore_index)
            self.refs[rt] = (labels, s.miou if s else None)
        return self.refs[rt]

    def measure(self, path: Path) -> Measure:
        """`path` against FP32 on the selection frames: the worst over the search's
        runtimes, so a candidate that meets the budget here meets it on every runtime the
        gate checks.  A runtime that fails on a candidate leaves the search (recorded).
        A graph measured before (the same bytes) is not run again."""
        seen = hashlib.sha256(path.read_bytes()).hexdigest()
        if seen in self.measured:
            return self.measured[seen]
        held = self.parts.selection
        found: list[Measure] = []
        several = len(self.pick_runtimes(path)) > 1
        for rt in self.search_on or ():
            try:
                got = runtimes.run_labels(path, held, self.req.meta, rt)
                ref, ref_miou = self._fp32_on(rt)
            except SegedgeError as err:
                if rt == runtimes.reference():
                    raise
                self.left_out[rt] = f"failed on {path.name}: {err}"
                self.search_on = tuple(r for r in self.search_on or () if r != rt)
                continue
            s = held.score(got, self.req.meta.classes, self.opts.ignore_index)
            per = per_frame(got, ref)
            found.append(Measure(agreement(got, ref), s.miou if s else None, ref_miou,
                                 rt if several else None,
                                 unseen_margin(per) if self.parts.split else 0.0, per))
        self.measured[seen] = worst(found)
        return self.measured[seen]

    def agreement_of(self, path: Path) -> float:
        """Ranking only (one run per unit): the reference runtime, the first frames."""
        held = self.parts.selection
        frames = replace(held, tensors=held.tensors[:RANK_FRAMES],
                         geoms=held.geoms[:RANK_FRAMES], truths=None)
        return agreement(runtimes.run_labels(path, frames, self.req.meta),
                         self.ref[:RANK_FRAMES])


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
    ref = runtimes.run_labels(req.fp32, parts.selection, meta)
    ref_s = parts.selection.score(ref, meta.classes, opts.ignore_index)
    return Int8Run(req, pre, calib, parts, ref, ref_s.miou if ref_s else None,
                   time.monotonic() + opts.int8_time_limit, held_all.source)


def calibrate_step(run: Int8Run) -> tuple[q8.Quantizer, Path, dict[str, Any]]:
    """The user's method on every calibration frame, then the fully quantized graph."""
    ranges, info = run.ranges(run.calib, run.opts.calib_method)
    quantizer = q8.Quantizer.open(run.pre, ranges, run.opts.int8_target,
                                  run.opts.calib_method)
    full = quantizer.quantize(run.req.workdir / "int8_full.onnx")
    run.pick_runtimes(full)  # the runtimes the budget search measures on (probed once)
    return quantizer, full, info


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
            ranges_c, info_c = run.ranges(frames, c.method, tick=tick)
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


def fallback_step(run: Int8Run, full: Path, budget: Budget) -> tuple[SearchResult,
                                                                      list[points.Point]]:
    """Sensitivity per unit (a compute layer's points together, points.units), then the
    smallest most-sensitive set kept in float.  The fragile units are measured kept in
    float together first (on every search runtime) and start in float where that says
    they collapse (sensitivity.seed_fragile); otherwise they are ranked first, so a bound
    still leaves them ranked."""
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
        # one file per set (the fragile set and a keep-k set may have the same size, and
        # the search returns the file of a set it measured earlier)
        tag = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:10]
        return save(points.keep_float(qmodel, pre, names),
                    work / f"int8_kept_{len(kept)}_{tag}.onnx")

    full_m = run.measure(full)
    rank: Step | None = None
    keep: Step | None = None
    with ExitStack() as steps:

        def start_ranking(n: int) -> None:  # after the fragile measurement: its own clock
            nonlocal rank
            rank = steps.enter_context(run.step("INT8 sensitivity", n, "point"))

        def rank_tick() -> None:
            assert rank is not None  # search starts the ranking before its first tick
            try:
                rank.tick()
            except BoundReached:
                rank.stopped = True
                raise

        def keep_tick() -> None:
            nonlocal keep
            if keep is None:  # ranking is over: its own figures, then the keep-k clock
                if rank is not None:
                    run.steps.append(rank.info())
                keep = steps.enter_context(run.step("keep-in-float search", None, "trial"))
            keep.tick()

        result = search(full, full_m, budget, order, only=only, excluding=excluding,
                        measure=run.measure, agreement_of=run.agreement_of, tick=rank_tick,
                        keep_tick=keep_tick, fragile=[u for u in order if u in fragile],
                        start_ranking=start_ranking)
    if keep is not None:
        keep.stopped = any("stopped" in t for t in result.trials)
        run.steps.append(keep.info())
    elif rank is not None and rank.done:
        run.steps.append(rank.info())
    return result, found

