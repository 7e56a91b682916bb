"""The INT8 budget search keeps a margin for the frames that did not choose its set.

Measured (benchmarks/INT8_BUDGET_ddrnet23_slim.md): a keep-in-float set chosen at the budget on 32
selection frames landed at 98.995 % on the 32 report frames, under the 99 % budget; with
one standard error subtracted, a trained DDRNet's set chosen at 99.05 % landed at 98.91 %.
The search now asks the budget to hold with a one-sided 95 % bound on the difference of
two frame samples' means (1.645 x sqrt(2) standard errors of the per-frame agreement)
subtracted whenever selection and report frames differ.
"""

from __future__ import annotations

import numpy as np
import pytest

from segedge.export.precision.modes.int8_margin import (
    MARGIN_SE,
    per_frame,
    standard_error,
    unseen_margin,
)
from segedge.export.precision.sensitivity import Budget, Measure, worst

Maps = list[np.ndarray]


def _frames(agreements: list[float], pixels: int = 1000) -> tuple[Maps, Maps]:
    """Label maps whose per-frame agreement with the reference is exactly `agreements`."""
    got, ref = [], []
    for a in agreements:
        r = np.zeros(pixels, np.int64)
        g = r.copy()
        g[: round(pixels * (100 - a) / 100)] = 1
        got.append(g.reshape(10, -1))
        ref.append(r.reshape(10, -1))
    return got, ref


def test_the_standard_error_is_that_of_the_per_frame_agreement() -> None:
    per = [99.0, 99.4, 98.8, 99.2]
    got, ref = _frames(per)
    assert standard_error(per_frame(got, ref)) == pytest.approx(np.std(per, ddof=1) / 2, abs=1e-4)
    assert standard_error(per_frame(got[:1], ref[:1])) == 0.0  # one frame: no spread to speak of
    same, ref2 = _frames([99.0] * 4)
    assert standard_error(per_frame(same, ref2)) == 0.0


def test_the_search_margin_is_a_one_sided_95_percent_bound_on_a_difference_of_means() -> None:
    per = [99.0, 99.4, 98.8, 99.2]
    got, ref = _frames(per)
    se = np.std(per, ddof=1) / 2
    assert MARGIN_SE == pytest.approx(2.3264, abs=1e-4)
    assert unseen_margin(per_frame(got, ref)) == pytest.approx(2.3264 * se, abs=2e-4)
    # the trained DDRNet case: 99.05 % with one standard error (0.047) passed and missed on
    # the report frames; with this margin the same figure no longer meets the budget
    assert not Budget(min_agreement=99.0).met(Measure(99.05, margin=round(MARGIN_SE * 0.047, 4)))
    assert Budget(min_agreement=99.0).met(Measure(99.05, margin=0.047))


def test_the_budget_holds_only_with_the_margin_subtracted() -> None:
    budget = Budget(min_agreement=99.0)
    assert budget.met(Measure(99.05))
    assert not budget.met(Measure(99.05, margin=0.1))  # 98.95 on unseen frames: not enough
    assert budget.met(Measure(99.15, margin=0.1))
    assert Measure(99.05, margin=0.1).to_dict()["margin"] == 0.1
    assert "margin" not in Measure(99.05).to_dict()  # no split: nothing to say


def test_the_worst_runtime_is_judged_with_its_own_margin() -> None:
    a = Measure(99.30, worst_on="onnxruntime", margin=0.05)
    b = Measure(99.20, worst_on="openvino", margin=0.30)  # higher, but less certain
    low = worst([a, b])
    assert (low.worst_on, low.agreement, low.margin) == ("openvino", 99.20, 0.30)
    assert not Budget(min_agreement=99.0).met(low)
