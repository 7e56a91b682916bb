"""One stream's own stages in a run: read+preprocess, postprocess+draw, and the sinks.

A run (runtime.engine) is one lane per stream around ONE inference stage:
each lane's reader hands its preprocessed frames to its ``Feed`` (its share of
the shared inference stage, runtime.batching.Lane), and the inference thread
``deliver``s the results back in frame order.  Each stage is one thread, so
frame order is preserved; bounded queues and the feed's share bound memory
and latency.  OpenCV and the inference libraries release the GIL, so
decoding, drawing and encoding proceed while the model runs.  When a sink
must run on the main thread (a window: GUI calls and signal handlers live
there) the engine drives ``sink_next`` from the main thread instead.

Stopping: a stop request (Ctrl-C, SIGTERM, q in the window, --max-frames)
stops the reader and lets in-flight frames drain; an error in one of the
lane's stages aborts the lane (``fail``).  ``finish`` closes the sinks
(finalised unless the lane failed) and says what the lane delivered: each
sink's outcome goes into the stats, and a lost live source, a source none of
whose frames could be read or a failed output make it *degraded*.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from segedge.runtime.config import RunConfig
from segedge.runtime.draw import resolve_classes
from segedge.runtime.preprocess import Geometry
from segedge.runtime.priority import lower_priority
from segedge.runtime.redact import redact
from segedge.runtime.segmenter import Segmenter
from segedge.runtime.signals import StopRequest
from segedge.runtime.sinks import Sink, SinkOutcome, needs_pixels
from segedge.runtime.sources.base import Source
from segedge.runtime.stats import RunStats, StatsRecorder
from segedge.runtime.view import attach_view

__all__ = ["Feed", "Stages", "stop_reason"]

log = logging.getLogger("segedge.runtime")
_END = object()
POLL_S = 0.1


@dataclass(slots=True)
class _Item:
    index: int
    t0: float  # time.monotonic(): the capture timestamp (live), else when its read began
    frame: np.ndarray | None
    tensor: np.ndarray | None = None
    geom: Geometry | None = None
    outputs: dict[str, np.ndarray] | None = None
    labels: np.ndarray | None = None  # the task's per-pixel map (class labels, instance ids)
    image: np.ndarray | None = None
    # time.monotonic() stamps of where the frame's latency goes (stats.FrameLog)
    read_at: float | None = None  # the reader had it (decoded)
    queued_at: float | None = None  # preprocessed, in the inference lane
    infer_span: tuple[float, float] | None = None  # set by the inference stage
    post_at: float | None = None  # its postprocess began
    drawn_at: float | None = None  # decoded and drawn

    def stamps(self, written: float) -> tuple[float | None, ...]:
        """Captured, read, queued, infer start/end, post start, drawn, ``written``."""
        start, end = self.infer_span or (None, None)
        return (self.t0, self.read_at, self.queued_at, start, end, self.post_at,
                self.drawn_at, written)


class Feed(Protocol):
    """Where a lane's preprocessed frames go (its share of the inference stage):
    ``wait_room`` before a frame is read (latency mode: until the share has room, so the
    frame read is the newest when inference can take it); ``put`` blocks while the share
    is full; both return False once ``abort`` is set; ``end`` says the lane has no more
    frames (never blocks); ``release`` that the postprocess stage took a frame back (the
    share has room again).  ``read_ahead`` False: latency mode (a frame is read only once
    inference can take it)."""

    read_ahead: bool

    def wait_room(self, abort: threading.Event) -> bool: ...

    def put(self, item: Any, abort: threading.Event) -> bool: ...

    def end(self) -> None: ...

    def release(self) -> None: ...


def stop_reason(error: BaseException | None, stop: StopRequest, finished: bool,
                ended: str) -> str:
    """Why a run or a lane stopped, one rule for all: an error, then a stop request (signal,
    window, max frames), then an unfinished run, else how the source ``ended``."""
    if error is not None:
        return f"error: {redact(str(error))}"
    if stop.reason is not None:
        return stop.reason
    return "interrupted" if not finished else ended


class Stages:
    """One lane: its source, its stage threads, its sinks and its stats recorder."""

    def __init__(self, config: RunConfig, segmenter: Segmenter, source: Source,
                 sinks: list[Sink], stop: StopRequest, feed: Feed) -> None:
        self.config, self.seg, self.source, self.sinks = config, segmenter, source, sinks
        self.stop, self.feed = stop, feed
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
        self.q_post: queue.Queue[Any] = queue.Queue(config.queue_size)
        self.q_sink: queue.Queue[Any] = queue.Queue(config.queue_size)

    # -- queue helpers: never block forever once another stage has failed --
    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        while not self.abort.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue[Any]) -> Any:
        while not self.abort.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return _END

    def _guard(self, loop: Callable[[], None], nice: int = 0) -> Callable[[], None]:
        def wrapped() -> None:
            try:
                lower_priority(nice)
                loop()
            except BaseException as err:  # noqa: BLE001 - the engine reports it
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
                if not self.feed.wait_room(self.abort):
                    return
                t0, p0 = time.monotonic(), time.perf_counter()
                frame = self.source.read()
                if frame is None:
                    if getattr(self.source, "lost", False):
                        self.reason = "source lost"
                    break
                read_at, p1 = time.monotonic(), time.perf_counter()
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
                item = _Item(frame.index, t_start, frame.image, tensor, geom, read_at=read_at,
                             queued_at=time.monotonic())
                if not self.feed.put(item, self.abort):
                    return
        finally:
            self.feed.end()

    def deliver(self, item: Any) -> bool:
        """A frame back from inference (``outputs`` set), in frame order."""
        return self._put(self.q_post, item)

    def deliver_end(self) -> bool:
        """Inference has delivered this lane's last frame."""
        return self._put(self.q_post, _END)

    def _post_loop(self) -> None:
        try:
            while (item := self._get(self.q_post)) is not _END:
                self.feed.release()
                item.post_at, p0 = time.monotonic(), time.perf_counter()
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
                item.drawn_at = time.monotonic()
                if not self._put(self.q_sink, item):
                    return
        finally:
            self._put(self.q_sink, _END)

    def _sink_loop(self) -> None:
        while self.sink_next(POLL_S):
            pass

    def sink_next(self, timeout: float) -> bool:
        """Write the next finished frame to every sink (waiting up to ``timeout`` for one);
        False once the lane has ended or aborted."""
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
        written, now = time.monotonic(), time.perf_counter()
        self.rec.add("write", (now - p0) * 1e3)
        self.rec.add("latency", (written - item.t0) * 1e3)  # exactly the parts' sum
        if self.source.live:  # the breakdown is a live source's figure (stats keep no other)
            self.rec.frames.add(item.index, item.stamps(written))
        self.rec.counters.add("processed")
        self.rec.fps.tick(now)
        if any(s.quit_requested for s in self.sinks):
            self.stop.set("window closed")
        return True

    @property
    def in_main(self) -> bool:
        """GUI calls must stay on the main thread: then the engine drives the sinks."""
        return any(s.main_thread for s in self.sinks)

    def workers(self, prefix: str = "segrun") -> list[threading.Thread]:
        """The stage threads (not started); no sink thread when the sinks must run on the
        main thread."""
        nice = self.config.background_nice
        # Latency mode: the next frame is read and preprocessed while inference waits for
        # it (critical path, overlapping nothing), so the reader keeps normal priority; the
        # postprocess, draw and sinks overlap the next inference and yield to it.
        read_nice = nice if self.feed.read_ahead else 0
        loops: list[tuple[str, Callable[[], None], int]] = [
            (f"{prefix}-read", self._read_loop, read_nice),
            (f"{prefix}-post", self._post_loop, nice)]
        if not self.in_main:
            loops.append((f"{prefix}-sink", self._sink_loop, nice))
        return [threading.Thread(target=self._guard(loop, level), name=name, daemon=True)
                for name, loop, level in loops]

    def fail(self, err: BaseException) -> None:
        """Record ``err`` (the first one wins) and abort every stage of this lane."""
        if self.error is None:
            self.error = err
        self.abort.set()

    def watch_stop(self) -> None:
        """A stopped or aborted lane closes its live source: the one place that unblocks a
        reader waiting on a silent stream."""
        if (self.stop.is_set() or self.abort.is_set()) and self.source.live \
                and not self._source_closed:
            self._source_closed = True
            self.source.close()

    def finish(self, wall: float, finished: bool) -> RunStats:
        """After every stage thread ended: close the sinks (finalised unless the lane
        failed) and build this lane's stats."""
        if not finished or self.error is not None:
            self.abort.set()
            self.watch_stop()
        outcomes = self._close_sinks(complete=self.error is None)
        return self._stats(wall, finished, outcomes)

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
            live=bool(self.source.live),
            model=redact(str(self.config.model)), source=self.source_name,
            backend=self.seg.backend.name, provider=self.seg.active,
            backend_reason=self.seg.backend_reason,
            output=output, interrupted=self.stop.signum is not None or not finished,
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
