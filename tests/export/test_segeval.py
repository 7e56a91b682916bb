"""segeval: metrics by hand, label pairing, one-line errors, ONNX vs PyTorch on CamVid val."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.export.evaluation.evaluate import Confusion, pair_labels, scores
from segedge.runtime.errors import InputError
from tests.export.precision_helpers import (
    camvid,
    model_args,
    one_line,
    run_module,
    trained_checkpoint,
)

SEGEVAL = "segedge.export.evaluation.cli"


@pytest.fixture(scope="session")
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_checkpoint(request, tmp_path_factory)


def test_metrics_by_hand() -> None:
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 5]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 1, 0]])
    conf = Confusion(3, ignore_index=255)
    conf.add(pred, truth)  # 255 ignored; 5 is out of range (like CamVid void 11): ignored too
    s = scores(conf, ("a", "b", "c"), images=1)
    # a: tp 1, fp 1 (2->0), fn 1 (0->1) -> 1/3;  b: tp 2, fp 1 -> 2/3;  c: tp 1, fn 1 -> 1/2
    assert s.per_class_iou == pytest.approx({"a": 100 / 3, "b": 200 / 3, "c": 50.0}, abs=1e-3)
    assert s.miou == pytest.approx((100 / 3 + 200 / 3 + 50) / 3, abs=1e-3)
    assert s.pixel_accuracy == pytest.approx(4 / 6 * 100, abs=1e-3)
    empty = scores(Confusion(2), ("x", "y"), 0)
    assert empty.per_class_iou == {"x": None, "y": None} and empty.miou == 0.0
    with pytest.raises(InputError, match="shape"):
        conf.add(pred[:1], truth)


def test_labels_pair_by_name_and_missing_ones_are_named(tmp_path: Path) -> None:
    images, labels = tmp_path / "img", tmp_path / "lab"
    images.mkdir()
    labels.mkdir()
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(images / name), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(labels / "a.png"), np.zeros((4, 4), np.uint8))  # other suffix, same stem
    with pytest.raises(InputError, match="b.png"):
        pair_labels(images, labels)
    cv2.imwrite(str(labels / "b.png"), np.zeros((4, 4), np.uint8))
    assert [(i.name, lab.name) for i, lab in pair_labels(images, labels)] == [
        ("a.jpg", "a.png"), ("b.png", "b.png")]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    proc = run_module(SEGEVAL, "nope.onnx", "--images", str(tmp_path),
                      "--labels", str(tmp_path / "none"), cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--images" in one_line(proc.stderr)
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((4, 4, 3), np.uint8))
    proc = run_module(SEGEVAL, "nope.onnx", "--images", str(tmp_path),
                      "--labels", str(tmp_path), cwd=tmp_path)
    assert proc.returncode != 0 and "nope.onnx" in one_line(proc.stderr)


@pytest.mark.slow
@pytest.mark.camvid
def test_onnx_matches_pytorch_on_camvid_val(trained: Path, tmp_path: Path) -> None:
    root = camvid()
    args = model_args(trained, tmp_path / "classes.txt")
    proc = run_module("segedge.export.cli", *args, "-o", "fp32.onnx", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = ["--images", str(root / "val"), "--labels", str(root / "valannot"), "-q"]
    onnx_run = run_module(SEGEVAL, "fp32.onnx", *data, "--json", "onnx.json",
                          cwd=tmp_path)
    assert onnx_run.returncode == 0, onnx_run.stderr
    torch_run = run_module(SEGEVAL, str(trained), *data, "--json", "pt.json",
                           cwd=tmp_path)
    assert torch_run.returncode == 0, torch_run.stderr
    got = json.loads((tmp_path / "onnx.json").read_text())
    want = json.loads((tmp_path / "pt.json").read_text())
    assert {"miou", "pixel_accuracy", "per_class_iou", "images"} <= set(got)
    assert got["images"] == want["images"] == 101
    assert list(got["per_class_iou"]) == list(want["per_class_iou"])
    assert got["miou"] > 25.0  # trained; CamVid void (11) is outside the 11 classes: ignored
    assert abs(got["miou"] - want["miou"]) <= 0.1
    assert abs(got["pixel_accuracy"] - want["pixel_accuracy"]) <= 0.1
    assert "mIoU" in onnx_run.stdout and "onnxruntime" in onnx_run.stdout
