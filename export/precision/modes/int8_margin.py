"""The INT8 budget search's margin for the frames that did not choose its set.

The keep-in-float set and the calibration are chosen on the selection frames and
reported on others (int8_search.split_held), so a set chosen exactly at the budget
falls under it on the report frames about half the time.  ``Int8Run.measure``
(modes/int8_steps.py) puts ``unseen_margin`` into every ``Measure``; the budget must
hold with it subtracted (sensitivity.Budget).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segedge.export.verify.compare import agreement

# How far below the selection frames' figure the report frames' may fall: the difference of
# two independent samples' mean agreement has about sqrt(2) times one sample's standard
# error, and 1.645 of those is a one-sided 95 % bound.  Measured (INT8_BUDGET.md): with no
# margin a set chosen at the budget gave 98.995 % on the report frames (random DDRNet); with
# one standard error (0.047 points) a trained DDRNet-23-slim's set chosen at 99.05 % gave
# 98.91 %; both under the 99 % budget, so no artifact.
MARGIN_SE = 1.645 * float(np.sqrt(2.0))  # about 2.33 standard errors


def per_frame(got: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> tuple[float, ...]:
    """Each frame's agreement with its reference (points): ``Measure.per_frame``, and what
    the margins here are computed from (one pass over the frames per measurement)."""
    return tuple(agreement([g], [r]) for g, r in zip(got, ref, strict=True))


def unseen_margin(per: Sequence[float]) -> float:
    """Agreement points the budget search subtracts so its set also holds on the report
    frames: ``MARGIN_SE`` standard errors of the per-frame agreement `per`."""
    return round(MARGIN_SE * standard_error(per), 4)


def standard_error(per: Sequence[float]) -> float:
    """One standard error of the mean per-frame agreement (points): how far the figure may
    move on other frames like these."""
    return round(mean_error(per), 4)


def mean_error(values: Sequence[float]) -> float:
    """The standard error of the mean of `values` (0 below two: no spread to speak of);
    unrounded, for int8_search.paired_gain's per-frame differences as well."""
    if len(values) < 2:
        return 0.0
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))
