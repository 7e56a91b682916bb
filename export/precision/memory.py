"""Peak resident memory of the process while a step runs (the INT8 report's figure).

Why sample and not only ``ru_maxrss``: the kernel's high-water mark covers the whole
process (the PyTorch export before INT8 included), so a thread samples the resident set
every `interval_s` during the step; both figures go in the report.  Reads
``/proc/self/statm`` (no dependency); elsewhere psutil when installed, else only maxrss.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Resident set size now, or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - no psutil, or no permission
        return None


def max_rss_bytes() -> int:
    """The process's high-water mark (Linux: KiB, macOS: bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakRSS:
    """``with PeakRSS() as peak: ...`` then ``peak.info()``: sampled peak during the block."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.start = rss_bytes()
        self.peak = self.start or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="peak-rss")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        now = rss_bytes()
        if now is not None and now > self.peak:
            self.peak = now

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def info(self) -> dict[str, float | None | str]:
        mib = 2 ** 20
        return {"peak_rss_mb": round(self.peak / mib, 1) if self.peak else None,
                "start_rss_mb": round(self.start / mib, 1) if self.start else None,
                "process_max_rss_mb": round(max_rss_bytes() / mib, 1),
                "how": f"resident set sampled every {self.interval_s * 1000:.0f} ms during INT8 "
                       "(peak_rss_mb); process_max_rss_mb: the kernel's high-water mark of "
                       "the whole export"}
