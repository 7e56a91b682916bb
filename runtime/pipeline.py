"""capture -> preprocess -> infer -> postprocess -> draw -> sink, overlapped.

Four threads joined by small bounded queues: read+preprocess, infer,
postprocess+draw, and the sinks on the calling (main) thread, where GUI
calls and signal handlers must run.  Each stage is one thread, so frame
order is preserved; the queues bound memory and latency.  OpenCV and ONNX
Runtime release the GIL, so decoding, drawing and encoding proceed while the
model runs.

Several streams (runtime.streams) reuse these stages per stream; only the
inference stage is shared: a stream built with a ``Feed`` hands its frames to
the one batching inference thread (runtime.batching), which ``deliver``s the
results back in order.

Stopping: a graceful stop (Ctrl-C, SIGTERM, q in the window, --max-frames)
stops the reader and lets in-flight frames drain, then finalises the
outputs.  An error in any stage aborts all of them; the video stays under
its partial name and the error is re-raised after cleanup.

Nothing that failed passes for success: each sink's outcome (verified, failed,
partial) goes into the stats, and a lost live source, a source none of whose
frames could be read or a failed output make the run *degraded*
(``RunStats.degraded``, exit 4).  The stats file is written whatever happens:
also when the model or source fails to open, on errors and on interruption.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np

from segedge.runtime.cli_support import Terminated
from segedge.runtime.config import RunConfig
from segedge.runtime.draw import resolve_classes
from segedge.runtime.preprocess import Geometry
from segedge.runtime.priority import in_background_thread, lower_priority
from segedge.runtime.redact import redact
from segedge.runtime.segmenter import Segmenter
from segedge.runtime.signals import StopRequest, stop_on_signals
from segedge.runtime.sinks import Sink, SinkOutcome, needs_pixels, sinks_for
from segedge.runtime.sources.base import Source, open_source
from segedge.runtime.stats import RunStats, StatsRecorder
from segedge.runtime.view import attach_view

__all__ = ["RunConfig", "RunStats", "run"]

log = logging.getLogger("segedge.runtime")
_END = object()
_POLL_S = 0.1


@dataclass(slots=True)
class _Item:
    index: int
    t0: float  # time.monotonic() when the frame was captured / its read began
    frame: np.ndarray | None
    tensor: np.ndarray | None = None
    geom: Geometry | None = None
    outputs: dict[str, np.ndarray] | None = None
    labels: np.ndarray | None = None  # the task's per-pixel map (class labels, instance ids)
    image: np.ndarray | None = None


class Feed(Protocol):
    """Where a stream's preprocessed frames go when inference is shared (runtime.batching):
    ``put`` blocks while the stream's share is full and returns False once ``abort`` is set;
    ``end`` says the stream has no more frames (never blocks); ``release`` that the
    postprocess stage took a frame back (its share has room again)."""

    def put(self, item: Any, abort: threading.Event) -> bool: ...

    def end(self) -> None: ...

    def release(self) -> None: ...


class Pipeline:
    """One stream's stages.  With ``feed`` the inference stage is not its own: frames go
    to the feed and results come back through ``deliver`` (several streams, one model)."""

    def __init__(self, config: RunConfig, segmenter: Segmenter, source: Source,
                 sinks: list[Sink], stop: StopRequest, feed: Feed | None = None) -> None:
        self.config, self.seg, self.source, self.sinks = config, segmenter, source, sinks
        self.stop = stop
        self.feed = feed
        self.done_at: float | None = None  # perf_counter() when the last frame was written
        self.source_name = redact(config.source)  # as the user named it, password masked
        self.abort = threading.Event()
        self.error: BaseException | None = None
        self.rec = StatsRecorder()
        self.reason = "end of stream"
        self._source_closed = False
        resolve_classes(config.draw.ignore, segmenter.classes)  # bad names fail even headless
        task, options = segmenter.task, segmenter.decode_options
        self.drawer = (task.drawer(config.draw, segmenter.metadata, options)
                       if needs_pixels(sinks) else None)
        attach_view(self.drawer, sinks)  # window keys change what the drawer draws
        self.frame_stats = task.stats(options)  # what each frame adds to the stats JSON
        size = config.queue_size
        self.q_infer: queue.Queue[Any] = queue.Queue(size)
        self.q_post: queue.Queue[Any] = queue.Queue(size)
        self.q_sink: queue.Queue[Any] = queue.Queue(size)

    # -- queue helpers: never block forever once another stage has failed --
    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        while not self.abort.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue[Any]) -> Any:
        while not self.abort.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def _guard(self, loop: Callable[[], None], nice: int = 0) -> Callable[[], None]:
        def wrapped() -> None:
            try:
                lower_priority(nice)
                loop()
            except BaseException as err:  # noqa: BLE001 - re-raised on the main thread
                self.fail(err)

        return wrapped

    # -- stages --
    def _read_loop(self) -> None:
        try:
            count, start = 0, time.monotonic()
            pace = self.config.realtime and not self.source.live and self.source.fps
            while not self.stop.is_set() and not self.abort.is_set():
                if self.config.max_frames is not None and count >= self.config.max_frames:
                    self.reason = "max frames"
                    break
                t0, p0 = time.monotonic(), time.perf_counter()
                frame = self.source.read()
                if frame is None:
                    if getattr(self.source, "lost", False):
                        self.reason = "source lost"
                    break
                p1 = time.perf_counter()
                count += 1
                self.rec.counters.add("read")
                self.rec.add("read", (p1 - p0) * 1e3)
                if pace:
                    self.stop.wait(max(0.0, start + count / float(pace) - time.monotonic()))
                split: dict[str, float] = {}
                tensor, geom = self.seg.preprocess(frame.image, split)
                resize_ms = split.get("resize", 0.0)
                self.rec.add("resize", resize_ms)
                self.rec.add("preprocess", (time.perf_counter() - p1) * 1e3 - resize_ms)
                t_start = frame.timestamp if self.source.live else t0
                if not self._submit(_Item(frame.index, t_start, frame.image, tensor, geom)):
                    return
        finally:
            if self.feed is not None:
                self.feed.end()
            else:
                self._put(self.q_infer, _END)

    def _submit(self, item: _Item) -> bool:
        if self.feed is not None:
            return self.feed.put(item, self.abort)
        return self._put(self.q_infer, item)

    def deliver(self, item: Any) -> bool:
        """A frame back from shared inference (``outputs`` set), in frame order."""
        return self._put(self.q_post, item)

    def deliver_end(self) -> bool:
        """Shared inference has delivered this stream's last frame."""
        return self._put(self.q_post, _END)

    def _infer_loop(self) -> None:
        try:
            while (item := self._get(self.q_infer)) is not _END:
                p0 = time.perf_counter()
                item.outputs = self.seg.infer(item.tensor)
                item.tensor = None
                self.rec.add("infer", (time.perf_counter() - p0) * 1e3)
                if not self._put(self.q_post, item):
                    return
        finally:
            self._put(self.q_post, _END)

    def _post_loop(self) -> None:
        try:
            while (item := self._get(self.q_post)) is not _END:
                if self.feed is not None:
                    self.feed.release()
                p0 = time.perf_counter()
                result = self.seg.decode(item.outputs or {}, item.geom)
                item.outputs = None
                item.labels = result.mask
                self.frame_stats.add(item.index, result)
                p1 = time.perf_counter()
                self.rec.add("postprocess", (p1 - p0) * 1e3)
                if self.drawer is not None:
                    wanted = getattr(self.drawer, "hud_wanted", self.config.draw.hud)
                    hud = self.rec.hud_lines() if wanted else None
                    item.image = self.drawer.draw(item.frame, result, hud)
                    self.rec.add("draw", (time.perf_counter() - p1) * 1e3)
                item.frame = None
                if not self._put(self.q_sink, item):
                    return
        finally:
            self._put(self.q_sink, _END)

    def watch_stop(self) -> None:
        if ((self.stop.is_set() or self.abort.is_set()) and not self._source_closed
                and self.source.live):
            self._source_closed = True  # unblock a reader waiting on a silent stream
            self.source.close()

    def _sink_loop(self, on_poll: Callable[[], None] | None = None) -> None:
        while True:
            if on_poll is not None:
                on_poll()
            if not self.sink_next(_POLL_S):
                return

    def sink_next(self, timeout: float) -> bool:
        """Write the next finished frame to every sink (waiting up to ``timeout`` for one);
        False once the stream has ended or aborted."""
        try:
            item = self.q_sink.get(timeout=timeout)
        except queue.Empty:
            return not self.abort.is_set()
        if item is _END or self.abort.is_set():
            self.done_at = time.perf_counter()
            return False
        p0 = time.perf_counter()
        for sink in self.sinks:
            sink.write(item.index, item.image, item.labels)
        now = time.perf_counter()
        self.rec.add("write", (now - p0) * 1e3)
        self.rec.add("latency", (time.monotonic() - item.t0) * 1e3)
        self.rec.counters.add("processed")
        self.rec.fps.tick(now)
        if any(s.quit_requested for s in self.sinks):
            self.stop.set("window closed")
        return True

    @property
    def in_main(self) -> bool:
        """GUI calls must stay on the main thread: then the caller drives the sinks."""
        return any(s.main_thread for s in self.sinks)

    def workers(self, prefix: str = "segrun") -> list[threading.Thread]:
        """The stage threads (not started); no inference thread with a shared feed, no sink
        thread when the sinks must run on the main thread."""
        nice = self.config.background_nice
        loops: list[tuple[str, Callable[[], None], int]] = [(f"{prefix}-read", self._read_loop,
                                                             nice)]
        if self.feed is None:
            loops.append((f"{prefix}-infer", self._infer_loop, 0))
        loops.append((f"{prefix}-post", self._post_loop, nice))
        if not self.in_main:
            loops.append((f"{prefix}-sink", self._sink_loop, nice))
        return [threading.Thread(target=self._guard(loop, n), name=name, daemon=True)
                for name, loop, n in loops]

    def fail(self, err: BaseException) -> None:
        """Record ``err`` (the first one wins) and abort every stage of this stream."""
        if self.error is None:
            self.error = err
        self.abort.set()

    def finish(self, wall: float, finished: bool) -> RunStats:
        """After every stage thread ended: close the sinks (finalised unless the stream
        failed) and build this stream's stats."""
        if not finished or self.error is not None:
            self.abort.set()
            if self.source.live and not self._source_closed:
                self._source_closed = True
                self.source.close()
        outcomes = self._close_sinks(complete=self.error is None)
        return self._stats(wall, finished, outcomes)

    def run(self) -> RunStats:
        # GUI calls must stay on the main thread; otherwise sinks get their own
        # (background-priority) thread and the main thread only watches signals.
        in_main = self.in_main
        workers = self.workers()
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        finished = False
        try:
            if in_main:
                self._sink_loop(self.watch_stop)
            else:
                while workers[-1].is_alive():
                    self.watch_stop()
                    workers[-1].join(timeout=_POLL_S)
            finished = True
        except KeyboardInterrupt:
            raise  # second Ctrl-C: clean up below, then leave
        except BaseException as err:  # noqa: BLE001 - re-raised after cleanup
            if self.error is None:
                self.error = err
        finally:
            if not finished or self.error is not None:
                self.abort.set()
                if self.source.live and not self._source_closed:
                    self._source_closed = True  # a reader may be waiting on the stream
                    self.source.close()
            while any(w.is_alive() for w in workers):
                for worker in workers:
                    worker.join(timeout=_POLL_S)
            # Interrupted runs are finalised (the user asked to stop); failed ones are not.
            stats = self.finish(time.perf_counter() - start, finished)
            stats = write_stats(stats, self.config.stats_path)
        if self.error is not None:
            raise self.error
        return stats

    def _close_sinks(self, complete: bool) -> list[SinkOutcome]:
        """Every sink is closed, even when one fails to; each says what it delivered."""
        outcomes: list[SinkOutcome] = []
        for sink in self.sinks:
            try:
                outcome = sink.close(complete)
            except Exception as err:  # noqa: BLE001 - one sink must not cost the others
                target = str(getattr(sink, "path", getattr(sink, "directory", type(sink))))
                log.debug("closing %s failed", target, exc_info=True)
                outcome = SinkOutcome(target, 0, "failed", f"closing it failed: "
                                      f"{type(err).__name__}: {err}")
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _stats(self, wall: float, finished: bool, outcomes: list[SinkOutcome]) -> RunStats:
        reason = stop_reason(self.error, self.stop, finished, self.reason)
        output = self.config.outputs[0] if self.config.outputs else None
        stats = self.rec.finish(
            wall, dropped=self.source.dropped, corrupt=self.source.corrupt,
            model=redact(str(self.config.model)), source=self.source_name,
            backend=self.seg.backend.name, provider=self.seg.active,
            backend_reason=self.seg.backend_reason,
            output=str(output) if output is not None else None,
            interrupted=self.stop.signum is not None or not finished,
            stop_reason=reason, extra=self.frame_stats.extra(),
            frames_written={o.target: o.frames_written for o in outcomes},
            outputs={o.target: o.status for o in outcomes})
        degraded = [f"{o.target}: {o.detail}" for o in outcomes if o.failed]
        if self.error is None and reason == "source lost":
            degraded.insert(0, f"{self.source_name}: source lost (every reconnect attempt "
                               "failed)")
        elif (self.error is None and finished and self.stop.reason is None
              and stats.frames_processed == 0):
            corrupt = stats.frames_corrupt
            degraded.insert(0, f"{self.source_name}: no frame could be processed"
                            + (f" ({corrupt} unreadable)" if corrupt
                               else " (the source delivered none)"))
        return stats.with_degraded(*degraded) if degraded else stats


