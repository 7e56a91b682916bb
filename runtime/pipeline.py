"""One source through `segrun`: capture -> preprocess -> infer -> postprocess -> draw -> sink.

A single stream is a run of the one run engine (runtime.engine) with one
lane: its own stages (runtime.stages: read+preprocess, postprocess+draw, the
sinks on the calling thread when a window needs it) around the inference
stage (runtime.batching), each a thread joined by small bounded queues, so
frame order is preserved and memory and latency are bounded.  Supervision,
stop reasons and the stats are the engine's, the same as for several streams.

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

from typing import cast

from segedge.runtime.batching import BatchPolicy
from segedge.runtime.config import RunConfig
from segedge.runtime.engine import OnStats, run_lanes
from segedge.runtime.signals import StopRequest
from segedge.runtime.stats import RunStats

__all__ = ["RunConfig", "RunStats", "run"]


def run(config: RunConfig, stop: StopRequest | None = None, *,
        batching: BatchPolicy | None = None, on_stats: OnStats | None = None) -> RunStats:
    """Run one source as ``config`` says; SIGINT/SIGTERM stop it cleanly.  Its RunStats go
    to ``config.stats_path`` and ``on_stats`` whatever happens, then any error is raised."""
    report = run_lanes((config,), (config.stream or "stream1",),
                       stats_path=config.stats_path, stop=stop, policy=batching, single=True,
                       on_stats=on_stats)
    return cast(RunStats, report)
