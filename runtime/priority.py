"""Thread priority on a shared CPU: decode, draw and encode yield to inference.

Inference threads run parallel loops with barriers: a core taken by an
equal-priority encoder stalls all of them.  At lower priority (Linux: nice is
per thread) the frame-size work fills the gaps instead.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_POLL_S = 0.1


def lower_priority(nice: int) -> None:
    """Make the calling thread yield to inference (Linux: nice is per thread).

    Inference threads run parallel loops with barriers: a core taken by an
    equal-priority encoder stalls all of them.  At lower priority, decode,
    draw and encode fill the gaps instead.  Threads created afterwards from
    this one (FFmpeg decoders, capture threads) inherit the priority.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, current + nice))
    except OSError:
        pass


def in_background_thread(fn: Callable[[], T], nice: int) -> T:
    """Run ``fn`` on a short-lived lower-priority thread (so the threads it starts inherit
    that priority) and return its result or raise its error here."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        lower_priority(nice)
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised on the calling thread
            box["error"] = err

    thread = threading.Thread(target=target, name="segrun-open", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=_POLL_S)
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