def stop_reason(error: BaseException | None, stop: StopRequest, finished: bool,
                ended: str) -> str:
    """Why a run stopped, one rule for one stream and several: an error, then a stop request
    (signal, window, max frames), then an unfinished run, else how the source ``ended``."""
    if error is not None:
        return f"error: {redact(str(error))}"
    if stop.reason is not None:
        return stop.reason
    return "interrupted" if not finished else ended


S = TypeVar("S", bound="_Writable")


class _Writable(Protocol):
    def write(self, path: Path) -> Any: ...

    def with_degraded(self, *reasons: str) -> Any: ...


def write_stats(stats: S, path: Path | None) -> S:
    """Write ``--stats`` (one stream's or several's); a failure to (disk full) degrades the
    run instead of losing it."""
    if path is None:
        return stats
    try:
        stats.write(path)
    except OSError as err:
        return stats.with_degraded(f"{path}: stats file not written ({err.strerror or err})")
    return stats


def failure_stats(config: RunConfig, err: BaseException,
                  segmenter: Segmenter | None = None) -> RunStats:
    """Stats of a run that ended before its pipeline started (model, source or sink failed)."""
    if isinstance(err, Terminated):
        reason, interrupted = "SIGTERM", True
    elif isinstance(err, KeyboardInterrupt):
        reason, interrupted = "SIGINT", True
    else:
        reason, interrupted = f"error: {redact(str(err))}", False
    return StatsRecorder().finish(
        0.0, dropped=0, corrupt=0, model=redact(str(config.model)), source=redact(config.source),
        backend=segmenter.backend.name if segmenter is not None else "",
        provider=segmenter.active if segmenter is not None else "",
        backend_reason=segmenter.backend_reason if segmenter is not None else "",
        output=config.outputs[0] if config.outputs else None,
        interrupted=interrupted, stop_reason=reason)


