"""With labelled verification frames, a wrong preprocessing fails the export instead of warning.

Parity compares the ONNX with PyTorch under the *same* preprocessing, so a
colour order or a normalisation in the wrong units passes it at 100 %
(measured on a published CamVid ESPNet: ``--std`` given in 0..1 units where
the authors use pixel units, 6.09 mIoU; ``--bgr`` forgotten, 28.00 mIoU; right
flags, 57.17).  With labels, the check scores PyTorch once more under each
single mistake a user makes (the other colour order, std or mean 255 times
larger or smaller) on a few of the labelled frames.  When one of them scores
much better than the flags given, or PyTorch's prediction is degenerate (one
class nearly everywhere), the export fails (exit 3) with one line naming the
measured mIoU and the likely cause.

"Much better" is ``MIN_GAIN_POINTS`` mIoU points *and* ``MIN_GAIN_RATIO``
times the given score: a model that is merely colour-robust, or an untrained
one whose scores are noise, is never refused.  The cost is one PyTorch pass
per alternative over at most ``FRAMES`` frames, and only with
``--verify-labels``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from segedge.export.evaluation.evaluate import to_label_resolution
from segedge.export.evaluation.metrics import Confusion, scores
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import InputSpec
from segedge.runtime.preprocess import Geometry

FRAMES = 8  # labelled frames each alternative is scored on
MIN_GAIN_POINTS = 10.0  # an alternative must beat the flags given by this many mIoU points
MIN_GAIN_RATIO = 1.5  # ... and by this factor
HINT = "check --mean/--std/--norm-units/--scale/--bgr"

MasksOf = Callable[[InputSpec], list[np.ndarray]]  # spec -> PyTorch label maps per frame


@dataclass(frozen=True)
class Alternative:
    """One preprocessing mistake undone: how to change the spec, and what that means."""

    label: str  # e.g. "the std 255x larger"
    cause: str  # the flag to look at

    def __post_init__(self) -> None:
        if not self.label or not self.cause:
            raise InputError("preprocessing alternative", "a label and a cause",
                             (self.label, self.cause))


def alternatives(spec: InputSpec) -> list[tuple[Alternative, InputSpec]]:
    """The single mistakes users make, each as the spec that would undo it."""
    other = "BGR" if spec.color_order == "RGB" else "RGB"
    flag = "--bgr" if other == "BGR" else "--rgb"
    std, mean = np.asarray(spec.std, np.float64), np.asarray(spec.mean, np.float64)

    def trio(values: np.ndarray) -> tuple[float, float, float]:
        return (float(values[0]), float(values[1]), float(values[2]))

    return [
        (Alternative(f"the other colour order ({other})", f"the colour order: try {flag}"),
         replace(spec, color_order=other)),
        (Alternative("the std 255x larger", "--std (or --scale) in the wrong units: see "
                     "--norm-units and --scale"), replace(spec, std=trio(std * 255.0))),
        (Alternative("the std 255x smaller", "--std in the wrong units: see --norm-units"),
         replace(spec, std=trio(std / 255.0))),
        (Alternative("the mean 255x smaller", "--mean in the wrong units: see --norm-units"),
         replace(spec, mean=trio(mean / 255.0))),
        (Alternative("the mean 255x larger", "--mean in the wrong units: see --norm-units"),
         replace(spec, mean=trio(mean * 255.0))),
    ]


def miou_of(masks: Sequence[np.ndarray], geoms: Sequence[Geometry],
            truths: Sequence[np.ndarray], classes: Sequence[str],
            ignore_index: int | None) -> float:
    conf = Confusion(len(classes), ignore_index)
    for mask, geom, truth in zip(masks, geoms, truths, strict=True):
        conf.add(to_label_resolution(mask, geom, truth.shape[:2]), truth)
    return scores(conf, classes, len(masks)).miou


def check(spec: InputSpec, masks_of: MasksOf, geoms: Sequence[Geometry],
          truths: Sequence[np.ndarray], classes: Sequence[str], ignore_index: int | None,
          given_miou: float, degenerate: str | None) -> dict[str, object]:
    """Score the alternatives; ``failure`` is the one line the export fails with, or None.

    `given_miou`/`degenerate`: PyTorch on all labelled frames with the flags given.
    """
    total = len(truths)
    n = min(FRAMES, total)
    geoms, truths = list(geoms[:n]), list(truths[:n])
    base = miou_of(masks_of(spec)[:n], geoms, truths, classes, ignore_index)
    tried = []
    for alt, alt_spec in alternatives(spec):
        tried.append((alt, miou_of(masks_of(alt_spec)[:n], geoms, truths, classes,
                                   ignore_index)))
    best, best_miou = max(tried, key=lambda t: t[1])
    better = best_miou >= base + MIN_GAIN_POINTS and best_miou >= base * MIN_GAIN_RATIO
    failure = None
    if better:
        subset = f"; on {n} of them {base:.2f}," if n < total else ","
        failure = (f"preprocessing check: PyTorch scores mIoU {given_miou:.2f} on the {total} "
                   f"labelled verification frames with the flags given{subset} "
                   f"{best_miou:.2f} with {best.label}: likely {best.cause}; {HINT}")
    elif degenerate:
        failure = (f"preprocessing check: PyTorch scores mIoU {given_miou:.2f} on the {total} "
                   f"labelled verification frames and {degenerate}: likely a wrong "
                   f"preprocessing or checkpoint; {HINT}")
    return {"frames": n, "given_miou": round(base, 4),
            "alternatives": {alt.label: round(m, 4) for alt, m in tried},
            "failure": failure}
