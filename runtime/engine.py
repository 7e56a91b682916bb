"""The one run engine: every segrun run is lanes around ONE inference stage.

A lane is one stream's own stages (runtime.stages.Stages: read+preprocess,
postprocess+draw, sinks) on its own threads; the inference stage
(runtime.batching: fair lanes in, batches out, one thread, ONE Segmenter)
takes the ready frames of every lane and hands each result back in its
lane's order.  A single stream is a run with one lane: supervision, stop
reasons, failure stats and the ``--stats`` documents exist here once, for
one stream and for several.

Failure: a lane whose own stage fails (its source, its sink) ends alone; while
another lane delivers, the run goes on and is degraded naming it (exit 4).
When every lane failed (one stream: when its stage failed) that error is
raised; a failure of the shared model ends every lane and is raised.
SIGINT/SIGTERM stop every lane, drain and finalise every output (130/143).

Reporting: the stats are built whatever happens (also when the model, a
source or a sink fails to open, and on interruption), written atomically to
``stats_path`` and handed to ``on_stats`` (segrun's ``--stats -``) BEFORE any
error is raised.  The document is the lane's RunStats for a single-stream
run and a MultiRunStats (per stream plus the aggregate) for several.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeAlias, TypeVar

import cv2

from segedge.runtime.backends.auto import after_run
from segedge.runtime.batching import Batcher, BatchPolicy, BatchRecorder, Mux
from segedge.runtime.cli_support import Terminated
from segedge.runtime.config import RunConfig
from segedge.runtime.modes import planned_mode, resolve_mode
from segedge.runtime.priority import in_background_thread, reuse_freed_memory
from segedge.runtime.redact import redact
from segedge.runtime.segmenter import Segmenter
from segedge.runtime.signals import StopRequest, stop_on_signals
from segedge.runtime.sinks import Sink, sinks_for
from segedge.runtime.sources.base import Source, open_source
from segedge.runtime.stages import POLL_S, Stages, stop_reason
from segedge.runtime.stats import MultiRunStats, RunStats, StatsRecorder

__all__ = ["Report", "failure_stats", "run_lanes", "stop_reason", "write_stats"]

log = logging.getLogger("segedge.runtime")

Report: TypeAlias = RunStats | MultiRunStats  # what one run reports: one stream's, or several's
OnStats = Callable[[Any], None]


class _Writable(Protocol):
    def write(self, path: Path) -> Any: ...

    def with_degraded(self, *reasons: str) -> Any: ...


S = TypeVar("S", bound=_Writable)


def write_stats(stats: S, path: Path | None) -> S:
    """Write ``--stats``; a failure to (disk full) degrades the run instead of losing it."""
    if path is None:
        return stats
    try:
        stats.write(path)
    except OSError as err:
        return stats.with_degraded(f"{path}: stats file not written ({err.strerror or err})")
    return stats


def failure_stats(configs: Sequence[RunConfig], names: Sequence[str], err: BaseException,
                  segmenter: Segmenter | None = None) -> MultiRunStats:
    """Stats of a run that ended before its lanes started (model, source or sink failed, or
    a signal while loading): every stream says why, nothing was processed."""
    if isinstance(err, Terminated):
        reason, interrupted = "SIGTERM", True
    elif isinstance(err, KeyboardInterrupt):
        reason, interrupted = "SIGINT", True
    else:
        reason, interrupted = f"error: {redact(str(err))}", False
    streams = tuple(StatsRecorder().finish(
        0.0, dropped=0, corrupt=0, model=redact(str(c.model)), source=redact(c.source),
        backend=segmenter.backend.name if segmenter is not None else "",
        provider=segmenter.active if segmenter is not None else "",
        backend_reason=segmenter.backend_reason if segmenter is not None else "",
        output=c.outputs[0] if c.outputs else None,
        interrupted=interrupted, stop_reason=reason) for c in configs)
    first = streams[0]
    aggregate = {"streams": len(configs), "frames_read": 0, "frames_processed": 0,
                 "frames_dropped": 0, "frames_corrupt": 0, "wall_s": 0.0, "fps": 0.0,
                 "model": first.model, "backend": first.backend, "provider": first.provider,
                 "stop_reason": first.stop_reason, "interrupted": first.interrupted}
    return MultiRunStats(streams, tuple(names), aggregate)


def open_segmenter(config: RunConfig, mode: str | None = None) -> Segmenter:
    """The model of a run (the one every lane shares), as its config asks, opened for the
    run's ``mode`` (latency | throughput) when given; the engine's first line names it."""
    options = config.backend_options
    if mode is not None:
        options = replace(options, mode=mode)
    return Segmenter(config.model, backend=config.backend, postprocess=config.postprocess,
                     score_threshold=config.score_threshold, options=options)


@contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """The stages already run in parallel: OpenCV's own worker pool (at normal priority)
    would only compete with inference for the same cores."""
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv_threads)


class Engine:
    """The stage threads of every lane plus the one inference thread, supervised."""

    def __init__(self, configs: Sequence[RunConfig], names: tuple[str, ...],
                 segmenter: Segmenter, sources: list[Source], sinks: list[list[Sink]],
                 stop: StopRequest, policy: BatchPolicy) -> None:
        self.names, self.seg, self.stop = names, segmenter, stop
        self.mode, why, _ = resolve_mode(policy.mode, sources, segmenter.backend)
        self.mux = Mux(len(configs), 1)
        self.lanes: list[Stages] = []
        for config, share, source, outs in zip(configs, self.mux.lanes, sources, sinks,
                                               strict=True):
            # latency: a lane's next frame is read (the newest) once the last left inference
            share.capacity = 1 if self.mode == "latency" else config.queue_size
            share.read_ahead = self.mode != "latency"
            lane = Stages(config, segmenter, source, outs, stop, feed=share)
            share.abort = lane.abort  # a failed lane's frames are dropped, not waited on
            self.lanes.append(lane)
        segmenter.use_mode(self.mode)  # reopened when the sources contradict the plan
        in_flight = resolve_mode(self.mode, sources, segmenter.backend)[2]
        limit = policy.limit(segmenter.static_batch, len(configs))
        self.recorder = BatchRecorder(limit, segmenter.static_batch, policy.wait_ms)
        self.abort = threading.Event()  # the shared stage failed: every lane ends
        self.shared_error: BaseException | None = None
        self.interrupt: BaseException | None = None  # e.g. a second Ctrl-C on the main thread
        self.batcher = Batcher(self.mux, self.lanes, segmenter.infer_many, limit,
                               policy.wait_ms / 1e3, self.abort, self.recorder, in_flight)
        # The run's first line: the model, why this backend, and the mode.
        log.info("model %s on %s; mode %s (%s): up to %d frame(s) per stream and %d "
                 "inference call(s) in flight", redact(str(configs[0].model)),
                 segmenter.backend_reason, self.mode, why, self.mux.lanes[0].capacity,
                 in_flight)
        for config in configs:
            log.info("source %s", redact(config.source))

    def _infer_loop(self) -> None:
        try:
            self.batcher.loop()
        except BaseException as err:  # noqa: BLE001 - raised on the main thread
            self.shared_error = err
            self.abort.set()
            for lane in self.lanes:
                lane.fail(err)
            self.mux.close()

    def _threads(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._infer_loop, name="segrun-infer", daemon=True)]
        if len(self.lanes) == 1:
            return threads + self.lanes[0].workers()
        for name, lane in zip(self.names, self.lanes, strict=True):
            threads += lane.workers(prefix=f"segrun-{name}")
        return threads

    def _drive(self, threads: list[threading.Thread]) -> None:
        """Main thread: watch stop requests, drive main-thread sinks (windows), wait."""
        open_main = [lane for lane in self.lanes if lane.in_main]
        while open_main or any(t.is_alive() for t in threads):
            for lane in self.lanes:
                lane.watch_stop()
            if not open_main:
                next(t for t in threads if t.is_alive()).join(timeout=POLL_S)
                continue
            for lane in list(open_main):
                try:
                    more = lane.sink_next(POLL_S / len(open_main))
                except Exception as err:  # noqa: BLE001 - this lane fails, not the run
                    lane.fail(err)
                    more = False
                if not more:
                    open_main.remove(lane)

    def run(self) -> MultiRunStats:
        """Start every thread, supervise until all ended, close the outputs; the stats."""
        threads = self._threads()
        start, cpu0 = time.perf_counter(), time.process_time()
        for thread in threads:
            thread.start()
        finished = False
        try:
            self._drive(threads)
            finished = True
        except BaseException as err:  # noqa: BLE001 - a second Ctrl-C: raised after cleanup
            self.interrupt = err
        finally:
            if not finished:
                for lane in self.lanes:
                    lane.abort.set()
                self.abort.set()
                self.mux.close()
            for lane in self.lanes:
                lane.watch_stop()  # a reader may be waiting on a silent live stream
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(timeout=POLL_S)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        return self._stats(start, wall, cpu, finished)

    def _stats(self, start: float, wall: float, cpu: float, finished: bool) -> MultiRunStats:
        """Each lane's stats and the aggregate; ``cpu``: the process's CPU seconds over the
        run (every thread: the model's and every stage's; not the model's loading)."""
        streams: list[RunStats] = []
        degraded: list[str] = []
        raised = self.error() is not None  # then the error says it, not the stats
        for name, lane in zip(self.names, self.lanes, strict=True):
            own_wall = (lane.done_at - start) if lane.done_at is not None else wall
            stats = replace(lane.finish(max(own_wall, 1e-9), finished), mode=self.mode)
            if lane.error is not None and not raised:
                stats = stats.with_degraded(f"{lane.source_name}: stream failed: "
                                            f"{redact(str(lane.error))}")
            streams.append(stats)
            degraded += [f"{name}: {why}" for why in stats.degraded]
        total = sum(s.frames_processed for s in streams)
        cpu_ms = round(cpu * 1e3 / total, 3) if total else None
        if len(streams) == 1:  # the process's CPU is one stream's only when it is alone
            streams[0] = replace(streams[0], cpu_ms_per_frame=cpu_ms)
        first = streams[0]
        reason = stop_reason(self.shared_error, self.stop, finished, "end of stream")
        aggregate: dict[str, Any] = {
            "streams": len(streams),
            "frames_read": sum(s.frames_read for s in streams),
            "frames_processed": total,
            "frames_dropped": sum(s.frames_dropped for s in streams),
            "frames_corrupt": sum(s.frames_corrupt for s in streams),
            "wall_s": round(wall, 4), "fps": round(total / wall, 3) if wall > 0 else 0.0,
            "cpu_ms_per_frame": cpu_ms,
            "model": first.model, "backend": first.backend, "provider": first.provider,
            "backend_reason": first.backend_reason, "stop_reason": reason, "mode": self.mode,
            "interrupted": self.stop.signum is not None or not finished,
            **self.recorder.to_dict()}
        return MultiRunStats(tuple(streams), self.names, aggregate, tuple(degraded))

    def error(self) -> BaseException | None:
        """What to raise: an interrupt of the main thread, the shared model's failure, or
        the first one when every lane failed (nothing was delivered anywhere); None when
        some lane succeeded."""
        if self.interrupt is not None:
            return self.interrupt
        if self.shared_error is not None:
            return self.shared_error
        errors = [lane.error for lane in self.lanes]
        if all(e is not None for e in errors):
            return errors[0]
        return None


def _open_sources(configs: Sequence[RunConfig], mode: str) -> list[Source]:
    """Open every source; its capture threads inherit a lower priority, except in latency
    mode, where capture is on the critical path (nothing else runs between one inference
    and the next frame's), so a busy machine must not slow it down."""
    sources: list[Source] = []
    try:
        for config in configs:
            nice = 0 if mode == "latency" else config.background_nice
            sources.append(in_background_thread(
                lambda c=config: open_source(c.source, c.source_options),  # type: ignore[misc]
                nice))
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


def _open_sinks(configs: Sequence[RunConfig], sources: list[Source]) -> list[list[Sink]]:
    opened: list[list[Sink]] = []
    try:
        for config, source in zip(configs, sources, strict=True):
            opened.append(sinks_for(config, source))
    except BaseException:
        _close_unused(opened)
        raise
    return opened


def _close_unused(sinks: list[list[Sink]]) -> None:
    """Close the sinks of a run that failed to start (nothing kept as complete)."""
    for sink in (s for group in sinks for s in group):
        try:
            sink.close(False)
        except Exception:  # noqa: BLE001 - the first error is the one to report
            log.debug("closing a sink after a failed start", exc_info=True)


# a throughput run is judged only where its inference stage was the bottleneck over enough
# frames: a stage waiting on its source runs its calls one at a time, each on the threads a
# throughput slot gets (fewer than the probe's), and a few frames' mean carries each slot's
# cold first call
SATURATED = 0.9  # share of the run's wall time with an inference call running
JUDGED_FRAMES = 50


def _check_auto_choice(engine: Engine, segmenter: Segmenter, stats: MultiRunStats) -> None:
    """A run that went through ends by checking the auto chooser's verdict against its own
    inference time per frame (runtime.backends.auto.after_run): a run that contradicts it
    marks the cached choice for re-measurement.  Latency mode: one call's time (p50).
    Throughput mode (the default for files): the stage's wall time with a call running, per
    frame, i.e. 1000 / its FPS, when the stage was saturated (``SATURATED``) over at least
    ``JUDGED_FRAMES`` frames; then it is no slower than one call at a time, so a
    contradiction it shows is real.  Otherwise the run says nothing."""
    if engine.error() is not None:
        return
    agg = stats.aggregate
    if engine.mode == "latency":
        timing = agg.get("infer_ms_per_frame")
        ms = timing.get("p50_ms") if isinstance(timing, dict) else None
    else:
        ms, frames, wall = (agg.get("infer_busy_ms_per_frame"), agg.get("frames_processed"),
                            agg.get("wall_s"))
        if not (isinstance(ms, (int, float)) and isinstance(frames, int)
                and isinstance(wall, (int, float)) and frames >= JUDGED_FRAMES and wall > 0
                and ms * frames / 1e3 >= SATURATED * wall):
            log.debug("auto backend: this throughput run is not judged (inference stage "
                      "not saturated, or fewer than %d frames)", JUDGED_FRAMES)
            return
    if not isinstance(ms, (int, float)) or ms <= 0:
        return
    hw = segmenter.input_hw
    try:
        after_run(segmenter.backend, float(ms), hw)
    except Exception:  # noqa: BLE001 - a cache that cannot be written must not fail a run
        log.debug("checking the auto backend choice failed", exc_info=True)


def _document(stats: MultiRunStats, single: bool) -> Report:
    """What a run reports: one stream's RunStats, or several streams' MultiRunStats."""
    return stats.streams[0] if single else stats


def run_lanes(configs: Sequence[RunConfig], names: tuple[str, ...], *,
              stats_path: Path | None, stop: StopRequest | None = None,
              policy: BatchPolicy | None = None, single: bool = False,
              on_stats: OnStats | None = None) -> Report:
    """Run one lane per config on ONE opened model (the configs agree on it: the callers
    check) and report: ``single`` for a one-stream run's document (its RunStats).

    The document is written to ``stats_path`` and handed to ``on_stats`` whatever
    happens, then the run's error (if any) is raised.
    """
    policy = policy or BatchPolicy()
    stop = stop or StopRequest()
    reuse_freed_memory()  # every frame's arrays: no page faults frame after frame
    segmenter: Segmenter | None = None
    sources: list[Source] = []
    try:
        try:
            planned = planned_mode(policy.mode, configs)
            segmenter = open_segmenter(configs[0], planned)
            sources = _open_sources(configs, planned)
            sinks = _open_sinks(configs, sources)
            with opencv_single_threaded(), stop_on_signals(stop):
                try:
                    engine = Engine(configs, names, segmenter, sources, sinks, stop, policy)
                except BaseException:
                    _close_unused(sinks)
                    raise
                stats = engine.run()
                _check_auto_choice(engine, segmenter, stats)
        except BaseException as err:
            report = write_stats(_document(failure_stats(configs, names, err, segmenter),
                                           single), stats_path)
            if on_stats is not None:
                on_stats(report)
            raise
        report = write_stats(_document(stats, single), stats_path)
        if on_stats is not None:
            on_stats(report)
        error = engine.error()
        if error is not None:
            raise error
        return report
    finally:
        for source in sources:
            source.close()
        if segmenter is not None:
            segmenter.close()
