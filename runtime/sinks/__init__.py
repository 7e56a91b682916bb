"""Frame sinks (video file, image file, overlay folder, window, network stream, mask PNGs),
one module per kind, chosen by URI through the registry in base.py."""

from __future__ import annotations

from segedge.runtime.sinks.base import (
    Sink,
    SinkContext,
    SinkKind,
    SinkOutcome,
    build_sinks,
    check_output,
    needs_pixels,
    open_sink,
    register_sink,
    sink_for,
    sink_kind,
    sink_names,
    sinks_for,
)

__all__ = ["Sink", "SinkContext", "SinkKind", "SinkOutcome", "build_sinks", "check_output",
           "needs_pixels", "open_sink", "register_sink", "sink_for", "sink_kind", "sink_names",
           "sinks_for"]
