"""Export and parity on a Mask R-CNN whose detections mean something, and segrun end to end.

No trained COCO weights exist offline, so the light Mask R-CNN is trained on
generated car scenes (export/instance_train.py, ~5-8 min on 2 busy cores,
cached under pytest's cache dir) and checked on held-out generated scenes:
"real images" here are generated ones, the dash-cam video runs end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from segedge.export.config import ExportConfig, VerifyOptions
from segedge.export.models.maskrcnn import maskrcnn_mobilenet
from segedge.export.pipeline import export
from segedge.export.verify.instance import box_iou, reference
from tests.export.trained_cache import cache_folder
from tools.instance_scenes import sample
from tools.instance_train import train

pytestmark = pytest.mark.slow

STEPS, LR = 400, 0.02
HELD_OUT = range(6)  # training seeds start at 100000


@pytest.fixture(scope="session")
def trained_checkpoint(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = cache_folder(request, tmp_path_factory, "segedge_maskrcnn_cars")
    path = Path(folder) / f"cars_{STEPS}steps_lr{LR}_v1.pt"
    if not path.is_file():
        model = train(STEPS, lr=LR)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
    return path


@pytest.fixture(scope="session")
def trained_model(trained_checkpoint: Path) -> nn.Module:
    model = maskrcnn_mobilenet(2)
    model.load_state_dict(torch.load(trained_checkpoint, weights_only=True))
    return model.eval()


@pytest.fixture(scope="session")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("held_out")
    for seed in HELD_OUT:
        cv2.imwrite(str(folder / f"{seed:03d}.png"), sample(seed, (192, 256)).image)
    return folder


@pytest.fixture(scope="session")
def static_export(trained_checkpoint: Path, held_out: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("cars") / "cars.onnx"
    report = export(ExportConfig(
        model="maskrcnn_mobilenet_v3_cars", output=out, checkpoint=trained_checkpoint,
        verify=VerifyOptions(images=str(held_out), count=len(HELD_OUT)), quiet=True))
    return out, report


def test_trained_model_finds_the_cars(trained_model: nn.Module) -> None:
    """Meaningful output: most visible held-out cars found, few false alarms."""
    found = total = false = 0
    for seed in HELD_OUT:
        truth = sample(seed, (192, 256))
        det = reference(trained_model, truth.image)
        keep = det.above(0.5)
        iou = box_iou(truth.boxes, det.boxes[keep])
        big = truth.masks.reshape(len(truth.masks), -1).sum(1) >= 200
        hits = iou.max(1) >= 0.5 if iou.size else np.zeros(len(truth.boxes), bool)
        found += int(hits[big].sum())
        total += int(big.sum())
        false += int((iou.max(0) < 0.5).sum()) if iou.size else len(keep)
    assert total >= 8
    assert found / total >= 0.6, (found, total)
    assert false <= total


def test_static_export_parity_on_held_out_scenes(static_export: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    _, report = static_export
    par = report["parity"]
    assert report["status"] == "ok" and par["images"] == len(HELD_OUT)
    assert par["matched"] >= 8, par  # the gate saw real detections, not the empty path
    assert par["unmatched_reference"] == 0 and par["unmatched_onnx"] == 0
    assert par["mean_mask_iou"] >= 0.99 and par["mean_box_iou"] >= 0.99
    assert report["outputs"]["masks"] == [1, 100, 192, 256]
    assert report["tensorrt"]["unsupported"] == []


def test_dynamic_export_keeps_parity_at_another_size(trained_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    frames = tmp_path / "big"
    frames.mkdir()
    for seed in (50, 51, 52):
        cv2.imwrite(str(frames / f"{seed}.png"), sample(seed, (288, 384)).image)
    report = export(ExportConfig(
        model="maskrcnn_mobilenet_v3_cars", output=tmp_path / "dyn.onnx", dynamic=True,
        checkpoint=trained_checkpoint, verify=VerifyOptions(images=str(frames), count=3),
        quiet=True))
    assert report["inputs"]["input"] == [1, "height", "width", 3]
    assert report["outputs"]["masks"] == [1, 100, "height", "width"]
    par = report["parity"]
    assert par["matched"] >= 3 and par["mean_mask_iou"] >= 0.99, par


def _run(model: Path, source: str, tmp_path: Path, frames: int) -> tuple[dict, Path]:  # type: ignore[type-arg]
    from segedge.runtime.cli import main

    out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    try:  # run_cli returns normally on exit 0 and exits with the code otherwise
        main([str(model), source, "-o", str(out), "--stats", str(stats), "--save-masks",
              str(tmp_path / "masks"), "--max-frames", str(frames), "--no-display", "-q"])
    except SystemExit as code:
        pytest.fail(f"segrun exited with {code.code}, expected 0")
    return json.loads(stats.read_text()), out


def test_segrun_draws_instances_on_the_demo_clip(static_export: tuple[Path, dict],  # type: ignore[type-arg]
                                                 tmp_path: Path) -> None:
    from segedge.runtime.sources.demo import DEMO_CLIP

    path, _ = static_export
    stats, out = _run(path, str(DEMO_CLIP), tmp_path, 12)
    rec = stats["extra"]["instances"]
    assert stats["frames_processed"] == 12 and len(rec["frames"]) == 12
    assert rec["total"] >= 12  # the clip has cars in every frame
    cap = cv2.VideoCapture(str(out))
    ok, drawn = cap.read()
    cap.release()
    assert ok
    src = cv2.VideoCapture(str(DEMO_CLIP))
    _, raw = src.read()
    src.release()
    ids = cv2.imread(str(tmp_path / "masks" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert ids is not None
    inside = np.asarray(ids) > 0
    areas = [i["mask_area"] for i in rec["frames"][0]["instances"]]
    assert int(np.count_nonzero(inside)) == sum(areas)
    diff = np.abs(drawn.astype(int) - raw.astype(int)).sum(2)
    assert diff[inside].mean() > 3 * diff[~inside].mean()  # instances are what got painted


def test_segrun_on_the_dashcam_video(static_export: tuple[Path, dict], dashcam_video: Path,  # type: ignore[type-arg]
                                     tmp_path: Path) -> None:
    path, _ = static_export
    stats, out = _run(path, str(dashcam_video), tmp_path, 20)
    assert stats["frames_processed"] == 20
    rec = stats["extra"]["instances"]
    assert len(rec["frames"]) == 20 and all(f["count"] >= 0 for f in rec["frames"])
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) \
        == (960, 540)
    cap.release()
    assert len(list((tmp_path / "masks").glob("*.png"))) == 20
