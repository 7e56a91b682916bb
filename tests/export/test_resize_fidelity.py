"""How close each recorded resize convention is to the library it names, on CamVid frames,
and that segexport records it for segrun/segeval (runtime/resize.py has the table)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segedge.export.config import ExportConfig
from segedge.export.onnx.tools import read_metadata
from segedge.export.pipeline import export
from segedge.runtime.resize import resize_image, resize_labels
from segedge.runtime.segmenter import Segmenter

SIZES = [(180, 240), (256, 320), (352, 480), (512, 1024)]
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"


def _frames(camvid_val: Path, n: int = 3) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(camvid_val.glob("*.png"))[:n]]


def _torch(frame: np.ndarray, h: int, w: int, antialias: bool, uint8: bool = False
           ) -> np.ndarray:
    x = torch.from_numpy(frame).permute(2, 0, 1)[None]
    if not uint8:
        x = x.float()
    y = F.interpolate(x, (h, w), mode="bilinear", align_corners=False, antialias=antialias)
    return y.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def _equal(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    return float((a == b).mean()), int(np.abs(a.astype(np.int16) - b).max())


@pytest.mark.parametrize(("rule", "antialias", "uint8", "min_equal"), [
    ("torch-bilinear-aa", True, False, 0.999),  # torchvision Resize on float tensors
    ("torch-bilinear", False, False, 0.999),  # F.interpolate without antialias
    ("pil-bilinear", True, True, 0.85),  # torch's uint8 antialias path follows PIL to 1 LSB
])
def test_each_convention_is_within_one_level_of_torch(camvid_val: Path, rule: str,
                                                      antialias: bool, uint8: bool,
                                                      min_equal: float) -> None:
    for frame in _frames(camvid_val):
        for h, w in SIZES:
            equal, worst = _equal(resize_image(frame, h, w, rule),
                                  _torch(frame, h, w, antialias, uint8))
            assert equal >= min_equal and worst <= 1, (rule, h, w, equal, worst)


def test_opencv_filters_are_no_substitute_for_antialiasing(camvid_val: Path) -> None:
    """Why the antialiased conventions are implemented rather than approximated with cv2."""
    frame = _frames(camvid_val, 1)[0]
    want = _torch(frame, 180, 240, antialias=True)
    for flag in (cv2.INTER_LINEAR, cv2.INTER_AREA):
        equal, worst = _equal(cv2.resize(frame, (240, 180), interpolation=flag), want)
        assert equal < 0.6 and worst > 10, (flag, equal, worst)


def _ties(size: int, out: int) -> np.ndarray:
    """Output indices whose source position (i + 0.5) * size / out is a whole number: torch
    computes it in float32 and may land just below it, PIL and OpenCV do not."""
    i = np.arange(out)
    return ((2 * i + 1) * size) % (2 * out) == 0


def test_label_rule_is_torch_nearest_exact_but_for_float_ties() -> None:
    labels = np.random.default_rng(0).integers(0, 12, (176, 240), dtype=np.uint8)
    want = F.interpolate(torch.from_numpy(labels)[None, None].float(), (360, 480),
                         mode="nearest-exact")[0, 0].to(torch.uint8).numpy()
    got = resize_labels(labels, 360, 480, "torch-bilinear-aa")
    rows, cols = np.nonzero(got != want)
    assert np.all(_ties(176, 360)[rows] | _ties(240, 480)[cols])
    assert (got == want).mean() >= 0.97
    legacy = resize_labels(labels, 360, 480, "cv2-linear")  # OpenCV's rule: half a pixel off
    assert (legacy == want).mean() < 0.9


@pytest.mark.parametrize("rule", [None, "pil-bilinear"])
def test_segexport_records_the_convention_and_segrun_uses_it(tmp_path: Path,
                                                             camvid_val: Path,
                                                             rule: str | None) -> None:
    out = tmp_path / "tiny.onnx"
    extra = {"interpolation": rule} if rule else {}
    export(ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96), output=out,
                        quiet=True, **extra))  # type: ignore[arg-type]
    meta = read_metadata(out)
    want_rule = rule or "torch-bilinear-aa"  # the new-export default: torchvision's Resize
    assert meta is not None and meta.input.interpolation == want_rule
    frame = _frames(camvid_val, 1)[0]
    with Segmenter(out, backend="onnxruntime") as seg:
        tensor, geom = seg.preprocess(frame)
        assert geom.interpolation == want_rule
        np.testing.assert_array_equal(tensor[0], resize_image(frame, 64, 96, want_rule))
        result = seg(frame)
    assert result.labels.shape == frame.shape[:2]
