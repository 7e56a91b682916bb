"""Sink contract, the registry of sink kinds (chosen by URI), and assembling a run's sinks.

A sink receives, in frame order, the drawn image (None when no sink needs
pixels) and the task's per-pixel map (labels, or instance ids);
``close(complete)`` finalises it and says what it delivered (a SinkOutcome:
the stats' ``outputs`` and ``frames_written``), because a write error must
never pass for success.

Outputs are chosen the way sources are: ``-o TARGET`` names a kind by its
scheme (``display://0``, ``udp://host:port``) or its suffix (``.mp4``,
``.png``), and a path ending in ``/``, an existing folder or a path without a
suffix is a folder.  Each kind lives in its own module, imported on first
use; its optional ``check(target, flag)`` runs when the RunConfig is built,
before any model loads, so a bad target costs nothing.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from segedge.runtime.errors import InputError
from segedge.runtime.paths import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from segedge.runtime.registry import Registry
from segedge.runtime.uri import scheme

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


def make_folder(directory: Path, flag: str, expected: str) -> Path:
    """Create an output folder (of PNG files, or the one a file goes in), or one InputError
    line saying why it cannot be."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(flag, expected, f"{directory} ({err.strerror})") from err
    return directory


class Sink(Protocol):
    needs_pixels: bool  # wants the drawn image; False: the per-pixel map is enough
    main_thread: bool  # must be driven from the main thread (GUI toolkits require it)
    quit_requested: bool  # the user asked this sink to end the run (q in a window)

    def write(self, index: int, image: np.ndarray | None, labels: np.ndarray) -> None: ...

    def close(self, complete: bool = True) -> SinkOutcome | None:
        """Finalise; the outcome of a file output (None: the sink writes no file)."""
        ...


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


SinkFactory = Callable[[str, SinkContext], Sink]
SinkCheck = Callable[[str, str], None]


@dataclass(frozen=True)
class SinkKind:
    """One registered kind of output.

    ``schemes`` / ``suffixes`` say which ``-o`` targets it claims; ``folder``: it claims
    folder targets; ``single_image``: it holds one picture, so only a source that is one
    image may feed it; ``shared``: several streams may write the same target (a window
    shows each in its own pane).  ``factory`` and ``check`` are attribute names in ``module``
    (imported on first use, so a kind whose library is missing costs nothing until used).
    """

    name: str
    module: str
    factory: str
    schemes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    folder: bool = False
    single_image: bool = False
    check: str | None = None
    shared: bool = False
    window: bool = False  # opens a window on screen (refused with --no-display)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise InputError("sink kind", "a lower-case identifier", repr(self.name))
        bad = [s for s in self.suffixes if not s.startswith(".") or s != s.lower()]
        if bad or any(not re.fullmatch(r"[a-z][a-z0-9+.-]*", s) for s in self.schemes):
            raise InputError(f"sink kind {self.name}", "lower-case schemes and .suffixes",
                             f"{self.schemes} {self.suffixes}")

    def _attr(self, name: str) -> Any:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as err:
            if err.name is None or not self.module.startswith(err.name):
                raise
            raise InputError("--output", f"a {self.name} output (module {self.module})",
                             "a segedge without it") from None
        return getattr(module, name)

    def validate(self, target: str, flag: str = "--output") -> None:
        """The kind's own up-front check of ``target`` (format, writability); InputError."""
        if self.check is not None:
            check: SinkCheck = self._attr(self.check)
            check(target, flag)

    def open(self, target: str, ctx: SinkContext) -> Sink:
        factory: SinkFactory = self._attr(self.factory)
        return factory(target, ctx)


# name -> "module:factory", with info ``kind``: the SinkKind (which targets it claims).
SINKS: Registry[SinkFactory] = Registry(
    "sink", unknown=lambda known, name: InputError("sink", f"one of {', '.join(known)}",
                                                   repr(name)))


def register_sink(name: str, module: str, factory: str, *, schemes: Sequence[str] = (),
                  suffixes: Sequence[str] = (), folder: bool = False,
                  single_image: bool = False, check: str | None = None,
                  shared: bool = False, window: bool = False) -> SinkKind:
    """Add a kind: ``factory(target, ctx) -> Sink`` and optional ``check(target, flag)``
    in ``module``; ``schemes`` / ``suffixes`` / ``folder`` say which targets it claims."""
    kind = SinkKind(name, module, factory, tuple(schemes), tuple(suffixes), folder,
                    single_image, check, shared, window)
    SINKS.register(name, f"{module}:{factory}", kind=kind)
    return kind


def _kinds() -> list[SinkKind]:
    return [e.info["kind"] for e in SINKS]


def sink_names() -> list[str]:
    return SINKS.names()


def sink_kind(name: str) -> SinkKind:
    kind: SinkKind = SINKS.get(name).info["kind"]
    return kind


def sink_targets() -> str:
    """What ``-o`` takes, kind by kind, from the registry (for ``segrun --help``)."""
    def claims(kind: SinkKind) -> str:
        names = [f"{s}://" for s in kind.schemes] + list(kind.suffixes)
        return ", ".join(names + (["DIR/"] if kind.folder else []))

    return "; ".join(f"{k.name}: {claims(k)}" for k in _kinds() if claims(k))


