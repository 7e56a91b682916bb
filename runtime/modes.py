"""Which mode a run uses: latency (the newest frame, as soon as possible) or throughput.

``segrun --mode latency|throughput|auto``.  *auto* is latency for one live source (a
camera: glass-to-glass time is what matters) and throughput for everything else (files,
image folders, several streams: frames per second is what matters).  The mode is chosen
twice: before the sources open (``planned_mode``: a live source starts capturing when
opened and must not wait for a model to compile, so the model is opened in the likely
mode first) and once they are open (``resolve_mode``: what the sources really are; the
engine reopens the model when they contradict the plan).  How each mode runs is the
inference stage's (runtime.batching) and the backend's (``BackendOptions.mode``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from segedge.runtime.config import RunConfig
    from segedge.runtime.sources.base import Source

MODES = ("auto", "latency", "throughput")
Mode = Literal["auto", "latency", "throughput"]

__all__ = ["MODES", "Mode", "planned_mode", "resolve_mode"]


def planned_mode(asked: str, configs: Sequence[RunConfig]) -> str:
    """The mode to open the model in before the sources are open: ``asked``, else
    throughput for several streams or a local file or folder, else latency."""
    if asked != "auto":
        return asked
    if len(configs) > 1:
        return "throughput"
    source = Path(configs[0].source)
    local = source.is_file() or source.is_dir()  # a camera's /dev/videoN is neither
    return "throughput" if local else "latency"


def resolve_mode(asked: str, sources: Sequence[Source], backend: Any) -> tuple[str, str, int]:
    """(mode, why, inference calls in flight): ``auto`` is latency for one live source,
    throughput otherwise; throughput keeps as many calls in flight as ``backend`` says it
    runs at once (``max_in_flight``, 1 when it does not say; the engine asks again once
    the backend is open in that mode)."""
    if asked == "auto":
        live = len(sources) == 1 and bool(sources[0].live)
        mode = "latency" if live else "throughput"
        why = ("auto: one live source" if live else "auto: several streams"
               if len(sources) > 1 else "auto: not a live source")
    else:
        mode, why = asked, f"--mode {asked}"
    in_flight = 1 if mode == "latency" else max(1, int(getattr(backend, "max_in_flight", 1)))
    return mode, why, in_flight
