"""The inference stage of every run: fair lanes in, batches out, results back in order.

One stream or several (runtime.engine): a single stream is a run with one lane.

Each stream's reader puts its preprocessed frames into its own *lane*.  A lane
bounds the frames that stream has in flight (from the lane until its
postprocess stage takes them back), so a stream whose sink stalls stops only
its own reader, and a stream whose source stalls simply has nothing in its
lane: the one inference thread never waits on a particular stream.  The
inference thread takes up to ``limit`` ready frames round-robin over the
lanes (waiting at most ``wait_ms`` for more when a lane could still add
some), runs them as one call (``Segmenter.infer_many``: a dynamic batch, or a
static one padded) and hands each result back to its stream.  One thread and
per-lane FIFOs keep every stream's frame order.

Modes (``BatchPolicy.mode``, ``segrun --mode``): *latency* keeps one frame of
a lane in flight (its reader takes the newest frame of a live source only
when the previous one left inference) and one inference call at a time;
*throughput* lets each lane hold ``queue_size`` frames and keeps up to
``in_flight`` calls running at once (the backend says how many it can run
concurrently: ``max_in_flight``, default 1), results still delivered in
submission order, so every lane keeps its frame order.  *auto*: latency for
a single live source, throughput otherwise (files, folders, several streams).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from segedge.runtime.errors import InputError
from segedge.runtime.modes import MODES, Mode
from segedge.runtime.stats import LatencyRecorder, summary_dict

_POLL_S = 0.1
MAX_BATCH = 64  # beyond this a typo, not a policy: frames of 64 streams in one call


@dataclass(frozen=True)
class BatchPolicy:
    """How many frames one inference call may take and how long to wait for them.

    ``max_batch`` None: the artifact's static batch, or one frame per stream when its
    batch is dynamic.  ``wait_ms``: once a frame is ready, how long to wait for more
    (latency traded for larger batches; recorded as ``batch_wait_ms`` in the stats).
    ``mode``: latency, throughput, or auto (by the sources: see the module docstring).
    """

    max_batch: int | None = None
    wait_ms: float = 4.0
    mode: Mode = "auto"

    def __post_init__(self) -> None:
        if self.max_batch is not None and not 1 <= self.max_batch <= MAX_BATCH:
            raise InputError("--max-batch", f"a frame count in [1, {MAX_BATCH}]", self.max_batch)
        if not 0.0 <= self.wait_ms <= 1000.0:
            raise InputError("--batch-wait", "milliseconds in [0, 1000]", self.wait_ms)
        if self.mode not in MODES:
            raise InputError("--mode", " | ".join(MODES), repr(self.mode))

    def limit(self, static_batch: int | None, streams: int) -> int:
        """Frames per call: never more than a static batch holds."""
        if static_batch is not None:
            return min(static_batch, self.max_batch or static_batch)
        return self.max_batch or max(1, min(streams, MAX_BATCH))


class Lane:
    """One stream's share of the shared inference stage (``stages.Feed``)."""

    def __init__(self, mux: Mux, index: int, capacity: int) -> None:
        self.mux, self.index, self.capacity = mux, index, capacity
        self.room = threading.Condition(mux.lock)  # this lane's reader waits here for room
        self.pending: deque[Any] = deque()
        self.in_flight = 0  # put and not yet taken back by the stream's postprocess stage
        self.ended = False  # the reader has no more frames
        self.reported = False  # the batcher has been told (end delivered or stream dead)
        self.abort = threading.Event()  # the lane's own abort (set by the engine)
        self.read_ahead = True  # False (latency mode): the next frame is read once there is room

    def wait_room(self, abort: threading.Event) -> bool:
        """Without ``read_ahead``, block until the lane has room, so the frame read next is
        the newest one when inference can take it; False once ``abort`` (or closed)."""
        if self.read_ahead:
            return True
        with self.mux.cond:
            while self.in_flight >= self.capacity:
                if abort.is_set() or self.mux.closed.is_set():
                    return False
                self.room.wait(_POLL_S)
        return not abort.is_set()

    def put(self, item: Any, abort: threading.Event) -> bool:
        with self.mux.cond:
            while self.in_flight >= self.capacity:
                if abort.is_set() or self.mux.closed.is_set():
                    return False
                self.room.wait(_POLL_S)
            if abort.is_set() or self.mux.closed.is_set():
                return False
            self.pending.append(item)
            self.in_flight += 1
            self.mux.cond.notify_all()  # the inference thread
        return True

    def end(self) -> None:
        with self.mux.cond:
            self.ended = True
            self.mux.cond.notify_all()

    def release(self) -> None:
        """A frame of this stream left the shared stage (its postprocess took it)."""
        with self.mux.cond:
            self.in_flight = max(0, self.in_flight - 1)
            self.room.notify()  # this lane's reader (the only one waiting for its room)
            if self.mux.growing:  # the inference thread waits for this lane to add more
                self.mux.cond.notify_all()

    @property
    def dead(self) -> bool:
        return self.abort.is_set()

    def can_grow(self) -> bool:
        return not self.ended and not self.dead and self.in_flight < self.capacity


