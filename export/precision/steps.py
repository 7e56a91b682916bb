"""A long INT8 step (calibration, calibration search, sensitivity, keep-k search) that
keeps its bounds: an estimate from its first measured unit, a time bound checked after
every unit *inside* the step, and progress that reaches a terminal (bar) or a log (one
line a minute).

Why not only a limit between candidates: one candidate can itself be a calibration
pass of many minutes (issue 23); checking after every unit (a frame, a point, a trial)
bounds the overrun to one unit, whose duration the estimate has already measured.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from segedge.runtime.progress import progress_or_log


class BoundReached(Exception):  # noqa: N818 - a signal, caught by the step's owner
    """A step ran into its time bound; the owner keeps what was measured so far."""


@dataclass
class Step:
    """Count units, estimate the rest from the first one, stop at `limit_s`."""

    name: str
    total: int | None
    unit: str
    limit_s: float | None = None
    quiet: bool = False
    stream: TextIO | None = None
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    estimate_s: float | None = None
    stopped: bool = False
    _start: float = field(default=0.0, init=False)
    _bar: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        # the clock runs from construction: a step used only for its tick (a search
        # candidate's calibration) must not measure from the epoch of the monotonic clock
        self._start = self.clock()

    def __enter__(self) -> Step:
        self._start = self.clock()
        self._bar = progress_or_log(total=self.total, desc=self.name, unit=self.unit,
                                    quiet=self.quiet, stream=self.stream)
        return self

    def __exit__(self, kind: object, err: object, tb: object) -> bool:
        if self._bar is not None:
            self._bar.close()
        if isinstance(err, BoundReached):
            self.stopped = True
            return True  # the owner reads `stopped`
        return False

    @property
    def elapsed(self) -> float:
        return self.clock() - self._start

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream or sys.stderr, flush=True)

    def tick(self, n: int = 1) -> None:
        """One more unit done; raises BoundReached once the bound is spent."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self.done == n and self.total:
            per = self.elapsed / max(self.done, 1)
            self.estimate_s = round(per * self.total, 1)
            bound = f", bound {self.limit_s:.0f} s" if self.limit_s is not None else ""
            self._say(f"{self.name}: about {self.estimate_s:.0f} s for {self.total} "
                      f"{self.unit}(s) (first took {per:.1f} s{bound})")
        if self.limit_s is not None and self.elapsed > self.limit_s:
            raise BoundReached(self.name)

    def info(self) -> dict[str, Any]:
        return {"step": self.name, "units": self.unit, "done": self.done, "total": self.total,
                "seconds": round(self.elapsed, 2), "estimate_s": self.estimate_s,
                "bound_s": self.limit_s, "stopped_by_bound": self.stopped}
