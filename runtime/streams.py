"""Several streams in one segrun: one model, batched inference, per-stream outputs and stats.

Each stream is a complete single-stream RunConfig (its own source, outputs,
masks) and runs the single-stream pipeline's own stages (pipeline.Pipeline:
read+preprocess, postprocess+draw, sinks) on its own threads; only inference
is shared (runtime.batching): ONE Segmenter, one inference thread taking
ready frames from every stream into one call.  So a stalled or dropped live
stream never stalls the others, each stream's frame order is kept, and the
stats are the single-stream stats per stream plus an aggregate (total
frames, aggregate FPS, batch sizes, the wait they cost, inference per batch
and per frame).

Failure is per stream where it can be: a live stream that is lost, or a stream
whose own stage fails (its source, its sink), ends that stream; the others go
on and the run is degraded (exit 4) naming it.  A failure of the shared model
ends every stream and is raised, as in a single-stream run.  SIGINT/SIGTERM
stop every stream, drain and finalise every output (exit 130/143).  The
combined stats file is written whatever happens, atomically.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from segedge.runtime.batching import Batcher, BatchPolicy, BatchRecorder, Mux
from segedge.runtime.cli_support import EXIT_DEGRADED, EXIT_OK
from segedge.runtime.config import RunConfig
from segedge.runtime.errors import InputError
from segedge.runtime.io import check_writable, write_text_atomic
from segedge.runtime.pipeline import (
    Pipeline,
    failure_stats,
    open_segmenter,
    opencv_single_threaded,
    stop_reason,
    write_stats,
)
from segedge.runtime.priority import in_background_thread
from segedge.runtime.redact import redact
from segedge.runtime.segmenter import Segmenter
from segedge.runtime.signals import StopRequest, stop_on_signals
from segedge.runtime.sinks import Sink, sinks_for
from segedge.runtime.sources.base import Source, open_source
from segedge.runtime.stats import RunStats

__all__ = ["BatchPolicy", "MultiRunStats", "SHARED_FIELDS", "run_many", "stream_names"]

log = logging.getLogger("segedge.runtime")
_POLL_S = 0.1
# What every stream must share: they run on one opened model.
SHARED_FIELDS = ("model", "backend", "backend_options", "postprocess", "score_threshold")


@dataclass(frozen=True)
class MultiRunStats:
    """What a multi-stream run did: each stream's RunStats, by name, and the aggregate.

    ``degraded`` lists, per stream (``NAME: why``), what was not delivered (exit 4).
    """

    streams: tuple[RunStats, ...]
    names: tuple[str, ...]
    aggregate: dict[str, Any] = field(default_factory=dict)
    degraded: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.streams or len(self.streams) != len(self.names):
            raise InputError("streams", "one RunStats per stream name, at least one",
                             f"{len(self.streams)} stats for {len(self.names)} names")
        if len(set(self.names)) != len(self.names) or not all(self.names):
            raise InputError("stream names", "distinct, non-empty names", list(self.names))

    @property
    def exit_code(self) -> int:
        """4 when any stream is degraded (lost, failed, an output failed); else 130/143 when
        a signal stopped the run; else 0."""
        if self.degraded or any(s.degraded for s in self.streams):
            return EXIT_DEGRADED
        return next((s.exit_code for s in self.streams if s.exit_code != EXIT_OK), EXIT_OK)

    def by_name(self, name: str) -> RunStats:
        if name not in self.names:
            raise InputError("stream", f"one of {', '.join(self.names)}", repr(name))
        return self.streams[self.names.index(name)]

    def to_dict(self) -> dict[str, Any]:
        aggregate = {**self.aggregate, "degraded": list(self.degraded),
                     "exit_code": self.exit_code}
        return {"aggregate": aggregate,
                "streams": {n: s.to_dict() for n, s in zip(self.names, self.streams,
                                                           strict=True)}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def write(self, path: str | Path) -> Path:
        """Atomically (temp file + rename): a reader never sees half a file."""
        return write_text_atomic(Path(path), self.to_json() + "\n")

    def with_degraded(self, *reasons: str) -> MultiRunStats:
        return replace(self, degraded=(*self.degraded, *reasons))

    def summary_lines(self) -> list[str]:
        """One aggregate line, then one short line per stream."""
        a = self.aggregate
        batch = a.get("batch", {})
        infer = a.get("infer_ms_per_frame", {})
        wait = a.get("batch_wait_ms", {})
        lines = [f"{len(self.streams)} streams: {a.get('frames_processed', 0)} frames in "
                 f"{a.get('wall_s', 0.0):.1f} s = {a.get('fps', 0.0):.1f} FPS aggregate; batch "
                 f"mean {batch.get('mean', 0.0):.2f} (limit {batch.get('limit', '?')}), wait "
                 f"p50 {wait.get('p50_ms', 0.0):.1f} ms, infer {infer.get('mean_ms', 0.0):.1f} "
                 f"ms/frame"]
        for name, s in zip(self.names, self.streams, strict=True):
            own = getattr(s, "summary_lines", None)
            if callable(own):
                first = own()
                lines.append(f"  {name}: {first[0] if first else s.stop_reason}")
                lines += [f"  {name} {line}" for line in first[1:]
                          if line.startswith("outputs:")]
            else:
                lines.append(f"  {name}: {s.frames_processed} frames, {s.fps:.1f} FPS, "
                             f"{s.stop_reason}" + (f"; DEGRADED: {'; '.join(s.degraded)}"
                                                   if s.degraded else ""))
        return lines


def stream_names(configs: Sequence[RunConfig], names: Sequence[str] | None = None
                 ) -> tuple[str, ...]:
    """The given names, else each config's ``stream`` (where set), else stream1, stream2..."""
    if names is None:
        names = [str(getattr(c, "stream", "") or f"stream{i}")
                 for i, c in enumerate(configs, 1)]
    out = tuple(names)
    if len(out) != len(configs):
        raise InputError("stream names", f"{len(configs)} names (one per source)", len(out))
    if len(set(out)) != len(out) or not all(out):
        raise InputError("stream names", "distinct, non-empty names", list(out))
    return out


