"""Shared by the precision and segeval tests: the CamVid-trained model, trained once.

Fidelity is only meaningful on a trained network, so these tests use the zoo's
DemoNet trained on CamVid train (tools.camvid_model) and evaluate on
CamVid val.  The checkpoint is cached in pytest's cache folder, so only the
first session on a machine pays the few minutes of training.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from segedge.export.models.registry import CAMVID_CLASSES
from tests.export.trained_cache import cache_folder
from tests.shared_data import shared_data_root
from tools.camvid_model import CAMVID_SIZE, cached_checkpoint, camvid_root

TRAIN_STEPS = 300
ESPNET_STEPS = 400
ESPNET_FILE = Path(__file__).parents[2] / "tools" / "espnet_lite.py"


def trained_checkpoint(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory, espnet: bool = False) -> Path:
    """DemoNet (or, `espnet`, ESPNetLite: PReLU, Concat, BN, dilated) trained on CamVid."""
    root = camvid_root(shared_data_root())
    if root is None or not (root / "val").is_dir():
        pytest.skip("../shared/data/camvid is absent (the precision tests train on CamVid)")
    folder = cache_folder(request, tmp_path_factory, "segedge-camvid")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    try:
        if espnet:
            from tools.camvid_espnet import cached_checkpoint as espnet_checkpoint

            return espnet_checkpoint(Path(folder), root.parent, ESPNET_STEPS,
                                     log=lambda _m: None)
        return cached_checkpoint(Path(folder), root.parent, TRAIN_STEPS, log=lambda _m: None)
    finally:
        torch.set_num_threads(threads)


def camvid() -> Path:
    root = camvid_root(shared_data_root())
    assert root is not None
    return root


def model_args(ckpt: Path, classes_file: Path) -> list[str]:
    """segexport/segeval arguments naming the trained model."""
    classes_file.write_text("\n".join(CAMVID_CLASSES) + "\n")
    return ["demo", "--checkpoint", str(ckpt), "--classes", str(classes_file),
            "--imgsz", str(CAMVID_SIZE[0]), str(CAMVID_SIZE[1])]


def run_module(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def noise_ranges(fp32: Path, work: Path, size: tuple[int, int] = (64, 96)) -> tuple[Path, Path]:
    """Structure-only INT8 inputs: ``fp32`` pre-processed and calibrated (minmax) on four noise
    frames through the runtime's own preprocessing -> (pre-processed ONNX, ranges JSON)."""
    import numpy as np
    import onnx

    from segedge.export.onnx.tools import read_metadata
    from segedge.export.precision import int8 as q8
    from segedge.runtime.preprocess import prepare

    meta = read_metadata(onnx.load(str(fp32)))
    assert meta is not None
    rng = np.random.default_rng(0)
    tensors = [prepare([rng.integers(0, 256, (*size, 3), dtype=np.uint8)], meta.input)[0]
               for _ in range(4)]
    pre = q8.preprocess(fp32, work)
    ranges = q8.write_ranges(q8.calibrate(pre, tensors, "input", "minmax", work),
                             work / "ranges.json")
    return pre, ranges


TINY_MODEL = Path(__file__).parent / "fixtures" / "tiny_model.py"


def missed_int8_exports(tmp_path: Path, min_agreement: float
                        ) -> Iterator[tuple[bool, Path, Exception]]:
    """The tiny model exported at --int8 twice (without and with --int8-keep-closest) under a
    search the caller made miss: yields (keep, the final path, the error raised) per run,
    after checking the error is a VerificationError and nothing has the final name."""
    import cv2
    import numpy as np

    from segedge.export.config import ExportConfig, PrecisionOptions
    from segedge.export.pipeline import export
    from segedge.runtime.errors import VerificationError

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        cv2.imwrite(str(calib / f"f{i}.png"), rng.integers(0, 256, (64, 96, 3), np.uint8))
    for keep in (False, True):
        out = tmp_path / f"m{int(keep)}_int8.onnx"
        cfg = ExportConfig(model=f"{TINY_MODEL}:TinySeg", num_classes=3, imgsz=(64, 96),
                           output=out, quiet=True, precision=PrecisionOptions(
                               mode="int8", calib=str(calib), calib_count=8,
                               calib_method="minmax", int8_min_agreement=min_agreement,
                               int8_keep_closest=keep))
        with pytest.raises(VerificationError) as err:
            export(cfg)
        assert not out.exists()
        yield keep, out, err.value
