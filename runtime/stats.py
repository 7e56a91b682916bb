"""Per-stage latency recording and the end-of-run documents (one stream's, several's).

Samples go into fixed-size ring buffers so a run of any length uses constant
memory (the soak test checks this); percentiles cover the most recent
``capacity`` frames, which is every frame for runs up to that length.

``latency`` runs from the frame's capture timestamp (live sources: stamped by
the capture thread when the library hands the frame over) or from the start
of its read (files) to when every sink has written it.  For live sources the
stats also carry it as ``capture_to_output_ms`` (p50/p90/p99) and the summary
says it in a line of its own: the glass-to-output figure a camera user needs.
Each frame's latency is also split where it was spent (``FrameLog``: frame age
when read, preprocess, queue, inference, handoff, postprocess + draw, sinks; the
parts add up to the whole, from one clock) and the last frames' records are kept
(``frame_records``), so a p50 can be checked against what each frame went through.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from segedge.runtime.cli_support import (
    EXIT_DEGRADED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
)
from segedge.runtime.errors import InputError
from segedge.runtime.io import write_text_atomic

# read = decode, resize = to the network size, preprocess = the rest (colour, layout,
# normalisation), draw = overlay, write = encode (every sink).
STAGES = ("read", "resize", "preprocess", "infer", "postprocess", "draw", "write", "latency")
# Where a frame's capture-to-output time went, between consecutive time.monotonic() stamps:
# captured -> read (age: how old the frame was when the reader got it) -> in the inference
# lane (preprocess) -> inference starts (queue) -> ends (infer) -> postprocess starts
# (handoff) -> drawn (postprocess) -> every sink wrote it (sink).
BREAKDOWN = ("age", "preprocess", "queue", "infer", "handoff", "postprocess", "sink")
RECORDS = 256  # frame records kept (the most recent)


class LatencyRecorder:
    """Thread-safe ring buffer of millisecond samples for one stage."""

    def __init__(self, capacity: int = 16384) -> None:
        self._buf = np.zeros(capacity, np.float64)
        self._count = 0
        self._ema: float | None = None
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._buf[self._count % self._buf.size] = ms
            self._count += 1
            self._ema = ms if self._ema is None else 0.9 * self._ema + 0.1 * ms

    @property
    def count(self) -> int:
        return self._count

    @property
    def recent(self) -> float:
        """Smoothed recent value, for the HUD."""
        return self._ema or 0.0

    def summary(self) -> StageSummary:
        with self._lock:
            n = min(self._count, self._buf.size)
            data = self._buf[:n].copy()
        if n == 0:
            return StageSummary(0, 0.0, 0.0, 0.0, 0.0)
        p50, p90, p99 = np.percentile(data, [50, 90, 99])
        return StageSummary(self._count, float(data.mean()), float(p50), float(p90), float(p99))


@dataclass(frozen=True)
class StageSummary:
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


class Counters:
    """Frame counters shared by the pipeline threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read = 0
        self.processed = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


class FpsMeter:
    """Frames per second over a sliding window of completion times (for the HUD)."""

    def __init__(self, window: int = 30) -> None:
        self._times = np.zeros(window, np.float64)
        self._n = 0

    def tick(self, now: float) -> None:
        self._times[self._n % self._times.size] = now
        self._n += 1

    @property
    def fps(self) -> float:
        n = min(self._n, self._times.size)
        if n < 2:
            return 0.0
        newest = self._times[(self._n - 1) % self._times.size]
        oldest = self._times[(self._n - n) % self._times.size]
        return (n - 1) / (newest - oldest) if newest > oldest else 0.0


