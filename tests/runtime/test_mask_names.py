"""--save-masks names a mask after its source image; video frames keep their index."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segedge.runtime.config import RunConfig
from segedge.runtime.pipeline import run
from segedge.runtime.sinks.masks import MaskSink, mask_name
from segedge.runtime.sources.base import SourceOptions
from segedge.runtime.sources.images import ImageSource
from tests.runtime.onnx_fixtures import make_labels_model, scene, write_video


def test_masks_are_named_after_their_images(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "frame_0001.png"), scene(0, 64, 48))
    cv2.imwrite(str(images / "frame_0002.jpg"), scene(1, 64, 48))
    (images / "frame_0003.png").write_bytes(b"not a png")  # skipped: no mask, no shift
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 2] = 200
    cv2.imwrite(str(images / "frame_0004.png"), red)
    model = make_labels_model(tmp_path / "m.onnx")
    stats = run(RunConfig(model=model, source=str(images), display=False,
                          save_masks=tmp_path / "masks"))
    assert stats.frames_processed == 3
    names = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert names == ["frame_0001.png", "frame_0002.png", "frame_0004.png"]
    mask = cv2.imread(str(tmp_path / "masks" / "frame_0004.png"), cv2.IMREAD_UNCHANGED)
    assert mask is not None and (mask == 1).all()  # the red image's own mask


def test_repeated_stems_and_videos_keep_index_names(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("a.png", "a.jpg"):
        cv2.imwrite(str(images / name), scene(0, 64, 48))
    source = ImageSource(str(images), SourceOptions())
    while source.read() is not None:
        pass
    assert source.frame_name(0) is None  # a.png and a.jpg would both become a.png
    model = make_labels_model(tmp_path / "m.onnx")
    clip = write_video(tmp_path / "c.avi", 3)
    run(RunConfig(model=model, source=str(clip), display=False, save_masks=tmp_path / "v"))
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [
        "000000.png", "000001.png", "000002.png"]


def test_mask_sink_names(tmp_path: Path) -> None:
    assert mask_name(7) == "000007.png" and mask_name(7, "frame_0001") == "frame_0001.png"
    sink = MaskSink(tmp_path / "m", frame_names=lambda i: None if i == 1 else f"img{i}")
    for i in range(3):
        sink.write(i, None, np.zeros((2, 2), np.uint8))
    assert sink.close().frames_written == 3
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "000001.png", "img0.png", "img2.png"]
