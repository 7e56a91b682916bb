"""The one torch-logits adapter and the one label-map comparator, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedge.export.evaluation.metrics import Confusion, scores
from segedge.export.onnx.wrap import Baking, DeployWrapper
from segedge.export.verify.compare import (
    FiniteCheck,
    LabelComparator,
    agreement,
    compare,
    flat_class,
)
from segedge.export.verify.torch_ref import forward_labels, forward_logits, pick_logits
from segedge.runtime.errors import ShapeError, VerificationError


class Coarse(nn.Module):
    """Half-resolution logits inside a torchvision-style dict."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x), "aux": x}


def test_adapter_picks_out_and_upsamples_to_the_input() -> None:
    torch.manual_seed(0)
    model = Coarse().eval()
    x = torch.randn(2, 3, 16, 24)
    with torch.no_grad():
        raw = model.conv(x)
        logits = forward_logits(model, x)
        labels = forward_labels(model, x)
    assert raw.shape == (2, 4, 8, 12) and logits.shape == (2, 4, 16, 24)
    want = F.interpolate(raw, size=(16, 24), mode="bilinear", align_corners=False)
    assert torch.equal(logits, want)
    assert labels.dtype == torch.uint8 and torch.equal(labels, want.argmax(1).to(torch.uint8))
    with torch.no_grad():  # the export's constant decision: no upsampling means none
        assert forward_logits(model, x, upsample=False).shape == (2, 4, 8, 12)
    assert pick_logits({"aux": 1}) is None and pick_logits(raw) is raw


def test_deploy_wrapper_labels_are_the_adapters() -> None:
    torch.manual_seed(0)
    model = Coarse().eval()
    wrapper = DeployWrapper(model, Baking("float", "RGB", "RGB", (0.0,) * 3, (1.0,) * 3,
                                          upsample=True)).eval()
    x = torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        logits, labels, confidence = wrapper(x)
        assert torch.equal(logits, forward_logits(model, x))
        assert torch.equal(labels, forward_labels(model, x))
    soft = torch.softmax(logits, 1).amax(1)
    assert torch.allclose(confidence, soft, atol=1e-6)


def test_comparator_counts_agreement_iou_and_logit_diffs() -> None:
    ref = np.array([[0, 0, 1, 1], [2, 2, 2, 1]])
    got = np.array([[0, 1, 1, 1], [2, 2, 0, 1]])
    cmp = LabelComparator(("a", "b", "c", "d"))
    ref_logits = np.zeros((4, 2, 4), np.float32)
    got_logits = ref_logits.copy()
    got_logits[1, 0, 0] = 0.5
    got_logits[2, 1, 3] = -0.25
    cmp.add(got, ref, got_logits, ref_logits)
    r = cmp.result()
    assert r.frames == 1 and r.pixels == 8 and r.agreement == 75.0
    # a: tp 1, union 3 -> 1/3;  b: tp 3, union 4 -> 3/4;  c: tp 2, union 3 -> 2/3;  d absent
    assert r.per_class_iou == {"a": round(1 / 3, 6), "b": 0.75, "c": round(2 / 3, 6)}
    assert r.max_abs_diff == 0.5 and r.mean_abs_diff == pytest.approx(0.75 / 32)
    assert compare([got], [ref]).max_abs_diff is None  # labels only: no logit statistics
    assert agreement([got, ref], [ref, ref]) == 87.5


def test_comparator_iou_is_the_confusion_matrix_iou() -> None:
    rng = np.random.default_rng(0)
    ref = [rng.integers(0, 5, (20, 30)) for _ in range(3)]
    got = [np.where(rng.random(r.shape) < 0.8, r, rng.integers(0, 5, r.shape)) for r in ref]
    conf = Confusion(5, ignore_index=None)
    for g, r in zip(got, ref, strict=True):
        conf.add(g, r)
    names = ("a", "b", "c", "d", "e")
    percent = scores(conf, names, 3).per_class_iou
    fractions = compare(got, ref, names).per_class_iou
    assert set(fractions) == set(names)
    for name in names:
        assert fractions[name] == pytest.approx(percent[name] / 100, abs=1e-6)  # type: ignore[operator]


def test_comparator_refuses_mismatched_inputs() -> None:
    with pytest.raises(ShapeError) as err:
        LabelComparator(("a",)).add(np.zeros((2, 3)), np.zeros((3, 2)))
    assert str(err.value) == "label maps: expected the reference's shape (3, 2), got (2, 3)"
    with pytest.raises(ShapeError) as err:
        compare([np.zeros((2, 2))], [])
    assert str(err.value) == "label maps: expected 0 frames like the reference, got 1"


def test_all_nan_outputs_never_agree() -> None:
    """argmax of an all-NaN map is 0 on both sides: that must fail, not read 100 %."""
    cmp = LabelComparator(("a", "b"), candidate="the ONNX", reference="PyTorch")
    nan = np.full((2, 4, 4), np.nan, np.float32)
    for _ in range(4):
        cmp.add(nan.argmax(0), nan.argmax(0), nan, nan)
    with pytest.raises(VerificationError) as err:
        cmp.result()
    assert str(err.value) == (
        "PyTorch produced NaN in 100% of logits on 4 of 4 frame(s): check the checkpoint "
        "(NaN/Inf weights), the model's forward and --mean/--std")
    assert err.value.exit_code == 3


def test_non_finite_candidate_confidence_is_named() -> None:
    cmp = LabelComparator(("a", "b"), candidate="fp16.onnx", reference="fp32.onnx")
    labels = np.zeros((2, 2), np.uint8)
    conf = np.array([[0.5, np.inf], [0.5, 0.5]], np.float32)
    cmp.add(labels, labels, got_confidence=np.full((2, 2), 0.5, np.float32))
    cmp.add(labels, labels, got_confidence=conf, ref_logits=np.zeros((2, 2, 2), np.float32))
    with pytest.raises(VerificationError) as err:
        cmp.result()
    assert str(err.value).startswith("fp16.onnx produced Inf in 12.5% of confidence on 1 of 2 "
                                     "frame(s): ")


def test_finite_check_counts() -> None:
    check = FiniteCheck("PyTorch")
    check.add(np.array([1.0, np.nan, np.inf, 2.0]))
    check.add(None)  # this side gave none
    check.add(np.zeros(4, np.float32))
    assert (check.frames, check.bad_frames, check.values, check.nan, check.inf) == (2, 1, 8, 1, 1)
    assert check.message() is not None and check.message().startswith(  # type: ignore[union-attr]
        "PyTorch produced NaN and Inf in 25% of logits on 1 of 2 frame(s)")
    assert FiniteCheck("x").message() is None


def test_degenerate_masks_are_warned_per_side() -> None:
    flat = np.zeros((10, 10), np.uint8)
    varied = flat.copy()
    varied[:, 5:] = 1
    cmp = LabelComparator(("road", "car"), candidate="the ONNX", reference="PyTorch")
    for _ in range(3):
        cmp.add(flat, flat)
    r = cmp.result()
    assert r.agreement == 100.0
    assert r.warnings == tuple(
        f"{side} predicts one class (road) on more than 98% of the pixels of every one of 3 "
        "frame(s): a degenerate mask; check the checkpoint and --mean/--std/--bgr"
        for side in ("PyTorch", "the ONNX"))
    cmp.add(varied, varied)  # one real frame: no warning
    assert cmp.result().warnings == ()
    assert flat_class(varied) is None and flat_class(flat) == 0
