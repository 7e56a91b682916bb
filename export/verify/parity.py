"""Semantic parity gate: the ONNX artifact against the PyTorch model, on real frames.

Both sides see exactly the runtime's preprocessing (segedge.runtime.preprocess),
so the gate checks the baked normalisation, colour order and any export
rewrites too, not just the network.  PyTorch's answer comes from the one
torch-logits adapter (verify/torch_ref.py), the comparison from the one
label-map comparator (verify/compare.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segedge.export.onnx.tools import session
from segedge.export.verify.compare import LabelComparator
from segedge.export.verify.torch_ref import forward_logits
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.preprocess import resize_frame, to_tensor


@dataclass(frozen=True)
class Parity:
    images: int
    source: str
    argmax_agreement: float  # percent of pixels where both masks agree
    max_abs_diff: float | None
    mean_abs_diff: float | None
    per_class_iou: dict[str, float]
    baked_labels_agreement: float | None  # labels output vs argmax of the ONNX logits

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


def check_parity(model: nn.Module, onnx_path: Path, meta: ArtifactMetadata,
                 frames: list[np.ndarray], source: str, model_color: str) -> Parity:
    """Run both sides on every frame and summarise how far apart they are."""
    sess = session(onnx_path)
    out_names = [o.name for o in sess.get_outputs()]
    batch = meta.input.batch or 1
    versus_torch = LabelComparator(meta.classes)
    baked = LabelComparator()  # the graph's labels output vs the argmax of its own logits
    for frame in frames:
        resized, _ = resize_frame(frame, meta.input)
        ref = reference_logits(model, resized, meta, model_color)
        feed = to_tensor([resized] * batch, meta.input)
        outs = dict(zip(out_names, sess.run(None, {meta.input.name: feed}), strict=True))
        logits = outs.get("logits")
        got = None if logits is None else logits[0].astype(np.float32)
        labels = got.argmax(0) if got is not None else outs["labels"][0]
        if got is not None and "labels" in outs:
            baked.add(outs["labels"][0], labels)
        versus_torch.add(labels, ref.argmax(0), got, ref if got is not None else None)
    cmp = versus_torch.result()
    return Parity(
        images=len(frames), source=source, argmax_agreement=cmp.agreement,
        max_abs_diff=cmp.max_abs_diff, mean_abs_diff=cmp.mean_abs_diff,
        per_class_iou=cmp.per_class_iou,
        baked_labels_agreement=(baked.result().agreement
                                if "labels" in out_names and "logits" in out_names else None),
    )
