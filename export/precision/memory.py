"""Peak resident memory of the process while a step runs (the INT8 report's figure).

Why sample and not only the process's high-water mark: that mark covers the whole
process (the PyTorch export before INT8 included), so a thread samples the resident set
every `interval_s` during the step; both figures go in the report.  The figures
themselves are read by runtime/memory.py (segbench reads the same).
"""

from __future__ import annotations

import threading
from types import TracebackType

from segedge.runtime.memory import MIB, peak_rss_bytes, rss_bytes


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
        return {"peak_rss_mb": round(self.peak / MIB, 1) if self.peak else None,
                "start_rss_mb": round(self.start / MIB, 1) if self.start else None,
                "process_max_rss_mb": round(peak_rss_bytes() / MIB, 1),
                "how": f"resident set sampled every {self.interval_s * 1000:.0f} ms during INT8 "
                       "(peak_rss_mb); process_max_rss_mb: the kernel's high-water mark of "
                       "the whole export"}