def open_sink(name: str, target: str | Path = "", ctx: SinkContext | None = None) -> Sink:
    """Create a sink of a registered kind for ``target``."""
    return sink_kind(name).open(str(target), ctx or SinkContext())


def is_folder_target(target: str) -> bool:
    """An existing folder, a path ending in ``/``, or a path without a suffix."""
    if target.endswith(("/", os.sep)) or Path(target).is_dir():
        return True
    return Path(target).suffix == ""


def _expected() -> str:
    def suffixes(family: tuple[str, ...]) -> str:
        found = [s for k in _kinds() for s in k.suffixes if s in family]
        return ", ".join(dict.fromkeys(found))

    uris = ", ".join(f"{s}://" for k in sorted(_kinds(), key=lambda k: k.name)
                     for s in k.schemes)
    return (f"a video path ending in {suffixes(VIDEO_SUFFIXES)}, an image path ending in "
            f"{suffixes(IMAGE_SUFFIXES)}, a folder (DIR/) or a URI ({uris})")


def sink_for(target: str | Path) -> SinkKind:
    """The kind that writes ``target`` (by scheme, then folder, then suffix); InputError."""
    text = str(target)
    if not text.strip():
        raise InputError("--output", _expected(), "an empty string")
    found = scheme(text)
    if found is not None:
        for kind in _kinds():
            if found in kind.schemes:
                return kind
        raise InputError("--output", _expected(), f"unsupported scheme {found!r} ({text!r})")
    if is_folder_target(text):
        return next(k for k in _kinds() if k.folder)
    suffix = Path(text).suffix.lower()
    for kind in _kinds():
        if suffix in kind.suffixes:
            return kind
    raise InputError("--output", _expected(), repr(text))


def check_output(target: str, flag: str = "--output") -> SinkKind:
    """Pick the kind of ``target`` and run its check: one InputError line, before any work."""
    kind = sink_for(target)
    kind.validate(target, flag)
    return kind


def sinks_for(config: Any, source: Any) -> list[Sink]:
    """The sinks of one run (a RunConfig) reading ``source``: the pipeline's one entry."""
    ctx = SinkContext(fps=source.fps, frame_names=getattr(source, "frame_name", None),
                      stream=getattr(config, "stream", ""), window_name=config.window_name)
    return build_sinks(config.outputs, config.save_masks, config.display, ctx)


def build_sinks(outputs: Sequence[str | Path], save_masks: Path | None, display: bool | None,
                ctx: SinkContext | None = None) -> list[Sink]:
    """Sinks for the run, in the order given; display=None shows a window only where one
    can exist, and a ``display://`` output asks for one like ``--display``.

    ``ctx.frame_names`` (an image source's ``frame_name``) names overlay and mask files
    after their images.
    """
    from segedge.runtime.sinks import window

    ctx = ctx or SinkContext()
    sinks: list[Sink] = []
    wants_window, screen = display, "display://0"
    for target in outputs:
        kind = sink_for(target)
        if kind.name == "display":  # one window per run, like --display
            wants_window, screen = display is not False, str(target)
            continue
        sinks.append(kind.open(str(target), ctx))
    if save_masks is not None:
        sinks.append(open_sink("masks", save_masks, ctx))
    show = window.display_available() if wants_window is None else wants_window
    if show and not window.display_available():
        log.warning("no display (or OpenCV without GUI support): running headless")
        show = False
    if show:
        sinks.append(open_sink("display", screen, ctx))
    elif wants_window is None:
        log.info("no display: running headless")
    return sinks


def needs_pixels(sinks: Sequence[Sink]) -> bool:
    return any(s.needs_pixels for s in sinks)


def open_window(target: str, ctx: SinkContext) -> Sink:
    """``display://N``: the on-screen window (sinks/window.py), titled ``ctx.window_name``."""
    from segedge.runtime.sinks.window import WindowSink

    index = target.partition("://")[2]
    return WindowSink(ctx.window_name, stream=ctx.stream, screen=int(index) if index else 0)


def check_display(target: str, flag: str) -> None:
    if not re.fullmatch(r"display://\d*", target, re.IGNORECASE):
        raise InputError(flag, "display://N (N: the screen, e.g. display://0)", repr(target))


_PKG = "segedge.runtime.sinks"
register_sink("video", f"{_PKG}.video", "create", suffixes=(".mp4", ".m4v", ".mov", ".avi",
                                                             ".mkv"), check="check_target")
register_sink("image", f"{_PKG}.images", "create_image", single_image=True,
              suffixes=(".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"),
              check="check_image")
register_sink("folder", f"{_PKG}.images", "create_folder", folder=True, check="check_folder")
register_sink("display", f"{_PKG}.base", "open_window", schemes=("display",),
              check="check_display", shared=True, window=True)
register_sink("network", f"{_PKG}.network", "NetworkSink", schemes=("rtp", "udp", "rtsp"),
              check="check_network")
register_sink("masks", f"{_PKG}.masks", "create")