@dataclass(frozen=True)
class Batch:
    items: list[tuple[int, Any]]  # (lane index, item), each lane's items in its order
    finished: list[int]  # lanes whose last frame is in this batch or earlier
    wait_ms: float  # how long the first ready frame waited for the others


class Mux:
    """The lanes and the round-robin take of the inference thread."""

    def __init__(self, streams: int, capacity: int) -> None:
        # One lock, a wait list per waiter, so that a hand-off wakes only the thread it
        # concerns: the inference thread waits on ``cond`` (frames ready, a lane ended, a
        # call done), each lane's reader on its lane's ``room`` (a frame of that lane left
        # the shared stage, or closing).
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.growing = False  # the inference thread waits for lanes that can add frames
        self.closed = threading.Event()
        self.lanes = [Lane(self, i, capacity) for i in range(streams)]
        self._next = 0

    def _sweep(self) -> list[int]:
        """Lanes that just finished: ended and drained, or dead (their frames dropped)."""
        done = []
        for lane in self.lanes:
            if lane.reported:
                continue
            if lane.dead:
                lane.pending.clear()
                lane.reported = True
            elif lane.ended and not lane.pending:
                lane.reported = True
                done.append(lane.index)
        return done

    def _ready(self) -> int:
        return sum(len(lane.pending) for lane in self.lanes if not lane.dead)

    def take(self, limit: int, wait_s: float, abort: threading.Event,
             wake: Callable[[], bool] | None = None) -> Batch | None:
        """Up to ``limit`` frames, round-robin over the lanes; None once every lane finished
        (or ``abort``); an empty batch as soon as ``wake()`` while none is ready (a request
        in flight completed: its results are to be delivered)."""
        with self.cond:
            finished = self._sweep()
            while not self._ready() and not finished:
                if abort.is_set() or all(lane.reported for lane in self.lanes):
                    return None
                if wake is not None and wake():
                    return Batch([], [], 0.0)
                self.cond.wait(_POLL_S)
                finished = self._sweep()
            t0 = time.perf_counter()
            deadline = t0 + wait_s
            self.growing = True
            while (self._ready() < limit and any(lane.can_grow() for lane in self.lanes)
                   and not abort.is_set()):
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self.cond.wait(left)
            self.growing = False
            waited = (time.perf_counter() - t0) * 1e3 if self._ready() else 0.0
            items: list[tuple[int, Any]] = []
            order = self.lanes[self._next:] + self.lanes[:self._next]
            self._next = (self._next + 1) % len(self.lanes)
            while len(items) < limit:
                took = False
                for lane in order:
                    if len(items) < limit and lane.pending and not lane.dead:
                        items.append((lane.index, lane.pending.popleft()))
                        took = True
                if not took:
                    break
            finished += self._sweep()
            return Batch(items, finished, waited)

    def close(self) -> None:
        """Unblock every reader waiting for room (the run is ending)."""
        self.closed.set()
        with self.cond:
            self.cond.notify_all()
            for lane in self.lanes:
                lane.room.notify_all()

    def notify(self) -> None:
        """Wake whoever waits on the lanes (a request in flight completed)."""
        with self.cond:
            self.cond.notify_all()


