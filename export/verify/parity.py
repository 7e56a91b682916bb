"""Semantic parity gate: the ONNX artifact against the PyTorch model, on real frames.

Both sides see exactly the runtime's preprocessing (segedge.runtime.preprocess),
so the gate checks the baked normalisation, colour order and any export
rewrites too, not just the network.  PyTorch's answer comes from the one
torch-logits adapter (verify/torch_ref.py), the comparison from the one
label-map comparator (verify/compare.py).

Parity cannot see a wrong normalisation or colour order: both sides get the same
input.  So the check also looks at what PyTorch predicts: with labels for the
verification frames (``--verify-labels``) it scores PyTorch and the ONNX side by
side with the one metrics implementation (export/evaluation/metrics.py) and
fails the export when PyTorch's score says the preprocessing is wrong
(verify/preprocessing_check.py); without labels it passes on the comparator's
warning when the masks are degenerate (one class nearly everywhere on every
frame), the usual sign of wrong preprocessing flags.  Non-finite outputs fail in
the comparator (exit 3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segedge.export.evaluation.evaluate import to_label_resolution
from segedge.export.evaluation.metrics import Confusion, scores
from segedge.export.onnx.tools import session
from segedge.export.verify import preprocessing_check
from segedge.export.verify.compare import LabelComparator
from segedge.export.verify.torch_ref import forward_logits
from segedge.runtime.metadata import ArtifactMetadata, InputSpec
from segedge.runtime.preprocess import resize_frame, to_tensor

PREPROCESSING_HINT = "check --mean/--std/--norm-units/--scale/--bgr"
# "The prediction ignores the picture": against the first frame, every later frame changes
# on more than FRAME_CHANGE_MIN of its pixels (a channel moves by > PIXEL_DELTA levels) while
# PyTorch's mask changes on less than MASK_CHANGE_MAX.  Measured on CamVid val with the
# trained demo model: right flags 8.6 % mask change; --std given in pixel values as 0..1
# units 0.1 %; consecutive frames change on 14-23 % of pixels (a static camera, < 10 %,
# is not judged).
FRAME_CHANGE_MIN = 0.10
MASK_CHANGE_MAX = 0.01
PIXEL_DELTA = 32


def ignores_picture(frames: list[np.ndarray], masks: list[np.ndarray]) -> str | None:
    """Why PyTorch's masks look input-independent on these (resized) frames, or None."""
    if len(frames) < 2:
        return None
    worst, judged = 0.0, 0
    for frame, mask in zip(frames[1:], masks[1:], strict=True):
        if frame.shape != frames[0].shape or mask.shape != masks[0].shape:
            return None
        moved = np.abs(frame.astype(np.int16) - frames[0].astype(np.int16)).max(-1)
        if float((moved > PIXEL_DELTA).mean()) <= FRAME_CHANGE_MIN:
            continue  # too close to the first frame to say anything (antialiased resizing
            # smooths small frames: 7 % moved where OpenCV's bilinear gave 14 %)
        changed = float((mask != masks[0]).mean())
        if changed >= MASK_CHANGE_MAX:
            return None
        worst, judged = max(worst, changed), judged + 1
    if judged == 0:
        return None
    return (f"degenerate PyTorch masks: the mask stays the same (at most {worst:.2%} of pixels "
            f"change) over {len(frames)} verification frames that differ on more than "
            f"{FRAME_CHANGE_MIN:.0%} of their pixels: the prediction ignores the picture; "
            f"{PREPROCESSING_HINT}")


@dataclass(frozen=True)
class Parity:
    images: int
    source: str
    argmax_agreement: float  # percent of pixels where both masks agree
    max_abs_diff: float | None
    mean_abs_diff: float | None
    per_class_iou: dict[str, float]
    baked_labels_agreement: float | None  # labels output vs argmax of the ONNX logits
    # with labels: {"labels", "ignore_index", "pytorch": scores, "onnx": scores}
    accuracy: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. degenerate masks
    # with labels: PyTorch under each single preprocessing mistake (preprocessing_check.py);
    # its "failure" fails the export like the parity gate
    preprocessing_check: dict[str, Any] | None = None

    @property
    def failure(self) -> str | None:
        """Why the verification frames' labels say the preprocessing is wrong, or None."""
        found = (self.preprocessing_check or {}).get("failure")
        return str(found) if found else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_logits(model: nn.Module, resized_bgr: np.ndarray, meta: ArtifactMetadata,
                     model_color: str) -> np.ndarray:
    """What PyTorch says for one resized frame, fed the classic normalised float way."""
    spec = replace(meta.input, format="float", layout="NCHW", color_order=model_color)
    x = torch.from_numpy(to_tensor([resized_bgr], spec))
    with torch.no_grad():
        out = forward_logits(model, x)
    return out[0].float().numpy()