def open_segmenter(config: RunConfig) -> Segmenter:
    """The model of a run (one stream's, or the one shared by several), as its config asks."""
    segmenter = Segmenter(config.model, backend=config.backend,
                          postprocess=config.postprocess,
                          score_threshold=config.score_threshold,
                          options=config.backend_options)
    log.info("model %s on %s", config.model, segmenter.backend_reason)
    return segmenter


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


def run(config: RunConfig, stop: StopRequest | None = None) -> RunStats:
    """Run the whole pipeline for ``config``; SIGINT/SIGTERM stop it cleanly."""
    stop = stop or StopRequest()
    segmenter: Segmenter | None = None
    started = False
    try:
        segmenter = open_segmenter(config)
        source = in_background_thread(
            lambda: open_source(config.source, config.source_options), config.background_nice)
        try:
            log.info("source %s", redact(config.source))
            sinks = sinks_for(config, source)
            with opencv_single_threaded(), stop_on_signals(stop):
                pipeline = Pipeline(config, segmenter, source, sinks, stop)
                started = True
                return pipeline.run()
        finally:
            source.close()
    except BaseException as err:
        if not started:  # the pipeline writes its own stats; before it, nobody did
            write_stats(failure_stats(config, err, segmenter), config.stats_path)
        raise
    finally:
        if segmenter is not None:
            segmenter.close()
