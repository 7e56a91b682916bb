"""The one metrics implementation, against confusion matrices computed by hand.

The void-class case is the published-figure case of issue 11: a 12-output
CamVid network whose class 11 is void, scored with --ignore-index 11, must
average over classes 0..10 only, and its void predictions on valid pixels
are errors of the true class.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.export.evaluation.confusion_files import csv_text, render_png, write_confusion
from segedge.export.evaluation.metrics import Confusion, format_table, scores
from segedge.runtime.errors import InputError

TWELVE = tuple(f"c{i}" for i in range(11)) + ("void",)


def void_case() -> Confusion:
    truth = np.array([[0, 0, 0, 1], [1, 2, 11, 255]])
    pred = np.array([[0, 11, 1, 1], [11, 2, 0, 3]])
    conf = Confusion(12, ignore_index=11)
    conf.add(pred, truth)
    return conf


def test_void_class_is_left_out_of_every_mean_and_its_predictions_are_errors() -> None:
    conf = void_case()
    # counted pixels: the first six (truth 11 and 255 are not counted at all)
    assert conf.pixels == 6 and conf.counts.dtype == np.int64
    assert conf.matrix[0, 0] == 1 and conf.matrix[0, 11] == 1 and conf.matrix[0, 1] == 1
    assert conf.matrix[1, 1] == 1 and conf.matrix[1, 11] == 1 and conf.matrix[2, 2] == 1
    assert conf.matrix[11].sum() == 0  # the void row stays empty
    s = scores(conf, TWELVE, images=1)
    # c0: tp 1, truth 3, predicted 1 -> 1/3;  c1: tp 1, truth 2, predicted 2 -> 1/3;
    # c2: tp 1 -> 1;  c3..c10: absent, never predicted on a counted pixel (the 3 was on 255)
    assert s.per_class_iou["c0"] == pytest.approx(100 / 3, abs=1e-3)
    assert s.per_class_iou["c1"] == pytest.approx(100 / 3, abs=1e-3)
    assert s.per_class_iou["c2"] == 100.0
    assert all(s.per_class_iou[f"c{i}"] is None for i in range(3, 11))
    assert s.per_class_iou["void"] is None and s.ignored_classes == ("void",)
    assert s.miou == pytest.approx(500 / 9, abs=1e-3)  # (1/3 + 1/3 + 1) / 3, not / 4 with void
    assert s.evaluated_classes == 3
    assert s.pixel_accuracy == pytest.approx(50.0, abs=1e-3)  # 3 of 6
    # per-class accuracy 1/3, 1/2, 1 -> 11/18
    assert s.per_class_accuracy["c0"] == pytest.approx(100 / 3, abs=1e-3)
    assert s.per_class_accuracy["c1"] == 50.0
    assert s.class_accuracy == pytest.approx(1100 / 18, abs=1e-3)
    # frequency weighted: 3/6 * 1/3 + 2/6 * 1/3 + 1/6 * 1 = 4/9
    assert s.frequency_weighted_iou == pytest.approx(400 / 9, abs=1e-3)


def test_an_ignored_id_past_the_outputs_and_out_of_range_predictions() -> None:
    # an 11-output network on CamVid labels: void 11 is >= the class count, never counted;
    # a prediction outside 0..C-1 is an error of the true class, not clipped into class C-1
    conf = Confusion(3, ignore_index=255)
    conf.add(np.array([[0, 7, 2, 2]]), np.array([[0, 2, 2, 11]]))
    assert conf.pixels == 3 and conf.other.tolist() == [0, 0, 1]
    s = scores(conf, ("a", "b", "c"), 1)
    assert s.per_class_iou == {"a": 100.0, "b": None, "c": 50.0}
    assert s.miou == 75.0 and s.class_accuracy == 75.0
    assert s.pixel_accuracy == pytest.approx(200 / 3, abs=1e-3)


def test_scores_are_dataset_level_not_a_mean_over_images() -> None:
    conf = Confusion(2, ignore_index=None)
    conf.add(np.zeros((2, 2), int), np.zeros((2, 2), int))  # image A: all right
    conf.add(np.ones((2, 2), int), np.array([[0, 1], [1, 1]]))  # image B: one error
    s = scores(conf, ("x", "y"), 2)
    # dataset: x tp 4, truth 5, predicted 4 -> 4/5;  y tp 3, truth 3, predicted 4 -> 3/4
    assert s.per_class_iou == {"x": 80.0, "y": 75.0}
    assert s.miou == 77.5  # a mean of per-image mIoU would be (100 + 37.5) / 2 = 68.75
    assert s.images == 2 and s.pixels == 8


def test_class_absent_from_truth_but_predicted_counts_as_zero() -> None:
    conf = Confusion(3, ignore_index=None)
    conf.add(np.array([[0, 2]]), np.array([[0, 0]]))
    s = scores(conf, ("a", "b", "c"), 1)
    assert s.per_class_iou == {"a": 50.0, "b": None, "c": 0.0}
    assert s.miou == 25.0  # c is in the mean (predicted), b is not (n/a)
    assert s.per_class_accuracy == {"a": 50.0, "b": None, "c": None}
    assert s.class_accuracy == 50.0


def test_table_says_na_and_ignored() -> None:
    table = format_table(scores(void_case(), TWELVE, 1), "title")
    lines = table.splitlines()
    assert lines[0] == "title"
    assert lines[1].split() == ["class", "IoU", "%", "Acc", "%"]
    assert lines[2].split() == ["c0", "33.33", "33.33"]
    assert lines[5].split() == ["c3", "n/a", "n/a"]
    assert lines[13].split() == ["void", "ignored", "ignored"]
    assert lines[14].split() == ["mIoU", "55.56"]
    assert lines[16].split() == ["class", "acc", "61.11"]
    assert lines[17].split() == ["fwIoU", "44.44"]
    assert lines[18] == ("1 images, 6 pixels, ignore index 11; means over 3 classes "
                         "(n/a: absent from the labels and never predicted)")


def test_degenerate_predictions_are_named() -> None:
    truth = np.zeros((10, 10), np.uint8)
    truth[:, 5:] = 1
    conf = Confusion(2, ignore_index=None)
    for _ in range(3):
        conf.add(np.ones((10, 10), np.uint8), truth)
    assert conf.degenerate() == ("the prediction is one class (id 1) on more than 98% of the "
                                 "pixels of every one of 3 frame(s) while the labels are not")
    assert scores(conf, ("a", "b"), 3).degenerate == conf.degenerate()
    varied = truth.copy()
    conf.add(varied, truth)  # one frame with a real prediction: not degenerate
    assert conf.degenerate() is None
    flat = Confusion(2, ignore_index=None)
    flat.add(np.ones((4, 4), np.uint8), np.ones((4, 4), np.uint8))  # the labels are flat too
    assert flat.degenerate() is None


def test_refusals() -> None:
    with pytest.raises(InputError) as err:
        Confusion(0)
    assert str(err.value) == "class count: expected at least 1 class, got 0"
    with pytest.raises(InputError, match="shape"):
        Confusion(2).add(np.zeros((2, 2)), np.zeros((2, 3)))


def test_confusion_csv_and_png(tmp_path: Path) -> None:
    conf = void_case()
    text = csv_text(conf, TWELVE)
    rows = text.splitlines()
    assert rows[0] == "truth\\prediction," + ",".join(TWELVE) + ",other"
    assert rows[1] == "c0,1,1,0,0,0,0,0,0,0,0,0,1,0"
    assert rows[2] == "c1,0,1,0,0,0,0,0,0,0,0,0,1,0"
    assert rows[12] == "void," + ",".join(["0"] * 13)
    csv_path, png_path = write_confusion(conf, TWELVE, tmp_path / "out" / "confusion")
    assert csv_path.read_text() == text and csv_path.name == "confusion.csv"
    png = cv2.imread(str(png_path), cv2.IMREAD_COLOR)
    assert png is not None and png.shape == render_png(conf, TWELVE).shape
    assert png.shape[0] > 13 * 28 and png.shape[1] > 13 * 28  # 12 classes + other, 28 px each
    assert csv_text(Confusion(1, None), ('a,"b"',)).splitlines()[0] == \
        'truth\\prediction,"a,""b""",other'
