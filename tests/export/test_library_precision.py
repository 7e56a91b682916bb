"""FP16 and INT8 of each library front-end: the default gates on ONNX Runtime and OpenVINO.

Tiny models at 64x64; INT8 calibrates on 8 generated frames.  smp, SegFormer and UperNet
are random (BatchNorm statistics from generated scenes, so their argmax decides something);
DPT, YOLO and torchvision's LR-ASPP are trained briefly on labelled generated scenes
(library_fixtures.train_briefly: random DPT logits spread ~1e-5 and random YOLO logits sit
so close that FP16/INT8 rounding flips the argmax of a network nobody would deploy).  The
trained fixtures are built once per session and kept in pytest's cache folder.  The gates
are the product defaults (FP16 >= 99.5 %, INT8 >= 99 % argmax agreement with FP32 on every
runtime checked); nothing is relaxed for these tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import pytest

from segedge.export.config import ExportConfig, PrecisionOptions, VerifyOptions
from tests.export import library_fixtures as fx
from tests.export.trained_cache import cache_folder

# kind -> (package, maker, file or folder name, training steps: 0 random, else the maker's
# `steps`); what the front-ends hand to the precision modes; the gate is theirs
# (export/precision).
_FIXTURES: dict[str, tuple[str, Callable[..., Path], str, int]] = {
    "smp": ("segmentation_models_pytorch", fx.smp_folder, "unet", 0),
    "segformer": ("transformers", fx.segformer_b0, "segformer-b0", 0),
    "upernet": ("transformers", fx.upernet, "upernet", 0),
    "dpt": ("transformers", fx.dpt, "dpt", 15),
    "yolo": ("ultralytics", fx.yolo_checkpoint, "best.pt", 20),
    "tv": ("torchvision", partial(fx.tv_checkpoint, classes=len(fx.NAMES)), "model_11.pth", 12),
}
_PREFIX = {"smp": "smp", "segformer": "hf", "upernet": "hf", "dpt": "hf", "yolo": "yolo"}
_TV = "lraspp_mobilenet_v3_large"  # what tv_checkpoint builds
_CACHE_VERSION = "v1"  # bump when a trained fixture changes


def _make(kind: str, folder: Path) -> Path:
    """Build `kind` under `folder` (a file, or a folder for the save_pretrained libraries)."""
    package, make, name, steps = _FIXTURES[kind]
    pytest.importorskip(package)
    path = folder / name
    if "." not in name:
        path.mkdir()
    return make(path, steps=steps) if steps else make(path)


@pytest.fixture(scope="session")
def trained_models(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Trained fixtures, built once and kept in pytest's cache folder (a fresh checkout, as
    in CI, trains each once per session: a few seconds each on 2 cores)."""
    root = cache_folder(request, tmp_path_factory, f"segedge-library-trained-{_CACHE_VERSION}")

    def get(kind: str) -> Path:
        steps = _FIXTURES[kind][3]
        final = root / f"{kind}-{steps}steps"
        if not final.is_dir():
            work = root / f".{kind}-{os.getpid()}.tmp"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            _make(kind, work)
            os.replace(work, final)  # whole or absent: never half a model under the final name
        return final / _FIXTURES[kind][2]

    return get


def _model(kind: str, tmp_path: Path, trained: Callable[[str], Path]) -> tuple[str, Path | None]:
    """(MODEL reference, --checkpoint) for `kind`."""
    path = trained(kind) if _FIXTURES[kind][3] else _make(kind, tmp_path)
    if kind == "tv":
        return f"tv:{_TV}", path
    return f"{_PREFIX[kind]}:{path}", None


@pytest.fixture(scope="module")
def calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segedge.export import scenes

    folder = tmp_path_factory.mktemp("calib")
    for i, frame in enumerate(scenes.frames(12, (fx.SIZE, fx.SIZE), seed=5)):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), frame)
    return folder


def _export(model: tuple[str, Path | None], out: Path, precision: PrecisionOptions
            ) -> dict[str, Any]:
    from segedge.export.pipeline import export

    return export(ExportConfig(model=model[0], checkpoint=model[1], output=out,
                               imgsz=(fx.SIZE, fx.SIZE), quiet=True,
                               verify=VerifyOptions(count=2), precision=precision))


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["smp", "segformer", "upernet", "dpt", "yolo", "tv"])
def test_fp16_gate_on_both_runtimes(kind: str, tmp_path: Path,
                                    trained_models: Callable[[str], Path]) -> None:
    model = _model(kind, tmp_path, trained_models)
    report = _export(model, tmp_path / "m_fp16.onnx", PrecisionOptions(mode="fp16"))
    section = report["precision_report"]
    assert report["precision"] == "fp16" and (tmp_path / "m_fp16.onnx").is_file()
    assert set(section["runtimes"]) == {"onnxruntime", "openvino"}, section["runtimes"]
    for runtime, measured in section["runtimes"].items():
        assert measured["argmax_agreement"] >= 99.5, (runtime, measured)


@pytest.mark.parametrize("kind", ["smp", "segformer", "upernet", "dpt", "yolo", "tv"])
def test_int8_gate_on_both_runtimes(kind: str, tmp_path: Path, calib: Path,
                                    trained_models: Callable[[str], Path]) -> None:
    model = _model(kind, tmp_path, trained_models)
    report = _export(model, tmp_path / "m_int8.onnx",
                     PrecisionOptions(mode="int8", calib=str(calib), calib_count=8))
    section = report["precision_report"]
    assert report["precision"] == "int8" and (tmp_path / "m_int8.onnx").is_file()
    assert set(section["runtimes"]) == {"onnxruntime", "openvino"}, section["runtimes"]
    assert section["layers"]["int8"] > 0, section["layers"]  # an INT8 model, not FP32 in disguise
    for runtime, measured in section["runtimes"].items():
        assert measured["argmax_agreement"] >= 99.0, (runtime, measured)
