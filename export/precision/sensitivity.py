"""Accuracy budget for INT8 and the search that meets it by keeping layers in FP32.

When the fully quantized graph misses the budget, each candidate quantization
point (precision/points.py: activation Q/DQ pairs and weights) is quantized
*alone* (everything else float) and ranked by how much it changes the FP32
prediction; then the most sensitive points are kept in float, the smallest set
first, until the budget holds.  Units next to ops that commonly collapse are first
measured kept in float together and start the search in float where that measurement
says so (``seed_fragile``).  Keeping every point is the FP32 graph, so the
search always has a set that meets the budget; only its time bound can stop it
short, and then the closest measured set is reported.  One-at-a-
time ranking costs one quantize + one short evaluation per layer and, unlike
leave-one-out, is not drowned by the error of all the other layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segedge.runtime.errors import InputError

# Defaults when the user sets no budget.  Measured on a published CamVid model, 97 %
# agreement let a 1.7 mIoU point loss through; 0.5 points is what a user can ship, and
# without labels 99 % agreement (on every runtime checked) is the tight stand-in for it.
DEFAULT_MAX_MIOU_DROP = 0.5  # points, when labels exist
DEFAULT_MIN_AGREEMENT = 99.0  # percent of pixels, when there are no labels


@dataclass(frozen=True)
class Measure:
    """A candidate against FP32 on the held-out frames (percentages)."""

    agreement: float
    miou: float | None = None
    miou_fp32: float | None = None
    worst_on: str | None = None  # the runtime the deciding figure came from (worst of several)
    # agreement points the figure may lose on frames that did not choose it: 2.33 standard
    # errors of its per-frame agreement when the selection and report frames differ
    # (modes/int8_margin.unseen_margin); the budget must hold with it subtracted, so the
    # chosen set also meets it on the report frames
    margin: float = 0.0
    # per-frame agreement on the same frames (modes/int8_margin.per_frame), so two
    # candidates compare frame by frame (int8_search.paired_gain); None: not measured.
    # Derived data: not compared, not in to_dict (the report has the figure).
    per_frame: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def miou_drop(self) -> float | None:
        if self.miou is None or self.miou_fp32 is None:
            return None
        return round(self.miou_fp32 - self.miou, 4)

    def to_dict(self) -> dict[str, Any]:
        got = {**asdict(self), "miou_drop": self.miou_drop}
        if self.worst_on is None:  # one runtime measured: nothing to say
            del got["worst_on"]
        if not self.margin:
            del got["margin"]
        del got["per_frame"]
        return got


def worst(measures: Sequence[Measure]) -> Measure:
    """One measure no better than any of `measures` (each a runtime against its own FP32):
    the lowest agreement and the largest mIoU drop, so a budget it meets holds on every one.
    ``worst_on`` names the runtime of the deciding figure (the drop where labels exist)."""
    if not measures:
        raise ValueError("worst: expected at least one measure, got none")
    low = min(measures, key=lambda m: m.agreement - m.margin)
    drops = [m for m in measures if m.miou_drop is not None]
    if not drops:
        return low
    big = max(drops, key=lambda m: m.miou_drop or 0.0)
    return Measure(low.agreement, big.miou, big.miou_fp32, big.worst_on, low.margin,
                   low.per_frame)


@dataclass(frozen=True)
class Budget:
    """What INT8 may lose: mIoU points (needs labels) and/or argmax agreement."""

    max_miou_drop: float | None = None
    min_agreement: float | None = None

    def __post_init__(self) -> None:
        if self.max_miou_drop is not None and self.max_miou_drop < 0:
            raise InputError("--max-miou-drop", "mIoU points >= 0", self.max_miou_drop)
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 100:
            raise InputError("--int8-min-agreement", "a percentage 0..100",
                             self.min_agreement)

    def effective(self, labelled: bool) -> Budget:
        """The user's budget, else 0.5 mIoU point with labels, else 99 % agreement."""
        if self.max_miou_drop is None and self.min_agreement is None:
            return Budget(max_miou_drop=DEFAULT_MAX_MIOU_DROP) if labelled else \
                Budget(min_agreement=DEFAULT_MIN_AGREEMENT)
        return self

    def met(self, m: Measure) -> bool:
        b = self.effective(m.miou_drop is not None)
        if b.max_miou_drop is not None:
            drop = m.miou_drop
            if drop is None:
                raise InputError("--max-miou-drop", "--eval-images DIR --eval-labels DIR",
                                 "no labels to measure mIoU")
            if drop > b.max_miou_drop + 1e-9:
                return False
        return b.min_agreement is None or m.agreement - m.margin >= b.min_agreement

    def describe(self, labelled: bool) -> str:
        b = self.effective(labelled)
        parts = []
        if b.max_miou_drop is not None:
            parts.append(f"mIoU drop <= {b.max_miou_drop} points")
        if b.min_agreement is not None:
            parts.append(f"argmax agreement >= {b.min_agreement}%")
        return " and ".join(parts)


