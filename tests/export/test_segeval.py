"""segeval: metrics by hand, label pairing, one-line errors, ONNX vs PyTorch on CamVid val."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from segedge.export.evaluation.cli import PREPROCESSING_PARAMS, main, segeval
from segedge.export.evaluation.evaluate import Confusion, pair_labels, scores
from segedge.runtime.errors import InputError
from tests.export import eval_models
from tests.export.precision_helpers import (
    camvid,
    model_args,
    one_line,
    run_module,
    trained_checkpoint,
)

SEGEVAL = "segedge.export.evaluation.cli"
RED, BLUE = (20, 30, 220), (210, 40, 30)  # BGR
EVAL_MODELS = Path(eval_models.__file__)


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


def halves(root: Path, n: int = 2, size: tuple[int, int] = (32, 48),
           label_size: tuple[int, int] | None = None, fill: int | None = None
           ) -> tuple[Path, Path]:
    """Images red on the left, blue on the right; labels 1 (red) left, 0 right, a 255 strip."""
    images, labels = root / "img", root / "lab"
    images.mkdir(parents=True)
    labels.mkdir()
    h, w = size
    for i in range(n):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[:, : w // 2], frame[:, w // 2:] = RED, BLUE
        cv2.imwrite(str(images / f"f{i}.png"), frame)
        lh, lw = label_size or size
        label = np.zeros((lh, lw), np.uint8)
        label[:, : lw // 2] = 1
        label[0] = 255
        if fill is not None:
            label[:] = fill
        cv2.imwrite(str(labels / f"f{i}.png"), label)
    return images, labels


def run_segeval(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """segeval in-process: (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as end:
        code = int(end.code or 0)
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.fixture
def labels_onnx(tmp_path: Path) -> Path:
    from tests.runtime.onnx_fixtures import make_labels_model

    return make_labels_model(tmp_path / "labels.onnx")


def test_artifact_is_scored_with_every_metric_and_the_confusion_files(
        labels_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = halves(tmp_path, n=3)
    code, out, err = run_segeval(capsys, labels_onnx, "--images", images, "--labels", labels,
                                 "--json", tmp_path / "r.json")
    assert code == 0 and err == ""  # no progress bar: stderr is not a terminal
    got = json.loads((tmp_path / "r.json").read_text())
    assert got["miou"] == 100.0 and got["class_accuracy"] == 100.0
    assert got["frequency_weighted_iou"] == 100.0 and got["pixel_accuracy"] == 100.0
    assert got["images"] == 3 and got["pixels"] == 3 * 31 * 48  # the 255 row is not counted
    assert got["confusion"] == [[3 * 31 * 24, 0, 0], [0, 3 * 31 * 24, 0]]
    assert got["degenerate"] is None and got["images_per_s"] > 0
    csv = (tmp_path / "r.confusion.csv").read_text().splitlines()
    assert csv == ["truth\\prediction,background,red,other", "background,2232,0,0",
                   "red,0,2232,0"]
    assert cv2.imread(str(tmp_path / "r.confusion.png")) is not None
    assert "mIoU" in out and "class acc" in out and "fwIoU" in out
    code, _, _ = run_segeval(capsys, labels_onnx, "--images", images, "--labels", labels,
                             "--confusion", tmp_path / "cm", "--batch", "2")
    assert code == 0 and (tmp_path / "cm" / "confusion.csv").read_text().splitlines() == csv


def test_every_label_pixel_ignored_is_refused(labels_onnx: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = halves(tmp_path, fill=255)
    code, out, err = run_segeval(capsys, labels_onnx, "--images", images, "--labels", labels)
    assert code == 2 and out == ""
    assert err == ("segeval: error: --labels: expected label pixels with a class id 0..1 other "
                   "than --ignore-index 255, got every pixel of the 2 label map(s) ignored\n")


def test_labels_of_another_size_are_refused(labels_onnx: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = halves(tmp_path, label_size=(16, 24))
    code, out, err = run_segeval(capsys, labels_onnx, "--images", images, "--labels", labels)
    assert code == 2 and out == ""
    assert err == ("segeval: error: --labels: expected label maps the size of their images, "
                   "got f0.png 24x16 for f0.png 48x32 (W x H)\n")


def test_unwritable_outputs_are_refused_before_any_work(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    images, labels = halves(tmp_path)
    (tmp_path / "file").write_text("x")
    data = ["--images", images, "--labels", labels]
    # the artifact does not exist: a refusal naming --json proves nothing was loaded first
    code, _, err = run_segeval(capsys, "nope.onnx", *data, "--json", tmp_path / "file" / "r.json")
    assert code == 2
    assert err == f"segeval: error: --json: expected a path under a folder, got " \
                  f"{tmp_path / 'file'} is a file\n"
    code, _, err = run_segeval(capsys, "nope.onnx", *data, "--json", tmp_path)
    assert code == 2 and err == f"segeval: error: --json: expected a file path, got the " \
                                f"folder {tmp_path}\n"
    code, _, err = run_segeval(capsys, "nope.onnx", *data, "--confusion", tmp_path / "file")
    assert code == 2 and err == ("segeval: error: --confusion: expected a folder (confusion.csv "
                                 f"and .png go in it), got the file {tmp_path / 'file'}\n")


def test_degenerate_prediction_fails_after_reporting(labels_onnx: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = halves(tmp_path)
    for f in images.iterdir():  # all blue: the model says background everywhere
        cv2.imwrite(str(f), np.full((32, 48, 3), BLUE, np.uint8))
    code, out, err = run_segeval(capsys, labels_onnx, "--images", images, "--labels", labels,
                                 "--json", tmp_path / "r.json")
    assert code == 3 and "mIoU" in out
    assert err == (f"segeval: error: {labels_onnx}: the prediction is one class (id 0) on more "
                   "than 98% of the pixels of every one of 2 frame(s) while the labels are not: "
                   "a degenerate result; check the checkpoint and --mean/--std/--norm-units/"
                   "--bgr\n")
    assert json.loads((tmp_path / "r.json").read_text())["degenerate"].startswith(
        "the prediction is one class (id 0)")


def test_pytorch_takes_segexports_preprocessing_options(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    from segedge.export.cli import segexport

    shared = [p for p in segexport.params if p.name in PREPROCESSING_PARAMS]
    assert {p.name for p in shared} >= {"mean", "std", "model_rgb"}
    assert all(any(q is p for q in segeval.params) for p in shared)  # the same objects
    images, labels = halves(tmp_path)
    model = ["--images", images, "--labels", labels, "--num-classes", "2", "--imgsz", "32", "48"]
    ref = f"{EVAL_MODELS}:RedNet"
    code, out, err = run_segeval(capsys, ref, *model, "--json", tmp_path / "rgb.json")
    assert code == 0 and err == "" and "pytorch (cpu," in out
    assert json.loads((tmp_path / "rgb.json").read_text())["miou"] == 100.0
    code, _, err = run_segeval(capsys, ref, *model, "--bgr", "--json", tmp_path / "bgr.json")
    assert code == 0, err  # channel 0 is now blue: every pixel wrong, but not one class
    bgr = json.loads((tmp_path / "bgr.json").read_text())
    assert bgr["miou"] == 0.0 and bgr["pixel_accuracy"] == 0.0
    code, _, err = run_segeval(capsys, ref, *model, "--mean", "0.9", "0.9", "0.9", "--std",
                               "0.1", "0.1", "0.1", "--batch", "1", "--threads", "1")
    assert code == 3 and "the prediction is one class (id 0)" in err  # red 0.86 < mean 0.9


def test_pytorch_units_scale_and_constructor_arguments(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    images, labels = halves(tmp_path)
    data = ["--images", images, "--labels", labels, "--imgsz", "32", "48", "--num-classes", "2"]
    red = f"{EVAL_MODELS}:RedNet"
    results = {}
    for name, flags in {
        "pixel": ["--norm-units", "pixel", "--mean", "128", "128", "128", "--std", "1", "1",
                  "1"],  # red 220 - 128 > 0: class 1; blue 30 - 128 < 0: class 0
        "scaled": ["--norm-units", "pixel", "--mean", "128", "128", "128", "--std", "1", "1",
                   "1", "--scale", "1/255"],  # the same signs at 1/255 the size
    }.items():
        code, _, err = run_segeval(capsys, red, *data, *flags, "--json", tmp_path / f"{name}.j")
        assert code == 0, err
        results[name] = json.loads((tmp_path / f"{name}.j").read_text())["miou"]
    assert results == {"pixel": 100.0, "scaled": 100.0}
    code, _, err = run_segeval(capsys, red, *data, "--norm-units", "pixel", "--mean", "250",
                               "250", "250", "--std", "1", "1", "1")
    assert code == 3 and "the prediction is one class (id 0)" in err  # nothing above 250
    arg = f"{EVAL_MODELS}:ArgNet"
    for flip, want in (("False", 100.0), ("True", 0.0)):
        code, _, err = run_segeval(capsys, arg, "--images", images, "--labels", labels,
                                   "--imgsz", "32", "48", "--num-classes", "2",
                                   "--model-args", "classes=2", f"flip={flip}",
                                   "--json", tmp_path / "a.j")
        assert code == 0, err
        assert json.loads((tmp_path / "a.j").read_text())["miou"] == want


@pytest.mark.parametrize(("model", "what"), [("NanNet", "NaN in 100%"),
                                             ("InfNet", "Inf in 25%")])
def test_non_finite_pytorch_logits_fail(model: str, what: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = halves(tmp_path)
    code, out, err = run_segeval(capsys, f"{EVAL_MODELS}:{model}", "--images", images,
                                 "--labels", labels, "--num-classes", "2", "--imgsz", "32", "48")
    assert code == 3 and out == ""
    assert err == (f"segeval: error: PyTorch produced {what} of logits on 2 of 2 frame(s): "
                   "check the checkpoint (NaN/Inf weights), the model's forward and "
                   "--mean/--std\n")


@pytest.mark.slow
@pytest.mark.camvid
def test_void_class_and_preprocessing_on_camvid_val(trained: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The published-model case on real data: a 12-output CamVid network whose class 11 is
    void, scored with --ignore-index 11, and the preprocessing mistakes of issue 11."""
    import torch

    from segedge.export.models.registry import CAMVID_CLASSES

    root = camvid()
    images, labels = tmp_path / "img", tmp_path / "lab"
    images.mkdir()
    labels.mkdir()
    for f in sorted((root / "val").iterdir())[:40]:
        (images / f.name).symlink_to(f)
        (labels / f.name).symlink_to(root / "valannot" / f.name)
    data = ["--images", images, "--labels", labels]

    def score(name: str, *args: object) -> dict[str, Any]:
        code, _, err = run_segeval(capsys, *args, *data, "--json", tmp_path / f"{name}.json")
        assert code == 0, err
        return dict(json.loads((tmp_path / f"{name}.json").read_text()))

    base = score("base", trained)
    blob = torch.load(trained, map_location="cpu", weights_only=True)
    torch.save({f"net.{k}": v for k, v in blob["state_dict"].items()}, tmp_path / "void.pt")
    (tmp_path / "classes12.txt").write_text("\n".join([*CAMVID_CLASSES, "void"]) + "\n")
    void = score("void", f"{EVAL_MODELS}:WithVoid", "--checkpoint", tmp_path / "void.pt",
                 "--classes", tmp_path / "classes12.txt", "--imgsz", "128", "160",
                 "--ignore-index", "11")
    assert void["ignored_classes"] == ["void"] and void["per_class_iou"]["void"] is None
    ours, theirs = np.array(void["confusion"]), np.array(base["confusion"])
    assert ours.shape == (12, 13) and theirs.shape == (11, 12)
    assert ours[11].sum() == 0 and ours[:, 12].sum() == 0  # void truth pixels not counted
    moved = ours[:11, 11]  # valid pixels the network called void
    assert moved.sum() > 0.01 * ours.sum()
    # void predictions are errors of the true class, nothing else changes: per truth row,
    # exactly the pixels moved to void left the 11-class columns
    assert (ours[:11, :11] <= theirs[:, :11]).all()
    np.testing.assert_array_equal((theirs[:, :11] - ours[:11, :11]).sum(1), moved)
    assert void["pixels"] == base["pixels"]
    valid = [v for v in void["per_class_iou"].values() if v is not None]
    assert len(valid) == void["evaluated_classes"] == 11
    assert void["miou"] == pytest.approx(float(np.mean(valid)), abs=1e-3)  # over 0..10 only
    assert void["pixel_accuracy"] < base["pixel_accuracy"]
    # preprocessing: the same rule in pixel units scores the same; the wrong colour order not
    pixel = score("pixel", trained, "--norm-units", "pixel", "--mean", "123.675", "116.28",
                  "103.53", "--std", "58.395", "57.12", "57.375")
    assert pixel["miou"] == pytest.approx(base["miou"], abs=0.05)
    assert score("bgr", trained, "--bgr")["miou"] < base["miou"] - 3.0



def test_backend_batches_fill_static_batches_and_split_sizes_for_dynamic_ones() -> None:
    from segedge.export.evaluation.predictors import BackendPredictor
    from segedge.runtime.metadata import ArtifactMetadata, InputSpec, OutputSpec

    class Recording:
        name, active = "fake", "fake"

        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
            self.shapes.append(tensor.shape)
            return {"labels": (tensor[..., 0] > 127).astype(np.uint8)}  # RGB: red first

    def predictor(batch: int | None, size: tuple[int, int] | None, want: int
                  ) -> BackendPredictor:
        p = BackendPredictor.__new__(BackendPredictor)
        p.backend = Recording()
        p.meta = ArtifactMetadata(
            model="m", family="f", classes=("background", "red"), palette=(),
            input=InputSpec(format="uint8", layout="NHWC", color_order="RGB", size=size,
                            batch=batch, stride=8),
            output=OutputSpec(kind="labels", logits=None, labels="labels"))
        p.classes, p.batch = p.meta.classes, batch or want
        return p

    red, blue = np.full((32, 48, 3), RED, np.uint8), np.full((32, 48, 3), BLUE, np.uint8)
    tall = np.full((48, 64, 3), RED, np.uint8)
    static = predictor(4, (32, 48), 1)
    out = static.predict_batch([red, blue, red, blue, red])
    assert static.backend.shapes == [(4, 32, 48, 3), (4, 32, 48, 3)]  # last one padded
    assert [int(labels.max()) for labels, _ in out] == [1, 0, 1, 0, 1]
    dynamic = predictor(None, None, 3)
    out = dynamic.predict_batch([red, blue, tall, tall, red])
    assert dynamic.backend.shapes == [(2, 32, 48, 3), (2, 48, 64, 3), (1, 32, 48, 3)]
    assert [labels.shape for labels, _ in out] == [(32, 48)] * 2 + [(48, 64)] * 2 + [(32, 48)]
    assert [int(labels.max()) for labels, _ in out] == [1, 0, 1, 1, 1]
