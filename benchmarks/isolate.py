"""Run a measurement in a fresh process (spawned, not forked).

A fresh interpreter per cell means peak memory is that cell's alone, no
thread pools or caches survive from exports or earlier cells, and a crash
in a native library fails one cell instead of the whole run.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from segedge.benchmarks.jobs import SkipCell

J = TypeVar("J")


class CellFailed(Exception):
    """The measuring process died or raised; the message is one line for the table."""


def call(fn: Callable[[J], dict[str, Any]], job: J, isolated: bool = True) -> dict[str, Any]:
    """fn(job) here or in a child; SkipCell passes through, other errors become CellFailed."""
    try:
        if not isolated:
            return fn(job)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            return pool.submit(fn, job).result()
    except SkipCell:
        raise
    except BrokenProcessPool as err:
        raise CellFailed(f"the measuring process died ({err})") from None
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - any library error fails only this cell
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise CellFailed(f"{type(err).__name__}: {first}") from None