def _model_key(model: Any) -> str:
    path = Path(str(model))
    return str(path.resolve()) if path.exists() else str(model)


def check_shared(configs: Sequence[RunConfig], names: Sequence[str]) -> None:
    """Every stream runs on the one opened model: what opens it must be the same."""
    first = configs[0]
    for name, config in zip(names[1:], configs[1:], strict=True):
        for attr in SHARED_FIELDS:
            want, got = getattr(first, attr), getattr(config, attr)
            same = _model_key(want) == _model_key(got) if attr == "model" else want == got
            if not same:
                raise InputError(f"stream {name} {attr}",
                                 f"the {attr} of stream {names[0]} ({want!s}): one model "
                                 "serves every stream", str(got))


def _failure(configs: Sequence[RunConfig], names: tuple[str, ...], err: BaseException,
             segmenter: Segmenter | None) -> MultiRunStats:
    streams = tuple(failure_stats(c, err, segmenter) for c in configs)
    first = streams[0]
    aggregate = {"streams": len(configs), "frames_read": 0, "frames_processed": 0,
                 "frames_dropped": 0, "frames_corrupt": 0, "wall_s": 0.0, "fps": 0.0,
                 "model": first.model, "backend": first.backend, "provider": first.provider,
                 "stop_reason": first.stop_reason, "interrupted": first.interrupted}
    return MultiRunStats(streams, names, aggregate)




