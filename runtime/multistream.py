"""Several sources in one `segrun`: each stream's name and its own output targets.

Pure functions (no model, no engine), so the command line's rules are
testable on their own: a stream is named after its source (file stem,
``cam0`` for camera 0, the host of a URL, never its password), names are
made unique with ``-2``, ``-3``; ``-o`` becomes per-stream targets either as
a pattern holding ``{stream}`` or as a folder (``DIR/<stream>.mp4`` for
video and live sources, ``DIR/<stream>/`` for image sources).  A plain file
or network target cannot take several streams: one InputError line.
"""

from __future__ import annotations

import glob
import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from segedge.runtime.errors import InputError, SegedgeError
from segedge.runtime.sinks.base import sink_for
from segedge.runtime.sources.base import scheme, source_kind

PLACEHOLDER = "{stream}"
VIDEO_SUFFIX = ".mp4"  # what a folder target holds per video or live stream


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")


def stream_name(source: str) -> str:
    """A short, file-name-safe name for ``source`` (before making names unique)."""
    found = scheme(source)
    if found in ("demo", "synthetic"):
        base = found
    elif found == "csi":
        base = "csi" + "".join(ch for ch in source[len("csi://"):] if ch.isdigit())
    elif found is not None and found != "file":
        base = urlsplit(source).hostname or found  # hostname: never user or password
    elif source.isdigit():
        base = f"cam{int(source)}"
    elif (camera := re.fullmatch(r"/dev/video(\d+)", source)) is not None:
        base = f"cam{camera.group(1)}"
    elif "!" in source:
        base = "gst"
    else:
        path = source[len("file://"):] if found == "file" else source
        if glob.has_magic(path):  # the folder the pattern starts in: imgs/*.png -> imgs
            fixed = list(itertools.takewhile(lambda p: not glob.has_magic(p), Path(path).parts))
            base = fixed[-1] if fixed and fixed[-1] != "/" else "images"
        else:
            base = Path(path).name if Path(path).is_dir() else Path(path).stem
    return _clean(base) or "stream"


def stream_names(sources: Sequence[str]) -> tuple[str, ...]:
    """One unique name per source, in order: ``a``, ``a-2``, ``a-3`` for repeats."""
    names: list[str] = []
    for source in sources:
        base = name = stream_name(source)
        n = 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return tuple(names)


def is_image_source(source: str) -> bool:
    """An image file, folder or glob (its folder target holds images, not a video)."""
    try:
        return source_kind(source) == "images"
    except SegedgeError:  # the run itself reports an unusable source
        return False


def stream_targets(target: str, names: Sequence[str],
                   image_sources: Sequence[bool]) -> tuple[str, ...]:
    """``-o target`` for each stream: a ``{stream}`` pattern filled in, a folder split into
    one entry per stream, a display shared; anything else only for a single stream."""
    if PLACEHOLDER in target:
        return tuple(target.replace(PLACEHOLDER, name) for name in names)
    if len(names) == 1:
        return (target,)
    kind = sink_for(target)
    if kind.folder:
        folder = Path(target)
        return tuple(f"{folder / name}/" if image else str(folder / f"{name}{VIDEO_SUFFIX}")
                     for name, image in zip(names, image_sources, strict=True))
    if kind.name == "display":
        return tuple(target for _ in names)
    raise InputError("--output", f"a pattern holding {PLACEHOLDER} (e.g. out_{PLACEHOLDER}.mp4)"
                     f" or a folder (DIR/) for {len(names)} sources", repr(target))


def per_stream_outputs(targets: Sequence[str], sources: Sequence[str],
                       names: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """Every ``-o`` target expanded: the outputs of stream i, in the order given."""
    names = tuple(names) if names is not None else stream_names(sources)
    images = [is_image_source(s) for s in sources] if len(sources) > 1 else [False]
    expanded = [stream_targets(t, names, images) for t in targets]
    return [tuple(column[i] for column in expanded) for i in range(len(names))]


def per_stream_masks(save_masks: Path | None, names: Sequence[str]) -> list[Path | None]:
    """``--save-masks DIR`` -> ``DIR/<stream>/`` for several streams, DIR itself for one."""
    if save_masks is None:
        return [None for _ in names]
    if len(names) == 1:
        return [save_masks]
    return [save_masks / name for name in names]
