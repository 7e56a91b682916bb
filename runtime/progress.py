"""Progress bars only where a person watches them: when stderr is a terminal.

A bar redrawn into a log file, a CI capture or ``docker logs`` is thousands of
carriage-return lines of noise (issue 11 item 10), so every segedge bar goes
through here: tqdm with ``disable`` set unless stderr is a TTY (or when the
caller asks for quiet).  Torch-free: the runtime depends on tqdm already.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, Protocol, TextIO


class Ticker(Protocol):
    """What code that reports progress needs: count done units."""

    def update(self, n: float | None = 1) -> bool | None: ...


def on_terminal(stream: TextIO | None = None) -> bool:
    """True when `stream` (default: stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed or detached stream
        return False


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None,
             desc: str = "", unit: str = "it", quiet: bool = False, leave: bool = False,
             stream: TextIO | None = None) -> Any:
    """A tqdm bar on stderr, disabled when `quiet` or when stderr is not a terminal.

    Use it like tqdm: wrap an iterable, or ``with progress(total=n) as bar: bar.update()``.
    """
    from tqdm import tqdm

    out = sys.stderr if stream is None else stream
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=out,
                disable=quiet or not on_terminal(out))
