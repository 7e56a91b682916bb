"""Frame source contract and the URI registry (one module per source kind).

A source yields BGR frames in order; ``read()`` returning None means the
stream ended (cleanly, or because it could not be recovered).  Live sources
keep only the newest frame and count the ones they overwrote (``dropped``);
file sources deliver every frame and count undecodable ones (``corrupt``).
"""

from __future__ import annotations

import glob
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from segedge.runtime.errors import InputError, SourceError
from segedge.runtime.paths import is_image
from segedge.runtime.redact import redact
from segedge.runtime.registry import Registry
from segedge.runtime.uri import scheme


@dataclass(frozen=True)
class Frame:
    index: int
    image: np.ndarray
    timestamp: float


MAX_WAIT_S = 3600.0  # a reconnect wait beyond an hour is a typo, not a policy


@dataclass(frozen=True)
class SourceOptions:
    """Knobs for sources; each kind reads what applies to it."""

    reconnect_attempts: int | None = 5  # live sources: reopen tries; None: forever
    reconnect_backoff_s: float = 0.5  # first wait; doubles per try up to reconnect_max_s
    reconnect_max_s: float = 8.0
    open_timeout_s: float = 10.0  # network streams
    max_corrupt_run: int = 25  # files: consecutive undecodable frames before giving up
    camera_size: tuple[int, int] | None = None  # (W, H) to request from a camera
    fps: float | None = None  # override the reported frame rate

    def __post_init__(self) -> None:
        if self.reconnect_attempts is not None and self.reconnect_attempts < 0:
            raise InputError("--reconnect", "a count >= 0 or 'forever'", self.reconnect_attempts)
        if not 0 < self.reconnect_max_s <= MAX_WAIT_S:
            raise InputError("reconnect max", f"seconds in (0, {MAX_WAIT_S}]",
                             self.reconnect_max_s)
        if not 0 < self.reconnect_backoff_s <= self.reconnect_max_s:
            raise InputError("--reconnect-backoff", f"seconds in (0, {self.reconnect_max_s}]",
                             self.reconnect_backoff_s)
        if self.open_timeout_s <= 0:
            raise InputError("open timeout", "seconds > 0", self.open_timeout_s)
        if self.fps is not None and not 0 < self.fps <= 1000:
            raise InputError("--fps", "a frame rate in (0, 1000]", self.fps)
        if self.max_corrupt_run < 1:
            raise InputError("max corrupt run", "a count >= 1", self.max_corrupt_run)


class Source(Protocol):
    uri: str  # for display: credentials already masked (runtime.redact)
    live: bool

    @property
    def fps(self) -> float | None: ...

    @property
    def dropped(self) -> int: ...

    @property
    def corrupt(self) -> int: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


SourceFactory = Callable[[str, SourceOptions], Source]

# name -> "module:factory", with info ``matches`` (uri -> bool) and ``shown`` (how --help and
# errors name the URIs it takes).  Kinds are tried in registration order, first match wins.
SOURCES: Registry[SourceFactory] = Registry("source")


def register_source(name: str, matches: Callable[[str], bool] | None, module: str,
                    factory: str = "create", *, schemes: Sequence[str] = (),
                    shown: str = "", still_images: bool = False,
                    naming: Callable[[str], str] | None = None) -> None:
    """Add a kind: ``factory(uri, options) -> Source`` in ``module`` for the URIs ``matches``
    accepts (None: the URIs whose scheme is one of ``schemes``); ``shown`` names them in
    ``segrun --help`` and in the error for a URI no kind takes (default: ``scheme://``).

    Capabilities, so that no code outside the kind compares its name (issue 20):
    ``still_images``: it yields separate pictures (a folder output of it holds images, not
    a video); ``naming``: the stream name of a URI (default: the first scheme)."""
    wanted = tuple(s.lower() for s in schemes)
    if matches is None:
        if not wanted:
            raise InputError(f"source kind {name}", "a predicate or URI schemes", "neither")
        matches = lambda uri: scheme(uri) in wanted  # noqa: E731
    if naming is None:
        naming = lambda _uri: wanted[0] if wanted else name  # noqa: E731
    SOURCES.register(name, f"{module}:{factory}", matches=matches, schemes=wanted,
                     shown=shown or ", ".join(f"{s}://" for s in wanted),
                     still_images=still_images, naming=naming)


def source_uris() -> str:
    """What SOURCE may be, from the registry (``segrun --help``, the unknown-URI error)."""
    return SOURCES.listing(lambda e: e.info["shown"] or e.name)


