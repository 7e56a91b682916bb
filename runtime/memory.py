"""How much memory this process holds: resident now and its peak, read in one place.

segbench (a cell's peak, the resident set before a model loads) and segexport's INT8
report (export/precision/memory.py samples the resident set during INT8) read the same
figures.  Linux: ``/proc/self`` (no dependency); elsewhere psutil where installed for the
resident set, and the kernel's ``ru_maxrss`` for the peak.

Why VmHWM before ``ru_maxrss`` for the peak: on Linux ``ru_maxrss`` survives exec, so a
measuring process spawned from a parent holding PyTorch would report the parent's size;
VmHWM belongs to this process image only.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

MIB = 2**20
STATM = Path("/proc/self/statm")  # size resident shared ... (pages)
STATUS = Path("/proc/self/status")  # VmHWM: peak resident set (kB)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Resident set size now, or None where it cannot be read."""
    try:
        return int(STATM.read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - no psutil, or no permission
        return None


def peak_rss_bytes() -> int:
    """This process image's peak resident set (VmHWM; else the kernel's ru_maxrss)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes, Linux: KiB


def rss_mib() -> float:
    """``rss_bytes`` in MiB (0.1), 0.0 where it cannot be read (segbench's column)."""
    now = rss_bytes()
    return round(now / MIB, 1) if now is not None else 0.0


def peak_rss_mib() -> float:
    """``peak_rss_bytes`` in MiB (0.1)."""
    return round(peak_rss_bytes() / MIB, 1)
