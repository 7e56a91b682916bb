"""Parity gate: the ONNX artifact against the PyTorch model, on real frames.

Both sides see exactly the runtime's preprocessing (segedge.runtime.preprocess),
so the gate checks the baked normalisation, colour order and any export
rewrites too, not just the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

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


def class_ious(a: np.ndarray, b: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """IoU between two label maps per class present in either (how alike, class by class)."""
    out = {}
    for idx, name in enumerate(classes):
        in_a, in_b = a == idx, b == idx
        union = np.logical_or(in_a, in_b).sum()
        if union:
            out[name] = round(float(np.logical_and(in_a, in_b).sum() / union), 6)
    return out


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def reference_logits(model: nn.Module, resized_bgr: np.ndarray, meta: ArtifactMetadata,
                     model_color: str) -> np.ndarray:
    """What PyTorch says for one resized frame, fed the classic normalised float way."""
    spec = replace(meta.input, format="float", layout="NCHW", color_order=model_color)
    x = torch.from_numpy(to_tensor([resized_bgr], spec))
    with torch.no_grad():
        out = model(x)
    if isinstance(out, dict):
        out = out["out"]
    if out.shape[-2:] != x.shape[-2:]:  # low-resolution heads: what the export bakes in
        out = torch.nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear",
                                              align_corners=False)
    return out[0].float().numpy()


def check_parity(model: nn.Module, onnx_path: Path, meta: ArtifactMetadata,
                 frames: list[np.ndarray], source: str, model_color: str) -> Parity:
    """Run both sides on every frame and summarise how far apart they are."""
    sess = session(onnx_path)
    out_names = [o.name for o in sess.get_outputs()]
    batch = meta.input.batch or 1
    agree = total = 0
    label_agree = 0
    diffs_max: list[float] = []
    diffs_sum = 0.0
    diffs_n = 0
    all_ref, all_onnx = [], []
    for frame in frames:
        resized, _ = resize_frame(frame, meta.input)
        ref = reference_logits(model, resized, meta, model_color)
        feed = to_tensor([resized] * batch, meta.input)
        outs = dict(zip(out_names, sess.run(None, {meta.input.name: feed}), strict=True))
        logits = outs.get("logits")
        if logits is not None:
            got = logits[0].astype(np.float32)
            diff = np.abs(got - ref)
            diffs_max.append(float(diff.max()))
            diffs_sum += float(diff.sum())
            diffs_n += diff.size
            onnx_labels = got.argmax(0)
        else:
            onnx_labels = outs["labels"][0]
        if "labels" in outs and logits is not None:
            label_agree += int((outs["labels"][0] == onnx_labels).sum())
        ref_labels = ref.argmax(0)
        agree += int((onnx_labels == ref_labels).sum())
        total += ref_labels.size
        all_ref.append(ref_labels.ravel())
        all_onnx.append(np.asarray(onnx_labels).ravel())
    return Parity(
        images=len(frames), source=source,
        argmax_agreement=round(100.0 * agree / max(total, 1), 4),
        max_abs_diff=max(diffs_max) if diffs_max else None,
        mean_abs_diff=diffs_sum / diffs_n if diffs_n else None,
        per_class_iou=class_ious(np.concatenate(all_onnx), np.concatenate(all_ref), meta.classes),
        baked_labels_agreement=(round(100.0 * label_agree / max(total, 1), 4)
                                if "labels" in out_names and "logits" in out_names else None),
    )
