"""Parity gate for instance artifacts: ONNX detections against PyTorch's, frame by frame.

Detections are matched greedily by score (same class, box IoU >= 0.9); each
matched pair contributes its mask IoU, each unmatched confident detection on
either side contributes 0.  The gate is the mean of those (0.99 for FP32), so
a missing, extra or relabelled instance fails it as surely as a bad mask.
Both sides see the same resized frame; PyTorch is fed the classic 0..1 RGB
float list, the ONNX exactly what the runtime feeds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segedge.export.config import MIN_MEAN_MASK_IOU
from segedge.export.onnx.tools import session
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.preprocess import resize_frame, to_tensor

MIN_BOX_IOU = 0.9
# Reference mask pixels this close to the mask threshold are float-noise coin flips
# (random heads put whole masks there): left out of the mask IoU, like argmax ties.
TIE_BAND = 1e-3


@dataclass(frozen=True)
class Detections:
    """Valid rows only: boxes [k,4], labels [k], scores [k], masks [k,H,W] bool."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray
    ties: np.ndarray | None = None  # [k,H,W] bool: probability within TIE_BAND of threshold

    def above(self, threshold: float) -> np.ndarray:
        return np.nonzero(self.scores >= threshold)[0]


@dataclass(frozen=True)
class InstanceParity:
    images: int
    source: str
    score_threshold: float  # detections below it on both sides are not compared
    reference_detections: int  # PyTorch, >= score_threshold, all frames
    onnx_detections: int
    matched: int
    unmatched_reference: int
    unmatched_onnx: int
    mean_box_iou: float | None  # over matched pairs
    mean_mask_iou: float | None  # over matched + unmatched (as 0); None: nothing detected
    min_mask_iou: float | None
    max_score_diff: float | None  # over matched pairs
    raw_counts_equal: bool  # every frame: same number of detections before the threshold
    empty_frames: int  # frames where neither side detected anything
    tie_fraction: float = 0.0  # matched mask pixels left out as threshold ties

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def passed(self, min_mean_mask_iou: float = MIN_MEAN_MASK_IOU) -> bool:
        return self.mean_mask_iou is None or self.mean_mask_iou >= min_mean_mask_iou


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of x0,y0,x1,y1 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray, ignore: np.ndarray | None = None) -> float:
    if ignore is not None:
        a, b = a & ~ignore, b & ~ignore
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / union


def from_onnx(outputs: dict[str, np.ndarray], meta: ArtifactMetadata) -> Detections:
    """Cut the padded outputs to their `count` valid rows (batch of one)."""
    out = meta.output
    n = int(np.asarray(outputs[out.count or "count"]).reshape(-1)[0])
    masks = outputs[out.masks or "masks"][0][:n]
    return Detections(boxes=outputs[out.boxes or "boxes"][0][:n].astype(np.float32),
                      labels=outputs[out.labels or "labels"][0][:n].astype(np.int64),
                      scores=outputs[out.scores or "scores"][0][:n].astype(np.float32),
                      masks=masks.reshape(n, *masks.shape[-2:]) > 0)


def reference(model: nn.Module, resized_bgr: np.ndarray, mask_threshold: float = 0.5,
              max_detections: int | None = None) -> Detections:
    """What the untouched torchvision model says for one frame (0..1 RGB float)."""
    rgb = np.ascontiguousarray(resized_bgr[:, :, ::-1])
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        det = model([x])[0]
    n = len(det["scores"]) if max_detections is None else min(len(det["scores"]), max_detections)
    probs = det["masks"][:n, 0].numpy()
    return Detections(boxes=det["boxes"][:n].numpy(), labels=det["labels"][:n].numpy(),
                      scores=det["scores"][:n].numpy(), masks=probs > mask_threshold,
                      ties=np.abs(probs - mask_threshold) < TIE_BAND)


