"""Resize conventions travel with the artifact: frames and labels resized as the training
pipeline's library does, old artifacts exactly as before (no torch here: see
tests/export/test_resize_fidelity.py for the comparisons with torch)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segedge.runtime.errors import ArtifactError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec
from segedge.runtime.preprocess import Geometry, labels_to_frame, prepare, resize_frame
from segedge.runtime.resize import INTERPOLATIONS, resize_image, resize_labels

SIZES = [(180, 240), (256, 320), (352, 480), (512, 1024)]  # shrink 2x, odd, slight, enlarge


def _frames(camvid_val: Path, n: int = 3) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(camvid_val.glob("*.png"))[:n]]


def _labels(camvid_val: Path, n: int = 3) -> list[np.ndarray]:
    annot = camvid_val.parent / "valannot"
    if not annot.is_dir():
        pytest.skip(f"{annot} is absent")
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(annot.glob("*.png"))[:n]]


def test_pil_bilinear_is_pil_on_camvid_frames(camvid_val: Path) -> None:
    for frame in _frames(camvid_val):
        for h, w in SIZES:
            want = np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR))
            np.testing.assert_array_equal(resize_image(frame, h, w, "pil-bilinear"), want)


def test_label_upscaling_is_pil_nearest_on_every_pixel(camvid_val: Path) -> None:
    """Network-resolution label maps back to 360x480: PIL's NEAREST on 100 % of the pixels;
    OpenCV's INTER_NEAREST (the legacy rule) is half a pixel off and is not."""
    legacy_equal = []
    for truth in _labels(camvid_val):
        fh, fw = truth.shape
        for h, w in ((176, 240), (256, 352), (90, 120)):
            net = np.asarray(Image.fromarray(truth).resize((w, h), Image.Resampling.NEAREST))
            want = np.asarray(Image.fromarray(net).resize((fw, fh), Image.Resampling.NEAREST))
            for rule in INTERPOLATIONS[1:]:  # every convention but the legacy one
                geom = Geometry((fh, fw), (h, w), h / fh, w / fw, interpolation=rule)
                np.testing.assert_array_equal(labels_to_frame(net, geom), want)
            legacy = labels_to_frame(net, Geometry((fh, fw), (h, w), h / fh, w / fw))
            if fh % h or fw % w:  # at whole factors (4x) both rules pick the same pixels
                legacy_equal.append(float((legacy == want).mean()))
    assert legacy_equal and max(legacy_equal) < 0.995, legacy_equal  # the rules differ


def test_old_artifact_without_the_field_keeps_todays_behaviour(camvid_val: Path) -> None:
    raw = json.loads(ArtifactMetadata("m", "f", ("a", "b"), ((0, 0, 0), (1, 1, 1))).to_json())
    del raw["input"]["interpolation"]  # as written before the field existed
    meta = ArtifactMetadata.from_dict(raw)
    assert meta.input.interpolation == "cv2-linear"
    spec = InputSpec(format="uint8", layout="NHWC", color_order="BGR", size=(256, 320))
    old = ArtifactMetadata.from_dict({**raw, "input": {**raw["input"], "format": "uint8",
                                                       "layout": "NHWC", "color_order": "BGR",
                                                       "size": [256, 320]}}).input
    assert old == spec
    frame = _frames(camvid_val, 1)[0]
    tensor, (geom,) = prepare([frame], old)
    np.testing.assert_array_equal(tensor[0], cv2.resize(frame, (320, 256),
                                                        interpolation=cv2.INTER_LINEAR))
    labels = np.random.default_rng(0).integers(0, 11, (256, 320), dtype=np.uint8)
    np.testing.assert_array_equal(labels_to_frame(labels, geom),
                                  cv2.resize(labels, (480, 360), interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("rule", INTERPOLATIONS)
def test_interpolation_round_trips_and_drives_preprocessing(rule: str, camvid_val: Path) -> None:
    meta = ArtifactMetadata("m", "f", ("a", "b"), ((0, 0, 0), (1, 1, 1)),
                            input=InputSpec(format="uint8", layout="NHWC", color_order="BGR",
                                            size=(180, 240), interpolation=rule))  # type: ignore[arg-type]
    back = ArtifactMetadata.from_json(meta.to_json())
    assert back == meta and back.input.interpolation == rule
    frame = _frames(camvid_val, 1)[0]
    resized, geom = resize_frame(frame, back.input)
    assert geom.interpolation == rule
    np.testing.assert_array_equal(resized, resize_image(frame, 180, 240, rule))


def test_letterbox_uses_the_convention_too(camvid_val: Path) -> None:
    frame = _frames(camvid_val, 1)[0]  # 360x480 into 256x256: content 192x256
    spec = InputSpec(format="uint8", layout="NHWC", color_order="BGR", size=(256, 256),
                     resize="letterbox", interpolation="pil-bilinear")
    out, geom = resize_frame(frame, spec)
    want = np.asarray(Image.fromarray(frame).resize((256, 192), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out[geom.pad_top:geom.pad_top + 192], want)


def test_unknown_interpolation_is_one_clear_line() -> None:
    spec = InputSpec(format="uint8", layout="NHWC", color_order="BGR", size=(8, 8),
                     interpolation="lanczos")  # type: ignore[arg-type]
    with pytest.raises(ArtifactError, match=r"^metadata: expected input.interpolation one of "
                       r"cv2-linear, torch-bilinear, torch-bilinear-aa, pil-bilinear, got "
                       r"'lanczos'$"):
        resize_frame(np.zeros((4, 4, 3), np.uint8), spec)


def test_label_rule_keeps_score_maps_and_same_size_untouched() -> None:
    scores = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert resize_labels(scores, 3, 4, "torch-bilinear-aa") is scores
    up = resize_labels(scores, 6, 8, "torch-bilinear-aa")
    np.testing.assert_array_equal(up, np.repeat(np.repeat(scores, 2, 0), 2, 1))
