"""Frame sources, chosen by URI (see base.py for the registry)."""

from __future__ import annotations

from segedge.runtime.sources.base import Frame, Source, SourceOptions, open_source, source_kind

__all__ = ["Frame", "Source", "SourceOptions", "open_source", "source_kind"]
