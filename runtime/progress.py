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


LOG_INTERVAL_S = 60.0  # one progress line a minute when nobody watches a bar


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LogTicker:
    """Progress for a log (stderr not a terminal): one plain line every `interval_s`.

    Format (one line, no carriage return): ``<desc>: <done>/<total> <unit>, <elapsed> elapsed,
    ETA <h:mm:ss>`` (``ETA ?`` until a unit is done; no total: no ETA).
    """

    def __init__(self, total: int | None, desc: str, unit: str, stream: TextIO,
                 interval_s: float = LOG_INTERVAL_S,
                 clock: Any = None) -> None:
        import time

        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.interval_s = interval_s
        self._now = clock or time.monotonic
        self.start = self._last = self._now()
        self.n = 0.0

    def line(self) -> str:
        elapsed = self._now() - self.start
        done = f"{self.n:g}/{self.total}" if self.total else f"{self.n:g}"
        text = f"{self.desc}: {done} {self.unit}, {_clock(elapsed)} elapsed"
        if self.total:
            eta = "?" if self.n <= 0 else _clock(elapsed / self.n * (self.total - self.n))
            text += f", ETA {eta}"
        return text

    def update(self, n: float | None = 1) -> bool | None:
        self.n += n or 0
        if self._now() - self._last >= self.interval_s:
            self._last = self._now()
            print(self.line(), file=self.stream, flush=True)
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> LogTicker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_or_log(*, total: int | None = None, desc: str = "", unit: str = "it",
                    quiet: bool = False, stream: TextIO | None = None,
                    interval_s: float = LOG_INTERVAL_S) -> Any:
    """A bar with an ETA on a terminal, else a :class:`LogTicker` (one line a minute) for
    long steps whose progress must reach a log too; nothing when `quiet`."""
    out = sys.stderr if stream is None else stream
    if quiet or on_terminal(out):
        return progress(total=total, desc=desc, unit=unit, quiet=quiet, stream=out)
    return LogTicker(total, desc, unit, out, interval_s)
