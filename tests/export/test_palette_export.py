"""The palette an export writes: a user's CamVid model gets CamVid's colours, void black."""

from __future__ import annotations

from pathlib import Path

from segedge.export.config import ExportConfig
from segedge.export.models.registry import CAMVID_CLASSES, CAMVID_PALETTE, get
from segedge.export.models.resolve import resolve
from tests.export.fixtures import tiny_model

TINY = f"{Path(tiny_model.__file__)}:TinySeg"


def test_user_model_with_camvid_names_and_void() -> None:
    names = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
             "Car", "Pedestrian", "Bicyclist", "Void")
    res = resolve(ExportConfig(model=TINY, classes=names, imgsz=(32, 32)))
    assert res.palette == (*CAMVID_PALETTE, (0, 0, 0))
    assert res.palette[0] == (128, 128, 128)  # Sky is grey, never black
    numbered = resolve(ExportConfig(model=TINY, num_classes=3, imgsz=(32, 32))).palette
    assert len(set(numbered)) == 3 and (0, 0, 0) not in numbered


def test_zoo_palettes() -> None:
    assert CAMVID_PALETTE[:2] == ((128, 128, 128), (128, 0, 0)) and len(CAMVID_CLASSES) == 11
    voc = get("deeplabv3_resnet50")
    assert voc.resolved_palette()[:2] == ((0, 0, 0), (128, 0, 0))  # background black