class _Engine:
    """The stage threads of every stream plus the one inference thread."""

    def __init__(self, configs: Sequence[RunConfig], names: tuple[str, ...],
                 segmenter: Segmenter, sources: list[Source], sinks: list[list[Sink]],
                 stop: StopRequest, policy: BatchPolicy) -> None:
        self.names, self.seg, self.stop = names, segmenter, stop
        self.mux = Mux(len(configs), 1)
        self.pipelines: list[Pipeline] = []
        for config, lane, source, outs in zip(configs, self.mux.lanes, sources, sinks,
                                              strict=True):
            lane.capacity = config.queue_size
            pipeline = Pipeline(config, segmenter, source, outs, stop, feed=lane)
            lane.abort = pipeline.abort  # a failed stream's frames are dropped, not waited on
            self.pipelines.append(pipeline)
        limit = policy.limit(segmenter.static_batch, len(configs))
        self.recorder = BatchRecorder(limit, segmenter.static_batch, policy.wait_ms)
        self.abort = threading.Event()  # the shared stage failed: every stream ends
        self.shared_error: BaseException | None = None
        self.interrupt: BaseException | None = None  # e.g. a second Ctrl-C on the main thread
        self.batcher = Batcher(self.mux, self.pipelines, segmenter.infer_many, limit,
                               policy.wait_ms / 1e3, self.abort, self.recorder)

    def _infer_loop(self) -> None:
        try:
            self.batcher.loop()
        except BaseException as err:  # noqa: BLE001 - re-raised on the main thread
            self.shared_error = err
            self.abort.set()
            for pipeline in self.pipelines:
                pipeline.fail(err)
            self.mux.close()

    def _threads(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._infer_loop, name="segrun-infer", daemon=True)]
        for name, pipeline in zip(self.names, self.pipelines, strict=True):
            threads += pipeline.workers(prefix=f"segrun-{name}")
        return threads

    def _drive(self, threads: list[threading.Thread]) -> None:
        """Main thread: watch stop requests, drive main-thread sinks (windows), wait."""
        open_main = [p for p in self.pipelines if p.in_main]
        while open_main or any(t.is_alive() for t in threads):
            for pipeline in self.pipelines:
                pipeline.watch_stop()
            if not open_main:
                next(t for t in threads if t.is_alive()).join(timeout=_POLL_S)
                continue
            for pipeline in list(open_main):
                try:
                    more = pipeline.sink_next(_POLL_S / len(open_main))
                except Exception as err:  # noqa: BLE001 - this stream fails, not the run
                    pipeline.fail(err)
                    more = False
                if not more:
                    open_main.remove(pipeline)

    def run(self) -> MultiRunStats:
        threads = self._threads()
        start = time.perf_counter()
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
                for pipeline in self.pipelines:
                    pipeline.abort.set()
                self.abort.set()
                self.mux.close()
            for pipeline in self.pipelines:
                pipeline.watch_stop()  # a reader may be waiting on a silent live stream
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(timeout=_POLL_S)
            wall = time.perf_counter() - start
        return self._stats(start, wall, finished)

    def _stats(self, start: float, wall: float, finished: bool) -> MultiRunStats:
        streams: list[RunStats] = []
        degraded: list[str] = []
        for name, p in zip(self.names, self.pipelines, strict=True):
            own_wall = (p.done_at - start) if p.done_at is not None else wall
            stats = p.finish(max(own_wall, 1e-9), finished)
            if p.error is not None and self.shared_error is None:
                stats = stats.with_degraded(f"{p.source_name}: stream failed: "
                                            f"{redact(str(p.error))}")
            streams.append(stats)
            degraded += [f"{name}: {why}" for why in stats.degraded]
        total = sum(s.frames_processed for s in streams)
        first = streams[0]
        reason = stop_reason(self.shared_error, self.stop, finished, "end of stream")
        aggregate: dict[str, Any] = {
            "streams": len(streams),
            "frames_read": sum(s.frames_read for s in streams),
            "frames_processed": total,
            "frames_dropped": sum(s.frames_dropped for s in streams),
            "frames_corrupt": sum(s.frames_corrupt for s in streams),
            "wall_s": round(wall, 4), "fps": round(total / wall, 3) if wall > 0 else 0.0,
            "model": first.model, "backend": first.backend, "provider": first.provider,
            "backend_reason": first.backend_reason, "stop_reason": reason,
            "interrupted": self.stop.signum is not None or not finished,
            **self.recorder.to_dict()}
        return MultiRunStats(tuple(streams), self.names, aggregate, tuple(degraded))

    def error(self) -> BaseException | None:
        """What to raise: an interrupt of the main thread, the shared model's failure, or
        the first one when every stream failed (nothing was delivered anywhere); None when
        some stream succeeded."""
        if self.interrupt is not None:
            return self.interrupt
        if self.shared_error is not None:
            return self.shared_error
        errors = [p.error for p in self.pipelines]
        if all(e is not None for e in errors):
            return errors[0]
        return None


def _open_sources(configs: Sequence[RunConfig]) -> list[Source]:
    sources: list[Source] = []
    try:
        for config in configs:
            sources.append(in_background_thread(
                lambda c=config: open_source(c.source, c.source_options),  # type: ignore[misc]
                config.background_nice))
            log.info("source %s", redact(config.source))
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


def run_many(configs: Sequence[RunConfig], stats_path: Path | None = None,
             stop: StopRequest | None = None, *, names: Sequence[str] | None = None,
             batching: BatchPolicy | None = None) -> MultiRunStats:
    """Run every stream of ``configs`` on ONE opened model, inference batched across them.

    Each config is a complete single-stream config; what opens the model
    (``SHARED_FIELDS``) must be the same in all (InputError otherwise).  ``names``
    default to each config's ``stream``, else stream1, stream2, ...  ``stats_path``
    receives the combined JSON (also on failure).  A failure of the shared model, or of
    every stream, is raised after the outputs are closed and the stats written.
    """
    configs = tuple(configs)
    if not configs:
        raise InputError("SOURCE", "one or more streams", "none")
    names_t = stream_names(configs, names)
    check_shared(configs, names_t)
    for name, config in zip(names_t, configs, strict=True):
        if config.stats_path is not None:
            raise InputError(f"stream {name} stats_path", "None (run_many writes one combined "
                             "stats file: its stats_path)", str(config.stats_path))
    if stats_path is not None:
        check_writable(stats_path, "--stats")
    policy = batching or BatchPolicy()
    stop = stop or StopRequest()
    segmenter: Segmenter | None = None
    sources: list[Source] = []
    started = False
    try:
        segmenter = open_segmenter(configs[0])  # the configs agree on it (checked above)
        sources = _open_sources(configs)
        sinks = _open_sinks(configs, sources)
        with opencv_single_threaded(), stop_on_signals(stop):
            try:
                engine = _Engine(configs, names_t, segmenter, sources, sinks, stop, policy)
            except BaseException:
                _close_unused(sinks)
                raise
            started = True
            stats = engine.run()
        stats = write_stats(stats, stats_path)
        error = engine.error()
        if error is not None:
            raise error
        return stats
    except BaseException as err:
        if not started:
            write_stats(_failure(configs, names_t, err, segmenter), stats_path)
        raise
    finally:
        for source in sources:
            source.close()
        if segmenter is not None:
            segmenter.close()