def source_kind(uri: str) -> str:
    return _entry(uri).name


def yields_still_images(uri: str) -> bool:
    """Whether the kind that opens ``uri`` yields separate pictures (its registration's
    ``still_images``); SourceError for a URI no kind takes."""
    return bool(_entry(uri).info["still_images"])


def source_stream_name(uri: str) -> str:
    """The name of the stream ``uri`` opens, as its kind names it (before cleaning and
    making unique: runtime.streams); SourceError for a URI no kind takes."""
    return str(_entry(uri).info["naming"](uri))


def _entry(uri: str) -> Any:
    found_kind = SOURCES.find(lambda e: bool(e.info["matches"](uri)))
    if found_kind is not None:
        return found_kind
    found = scheme(uri)
    schemes = ", ".join(s for e in SOURCES for s in e.info["shown"].split(", ") if "://" in s)
    if found is not None:
        raise SourceError(f"{uri}: expected a source URI ({schemes}, a camera index, a "
                          f"GStreamer pipeline or a path), got unsupported scheme {found!r}")
    raise SourceError(f"{uri}: expected a source URI ({schemes}, a camera index, a "
                      "GStreamer pipeline or a path), got an unrecognised string")


def open_source(uri: str, options: SourceOptions | None = None) -> Source:
    """Open whatever ``uri`` names, using the first registered kind that claims it.

    Errors never carry the URI's password (`user:***@`): sources name themselves by
    their redacted URI, and any message that still holds the raw one is redacted here.
    """
    try:
        factory = SOURCES.load(source_kind(uri))
        return factory(uri, options or SourceOptions())
    except SourceError as err:
        clean = redact(str(err))
        if clean == str(err):
            raise
        raise SourceError(clean) from None


def _is_camera(uri: str) -> bool:
    return uri.isdigit() or re.fullmatch(r"/dev/video\d+", uri) is not None


def _is_gstreamer(uri: str) -> bool:
    return "!" in uri and "appsink" in uri


def _is_images(uri: str) -> bool:
    if scheme(uri) is not None:
        return False
    if any(ch in uri for ch in "*?["):
        return True
    path = Path(uri)
    return path.is_dir() or is_image(path)


def _is_path(uri: str) -> bool:
    return scheme(uri) in (None, "file") and bool(uri)


def _local_path(uri: str) -> str:
    return uri[len("file://"):] if scheme(uri) == "file" else uri


def _name_camera(uri: str) -> str:
    return f"cam{int(uri)}" if uri.isdigit() else f"cam{uri[len('/dev/video'):]}"


def _name_csi(uri: str) -> str:
    return "csi" + "".join(ch for ch in uri[len("csi://"):] if ch.isdigit())


def _name_network(uri: str) -> str:
    return urlsplit(uri).hostname or scheme(uri) or "stream"  # hostname: never a password


def _name_images(uri: str) -> str:
    path = _local_path(uri)
    if glob.has_magic(path):  # the folder the pattern starts in: imgs/*.png -> imgs
        fixed = list(itertools.takewhile(lambda p: not glob.has_magic(p), Path(path).parts))
        return fixed[-1] if fixed and fixed[-1] != "/" else "images"
    return Path(path).name if Path(path).is_dir() else Path(path).stem


def _name_video(uri: str) -> str:
    return Path(_local_path(uri)).stem


_PKG = "segedge.runtime.sources"
register_source("demo", None, f"{_PKG}.demo", schemes=("demo",))
register_source("synthetic", None, f"{_PKG}.synthetic", schemes=("synthetic",))
register_source("csi", None, f"{_PKG}.csi", schemes=("csi",), shown="csi://N",
                naming=_name_csi)
register_source("stream", None, f"{_PKG}.stream",
                schemes=("rtsp", "rtsps", "rtmp", "http", "https"), shown="rtsp://, http(s)://",
                naming=_name_network)
register_source("gstreamer", _is_gstreamer, f"{_PKG}.gstreamer", shown="GStreamer pipeline",
                naming=lambda _uri: "gst")
register_source("camera", _is_camera, f"{_PKG}.camera", shown="camera index, /dev/videoN",
                naming=_name_camera)
register_source("images", _is_images, f"{_PKG}.images",
                shown="image, folder or glob of images", still_images=True,
                naming=_name_images)
register_source("video", _is_path, f"{_PKG}.video", shown="video", naming=_name_video)
