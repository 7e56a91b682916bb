"""The one timing helper with a fake clock: rounds interleave in rotating order, the budget
stops them, a wide spread is measured again (its samples kept), medians and spreads exact."""

from __future__ import annotations

import pytest

from segedge.runtime.errors import InputError
from segedge.runtime.timing import Rounds, Timing, interleaved, settled, time_one


class Clock:
    """Advances by the cost of whichever step runs (set by the step itself)."""

    def __init__(self) -> None:
        self.now, self.calls = 0.0, []

    def __call__(self) -> float:
        return self.now

    def step(self, name: str, costs: list[float]):  # noqa: ANN201 - a test helper
        def run() -> None:
            self.calls.append(name)
            self.now += costs.pop(0) if len(costs) > 1 else costs[0]
        return run


def test_rounds_interleave_in_rotating_order_after_warmup() -> None:
    clock = Clock()
    steps = {"a": clock.step("a", [0.010]), "b": clock.step("b", [0.020])}
    found = interleaved(steps, Rounds(warmup=1, min_rounds=3, max_rounds=3, budget_s=None),
                        clock=clock)
    assert clock.calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rotating
    assert found["a"].samples_ms == pytest.approx((10.0, 10.0, 10.0))
    assert found["b"].median_ms == pytest.approx(20.0)


def test_the_budget_stops_after_min_rounds() -> None:
    clock = Clock()
    found = interleaved({"a": clock.step("a", [1.0])},
                        Rounds(warmup=0, min_rounds=2, max_rounds=9, budget_s=1.5), clock=clock)
    assert len(found["a"].samples_ms) == 2  # 2 s spent after round 2 > 1.5 s


def test_spread_is_iqr_over_median_and_a_wide_one_is_measured_again() -> None:
    assert Timing((10.0, 10.0, 10.0, 10.0)).spread == 0.0
    assert Timing((8.0, 10.0, 10.0, 12.0)).spread == pytest.approx(0.1)  # (10.5 - 9.5) / 10
    clock = Clock()
    noisy = [0.010, 0.030, 0.010, 0.030] + [0.010] * 20  # then quiet
    found = settled({"a": clock.step("a", noisy)},
                    Rounds(warmup=0, min_rounds=4, max_rounds=4, budget_s=None),
                    max_spread=0.15, retries=3, clock=clock)
    # 4 noisy: IQR/median 1.0; +4 quiet: 0.5; +4 quiet: 0.0 - settled, every sample kept
    assert len(found["a"].samples_ms) == 12
    assert found["a"].median_ms == pytest.approx(10.0)


def test_bad_rounds_and_empty_timings_are_refused() -> None:
    with pytest.raises(InputError) as err:
        Rounds(warmup=0, min_rounds=5, max_rounds=2)
    assert str(err.value) == ("timing rounds: expected warmup >= 0 and 1 <= min_rounds <= "
                              "max_rounds, got (0, 5, 2)")
    with pytest.raises(InputError):
        Timing(())
    clock = Clock()
    assert time_one(clock.step("x", [0.002]), Rounds(0, 2, 2, None),
                    clock=clock).samples_ms == pytest.approx((2.0, 2.0))
