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
