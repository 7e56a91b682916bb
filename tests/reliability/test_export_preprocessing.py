"""Preprocessing mistakes parity cannot see, made visible (issue 11 item 6), on real data.

The zoo's DemoNet trained on CamVid train, verified on CamVid val: with labels the
report puts PyTorch and ONNX mIoU side by side, and a wrong colour order or std
units fails the export naming the likely cause (export/verify/preprocessing_check.py);
without labels a std given in the wrong units is flagged as a prediction that ignores
the picture.  The same convention written in pixel units gives the same artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from segedge.export.config import ExportConfig, VerifyOptions
from segedge.export.models.registry import CAMVID_CLASSES
from segedge.export.pipeline import export
from segedge.runtime.errors import VerificationError
from tests.export.precision_helpers import camvid, trained_checkpoint
from tools.camvid_model import CAMVID_SIZE

FRAMES = 4


@pytest.fixture(scope="module")
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_checkpoint(request, tmp_path_factory)


def demo(tmp_path: Path, ckpt: Path, name: str, labels: bool, **kw: Any
         ) -> tuple[dict[str, Any], list[str]]:
    lines: list[str] = []
    root = camvid()
    cfg = ExportConfig(model="demo", checkpoint=ckpt, classes=CAMVID_CLASSES,
                       imgsz=CAMVID_SIZE, output=tmp_path / f"{name}.onnx", quiet=True,
                       verify=VerifyOptions(images=str(root / "val"), count=FRAMES,
                                            labels=root / "valannot" if labels else None),
                       **kw)
    return export(cfg, log=lines.append), lines


def test_labels_show_a_wrong_colour_order(trained: Path, tmp_path: Path) -> None:
    right, _ = demo(tmp_path, trained, "right", labels=True)
    acc = right["parity"]["accuracy"]
    assert acc["pytorch"]["miou"] == acc["onnx"]["miou"] > 25.0  # a trained model, exported
    assert acc["pytorch"]["images"] == FRAMES and acc["labels"] == str(camvid() / "valannot")
    assert right["parity"]["preprocessing_check"]["failure"] is None
    # a wrong colour order with labels fails the export (exit 3), naming the cause
    with pytest.raises(VerificationError) as err:
        demo(tmp_path, trained, "bgr", labels=True, model_color="BGR")
    swapped = json.loads((tmp_path / "bgr.failed.report.json").read_text())
    assert swapped["parity"]["argmax_agreement"] >= 99.9  # parity cannot see it ...
    wrong = swapped["parity"]["accuracy"]
    assert wrong["pytorch"]["miou"] == wrong["onnx"]["miou"]
    assert wrong["pytorch"]["miou"] < acc["pytorch"]["miou"] - 10.0  # ... the labels do
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    assert str(err.value).startswith(
        f"preprocessing check: PyTorch scores mIoU {wrong['pytorch']['miou']:.2f} on the "
        f"{FRAMES} labelled verification frames with the flags given, "
        f"{acc['pytorch']['miou']:.2f} with the other colour order (RGB): likely the colour "
        "order: try --rgb; check --mean/--std/--norm-units/--scale/--bgr; no artifact written")
    assert not (tmp_path / "bgr.onnx").exists()
    # std in pixel values typed as 0..1 units, with labels: a failure too, naming the std
    with pytest.raises(VerificationError, match=r"^preprocessing check: PyTorch scores mIoU "
                       r"\d+\.\d\d on the 4 labelled verification frames with the flags "
                       r"given, \d+\.\d\d with the std 255x smaller: likely --std in the "
                       r"wrong units"):
        demo(tmp_path, trained, "std_labels", labels=True, std=(58.395, 57.12, 57.375))
    # the same convention in pixel units: the same stored normalisation and the same scores
    pixel, _ = demo(tmp_path, trained, "pixel", labels=True, norm_units="pixel",
                    mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    assert pixel["metadata"]["input"]["mean"] == pytest.approx(right["metadata"]["input"]["mean"],
                                                               abs=1e-12)
    assert pixel["metadata"]["input"]["std"] == pytest.approx(right["metadata"]["input"]["std"],
                                                              abs=1e-12)
    assert pixel["parity"]["accuracy"]["pytorch"]["miou"] == pytest.approx(
        acc["pytorch"]["miou"], abs=0.01)


def test_std_in_the_wrong_units_warns_without_labels(trained: Path, tmp_path: Path) -> None:
    right, lines = demo(tmp_path, trained, "right", labels=False)
    assert right["warnings"] == [] and lines == []
    # pixel-unit std values typed as 0..1 units: the input collapses to ~0 on every frame
    wrong, lines = demo(tmp_path, trained, "std", labels=False, std=(58.395, 57.12, 57.375))
    (warning,) = wrong["warnings"]
    assert warning.startswith("degenerate PyTorch masks: the mask stays the same (at most ")
    assert warning.endswith(f"over {FRAMES} verification frames that differ on more than 10% "
                            "of their pixels: the prediction ignores the picture; check "
                            "--mean/--std/--norm-units/--scale/--bgr")
    assert lines == [f"warning: {warning}"]  # printed although --quiet