def compare(ref: Detections, got: Detections, threshold: float,
            min_box_iou: float = MIN_BOX_IOU) -> dict[str, Any]:
    """Match one frame's detections; returns counts and the per-pair IoUs."""
    ref_idx, got_idx = ref.above(threshold), np.arange(len(got.scores))
    ious = box_iou(ref.boxes[ref_idx], got.boxes)
    taken: set[int] = set()
    box_ious, mask_ious, score_diffs = [], [], []
    unmatched_ref = 0
    for row, i in enumerate(ref_idx):  # reference rows come sorted by score
        best, best_iou = -1, min_box_iou
        for j in got_idx:
            if j in taken or got.labels[j] != ref.labels[i]:
                continue
            if ious[row, j] >= best_iou:
                best, best_iou = int(j), float(ious[row, j])
        if best < 0:
            unmatched_ref += 1
            continue
        taken.add(best)
        box_ious.append(best_iou)
        ties = ref.ties[i] if ref.ties is not None else None
        mask_ious.append(mask_iou(ref.masks[i], got.masks[best], ties))
        score_diffs.append(abs(float(ref.scores[i]) - float(got.scores[best])))
    # Confident ONNX detections nobody matched: extra instances (a low-score reference
    # twin just under the threshold still counts as a match, not an extra).
    ref_all = box_iou(got.boxes, ref.boxes)
    unmatched_got = 0
    for j in got.above(threshold):
        if int(j) in taken:
            continue
        twins = [i for i in range(len(ref.scores)) if ref.labels[i] == got.labels[j]
                 and ref_all[j, i] >= min_box_iou and i not in ref_idx]
        if not twins:
            unmatched_got += 1
    return {"box_ious": box_ious, "mask_ious": mask_ious, "score_diffs": score_diffs,
            "unmatched_ref": unmatched_ref, "unmatched_got": unmatched_got,
            "n_ref": len(ref_idx), "n_got": len(got.above(threshold)),
            "raw_equal": len(ref.scores) == len(got.scores),
            "empty": len(ref.scores) == 0 and len(got.scores) == 0}


def check_instance_parity(model: nn.Module, onnx_path: Path, meta: ArtifactMetadata,
                          frames: list[np.ndarray], source: str, score_threshold: float = 0.5,
                          mask_threshold: float = 0.5) -> InstanceParity:
    sess = session(onnx_path)
    names = [o.name for o in sess.get_outputs()]
    box_ious: list[float] = []
    mask_ious: list[float] = []
    diffs: list[float] = []
    unmatched_ref = unmatched_got = n_ref = n_got = empty = 0
    raw_equal = True
    tie_px = all_px = 0
    for frame in frames:
        resized, _ = resize_frame(frame, meta.input)
        ref = reference(model, resized, mask_threshold, meta.output.max_detections)
        feed = to_tensor([resized], meta.input)
        got = from_onnx(dict(zip(names, sess.run(None, {meta.input.name: feed}), strict=True)),
                        meta)
        r = compare(ref, got, score_threshold)
        if ref.ties is not None and len(ref.scores):
            tie_px += int(ref.ties[ref.above(score_threshold)].sum())
            all_px += int(ref.masks[ref.above(score_threshold)].size)
        box_ious += r["box_ious"]
        mask_ious += r["mask_ious"]
        diffs += r["score_diffs"]
        unmatched_ref += r["unmatched_ref"]
        unmatched_got += r["unmatched_got"]
        n_ref += r["n_ref"]
        n_got += r["n_got"]
        raw_equal = raw_equal and r["raw_equal"]
        empty += int(r["empty"])
    scored = mask_ious + [0.0] * (unmatched_ref + unmatched_got)
    return InstanceParity(
        images=len(frames), source=source, score_threshold=score_threshold,
        reference_detections=n_ref, onnx_detections=n_got, matched=len(mask_ious),
        unmatched_reference=unmatched_ref, unmatched_onnx=unmatched_got,
        mean_box_iou=round(float(np.mean(box_ious)), 6) if box_ious else None,
        mean_mask_iou=round(float(np.mean(scored)), 6) if scored else None,
        min_mask_iou=round(float(np.min(scored)), 6) if scored else None,
        max_score_diff=float(np.max(diffs)) if diffs else None,
        raw_counts_equal=raw_equal, empty_frames=empty,
        tie_fraction=round(tie_px / all_px, 6) if all_px else 0.0,
    )