class BatchRecorder:
    """Batch sizes (histogram), wait and inference times of the shared stage, and how long
    at least one call was running (``busy_s``): over the frames, the stage's time per frame
    whatever the calls in flight (one call's own time is inflated by the others running)."""

    def __init__(self, limit: int, static_batch: int | None, wait_ms: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.static_batch, self.wait_limit_ms = limit, static_batch, wait_ms
        self.sizes: dict[int, int] = {}
        self.wait = LatencyRecorder()
        self.per_batch = LatencyRecorder()
        self.per_frame = LatencyRecorder()
        self._lock = threading.Lock()
        self._clock = clock
        self._running, self._since, self.busy_s = 0, 0.0, 0.0

    def call_started(self) -> None:
        with self._lock:
            if self._running == 0:
                self._since = self._clock()
            self._running += 1

    def call_ended(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                self.busy_s += self._clock() - self._since

    def add(self, size: int, wait_ms: float, infer_ms: float) -> None:
        with self._lock:
            self.sizes[size] = self.sizes.get(size, 0) + 1
        self.wait.add(wait_ms)
        self.per_batch.add(infer_ms)
        self.per_frame.add(infer_ms / size)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            sizes = dict(sorted(self.sizes.items()))
        calls = sum(sizes.values())
        frames = sum(k * v for k, v in sizes.items())
        return {
            "batch": {"limit": self.limit, "artifact_batch": self.static_batch or "dynamic",
                      "wait_limit_ms": self.wait_limit_ms, "calls": calls,
                      "mean": round(frames / calls, 3) if calls else 0.0,
                      "histogram": {str(k): v for k, v in sizes.items()}},
            "batch_wait_ms": summary_dict(self.wait.summary()),
            "infer_ms_per_batch": summary_dict(self.per_batch.summary()),
            "infer_ms_per_frame": summary_dict(self.per_frame.summary()),
            # wall time with a call running, per frame: 1000 / the stage's own FPS
            "infer_busy_ms_per_frame": round(self.busy_s * 1e3 / frames, 3) if frames
            else None,
        }


class Stream(Protocol):
    """What the batcher needs of a stream's pipeline."""

    rec: Any

    def deliver(self, item: Any) -> bool: ...

    def deliver_end(self) -> bool: ...


InferMany = Callable[[Sequence[Any]], list[dict[str, Any]]]


Group = list[tuple[int, Any]]  # (lane index, item) of one inference call
Call = tuple[Group, float, "Future[tuple[list[dict[str, Any]], float]]"]


@dataclass
class Batcher:
    """The inference stage of a run (one lane per stream; one lane for one stream): one
    thread takes batches; with ``in_flight`` > 1 up to that many calls run at once on a
    small pool and complete in submission order."""

    mux: Mux
    streams: Sequence[Stream]
    infer_many: InferMany
    limit: int
    wait_s: float
    abort: threading.Event
    recorder: BatchRecorder
    in_flight: int = 1

    def loop(self) -> None:
        if self.in_flight > 1:
            self._loop_in_flight()
            return
        while (batch := self.mux.take(self.limit, self.wait_s, self.abort)) is not None:
            for group in self._groups(batch):
                outputs, ms = self._call(group)
                self._deliver(group, outputs, ms, batch.wait_ms)
            for lane in batch.finished:
                self.streams[lane].deliver_end()

    @staticmethod
    def _groups(batch: Batch) -> list[Group]:
        groups: dict[tuple[int, ...], Group] = {}
        for lane, item in batch.items:  # a dynamic-size artifact cannot stack sizes
            groups.setdefault(tuple(item.tensor.shape), []).append((lane, item))
        return list(groups.values())

    def _call(self, group: Group) -> tuple[list[dict[str, Any]], float]:
        self.recorder.call_started()
        try:
            m0, p0 = time.monotonic(), time.perf_counter()
            outputs = self.infer_many([item.tensor for _, item in group])
            ms, m1 = (time.perf_counter() - p0) * 1e3, time.monotonic()
        finally:
            self.recorder.call_ended()
        for _, item in group:  # where each frame's latency went (stats.FrameLog)
            item.infer_span = (m0, m1)
        return outputs, ms

    def _deliver(self, group: Group, outputs: list[dict[str, Any]], ms: float,
                 wait_ms: float) -> None:
        self.recorder.add(len(group), wait_ms, ms)
        for (lane, item), out in zip(group, outputs, strict=True):
            item.outputs, item.tensor = out, None
            stream = self.streams[lane]
            stream.rec.add("infer", ms)
            if not self.mux.lanes[lane].dead:
                stream.deliver(item)

    def _loop_in_flight(self) -> None:
        """Throughput: keep up to ``in_flight`` calls running; deliver results (and lane
        ends) strictly in the order the calls were started, so each lane keeps its order."""
        pending: deque[Call | int] = deque()  # calls and lane ends (ints), in order

        def head_done() -> bool:
            return bool(pending) and (isinstance(pending[0], int) or pending[0][2].done())

        def complete_head() -> None:
            entry = pending.popleft()
            if isinstance(entry, int):
                self.streams[entry].deliver_end()
                return
            group, wait_ms, future = entry
            outputs, ms = future.result()  # a failed call raises here: every lane ends
            self._deliver(group, outputs, ms, wait_ms)

        pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="segrun-infer")
        try:
            while True:
                while head_done():
                    complete_head()
                if sum(not isinstance(e, int) for e in pending) >= self.in_flight:
                    complete_head()  # every slot busy: wait for the oldest call
                    continue
                batch = self.mux.take(self.limit, self.wait_s, self.abort, wake=head_done)
                if batch is None:
                    break
                for group in self._groups(batch):
                    future = pool.submit(self._call, group)
                    future.add_done_callback(lambda _: self.mux.notify())
                    pending.append((group, batch.wait_ms, future))
                pending.extend(batch.finished)
            while pending and not self.abort.is_set():
                complete_head()
        finally:
            for entry in pending:
                if not isinstance(entry, int):
                    entry[2].cancel()
            pool.shutdown(wait=True)