def _torch_masks(model: nn.Module, resized: list[np.ndarray], spec: InputSpec
                 ) -> list[np.ndarray]:
    """PyTorch's label maps for resized frames fed the classic float way under `spec`."""
    out = []
    for frame in resized:
        with torch.no_grad():
            logits = forward_logits(model, torch.from_numpy(to_tensor([frame], spec)))
        out.append(logits[0].float().argmax(0).numpy())
    return out


def check_parity(model: nn.Module, onnx_path: Path, meta: ArtifactMetadata,
                 frames: list[np.ndarray], source: str, model_color: str,
                 truths: list[np.ndarray] | None = None, labels_source: str = "",
                 ignore_index: int | None = 255) -> Parity:
    """Run both sides on every frame and summarise how far apart they are.

    With `truths` (label maps, one per frame) both sides are also scored; without,
    the comparator's degenerate-mask warnings are passed on.
    """
    sess = session(onnx_path)
    out_names = [o.name for o in sess.get_outputs()]
    batch = meta.input.batch or 1
    versus_torch = LabelComparator(meta.classes, candidate="the ONNX", reference="PyTorch")
    baked = LabelComparator()  # the graph's labels output vs the argmax of its own logits
    n = len(meta.classes)
    scored = {"pytorch": Confusion(n, ignore_index), "onnx": Confusion(n, ignore_index)}
    seen: list[np.ndarray] = []  # resized frames and PyTorch masks, for ignores_picture
    torch_masks: list[np.ndarray] = []
    geoms: list[Any] = []
    for i, frame in enumerate(frames):
        resized, geom = resize_frame(frame, meta.input)
        ref = reference_logits(model, resized, meta, model_color)
        feed = to_tensor([resized] * batch, meta.input)
        outs = dict(zip(out_names, sess.run(None, {meta.input.name: feed}), strict=True))
        logits = outs.get("logits")
        got = None if logits is None else logits[0].astype(np.float32)
        labels = got.argmax(0) if got is not None else outs["labels"][0]
        if got is not None and "labels" in outs:
            baked.add(outs["labels"][0], labels)
        ref_labels = ref.argmax(0)
        seen.append(resized)
        torch_masks.append(ref_labels)
        geoms.append(geom)
        conf = outs.get("confidence")
        versus_torch.add(labels, ref_labels, got, ref,
                         got_confidence=None if conf is None else conf[0])
        if truths is not None:
            truth = truths[i]
            for side, pred in (("pytorch", ref_labels), ("onnx", labels)):
                scored[side].add(to_label_resolution(pred, geom, truth.shape[:2]), truth)
    cmp = versus_torch.result()  # NaN/Inf on either side: VerificationError
    accuracy, warnings, sanity = None, [], None
    if truths is not None:
        accuracy = {"labels": labels_source, "ignore_index": ignore_index,
                    **{side: scores(c, meta.classes, len(frames)).to_dict()
                       for side, c in scored.items()}}
        spec = replace(meta.input, format="float", layout="NCHW", color_order=model_color)
        sanity = preprocessing_check.check(
            spec, lambda s: torch_masks if s is spec else _torch_masks(
                model, seen[:preprocessing_check.FRAMES], s), geoms, truths, meta.classes,
            ignore_index, accuracy["pytorch"]["miou"], accuracy["pytorch"]["degenerate"])
    else:
        # both sides flat is one finding (parity holds): say it of PyTorch only
        flat = [w for w in cmp.warnings if w.startswith("PyTorch")] or list(cmp.warnings)
        warnings += [f"{w} (or --norm-units/--scale)" for w in flat]
        if not flat and (why := ignores_picture(seen, torch_masks)) is not None:
            warnings.append(why)
    return Parity(
        images=len(frames), source=source, argmax_agreement=cmp.agreement,
        max_abs_diff=cmp.max_abs_diff, mean_abs_diff=cmp.mean_abs_diff,
        per_class_iou=cmp.per_class_iou,
        baked_labels_agreement=(baked.result().agreement
                                if "labels" in out_names and "logits" in out_names else None),
        accuracy=accuracy, warnings=warnings, preprocessing_check=sanity,
    )
