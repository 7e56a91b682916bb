"""The export's parity gate against broken models (issue 10 item 2): none may publish.

NaN and Inf weights, a forward that returns NaN and a zero std all exported
with exit 0 and "argmax agreement 100 %" before (the argmax of an all-NaN map
is 0 on both sides).  Each must now fail with one line and its exit code, and
leave no artifact behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segedge.export.cli import main
from tests.export import eval_models
from tests.export.fixtures import tiny_model

TINY = f"{Path(tiny_model.__file__)}:TinySeg"
HINT = "check the checkpoint (NaN/Inf weights), the model's forward and --mean/--std"


def export(capsys: pytest.CaptureFixture[str], out: Path, *args: str, classes: int = 3
           ) -> tuple[int, str]:
    try:
        main([*args, "--num-classes", str(classes), "--imgsz", "64", "64", "-o", str(out),
              "-q"])
        code = 0
    except SystemExit as end:
        code = int(end.code or 0)
    return code, capsys.readouterr().err


def broken_checkpoint(path: Path, value: float, key: str) -> Path:
    torch.manual_seed(0)
    state = tiny_model.TinySeg(3).state_dict()
    state[key].view(-1)[0] = value
    if value != value:  # NaN: the whole tensor, as a diverged training run leaves it
        state[key].fill_(value)
    torch.save(state, path)
    return path


def nothing_published(folder: Path) -> bool:
    return sorted(p.name for p in folder.iterdir()) in ([], ["ckpt.pt"])


@pytest.mark.parametrize(("value", "key", "what"), [
    (float("nan"), "head.weight", "NaN in 100%"),
    (float("inf"), "body.0.weight", "NaN and Inf in "),
])
def test_non_finite_weights_fail_the_export(value: float, key: str, what: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = broken_checkpoint(tmp_path / "ckpt.pt", value, key)
    code, err = export(capsys, tmp_path / "m.onnx", TINY, "--checkpoint", str(ckpt))
    assert code == 3, err
    assert err.startswith(f"segexport: error: PyTorch produced {what}") and err.count("\n") == 1
    assert err.endswith(f" of logits on 4 of 4 frame(s): {HINT}\n")
    assert nothing_published(tmp_path)


def test_a_forward_returning_nan_fails_the_export(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, err = export(capsys, tmp_path / "m.onnx", f"{Path(eval_models.__file__)}:NanNet",
                       classes=2)
    assert code == 3
    assert err == f"segexport: error: PyTorch produced NaN in 100% of logits on 4 of 4 " \
                  f"frame(s): {HINT}\n"
    assert nothing_published(tmp_path)


def test_zero_std_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = export(capsys, tmp_path / "m.onnx", TINY, "--std", "0", "0", "0")
    assert code == 2
    assert err == "segexport: error: --std: expected positive per-channel values, got " \
                  "(0.0, 0.0, 0.0)\n"
    assert nothing_published(tmp_path)
