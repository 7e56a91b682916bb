"""Frame sinks (video file, mask PNGs, window), one module per kind (see base.py)."""

from __future__ import annotations

from segedge.runtime.sinks.base import (
    Sink,
    SinkContext,
    SinkOutcome,
    build_sinks,
    needs_pixels,
    open_sink,
    register_sink,
    sink_names,
    sinks_for,
)

__all__ = ["Sink", "SinkContext", "SinkOutcome", "build_sinks", "needs_pixels", "open_sink",
           "register_sink", "sink_names", "sinks_for"]
