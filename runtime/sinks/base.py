"""Sink contract, the registry of sink kinds, and assembling the sinks of a run.

A sink receives, in frame order, the drawn image (None when no sink needs
pixels) and the task's per-pixel map (labels, or instance ids);
``close(complete)`` finalises it.  Kinds live one per module and are imported
on first use, like sources and backends.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segedge.runtime.errors import InputError

log = logging.getLogger("segedge.runtime")


class Sink(Protocol):
    needs_pixels: bool  # wants the drawn image; False: the per-pixel map is enough
    main_thread: bool  # must be driven from the main thread (GUI toolkits require it)
    quit_requested: bool  # the user asked this sink to end the run (q in a window)

    def write(self, index: int, image: np.ndarray | None, labels: np.ndarray) -> None: ...

    def close(self, complete: bool = True) -> None: ...


SinkFactory = Callable[..., Sink]


@dataclass(frozen=True)
class _Entry:
    name: str
    module: str
    factory: str


_REGISTRY: dict[str, _Entry] = {}


def register_sink(name: str, module: str, factory: str) -> None:
    _REGISTRY[name] = _Entry(name, module, factory)


def sink_names() -> list[str]:
    return sorted(_REGISTRY)


def open_sink(name: str, *args: Any, **kwargs: Any) -> Sink:
    """Create a sink of a registered kind (arguments as its constructor takes them)."""
    if name not in _REGISTRY:
        raise InputError("sink", f"one of {', '.join(sink_names())}", repr(name))
    entry = _REGISTRY[name]
    factory: SinkFactory = getattr(importlib.import_module(entry.module), entry.factory)
    return factory(*args, **kwargs)


def build_sinks(output: Path | None, save_masks: Path | None, display: bool | None,
                fps: float | None, window_name: str = "segrun") -> list[Sink]:
    """Sinks for the run; display=None shows a window only where one can exist."""
    from segedge.runtime.sinks import window

    sinks: list[Sink] = []
    if output is not None:
        sinks.append(open_sink("video", output, fps))
    if save_masks is not None:
        sinks.append(open_sink("masks", save_masks))
    show = window.display_available() if display is None else display
    if show and not window.display_available():
        log.warning("no display (or OpenCV without GUI support): running headless")
        show = False
    if show:
        sinks.append(open_sink("window", window_name))
    elif display is None:
        log.info("no display: running headless")
    return sinks


def needs_pixels(sinks: Sequence[Sink]) -> bool:
    return any(s.needs_pixels for s in sinks)


register_sink("video", "segedge.runtime.sinks.video", "VideoSink")
register_sink("masks", "segedge.runtime.sinks.masks", "MaskSink")
register_sink("window", "segedge.runtime.sinks.window", "WindowSink")
