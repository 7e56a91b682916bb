"""The one timing helper: warm-up, then interleaved rounds, median and spread per callable.

Why interleaved: when two runtimes (or a runtime and its peer) are compared on a shared
machine, a load spike from another process must hit every candidate alike, so each
round calls every candidate once, in rotating order.  Why a spread: one median says
nothing about how noisy it was; the auto chooser re-measures when the rounds disagree
too much (``Timing.spread``), and segbench prints it.

Used by the auto chooser (runtime.backends.auto), segbench (benchmarks.measure) and,
through ``time_one``, any single loop (the precision gates and segdoctor can call it too).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from segedge.runtime.errors import InputError

Step = Callable[[], object]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Timing:
    """Per-call wall times of one callable, in ms, in the order measured."""

    samples_ms: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise InputError("timing", "at least one timed call", "none")

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.samples_ms))

    @property
    def spread(self) -> float:
        """Interquartile range over the median (0.0 for fewer than 4 samples or a zero median):
        0.1 means the middle half of the calls lies within 10 % of the median's size."""
        if len(self.samples_ms) < 4 or self.median_ms <= 0:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples_ms, n=4, method="inclusive")
        return (q3 - q1) / self.median_ms

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.samples_ms + other.samples_ms)


@dataclass(frozen=True)
class Rounds:
    """How long to measure: ``warmup`` untimed calls each, then between ``min_rounds`` and
    ``max_rounds`` interleaved rounds, stopping once ``budget_s`` has passed (None: never)."""

    warmup: int = 2
    min_rounds: int = 3
    max_rounds: int = 9
    budget_s: float | None = 4.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_rounds < 1 or self.max_rounds < self.min_rounds:
            raise InputError("timing rounds", "warmup >= 0 and 1 <= min_rounds <= max_rounds",
                             (self.warmup, self.min_rounds, self.max_rounds))


def interleaved(steps: Mapping[str, Step], rounds: Rounds = Rounds(), *,
                clock: Clock = time.perf_counter) -> dict[str, Timing]:
    """Time every step once per round, the order rotating each round (a step that always ran
    first or last would always meet the same cache and turbo state)."""
    if not steps:
        raise InputError("timing", "at least one step to time", "none")
    names = list(steps)
    for name in names:
        for _ in range(rounds.warmup):
            steps[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    start = clock()
    for index in range(rounds.max_rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = clock()
            steps[name]()
            samples[name].append((clock() - t0) * 1e3)
        if index + 1 >= rounds.min_rounds and rounds.budget_s is not None \
                and clock() - start > rounds.budget_s:
            break
    return {name: Timing(tuple(v)) for name, v in samples.items()}


def settled(steps: Mapping[str, Step], rounds: Rounds = Rounds(), *, max_spread: float = 0.15,
            retries: int = 2, clock: Clock = time.perf_counter) -> dict[str, Timing]:
    """``interleaved``, repeated (without new warm-up) while any step's spread exceeds
    ``max_spread``, at most ``retries`` more times; the samples of every attempt are kept, so a
    burst of load is outvoted rather than thrown away."""
    found = interleaved(steps, rounds, clock=clock)
    again = Rounds(0, rounds.min_rounds, rounds.max_rounds, rounds.budget_s)
    for _ in range(retries):
        if all(t.spread <= max_spread for t in found.values()):
            break
        more = interleaved(steps, again, clock=clock)
        found = {name: found[name] + more[name] for name in found}
    return found


def time_one(step: Step, rounds: Rounds, *, clock: Clock = time.perf_counter) -> Timing:
    """One callable alone (a benchmark cell, a latency figure in a report)."""
    return interleaved({"step": step}, rounds, clock=clock)["step"]
