"""Sink contract, the registry of sink kinds, and assembling the sinks of a run.

A sink receives, in frame order, the drawn image (None when no sink needs
pixels) and the task's per-pixel map (labels, or instance ids);
``close(complete)`` finalises it and says what it delivered (a SinkOutcome:
the stats' ``outputs`` and ``frames_written``), because a write error must
never pass for success.  Kinds live one per module and are imported on first
use, like sources and backends.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from segedge.runtime.errors import InputError

log = logging.getLogger("segedge.runtime")

OutcomeState = Literal["ok", "failed", "partial", "empty"]


@dataclass(frozen=True)
class SinkOutcome:
    """What one output really holds after ``close``: written, failed (and why), or kept partial.

    ``failed`` makes the run degraded (exit 4); ``partial`` is an output of a run that
    did not finish (kept under its temporary name); ``empty``: no frame reached it.
    """

    STATES: ClassVar[tuple[str, ...]] = ("ok", "failed", "partial", "empty")

    target: str
    frames_written: int
    state: OutcomeState = "ok"
    detail: str = ""

    def __post_init__(self) -> None:
        if self.state not in self.STATES:
            raise InputError("sink outcome", f"one of {', '.join(self.STATES)}",
                             repr(self.state))
        if self.frames_written < 0:
            raise InputError("frames written", "a count >= 0", self.frames_written)
        if self.state != "ok" and not self.detail:
            raise InputError("sink outcome", f"a reason for state {self.state!r}", "none")

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    @property
    def status(self) -> str:
        """``ok`` or ``STATE: detail``: the value of this output in the stats' ``outputs``."""
        return "ok" if self.state == "ok" else f"{self.state}: {self.detail}"


def write_failure_cause(directory: Path) -> str | None:
    """Why writing into ``directory`` fails right now (e.g. 'No space left on device'), or None.

    OpenCV's writers report no errno; a small probe write in the same folder does.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".segrun-probe-", dir=directory)
    except OSError as err:
        return err.strerror or str(err)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        return err.strerror or str(err)
    finally:
        Path(name).unlink(missing_ok=True)
    return None


class Sink(Protocol):
    needs_pixels: bool  # wants the drawn image; False: the per-pixel map is enough
    main_thread: bool  # must be driven from the main thread (GUI toolkits require it)
    quit_requested: bool  # the user asked this sink to end the run (q in a window)

    def write(self, index: int, image: np.ndarray | None, labels: np.ndarray) -> None: ...

    def close(self, complete: bool = True) -> SinkOutcome | None:
        """Finalise; the outcome of a file output (None: the sink writes no file)."""
        ...


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


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need to know about the run besides its own target.

    ``fps``: the source's frame rate (None: unknown); ``frame_names``: an image source's
    name of frame i (overlays and masks named after their images); ``stream``: the
    stream's name in a multi-stream run ("" for one stream); ``window_name``: title of
    a display window.
    """

    fps: float | None = None
    frame_names: Callable[[int], str | None] | None = None
    stream: str = ""
    window_name: str = "segrun"


def sinks_for(config: Any, source: Any) -> list[Sink]:
    """The sinks of one run (a RunConfig) reading ``source``: the pipeline's one entry."""
    return build_sinks(config.output, config.save_masks, config.display, source.fps,
                       config.window_name, getattr(source, "frame_name", None))


def build_sinks(output: Path | None, save_masks: Path | None, display: bool | None,
                fps: float | None, window_name: str = "segrun",
                frame_names: Callable[[int], str | None] | None = None) -> list[Sink]:
    """Sinks for the run; display=None shows a window only where one can exist.

    `frame_names` (an image source's ``frame_name``) names mask files after their images.
    """
    from segedge.runtime.sinks import window

    sinks: list[Sink] = []
    if output is not None:
        sinks.append(open_sink("video", output, fps))
    if save_masks is not None:
        sinks.append(open_sink("masks", save_masks, frame_names=frame_names))
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
