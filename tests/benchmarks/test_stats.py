"""Percentiles and summaries on data whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from segedge.benchmarks.stats import percentile, ratio, summarize


def test_percentile_interpolates_linearly_between_ranks() -> None:
    data = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(data, 0) == 1.0
    assert percentile(data, 100) == 10.0
    assert percentile(data, 50) == pytest.approx(5.5)
    assert percentile(data, 90) == pytest.approx(9.1)
    assert percentile(data, 99) == pytest.approx(9.91)


def test_percentile_is_order_independent_and_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    data = rng.lognormal(1.0, 0.8, 257).tolist()
    shuffled = list(reversed(data))
    for q in (0, 1, 25, 50, 90, 99, 99.9, 100):
        assert percentile(shuffled, q) == pytest.approx(float(np.percentile(data, q)), rel=1e-12)


def test_percentile_of_one_value_and_bad_input() -> None:
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="at least one value"):
        percentile([], 50)
    with pytest.raises(ValueError, match="q in 0..100"):
        percentile([1.0], 101)


def test_summary_keeps_the_tail_and_counts_throughput() -> None:
    # 99 fast iterations and one 100x slower one: no clipping may hide it.
    samples = [10.0] * 99 + [1000.0]
    s = summarize(samples, batch=2)
    assert s.n == 100
    assert s.p50_ms == 10.0
    assert s.max_ms == 1000.0
    assert s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    assert s.p99_ms == pytest.approx(10.0 + 0.01 * 990.0)
    assert s.mean_ms == pytest.approx(19.9)
    assert s.std_ms == pytest.approx(float(np.std(samples)), rel=1e-4)
    # 100 iterations x 2 images in 1.99 s
    assert s.fps == pytest.approx(200 / 1.99, rel=1e-3)


def test_summary_refuses_no_samples_and_ratio_handles_missing() -> None:
    with pytest.raises(ValueError, match="timed samples"):
        summarize([])
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None


def test_ratios_keep_four_significant_digits_however_small() -> None:
    assert ratio(1.0, 25.38) == 0.0394  # 3 fixed decimals would say 0.039 (1 % off)
    assert ratio(27.0, 10.0) == 2.7 and ratio(12.0, 30.0) == 0.4
    assert ratio(2.0, 3.0) == 0.6667 and ratio(200.0, 3.0) == 66.67
