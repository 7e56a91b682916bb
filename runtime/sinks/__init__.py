"""Frame sinks (video file, mask PNGs, window), one module per kind (see base.py)."""

from __future__ import annotations

from segedge.runtime.sinks.base import (
    Sink,
    SinkOutcome,
    build_sinks,
    needs_pixels,
    open_sink,
    register_sink,
    sink_names,
)

__all__ = ["Sink", "SinkOutcome", "build_sinks", "needs_pixels", "open_sink", "register_sink",
           "sink_names"]
