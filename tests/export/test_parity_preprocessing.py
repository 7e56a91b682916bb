"""With --verify-labels, a PyTorch score that says "wrong preprocessing" fails the export."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from segedge.export.verify import preprocessing_check as pc
from segedge.runtime.metadata import InputSpec
from segedge.runtime.preprocess import Geometry

SPEC = InputSpec(color_order="RGB", size=(4, 4))
TRUTH = np.array([[0, 0, 1, 1]] * 4, np.uint8)
GEOM = Geometry(frame_hw=(4, 4), net_hw=(4, 4), scale_y=1.0, scale_x=1.0)


def masks_by(table: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    """A fake PyTorch: the mask depends on which spec it is fed (keyed like the labels)."""
    def masks_of(spec: InputSpec) -> list[np.ndarray]:
        if spec.color_order != SPEC.color_order:
            key = "colour"
        elif spec.std != SPEC.std:
            key = "std_up" if spec.std[0] > SPEC.std[0] else "std_down"
        elif spec.mean != SPEC.mean:
            key = "mean"
        else:
            key = "given"
        return [table.get(key, table["given"])] * 3
    return masks_of


def run(table: dict[str, np.ndarray], degenerate: str | None = None) -> dict[str, object]:
    return pc.check(SPEC, masks_by(table), [GEOM] * 3, [TRUTH] * 3, ("a", "b"), 255,
                    given_miou=12.5, degenerate=degenerate)


def test_a_much_better_alternative_fails_naming_it() -> None:
    flat = np.zeros((4, 4), np.uint8)  # mIoU 25 (class a IoU 0.5, class b 0)
    got = run({"given": flat, "colour": TRUTH})  # the other colour order is perfect
    assert got["failure"] == (
        "preprocessing check: PyTorch scores mIoU 12.50 on the 3 labelled verification frames "
        "with the flags given, 100.00 with the other colour order (BGR): likely the colour "
        "order: try --bgr; check --mean/--std/--norm-units/--scale/--bgr")
    assert got["alternatives"] == {"the other colour order (BGR)": 100.0,
                                   "the std 255x larger": 25.0, "the std 255x smaller": 25.0,
                                   "the mean 255x smaller": 25.0, "the mean 255x larger": 25.0}
    got = run({"given": flat, "std_up": TRUTH})
    assert "100.00 with the std 255x larger: likely --std (or --scale) in the wrong units" in \
        str(got["failure"])


def test_small_or_noisy_gains_never_fail() -> None:
    right = TRUTH.copy()
    right[0, 0] = 1  # mIoU ~87 given; another order only a little better: not a mistake
    assert run({"given": right, "colour": TRUTH})["failure"] is None
    assert run({"given": TRUTH})["failure"] is None  # colour-robust: all alternatives equal


def test_a_degenerate_prediction_fails_even_without_a_better_alternative() -> None:
    flat = np.zeros((4, 4), np.uint8)
    got = run({"given": flat}, degenerate="the prediction is one class (id 0) on ...")
    assert str(got["failure"]).startswith(
        "preprocessing check: PyTorch scores mIoU 12.50 on the 3 labelled verification frames "
        "and the prediction is one class (id 0) on ...: likely a wrong preprocessing")


def test_alternatives_change_one_thing_each() -> None:
    alts = dict((a.label, s) for a, s in pc.alternatives(SPEC))
    assert alts["the other colour order (BGR)"] == replace(SPEC, color_order="BGR")
    assert alts["the std 255x larger"].std == pytest.approx(tuple(v * 255 for v in SPEC.std))
    assert alts["the mean 255x smaller"].mean == pytest.approx(tuple(v / 255 for v in SPEC.mean))
    assert all(s.size == SPEC.size for s in alts.values())


def test_flat_pytorch_with_labels_fails_the_export(tmp_path: Path) -> None:
    import torch

    from segedge.export.config import ExportConfig, VerifyOptions
    from segedge.export.pipeline import export
    from segedge.runtime.errors import VerificationError
    from tests.export.test_exporter import FIXTURE, _labelled_scenes, _module

    images, labels = _labelled_scenes(tmp_path, 3)
    net = _module("tiny_flat_l").TinySeg(3)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, 4.0, 0.0]))  # class 1 everywhere
    ckpt = tmp_path / "flat.pth"
    torch.save(net.state_dict(), ckpt)
    with pytest.raises(VerificationError, match=r"^preprocessing check: PyTorch scores mIoU "
                       r"\d+\.\d\d on the 3 labelled verification frames and the prediction "
                       r"is one class") as err:
        export(ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96),
                            checkpoint=ckpt, output=tmp_path / "flat.onnx", quiet=True,
                            verify=VerifyOptions(images=str(images), labels=labels, count=3)))
    assert err.value.exit_code == 3 and not (tmp_path / "flat.onnx").exists()
