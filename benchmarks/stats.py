"""Latency statistics: the tail (p99, max) next to the middle, with no outlier clipping.

A benchmark that drops its slow iterations hides exactly what a real-time
pipeline suffers from, so every sample counts.  Percentiles interpolate
linearly between order statistics (numpy's default "linear" method), which
makes small runs comparable with numpy and with other tools.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile: expected at least one value, got none")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile: expected q in 0..100, got {q}")
    data = sorted(float(v) for v in values)
    rank = q / 100.0 * (len(data) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds per iteration; fps counts images (iterations x batch) per second."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    mean_ms: float
    std_ms: float
    fps: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples_ms: Sequence[float], batch: int = 1) -> LatencySummary:
    """Every sample counts; std is the population standard deviation."""
    if not samples_ms:
        raise ValueError("summarize: expected timed samples, got none")
    n = len(samples_ms)
    mean = sum(samples_ms) / n
    var = sum((s - mean) ** 2 for s in samples_ms) / n
    total_s = sum(samples_ms) / 1000.0
    return LatencySummary(
        n=n,
        p50_ms=round(percentile(samples_ms, 50), 4),
        p90_ms=round(percentile(samples_ms, 90), 4),
        p99_ms=round(percentile(samples_ms, 99), 4),
        max_ms=round(max(samples_ms), 4),
        min_ms=round(min(samples_ms), 4),
        mean_ms=round(mean, 4),
        std_ms=round(math.sqrt(var), 4),
        fps=round(n * batch / total_s, 3) if total_s > 0 else 0.0,
    )


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def known_median(values: Sequence[float | None]) -> float | None:
    """The median of the figures that exist (a run that could not measure one gives None),
    or None when none does."""
    known = [float(v) for v in values if v is not None]
    return median(known) if known else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator to 4 significant digits (a fixed 3 decimals would cost a
    0.04 ratio 1 % of its value), or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(f"{numerator / denominator:.4g}")