SIGNAL_EXIT = {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": EXIT_TERMINATED}


class _StatsDocument:
    """What one stream's and several streams' statistics share: the JSON document (each
    type says its own `to_dict`), written atomically, and the degraded reasons added."""

    degraded: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def write(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename), so a reader never sees half a file."""
        return write_text_atomic(Path(path), self.to_json() + "\n")

    def with_degraded(self: _Doc, *reasons: str) -> _Doc:
        return replace(self, degraded=(*self.degraded, *reasons))  # type: ignore[type-var]


_Doc = TypeVar("_Doc", bound=_StatsDocument)


@dataclass(frozen=True)
class RunStats(_StatsDocument):
    """What a run did: a few summary lines at the end, the whole JSON with ``--stats``.

    ``source`` is the redacted URI (never a password).  ``outputs`` maps each file
    output to ``ok`` or ``STATE: why`` and ``frames_written`` to what it holds;
    ``degraded`` lists why the run did not deliver what was asked (exit code 4).
    """

    frames_read: int
    frames_processed: int
    frames_dropped: int
    frames_corrupt: int
    wall_s: float
    fps: float
    stages: dict[str, StageSummary]
    model: str = ""
    source: str = ""
    backend: str = ""
    provider: str = ""
    backend_reason: str = ""  # why this backend ran (--backend auto: what was measured)
    output: str | None = None
    interrupted: bool = False
    stop_reason: str = "end of stream"
    mode: str = ""  # latency | throughput (runtime.batching); "" when the run never started
    extra: dict[str, Any] = field(default_factory=dict)
    frames_written: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    degraded: tuple[str, ...] = ()
    # live sources: capture timestamp -> every sink wrote it, per frame (None: not live)
    capture_to_output_ms: dict[str, float] | None = None
    # live sources: that time split by stats.BREAKDOWN (percentiles of each part) and the
    # last frames' records (index, each part's ms, total_ms): what the p50 is made of
    capture_breakdown_ms: dict[str, dict[str, float]] | None = None
    frame_records: tuple[dict[str, float], ...] = ()
    # the process's CPU time (every thread, the model's included) per processed frame over
    # the run, not the model's loading; None for one stream of several (they share it)
    cpu_ms_per_frame: float | None = None

    def __post_init__(self) -> None:
        counts = {"frames_read": self.frames_read, "frames_processed": self.frames_processed,
                  "frames_dropped": self.frames_dropped, "frames_corrupt": self.frames_corrupt}
        for name, value in {**counts, **self.frames_written}.items():
            if value < 0:
                raise InputError(name, "a count >= 0", value)
        if set(self.frames_written) - set(self.outputs):
            raise InputError("frames_written", "a count per listed output",
                             sorted(set(self.frames_written) - set(self.outputs)))

    @property
    def exit_code(self) -> int:
        """Degraded (4) wins: an interrupted run whose outputs failed must not pass as
        merely interrupted; then SIGINT 130 / SIGTERM 143; else 0."""
        if self.degraded:
            return EXIT_DEGRADED
        if self.interrupted and self.stop_reason in SIGNAL_EXIT:
            return SIGNAL_EXIT[self.stop_reason]
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_lines(self) -> list[str]:
        """What a person reads at the end of a run (segrun prints them with ``segrun: ``):
        the frame counts and end-to-end FPS, the mean milliseconds of each stage that ran,
        and where each output went.  The whole document is ``to_json`` (``--stats``)."""
        counts = (f"{self.frames_read} frames read, {self.frames_processed} processed, "
                  f"{self.frames_dropped} dropped")
        if self.frames_corrupt:
            counts += f", {self.frames_corrupt} corrupt"
        first = f"{counts} in {self.wall_s:.2f} s: {self.fps:.1f} FPS end to end"
        if self.stop_reason != "end of stream":
            first += f" (stopped: {self.stop_reason})"
        lines = [first]
        ran = [(name, s.mean_ms) for name, s in self.stages.items()
               if s.count and name != "latency"]
        if ran:
            latency = self.stages.get("latency")
            tail = f"; latency {latency.mean_ms:.1f}" if latency and latency.count else ""
            lines.append("mean ms per frame: " + ", ".join(f"{name} {ms:.1f}" for name, ms in ran)
                         + tail)
        capture = self.capture_to_output_ms
        if capture and capture.get("count"):
            lines.append(f"capture to output: p50 {capture['p50_ms']:.1f} ms, p90 "
                         f"{capture['p90_ms']:.1f} ms over {int(capture['count'])} frames")
            parts = self.capture_breakdown_ms
            if parts:
                lines.append("capture to output p50 by part: " + ", ".join(
                    f"{name} {parts[name]['p50_ms']:.1f}" for name in BREAKDOWN) + " ms")
        lines.append("outputs: " + (", ".join(self._output_text(t) for t in self.outputs)
                                    or "none (-o FILE, -o DIR/ or -o URI keeps the overlays)"))
        return lines

    def _output_text(self, target: str) -> str:
        frames = self.frames_written.get(target, 0)
        state = self.outputs[target].split(":", 1)[0]
        return f"{target} ({frames} frame{'' if frames == 1 else 's'}" + (
            ")" if state == "ok" else f", {state})")


class FrameLog:
    """Each frame's latency split by ``BREAKDOWN`` (percentiles over ``capacity`` frames,
    like the stages) and the records of the last ``records`` frames."""

    def __init__(self, capacity: int = 16384, records: int = RECORDS) -> None:
        self.parts = {name: LatencyRecorder(capacity) for name in BREAKDOWN}
        self.records: deque[dict[str, float]] = deque(maxlen=records)
        self._lock = threading.Lock()

    def add(self, index: int, stamps: Sequence[float | None]) -> dict[str, float] | None:
        """``stamps``: captured, read, queued, infer start, infer end, post start, drawn,
        written (time.monotonic()); a frame missing one (never inferred) is not logged."""
        if len(stamps) != len(BREAKDOWN) + 1:
            raise InputError("frame stamps", f"{len(BREAKDOWN) + 1} times", len(stamps))
        if any(s is None for s in stamps):
            return None
        times = [float(s) for s in stamps if s is not None]
        record: dict[str, float] = {"index": index}
        for name, start, end in zip(BREAKDOWN, times, times[1:], strict=False):
            ms = (end - start) * 1e3
            self.parts[name].add(ms)
            record[f"{name}_ms"] = round(ms, 3)
        record["total_ms"] = round((times[-1] - times[0]) * 1e3, 3)
        with self._lock:
            self.records.append(record)
        return record

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: summary_dict(rec.summary()) for name, rec in self.parts.items()}

    def recent(self) -> tuple[dict[str, float], ...]:
        with self._lock:
            return tuple(self.records)


class StatsRecorder:
    """All recorders of one run; turned into a RunStats at the end."""

    def __init__(self, capacity: int = 16384) -> None:
        self.stages = {name: LatencyRecorder(capacity) for name in STAGES}
        self.counters = Counters()
        self.fps = FpsMeter()
        self.frames = FrameLog(capacity)

    def add(self, stage: str, ms: float) -> None:
        self.stages[stage].add(ms)

    def hud_lines(self) -> list[str]:
        parts = [f"{name[:4]} {self.stages[name].recent:5.1f}" for name in STAGES[:-1]]
        return [f"FPS {self.fps.fps:5.1f}  latency {self.stages['latency'].recent:6.1f} ms",
                " ".join(parts[:4]) + " ms", " ".join(parts[4:]) + " ms"]

    def finish(self, wall_s: float, dropped: int, corrupt: int, live: bool = False,
               **info: Any) -> RunStats:
        """The RunStats; ``live``: the latency ran from each frame's capture timestamp, and
        is reported as ``capture_to_output_ms`` too."""
        processed = self.counters.processed
        capture = (summary_dict(self.stages["latency"].summary()) if live else None)
        logged = live and self.frames.parts["age"].count > 0
        return RunStats(
            frames_read=self.counters.read,
            frames_processed=processed,
            frames_dropped=dropped,
            frames_corrupt=corrupt,
            wall_s=round(wall_s, 4),
            fps=round(processed / wall_s, 3) if wall_s > 0 else 0.0,
            stages={name: rec.summary() for name, rec in self.stages.items()},
            capture_to_output_ms=capture,
            capture_breakdown_ms=self.frames.summary() if logged else None,
            frame_records=self.frames.recent() if logged else (),
            **info,
        )


def summary_dict(s: StageSummary) -> dict[str, float]:
    """A StageSummary as the stats JSON writes it (milliseconds to 3 decimals)."""
    return {"count": s.count, "mean_ms": round(s.mean_ms, 3), "p50_ms": round(s.p50_ms, 3),
            "p90_ms": round(s.p90_ms, 3), "p99_ms": round(s.p99_ms, 3)}


@dataclass(frozen=True)
class MultiRunStats(_StatsDocument):
    """What a run of several streams did: each stream's RunStats, by name, and the aggregate
    (frames, FPS, the shared inference stage's batches).

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


    def summary_lines(self) -> list[str]:
        """One aggregate line, then per stream its first line, its capture-to-output line
        (live streams) and its outputs."""
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
            own = s.summary_lines()
            lines.append(f"  {name}: {own[0]}")
            lines += [f"  {name} {line}" for line in own[1:]
                      if line.startswith(("capture to output", "outputs:"))]
        return lines
