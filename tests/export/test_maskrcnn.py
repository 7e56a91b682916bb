"""Mask R-CNN export: padding, zoo entries, option checks, the empty path, parity matching.

Random weights detect nothing useful, so here they test only the fixed-shape
and zero-detection machinery; parity on a trained model is in
test_maskrcnn_trained.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from segedge.export.config import (
    EngineOptions,
    ExportConfig,
    InstanceOptions,
    PrecisionOptions,
    VerifyOptions,
)
from segedge.export.models import registry
from segedge.export.models.maskrcnn import maskrcnn_mobilenet, pad_detections
from segedge.export.models.registry import BuildRequest
from segedge.export.onnx.tools import read_metadata
from segedge.export.pipeline import export
from segedge.export.verify.instance import Detections, check_instance_parity, compare
from segedge.runtime.errors import CheckpointError, InputError
from segedge.runtime.segmenter import Segmenter
from tools.instance_scenes import sample


def _det(k: int, h: int = 8, w: int = 10) -> dict[str, torch.Tensor]:
    return {"boxes": torch.arange(k * 4, dtype=torch.float32).reshape(k, 4),
            "labels": torch.ones(k, dtype=torch.int64), "scores": torch.linspace(0.9, 0.5, k),
            "masks": torch.full((k, 1, h, w), 0.7)}


@pytest.mark.parametrize("k, n", [(0, 5), (3, 5), (7, 5)])
def test_pad_detections_static_shapes_and_count(k: int, n: int) -> None:
    boxes, labels, scores, masks, count = pad_detections(_det(k), n)
    assert boxes.shape == (1, n, 4) and labels.shape == scores.shape == (1, n)
    assert masks.shape == (1, n, 8, 10) and masks.dtype == torch.uint8
    assert count.tolist() == [min(k, n)]
    valid = min(k, n)
    assert int(masks[0, :valid].sum()) == valid * 80  # 0.7 > 0.5: whole mask on
    assert not masks[0, valid:].any() and not boxes[0, valid:].any()


def test_zoo_instance_entries() -> None:
    for name in ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2",
                 "maskrcnn_mobilenet_v3_cars"):
        spec = registry.get(name)
        assert spec.task == "instance" and spec.family == "maskrcnn"
    coco = registry.get("maskrcnn_resnet50_fpn").classes
    assert len(coco) == 91 and coco[3] == "car" and coco[0] == "__background__"
    assert registry.get("fcn8s").task == "semantic"


def test_pretrained_offline_is_one_line_error() -> None:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    from segedge.export.models.weights import hub_cache_path

    if hub_cache_path(MaskRCNN_ResNet50_FPN_Weights.DEFAULT.url).is_file():
        pytest.skip("COCO Mask R-CNN weights are cached here: nothing to refuse")
    spec = registry.get("maskrcnn_resnet50_fpn")
    with pytest.raises(CheckpointError) as err:
        spec.build(BuildRequest(91, "pretrained"))
    assert "\n" not in str(err.value) and "maskrcnn_resnet50_fpn_coco" in str(err.value)


@pytest.mark.parametrize("changes, flag", [
    ({"precision": PrecisionOptions(mode="fp16")}, "precision"),
    ({"engine": EngineOptions(build=True)}, "--engine"),
    ({"batch": 2}, "--batch"), ({"opset": 15}, "--opset")])
def test_export_refuses_unsupported_options(changes: dict[str, object], flag: str,
                                            tmp_path: Path) -> None:
    cfg = ExportConfig(model="maskrcnn_mobilenet_v3_cars", output=tmp_path / "m.onnx",
                       **changes)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=flag):
        export(cfg)
    assert not list(tmp_path.iterdir())
    with pytest.raises(InputError, match="max-detections"):
        InstanceOptions(max_detections=0)


def _dets(boxes: list[list[float]], labels: list[int], scores: list[float],
          masks: np.ndarray) -> Detections:
    return Detections(np.asarray(boxes, np.float32), np.asarray(labels),
                      np.asarray(scores, np.float32), masks)


def test_compare_matches_by_class_and_box_and_scores_masks() -> None:
    m = np.zeros((2, 20, 20), bool)
    m[0, 2:10, 2:10] = True
    m[1, 12:18, 12:18] = True
    ref = _dets([[2, 2, 10, 10], [12, 12, 18, 18]], [1, 2], [0.9, 0.8], m)
    same = compare(ref, ref, 0.5)
    assert same["mask_ious"] == [1.0, 1.0] and same["unmatched_ref"] == 0
    half = m.copy()
    half[0, 2:6] = False  # half the first mask gone
    shifted = _dets([[2, 2, 10, 10], [12, 12, 18, 18]], [1, 1], [0.9, 0.8], half)
    r = compare(ref, shifted, 0.5)
    assert r["mask_ious"] == [pytest.approx(0.5)]
    assert r["unmatched_ref"] == 1 and r["unmatched_got"] == 1  # class 2 became class 1
    empty = _dets([], [], [], np.zeros((0, 20, 20), bool))
    r = compare(ref, empty, 0.5)
    assert r["unmatched_ref"] == 2 and r["mask_ious"] == []


@pytest.fixture(scope="module")
def empty_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """The light model with a box threshold no score reaches: nothing is ever detected."""
    out = tmp_path_factory.mktemp("empty") / "cars_empty.onnx"
    torch.manual_seed(0)
    report = export(
        ExportConfig(model="maskrcnn_mobilenet_v3_cars", output=out, weights="random",
                     verify=VerifyOptions(count=2), quiet=True,
                     instance=InstanceOptions(max_detections=20, box_score_threshold=1.0,
                                              verify_score=0.0)))
    return out, report


def test_empty_export_is_static_verified_and_lints_clean(
        empty_export: tuple[Path, dict[str, object]]) -> None:
    path, report = empty_export
    assert report["status"] == "ok"
    assert report["outputs"] == {"boxes": [1, 20, 4], "labels": [1, 20], "scores": [1, 20],
                                 "masks": [1, 20, 192, 256], "count": [1]}
    parity = report["parity"]
    assert isinstance(parity, dict)
    assert parity["mean_mask_iou"] is None and parity["empty_frames"] == 2
    assert any("empty path" in n for n in report["notes"])  # type: ignore[attr-defined]
    trt = report["tensorrt"]
    assert isinstance(trt, dict) and trt["unsupported"] == []
    assert {"NonMaxSuppression", "RoiAlign"} <= set(trt["detection_ops"])
    meta = read_metadata(onnx.load(str(path)))
    assert meta is not None and meta.task == "instance"
    assert meta.output.kind == "instances" and meta.output.max_detections == 20
    assert Path(str(path).replace(".onnx", ".report.json")).is_file()


def test_no_detections_give_an_empty_result_not_an_error(
        empty_export: tuple[Path, dict[str, object]]) -> None:
    path, _ = empty_export
    frame = sample(3, (240, 320)).image  # a scene with cars; the model finds none
    with Segmenter(path) as seg:
        res = seg.detect(frame)
        raw = seg.infer(seg.preprocess(frame)[0])
    assert len(res) == 0 and not res.ids.any() and res.ids.shape == (240, 320)
    assert raw["count"].tolist() == [0] and raw["masks"].shape == (1, 20, 192, 256)


def test_parity_gate_catches_a_different_model(
        empty_export: tuple[Path, dict[str, object]]) -> None:
    path, _ = empty_export
    meta = read_metadata(onnx.load(str(path)))
    assert meta is not None
    torch.manual_seed(1)
    other = maskrcnn_mobilenet(2).eval()  # random 2-class heads score ~0.5 everywhere
    frames = [sample(i, (192, 256)).image for i in range(2)]
    parity = check_instance_parity(other, path, meta, frames, "scenes", score_threshold=0.3)
    assert parity.reference_detections > 0 and parity.onnx_detections == 0
    assert parity.mean_mask_iou == 0.0 and not parity.passed()


@pytest.mark.slow
def test_segexport_maskrcnn_resnet50_fpn_random_weights(tmp_path: Path) -> None:
    """The author's check: static detection count, metadata, verified.  Random weights
    (seeded by the exporter) do detect boxes here, with masks near the 0.5 threshold, so
    this is a same-function check, not a meaningful one (that is the trained test)."""
    out = tmp_path / "maskrcnn_resnet50_fpn.onnx"
    report = export(ExportConfig(model="maskrcnn_resnet50_fpn", output=out,
                                 weights="random", imgsz=(240, 320),
                                 verify=VerifyOptions(count=1), quiet=True))
    assert report["outputs"]["count"] == [1] and report["outputs"]["boxes"] == [1, 100, 4]
    assert report["parity"]["raw_counts_equal"]
    meta = read_metadata(onnx.load(str(out), load_external_data=False))
    assert meta is not None and meta.task == "instance" and len(meta.classes) == 91
