"""segrun's flag parsers: text in, typed values or one InputError line out.

Kept apart from the click command (runtime/cli.py) so the command module stays a
list of options and the run, and the parsers are unit-testable on their own.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from segedge.runtime.errors import InputError
from segedge.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD, ArtifactMetadata, InputSpec
from segedge.runtime.normalization import (
    NormUnits,
    normalization,
    parse_numbers,
    parse_scale,
)
from segedge.runtime.sources.base import MAX_WAIT_S, SourceOptions

RGB = tuple[int, int, int]


def read_text_file(flag: str, path: Path, what: str) -> str:
    """A small UTF-8 text file, or one InputError line (binary, not UTF-8, unreadable)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(flag, what, f"{path} ({err.strerror})") from err
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(flag, what, f"{path}, which is not UTF-8 text (byte "
                         f"0x{data[err.start]:02x} at offset {err.start})") from err
    if any(ch in text for ch in "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x7f"):
        raise InputError(flag, what, f"{path}, which is a binary file")
    return text


def parse_classes(text: str) -> tuple[str, ...]:
    """Comma-separated names, or a text file with one name per line."""
    path = Path(text)
    if path.is_file():
        names = read_text_file("--classes", path, "a UTF-8 text file, one class name per "
                               "line").splitlines()
    else:
        names = text.split(",")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise InputError("--classes", "class names (a,b,c or a file, one per line)", repr(text))
    return tuple(names)


def parse_reconnect(text: str) -> int | None:
    """``--reconnect``: a count of reopen attempts, or ``forever`` (None)."""
    if text.strip().lower() == "forever":
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError("--reconnect", "a count >= 0 or 'forever'", repr(text)) from None


def source_options(fps: float | None, camera_size: str | None, reconnect: str,
                   backoff: float) -> SourceOptions:
    """The source flags as given; SourceOptions refuses what does not fit (--fps 0, ...)."""
    defaults = SourceOptions()
    ceiling = max(defaults.reconnect_max_s, min(backoff, MAX_WAIT_S))
    return SourceOptions(fps=fps, camera_size=parse_size(camera_size),
                         reconnect_attempts=parse_reconnect(reconnect),
                         reconnect_backoff_s=backoff, reconnect_max_s=ceiling)


def parse_palette(text: str) -> tuple[RGB, ...]:
    """A JSON file ([[r,g,b], ...]) or ``#rrggbb,#rrggbb`` / ``r,g,b;r,g,b``."""
    path = Path(text)
    try:
        if path.is_file():
            raw = json.loads(read_text_file("--palette", path, "a JSON file of [r,g,b]"))
            colours = [tuple(int(v) for v in c) for c in raw]
        elif ";" in text or "#" not in text and text.count(",") == 2:
            colours = [tuple(int(v) for v in c.split(",")) for c in text.split(";")]
        else:
            hexes = [h.strip().lstrip("#") for h in text.split(",")]
            colours = [tuple(int(h[i : i + 2], 16) for i in (0, 2, 4)) for h in hexes
                       if len(h) == 6]
            if len(colours) != len(hexes):
                raise ValueError("hex colours need 6 digits")
    except (ValueError, TypeError, json.JSONDecodeError) as err:
        raise InputError("--palette", "a JSON file of [r,g,b] or #rrggbb,#rrggbb",
                         f"{text!r} ({err})") from err
    if not colours or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colours):
        raise InputError("--palette", "RGB colours with values 0..255", repr(text))
    return tuple(colours)  # type: ignore[arg-type]


def foreign_hints(model: Path | str, mean: str | None, std: str | None, classes: str | None,
                  bgr: bool, stride: int | None, norm_units: NormUnits | None = None,
                  scale: str | None = None) -> ArtifactMetadata | None:
    """What the flags say about a model without segedge metadata (None: nothing said).

    --mean/--std/--norm-units/--scale follow segexport's one rule
    (segedge.runtime.normalization); units omitted, a mean value above 1 means pixel
    units for both, so the 0..255 form segrun always accepted still works.
    """
    if mean is None and std is None and classes is None and not bgr and stride is None \
            and norm_units is None and scale is None:
        return None
    if stride is not None and stride < 1:
        raise InputError("--stride", "a positive integer", stride)
    if (norm_units is not None or scale is not None) and mean is None and std is None:
        flag = "--norm-units" if norm_units is not None else "--scale"
        raise InputError(flag, "--mean and --std to apply to", "neither")
    norm = normalization(parse_numbers("--mean", mean) if mean else None,
                         parse_numbers("--std", std) if std else None, norm_units,
                         parse_scale(scale) if scale is not None else 1.0,
                         IMAGENET_MEAN, IMAGENET_STD)
    spec = InputSpec(mean=norm.unit_mean, std=norm.unit_std,
                     color_order="BGR" if bgr else "RGB", stride=stride or 1)
    name = Path(model).stem if isinstance(model, Path) else model.rstrip("/").rsplit("/", 1)[-1]
    return ArtifactMetadata(model=name, family="foreign",
                            classes=parse_classes(classes) if classes else (), palette=(),
                            input=spec)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``1280x720`` -> (1280, 720)."""
    if text is None:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        width = height = 0
    if width <= 0 or height <= 0:
        raise InputError("--camera-size", "WIDTHxHEIGHT, e.g. 1280x720", repr(text))
    return width, height


def _ignore(values: tuple[str, ...]) -> tuple[int | str, ...]:
    return tuple(int(v) if v.isdigit() else v for v in values)


def parse_model(text: str) -> Path | str:
    """An artifact path, or a URI kept as text (``triton://host:8000/m``: a Path would
    collapse its ``//``)."""
    from segedge.runtime.config import is_uri

    return text if is_uri(text) else Path(text)


def read_sources(path: Path) -> tuple[str, ...]:
    """``--sources FILE``: one source per line; blank lines and ``#`` comment lines skipped."""
    text = read_text_file("--sources", path, "a UTF-8 text file, one source per line")
    return tuple(line.strip() for line in text.splitlines()
                 if line.strip() and not line.strip().startswith("#"))


def gather_sources(given: tuple[str, ...], sources_file: Path | None) -> tuple[str, ...]:
    """The command line's sources, then those of ``--sources FILE``; at least one."""
    sources = tuple(given) + (read_sources(sources_file) if sources_file is not None else ())
    if not sources:
        where = f"{sources_file} lists none" if sources_file is not None else "none"
        raise InputError("SOURCE", "at least one source (or --sources FILE)", where)
    return sources


def parse_stats(values: tuple[str, ...]) -> tuple[bool, Path | None]:
    """``--stats PATH`` and/or ``--stats -`` (stdout): (JSON on stdout?, file or None)."""
    paths = list(dict.fromkeys(v for v in values if v != "-"))
    if len(paths) > 1:
        raise InputError("--stats", "one file path (and '-' for stdout)",
                         ", ".join(paths))
    return "-" in values, Path(paths[0]) if paths else None


def log_levels(quiet: bool, verbose: bool) -> int:
    """-q: warnings and errors only (no summary); -v: debug lines too."""
    if quiet and verbose:
        raise InputError("--verbose", "either -q or -v", "both")
    return logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
