"""INT8 choices: selection frames choose, report frames report; the calibration search space."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from segedge.export.evaluation.evaluate import LabelledFrames
from segedge.export.precision import int8_search as s8
from segedge.export.precision.sensitivity import Budget, Measure
from segedge.runtime.errors import ExportError


def frames(n: int) -> LabelledFrames:
    return LabelledFrames([np.full((1,), i) for i in range(n)], [None] * n,  # type: ignore[list-item]
                          [np.full((2, 2), i, np.uint8) for i in range(n)], "val")


def test_held_out_frames_split_into_disjoint_selection_and_report() -> None:
    held = s8.split_held(frames(40))
    sel = [int(t[0]) for t in held.selection.tensors]
    rep = [int(t[0]) for t in held.report.tensors]
    assert sel == list(range(0, 40, 2)) and rep == list(range(1, 40, 2))
    assert [int(t[0, 0]) for t in held.report.truths or []] == rep  # truths follow their frames
    assert held.split and held.total == 40
    info = held.describe()
    assert info["selection"]["frames"] == info["report"]["frames"] == 20 and "note" not in info


def test_too_few_frames_say_so() -> None:
    held = s8.split_held(frames(31))
    assert not held.split and len(held.selection) == len(held.report) == 31
    assert held.describe()["note"].startswith("only 31 held-out frames (< 32): too few for a "
                                              "selection/report split")


def test_candidates_cheapest_lever_last_and_the_pool_first() -> None:
    got = [(c.method, c.frames, c.per_channel) for c in s8.candidates("minmax", 300)]
    assert got[:4] == [("minmax", 300, True), ("minmax", 300, False), ("minmax", 128, True),
                       ("minmax", 128, False)]
    assert {m for m, _, _ in got} == {"minmax", "percentile", "entropy"}
    assert {f for _, f, _ in got} == {300, 128, 64, 32} and len(got) == 3 * 4 * 2
    assert {c.frames for c in s8.candidates("minmax", 50)} == {50, 32}


def test_search_stops_at_the_first_candidate_meeting_the_budget() -> None:
    budget = Budget(max_miou_drop=0.5)
    drops = {("minmax", 64, False): 0.4, ("minmax", 64, True): 0.9}
    built: list[Any] = []

    def build(c: s8.Candidate) -> s8.Candidate:
        if c.method == "minmax" and c.frames == 32:
            raise ExportError("degenerate range")
        built.append(c)
        return c

    def measure(c: s8.Candidate) -> Measure:
        drop = drops.get((c.method, c.frames, c.per_channel), 2.0)
        return Measure(99.0, 50.0 - drop, 50.0)

    first = s8.Candidate("minmax", 64, True)
    chosen, art, tried = s8.search(first, Measure(98.0, 49.1, 50.0), budget, build, measure)
    assert chosen == s8.Candidate("minmax", 64, False) and art == chosen
    assert [(t["frames"], t["per_channel"]) for t in tried] == [(64, True), (64, False)]
    # nothing meets it: the best measured one, every trial recorded (errors included)
    drops.clear()
    chosen, _, tried = s8.search(first, Measure(98.0, 49.1, 50.0), budget, build, measure)
    assert chosen == first and any("error" in t for t in tried)
    assert len(tried) == len(list(s8.candidates("minmax", 64)))


def test_search_is_bounded_in_time() -> None:
    first = s8.Candidate("minmax", 64, True)
    _, _, tried = s8.search(first, Measure(90.0, 40.0, 50.0), Budget(), lambda c: c,
                            lambda c: Measure(90.0, 40.0, 50.0), limit_s=0.0)
    assert tried[-1] == {"stopped": "search time limit 0 s"} and len(tried) == 2


@pytest.mark.parametrize("met", [True])
def test_a_first_candidate_that_meets_the_budget_costs_nothing(met: bool) -> None:
    def never(c: s8.Candidate) -> None:
        raise AssertionError("no search when the first candidate meets the budget")

    first = s8.Candidate("percentile", 300, True)
    chosen, art, tried = s8.search(first, Measure(99.5, 50.0, 50.1), Budget(), never, never)  # type: ignore[arg-type]
    assert chosen == first and art is None and len(tried) == 1


def test_the_summary_says_which_frames_measured_what() -> None:
    from segedge.export.precision import modes

    section: dict[str, Any] = {
        "frames": 50, "argmax_agreement": 99.3, "cpu_latency_ms": {"fp32": 2.0, "int8": 1.0},
        "held_out": {"split": True, "selection": {"frames": 51}, "report": {"frames": 50}},
        "calibration": {"method": "percentile", "frames": 128, "searched": [{}, {}, {}]},
        "per_channel": False}
    lines = modes.get("int8").report_lines(section)
    assert lines[1:] == ["held-out frames: 51 chose the calibration and the layers kept, 50 "
                         "others measured the drop above",
                         "calibration searched (3 tried): percentile, 128 frames, per-channel "
                         "off"]
    section["held_out"] = s8.split_held(frames(8)).describe()
    section["calibration"]["searched"] = [{}]
    assert modes.get("int8").report_lines(section)[1].startswith(
        "note: only 8 held-out frames (< 32): too few for a selection/report split")


# The winner's-curse rule: 32 selection frames; the incumbent agrees 97 % on each.
N = 32
FIRST = s8.Candidate("percentile", 300, True)


def paired(gains: list[float], base: float = 97.0) -> Measure:
    """A measure whose per-frame agreement is `base` + gains[i % len(gains)] (no labels)."""
    per = tuple(round(base + gains[i % len(gains)], 4) for i in range(N))
    return Measure(round(float(np.mean(per)), 4), per_frame=per)


def run_search(found: dict[s8.Candidate, Measure], budget: Budget = Budget(min_agreement=99.0)
               ) -> tuple[s8.Candidate, Any, list[dict[str, Any]]]:
    """Every candidate not in `found` measures exactly like the incumbent."""
    return s8.search(FIRST, paired([0.0]), budget, lambda c: c,
                     lambda c: found.get(c, paired([0.0])))


def entry(tried: list[dict[str, Any]], c: s8.Candidate) -> dict[str, Any]:
    return next(t for t in tried if t.get("method") == c.method and t.get("frames") == c.frames
                and t.get("per_channel") == c.per_channel)


NOISY = s8.Candidate("percentile", 128, True)  # +2.0 / -1.2 on alternate frames: +0.4 mean
CLEAR = s8.Candidate("entropy", 64, True)  # +1.3 / +0.9: +1.1 mean, the same on every pair


def test_a_gain_within_the_paired_noise_does_not_replace_the_incumbent() -> None:
    noisy = paired([2.0, -1.2])
    assert noisy.agreement == 97.4  # measured better than the incumbent's 97.0
    chosen, art, tried = run_search({NOISY: noisy})
    assert chosen == FIRST and art is None  # the user's candidate stands
    # differences 2.0 / -1.2: mean 0.4, sd 1.6 * sqrt(32/31), se sd/sqrt(32), x 2.3264
    got = entry(tried, NOISY)
    assert got["not_taken"] == "within noise: +0.40 <= margin 0.67"
    assert got["paired"] == {"gain": 0.4, "noise_margin": pytest.approx(0.6686, abs=2e-4),
                             "frames": N, "against": FIRST.to_dict()}
    assert len(tried) == len(list(s8.candidates("percentile", 300)))  # searched them all
    assert sum("not_taken" in t for t in tried) == 1  # equal ones: not better, nothing said


def test_a_gain_beyond_the_noise_replaces_it_and_becomes_the_incumbent() -> None:
    later = s8.Candidate("minmax", 300, True)  # after CLEAR; +0.2 over it, but noisy
    chosen, art, tried = run_search({NOISY: paired([2.0, -1.2]), CLEAR: paired([1.3, 0.9]),
                                     later: paired([2.8, -0.2])})
    assert chosen == CLEAR and art == CLEAR
    got = entry(tried, CLEAR)
    assert "not_taken" not in got
    assert got["paired"]["gain"] == 1.1 and got["paired"]["noise_margin"] == pytest.approx(
        0.0836, abs=2e-4)
    # the later candidate is compared with CLEAR (the incumbent now), not with the first
    assert entry(tried, later)["paired"]["against"] == CLEAR.to_dict()
    assert entry(tried, later)["not_taken"] == "within noise: +0.20 <= margin 0.54"


def test_meeting_the_budget_wins_at_once_even_within_the_noise() -> None:
    chosen, art, tried = run_search({NOISY: paired([2.0, -1.2])},
                                    budget=Budget(min_agreement=97.3))
    assert chosen == NOISY and art == NOISY
    assert "not_taken" not in tried[-1] and entry(tried, NOISY) is tried[-1]  # stopped there


def test_without_per_frame_figures_or_with_labels_the_plain_comparison_decides() -> None:
    plain = Measure(97.4)  # no per-frame figures (a measure that did not carry them)
    chosen, _, tried = run_search({NOISY: plain})
    assert chosen == NOISY and "paired" not in entry(tried, NOISY)
    # labels: the mIoU drop decides, which is not a per-frame figure
    first = Measure(97.0, 49.0, 50.0, per_frame=paired([0.0]).per_frame)
    better_drop = Measure(97.4, 49.5, 50.0, per_frame=paired([2.0, -1.2]).per_frame)
    assert s8.paired_gain(better_drop, first) is None
    chosen, _, _ = s8.search(FIRST, first, Budget(max_miou_drop=0.1), lambda c: c,
                             lambda c: better_drop if c == NOISY else first)
    assert chosen == NOISY
    # per-frame figures of another frame count cannot be paired
    assert s8.paired_gain(paired([1.0]), Measure(97.0, per_frame=(97.0,) * (N - 1))) is None


def test_per_frame_figures_ride_along_without_changing_a_measure() -> None:
    from segedge.export.precision.modes.int8_margin import MARGIN_SE, per_frame
    from segedge.export.precision.sensitivity import worst

    ref = [np.zeros((10, 10), np.int64) for _ in range(3)]
    got = [r.copy() for r in ref]
    got[1][0, :3] = 1  # 97 % on frame 1
    assert per_frame(got, ref) == (100.0, 97.0, 100.0)
    m = Measure(99.0, margin=0.1, per_frame=(100.0, 97.0, 100.0))
    assert m == Measure(99.0, margin=0.1)  # derived data: not compared
    assert "per_frame" not in m.to_dict() and "per_frame" not in repr(m)
    low = worst([Measure(99.5, 60.0, 61.0, per_frame=(99.5,)),
                 Measure(98.0, 60.5, 60.7, per_frame=(98.0,))])
    assert low.per_frame == (98.0,)  # the deciding (lowest agreement) runtime's frames
    assert s8.GAIN_SE == MARGIN_SE