@dataclass(frozen=True)
class SearchResult:
    path: Path
    kept_fp32: tuple[str, ...]
    measure: Measure
    met: bool
    ranking: tuple[tuple[str, float], ...]  # (layer, % pixels changed when quantized alone)
    trials: tuple[dict[str, Any], ...]
    # the fragile units measured together before the search (``fragile_seed``): None when
    # there were none to measure (or the full graph met the budget)
    fragile: dict[str, Any] | None = None


def rank_layers(layers: Sequence[str], only: Callable[[str], Path],
                agreement_of: Callable[[Path], float],
                tick: Callable[[], None] = lambda: None) -> list[tuple[str, float]]:
    """Most sensitive first: percent of pixels a layer (point) alone changes when quantized.

    `tick` runs after every measured point and may raise steps.BoundReached: the points
    measured so far are ranked by effect, the others follow unmeasured in the given order
    (fragile ones first), scored ``-1`` so the report tells them apart.
    """
    from segedge.export.precision.steps import BoundReached

    scored: list[tuple[str, float]] = []
    try:
        for layer in layers:
            scored.append((layer, round(100.0 - agreement_of(only(layer)), 4)))
            tick()
    except BoundReached:
        pass
    measured = {name for name, _ in scored}
    ranked = sorted(scored, key=lambda item: -item[1])
    return ranked + [(name, -1.0) for name in layers if name not in measured]


LINEAR_K = 8  # keep-k steps of one up to here; then doubling, then bisection

# Fragile units (points.FRAGILE_OPS, the layers before the head) start in float only when
# measurement says they collapse: kept in float *together*, they must win back at least
# FRAGILE_MIN_SHARE of the full graph's loss, and at least FRAGILE_LEVERAGE times their
# share of the units.  Why together: a collapse (a LayerNorm or Softmax whose rounded
# output wrecks every layer after it) is an interaction the one-at-a-time ranking cannot
# see, so the keep-k search would spend its trials on other layers first.  Why a floor: a
# smaller gain is what one keep-k step moves anyway, and the ranked search trims better.
# Why the leverage: a collapse is disproportionate by definition; a set holding 60 % of
# the units that wins back 60 % of the loss is "most of the network", and starting it in
# float would throw away INT8 layers the ranked search keeps.
FRAGILE_MIN_SHARE = 0.25
FRAGILE_LEVERAGE = 2.0


def loss(m: Measure) -> float:
    """What a candidate lost against FP32: mIoU points where labels exist, else points of
    argmax agreement (the figure the budget reads)."""
    return m.miou_drop if m.miou_drop is not None else round(100.0 - m.agreement, 6)


def seed_fragile(full: Measure, kept: Measure, fragile: int, total: int) -> dict[str, Any]:
    """The report's ``fragile_seed`` decision for `fragile` of `total` units, from the full
    graph's measure and the measure with the fragile units kept in float."""
    lost = loss(full)
    share = (lost - loss(kept)) / lost if lost > 0 else 0.0
    unit_share = fragile / total if total else 1.0
    need = max(FRAGILE_MIN_SHARE, FRAGILE_LEVERAGE * unit_share)
    return {"seeded": share >= need, "recovered_share": round(share, 4),
            "unit_share": round(unit_share, 4), "needed_share": round(need, 4),
            "rule": f"kept together in float they win back >= {FRAGILE_MIN_SHARE:.0%} of the "
                    f"loss and >= {FRAGILE_LEVERAGE:g}x their share of the units"}


def keep_counts(n: int) -> list[int]:
    """k = 1..8 one at a time (cheap and exact for the usual case), then 16, 32, ... n."""
    ks = list(range(1, min(n, LINEAR_K) + 1))
    k = LINEAR_K
    while k < n:
        k = min(2 * k, n)
        ks.append(k)
    return ks


