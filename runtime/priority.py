"""Sharing a small CPU with inference: thread priority, and no per-frame page faults.

Inference threads run parallel loops with barriers: a core taken by an
equal-priority encoder stalls all of them.  At lower priority (Linux: nice is
per thread) the frame-size work fills the gaps instead.  And the frame-size
work itself must not cost more than it does: ``reuse_freed_memory``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
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


MMAP_THRESHOLD = 64 << 20  # glibc M_MMAP_THRESHOLD: arrays below this come from the heap
TRIM_THRESHOLD = 256 << 20  # glibc M_TRIM_THRESHOLD: freed heap kept for the next frames


@functools.cache
def reuse_freed_memory() -> bool:
    """Keep freed frame-sized buffers for the next frame instead of handing them back to
    the kernel (glibc only; once per process; True when it took effect).

    glibc serves an allocation above its (dynamic) mmap threshold with a fresh mapping and
    unmaps it when freed, so every frame's arrays (the decoded frame, the resize's float
    planes, the tensor, the overlay: megabytes each) are page-faulted and zeroed again,
    frame after frame, on the cores inference needs.  Measured here on 4 streams of the
    960x540 dash-cam clip: 2800-3600 minor faults per frame fell to ~395 and the CPU per
    frame by ~10 %.  The cost is memory: up to TRIM_THRESHOLD of freed heap stays mapped."""
    ok = False
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(None)
            m_trim, m_mmap = -1, -3  # <malloc.h>: M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
            ok = bool(libc.mallopt(m_mmap, MMAP_THRESHOLD)) and bool(
                libc.mallopt(m_trim, TRIM_THRESHOLD))
        except (OSError, AttributeError):
            ok = False
    return ok
