"""INT8 choices made by measurement: which held-out frames decide, and the calibration search.

Honest numbers: the frames that *choose* (the calibration search, the
sensitivity ranking, the layers kept in FP32) are not the frames that *report*
the held-out drop.  The held-out frames (disjoint from calibration) are split
alternately into a selection part and a report part, so both spread over the
sequence; below ``MIN_SPLIT`` frames per part there are too few to split and
both roles use all of them, which the report says.

Calibration search (only with the default budget, and only while the fully
quantized graph misses it): the calibration method, the number of calibration
frames (``COUNTS`` spread from the calibration pool, the pool itself first) and
per-channel weights on/off, in that order of cost; the first candidate that
meets the budget on the selection frames wins, else the best measured one.
A new (method, count) pair costs one calibration pass over that many frames;
per-channel off costs only a re-quantization (its ranges come from the run's
memo, never a second pass).

Winner's curse: the best of up to 23 candidates on ~32 selection frames is partly the
candidate the noise favoured (a trained DDRNet's search chose 32 of 300 calibration frames
for +0.9 agreement points).  So a candidate that misses the budget replaces the incumbent
(the user's candidate, then the best so far) only when its gain clears the noise of the
frames that measured both: the mean per-frame agreement difference must exceed
``GAIN_SE`` (= modes/int8_margin.MARGIN_SE, about 2.33) standard errors of that paired
difference (``paired_gain``; pairing cancels what the frames share, so real gains stay
visible).  A gain inside it is recorded as ``not_taken: within noise``.  Meeting the
budget wins at once.  Without per-frame figures (``Measure.per_frame`` None), or where
the mIoU drop decides (labels: mIoU is not a per-frame figure), the plain comparison
(sensitivity.better) decides as before.  The whole search stops after ``SEARCH_S`` seconds
(measured here on the CamVid ESPNet at 128x160: about 4 s per candidate on 2
CPU cores), checked between candidates and, through `build`, after every frame
of a candidate's calibration (``steps.BoundReached``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from segedge.export.evaluation.evaluate import LabelledFrames
from segedge.export.precision.modes.int8_margin import MARGIN_SE, mean_error
from segedge.export.precision.sensitivity import Budget, Measure, better

MIN_SPLIT = 16  # held-out frames per part needed for a selection/report split
COUNTS = (128, 64, 32)  # calibration frame counts tried besides the whole pool
METHODS = ("percentile", "entropy", "minmax")  # tried after the user's own method
SEARCH_S = 180.0
# standard errors of the paired per-frame difference a gain must exceed: a chosen threshold
# (z = 2.33, about 99 % one-sided for a single comparison; the search makes up to 23, where a
# Bonferroni 95 % bound would be about 2.85), the same figure as the budget's margin
GAIN_SE = MARGIN_SE


@dataclass(frozen=True)
class HeldOut:
    """Held-out frames and the two roles they play."""

    selection: LabelledFrames  # choose calibration and layers kept in FP32
    report: LabelledFrames  # measure the drop the report states
    total: int
    split: bool  # False: too few frames, both roles use all of them

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "split": self.split,
            "selection": {"frames": len(self.selection), "indices": "even" if self.split
                          else "all", "used_for": ["calibration search",
                                                   "layer sensitivity", "budget search"]},
            "report": {"frames": len(self.report), "indices": "odd" if self.split else "all",
                       "used_for": ["reported drop", "runtime gates"]}}
        if not self.split:
            info["note"] = (f"only {self.total} held-out frames (< {2 * MIN_SPLIT}): too few "
                            "for a selection/report split, so the reported drop was measured "
                            "on the frames that chose the layers (optimistic); give more "
                            "--eval-images for an independent figure")
        return info


def _part(frames: LabelledFrames, start: int, tag: str) -> LabelledFrames:
    return replace(frames, tensors=frames.tensors[start::2], geoms=frames.geoms[start::2],
                   truths=None if frames.truths is None else frames.truths[start::2],
                   source=f"{frames.source}, {tag}")


def split_held(frames: LabelledFrames) -> HeldOut:
    """Even frames select, odd frames report; all frames do both when too few."""
    if len(frames) < 2 * MIN_SPLIT:
        return HeldOut(frames, frames, len(frames), False)
    return HeldOut(_part(frames, 0, "selection part (even frames)"),
                   _part(frames, 1, "report part (odd frames)"), len(frames), True)


@dataclass(frozen=True)
class Candidate:
    method: str
    frames: int
    per_channel: bool

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "frames": self.frames, "per_channel": self.per_channel}


def candidates(first_method: str, pool: int) -> Iterator[Candidate]:
    """The user's method first; per method, the whole pool then fewer frames; per-channel
    on, then off."""
    counts = (pool, *(c for c in COUNTS if c < pool))
    for method in (first_method, *(m for m in METHODS if m != first_method)):
        for count in counts:
            for per_channel in (True, False):
                yield Candidate(method, count, per_channel)


def paired_gain(a: Measure, b: Measure) -> tuple[float, float, int] | None:
    """(mean per-frame agreement gain of `a` over `b`, the noise margin it must exceed,
    frames) in points; None where no pair can be formed: a per-frame figure missing, other
    frame counts, or both labelled (the mIoU drop decides, not agreement)."""
    if a.per_frame is None or b.per_frame is None or not a.per_frame or \
            len(a.per_frame) != len(b.per_frame):
        return None
    if a.miou_drop is not None and b.miou_drop is not None:
        return None
    diff = np.subtract(a.per_frame, b.per_frame)
    return round(float(diff.mean()), 4), round(GAIN_SE * mean_error(diff), 4), len(diff)


def _clears_noise(m: Measure, incumbent: tuple[Candidate, Measure],
                  entry: dict[str, Any]) -> bool:
    """`m` (measured better than the incumbent) takes its place only when the paired gain
    exceeds the noise margin; `entry` (the trial's report) says which."""
    pair = paired_gain(m, incumbent[1])
    if pair is None:  # no per-frame figures: the plain comparison stands
        return True
    gain, margin, n = pair
    entry["paired"] = {"gain": gain, "noise_margin": margin, "frames": n,
                       "against": incumbent[0].to_dict()}
    if gain > margin:
        return True
    entry["not_taken"] = f"within noise: {gain:+.2f} <= margin {margin:.2f}"
    return False


def search(first: Candidate, first_measure: Measure, budget: Budget,
           build: Callable[[Candidate], Any], measure: Callable[[Any], Measure],
           limit_s: float = SEARCH_S) -> tuple[Candidate, Any, list[dict[str, Any]]]:
    """(chosen candidate, its built artifact, every trial); `build` may raise to skip one.

    `build(candidate)` -> artifact (or raises ValueError/ExportError, recorded and skipped).
    The first candidate meeting `budget` wins; else the best whose every gain over the
    incumbent it replaced cleared the noise (``paired_gain``).
    """
    from segedge.export.precision.steps import BoundReached
    from segedge.runtime.errors import ExportError

    tried: list[dict[str, Any]] = [{**first.to_dict(), **first_measure.to_dict()}]
    best: tuple[Candidate, Any, Measure] = (first, None, first_measure)
    if budget.met(first_measure):
        return first, None, tried
    start = time.perf_counter()
    for cand in candidates(first.method, first.frames):
        if cand == first:
            continue
        if time.perf_counter() - start > limit_s:
            tried.append({"stopped": f"search time limit {limit_s:.0f} s"})
            break
        try:
            built = build(cand)
            m = measure(built)
        except ExportError as err:  # e.g. a histogram method on a degenerate range
            tried.append({**cand.to_dict(), "error": str(err)})
            continue
        except BoundReached:  # inside a candidate's own calibration pass
            tried.append({**cand.to_dict(), "stopped": f"search time limit {limit_s:.0f} s "
                          "(inside this candidate's calibration)"})
            break
        entry = {**cand.to_dict(), **m.to_dict()}
        tried.append(entry)
        if budget.met(m):  # meeting the budget wins at once, noise or not
            best = (cand, built, m)
            break
        if better(m, best[2]) and _clears_noise(m, (best[0], best[2]), entry):
            best = (cand, built, m)
    return best[0], best[1], tried