def search(full: Path, full_measure: Measure, budget: Budget, layers: Sequence[str],
           only: Callable[[str], Path], excluding: Callable[[tuple[str, ...]], Path],
           measure: Callable[[Path], Measure], agreement_of: Callable[[Path], float],
           tick: Callable[[], None] = lambda: None,
           keep_tick: Callable[[], None] | None = None,
           fragile: Sequence[str] = (),
           start_ranking: Callable[[int], None] = lambda n: None) -> SearchResult:
    """Full INT8 if it meets `budget`; else keep the top-k sensitive points in float.

    `fragile` units (a subset of `layers`) are first measured kept in float together;
    where ``seed_fragile`` says they collapse, every later set keeps them (k counts
    beyond them) and only the other units are ranked.  k grows one at a time up to
    ``LINEAR_K``, then doubles up to every point (all kept = the FP32 graph, so the
    search can always reach the budget), then bisects between the last miss and the
    first hit.  `tick` (ranking) and `keep_tick` (keep-k) run after every measured unit
    and may raise steps.BoundReached: the best measured so far stands.
    `start_ranking(n)` runs once, just before the ranking, with the number of units it will
    rank (0 when the seeded fragile set already meets the budget): the progress total.
    """
    from segedge.export.precision.steps import BoundReached

    keep_tick = keep_tick or tick
    trials = [{"kept_fp32": [], **full_measure.to_dict()}]
    if budget.met(full_measure):
        return SearchResult(full, (), full_measure, True, (), tuple(trials))
    best: tuple[Path, tuple[str, ...], Measure] = (full, (), full_measure)
    hit: tuple[Path, tuple[str, ...], Measure] | None = None
    spare: tuple[Path, tuple[str, ...], Measure] | None = None  # a fragile hit not seeded
    seed: tuple[str, ...] = ()
    seeded: dict[str, Any] | None = None
    wanted = set(fragile)
    fragile = tuple(u for u in layers if u in wanted)
    if fragile and len(fragile) < len(layers):
        path = excluding(fragile)
        m = measure(path)
        trials.append({"kept_fp32": list(fragile), "fragile_set": True, **m.to_dict()})
        seeded = {"units": list(fragile), "full": full_measure.to_dict(),
                  "fragile_in_float": m.to_dict(),
                  **seed_fragile(full_measure, m, len(fragile), len(layers))}
        if seeded["seeded"]:
            seed = fragile
            if budget.met(m):
                hit = (path, seed, m)
            else:
                best = (path, seed, m)
        elif budget.met(m):
            spare = (path, fragile, m)
        elif better(m, best[2]):
            best = (path, fragile, m)
    elif fragile:
        seeded = {"units": list(fragile), "seeded": False,
                  "skipped": "every unit is fragile: keeping them all is the FP32 graph"}
    rest = [u for u in layers if u not in seed]
    start_ranking(len(rest) if hit is None else 0)
    ranking = rank_layers(rest, only, agreement_of, tick) if hit is None else \
        [(u, -1.0) for u in rest]
    order = [name for name, _ in ranking]

    def trial(k: int) -> bool:
        nonlocal best, hit
        kept = seed + tuple(order[:k])
        path = excluding(kept)
        if len(kept) == len(layers):  # every unit in float: the FP32 graph, which agrees
            # with itself on every runtime; a measurement (a trained PIDNet-S: 8 s of a
            # bound the bisection needed) would only confirm it
            m = Measure(100.0, full_measure.miou_fp32, full_measure.miou_fp32)
            trials.append({"kept_fp32": list(kept), **m.to_dict(),
                           "note": "every unit in float: the FP32 graph, not measured"})
        else:
            m = measure(path)
            trials.append({"kept_fp32": list(kept), **m.to_dict()})
        if budget.met(m):
            hit = (path, kept, m)
        elif hit is None and better(m, best[2]):
            best = (path, kept, m)
        keep_tick()
        return budget.met(m)

    try:
        miss = 0
        if hit is None:
            for k in keep_counts(len(order)):
                if trial(k):
                    break
                miss = k
        if hit is not None:  # bisect between the last miss and the first hit
            lo, hi = miss, len(hit[1]) - len(seed)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if trial(mid):
                    hi = mid
                else:
                    lo = mid
    except BoundReached:
        trials.append({"stopped": "time bound of the keep-in-float search"})
    hit = hit or spare
    if hit is not None:
        return SearchResult(hit[0], hit[1], hit[2], True, tuple(ranking), tuple(trials),
                            seeded)
    return SearchResult(best[0], best[1], best[2], False, tuple(ranking), tuple(trials),
                        seeded)


def better(a: Measure, b: Measure) -> bool:
    """`a` is closer to FP32 than `b`: the smaller mIoU drop where both have labels, else the
    higher agreement."""
    if a.miou_drop is not None and b.miou_drop is not None:
        return a.miou_drop < b.miou_drop
    return a.agreement > b.agreement
