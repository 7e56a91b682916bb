"""Several sources in one `segrun`: names, per-stream outputs, and ``run_many``.

A stream is named after its source (file stem, ``cam0`` for camera 0, the
host of a URL, never its password), names made unique with ``-2``, ``-3``;
``-o`` becomes per-stream targets either as a pattern holding ``{stream}``
or as a folder (``DIR/<stream>.mp4`` for video and live sources,
``DIR/<stream>/`` for image sources).  A plain file or network target cannot
take several streams: one InputError line.  These rules are pure functions
(no model, no engine), testable on their own.

``run_many`` runs the streams on the one run engine (runtime.engine): one
lane per stream around ONE opened model, inference batched across them.  A
single stream is the same engine with one lane (runtime.pipeline.run).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from segedge.runtime.batching import BatchPolicy
from segedge.runtime.config import RunConfig
from segedge.runtime.engine import OnStats, run_lanes
from segedge.runtime.errors import InputError, SegedgeError
from segedge.runtime.io import check_writable
from segedge.runtime.signals import StopRequest
from segedge.runtime.sinks.base import sink_for
from segedge.runtime.sources.base import scheme, source_stream_name, yields_still_images
from segedge.runtime.stats import MultiRunStats

__all__ = ["BatchPolicy", "MultiRunStats", "SHARED_FIELDS", "per_stream_masks",
           "per_stream_outputs", "run_many", "stream_name", "stream_names", "stream_targets"]

# What every stream must share: they run on one opened model.
SHARED_FIELDS = ("model", "backend", "backend_options", "postprocess", "score_threshold")


PLACEHOLDER = "{stream}"
VIDEO_SUFFIX = ".mp4"  # what a folder target holds per video or live stream


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")


def stream_name(source: str) -> str:
    """A short, file-name-safe name for ``source`` (before making names unique): as its
    source kind names it (runtime.sources.base ``naming``: ``cam0``, a URL's host, a file
    stem), else the URI's host or scheme."""
    try:
        base = source_stream_name(source)
    except SegedgeError:  # the run itself reports an unusable source
        base = urlsplit(source).hostname or scheme(source) or source
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
        return yields_still_images(source)
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
    if kind.shared:
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


def lane_names(configs: Sequence[RunConfig], names: Sequence[str] | None = None
               ) -> tuple[str, ...]:
    """``run_many``'s names: the given ones, else each config's ``stream`` (where set), else
    stream1, stream2...; one per config, distinct, non-empty."""
    if names is None:
        names = [c.stream or f"stream{i}" for i, c in enumerate(configs, 1)]
    out = tuple(names)
    if len(out) != len(configs):
        raise InputError("stream names", f"{len(configs)} names (one per source)", len(out))
    if len(set(out)) != len(out) or not all(out):
        raise InputError("stream names", "distinct, non-empty names", list(out))
    return out


def _model_key(model: Any) -> str:
    path = Path(str(model))
    return str(path.resolve()) if path.exists() else str(model)


def check_shared(configs: Sequence[RunConfig], names: Sequence[str]) -> None:
    """Every stream runs on the one opened model: what opens it must be the same."""
    first = configs[0]
    for name, config in zip(names[1:], configs[1:], strict=True):
        for attr in SHARED_FIELDS:
            want, got = getattr(first, attr), getattr(config, attr)
            same = _model_key(want) == _model_key(got) if attr == "model" else want == got
            if not same:
                raise InputError(f"stream {name} {attr}",
                                 f"the {attr} of stream {names[0]} ({want!s}): one model "
                                 "serves every stream", str(got))


def run_many(configs: Sequence[RunConfig], stats_path: Path | None = None,
             stop: StopRequest | None = None, *, names: Sequence[str] | None = None,
             batching: BatchPolicy | None = None,
             on_stats: OnStats | None = None) -> MultiRunStats:
    """Run every stream of ``configs`` on ONE opened model, inference batched across them.

    Each config is a complete single-stream config; what opens the model
    (``SHARED_FIELDS``) must be the same in all (InputError otherwise).  ``names``
    default to each config's ``stream``, else stream1, stream2, ...  ``stats_path``
    receives the combined JSON and ``on_stats`` the same document (also on failure).  A
    failure of the shared model, or of every stream, is raised after the outputs are
    closed and the stats written.
    """
    configs = tuple(configs)
    if not configs:
        raise InputError("SOURCE", "one or more streams", "none")
    names_t = lane_names(configs, names)
    check_shared(configs, names_t)
    for name, config in zip(names_t, configs, strict=True):
        if config.stats_path is not None:
            raise InputError(f"stream {name} stats_path", "None (run_many writes one combined "
                             "stats file: its stats_path)", str(config.stats_path))
    if stats_path is not None:
        check_writable(stats_path, "--stats")
    report = run_lanes(configs, names_t, stats_path=stats_path, stop=stop, policy=batching,
                       on_stats=on_stats)
    return cast(MultiRunStats, report)  # not single: the several-stream document
