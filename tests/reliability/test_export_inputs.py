"""segexport: every option honoured or refused, in one line with exit 2, before any work.

Issue 10 items 4, 5, 7 and issue 11 items 3-6 on the export side, in real processes:
absurd sizes and opsets, --verify-count 0, a binary --classes file, impossible
normalisation values, constructor arguments that do not fit, and model code that
calls sys.exit(0) or raises KeyboardInterrupt (never exit 0, never 130).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.export_cases import TINY, error_line, segexport

TINY_SEG = f"{TINY}:TinySeg"
OPSETS = "expected 11..23 (what the ONNX exporters here write as asked)"


@pytest.mark.parametrize(("args", "message"), [
    (["--opset", "5"], f"--opset: {OPSETS}, got 5"),
    (["--opset", "99"], f"--opset: {OPSETS}, got 99"),
    (["--imgsz", "100000", "100000"],
     "--imgsz: expected sides of at most 16384 pixels (H W), got 100000x100000"),
    (["--imgsz", "-5", "64"], "--imgsz: expected two positive sizes (H W), got -5x64"),
    (["--verify-count", "0"], "--verify-count: expected a positive integer, got 0"),
    (["--std", "0", "0", "0"], "--std: expected positive per-channel values, got (0.0, 0.0, "
                               "0.0)"),
    (["--mean", "nan", "0.4", "0.4"],
     "--mean: expected finite per-channel values, got (nan, 0.4, 0.4)"),
    (["--mean", "123.7", "116.3", "103.5", "--norm-units", "unit"],
     "--mean: expected 0..1 values in 0..1 units (pixel values need --norm-units pixel), got "
     "123.7,116.3,103.5"),
    (["--mean", "123.7", "116.3", "103.5", "--std", "0.23", "0.22", "0.23"],
     "--std: expected pixel units like --mean (a mean value above 1 means pixel units; give "
     "--norm-units to say which), got 0.23,0.22,0.23"),
    (["--scale", "1/0"], "--scale: expected a positive number or fraction (e.g. 1/255), got "
                         "'1/0'"),
    (["--verify-labels", "labels/"],
     "--verify-labels: expected --verify-images DIR as well, got labels only"),
    (["--model-args", "classes"],
     "--model-args: expected name=value pairs (e.g. classes=12 p=2), got 'classes'"),
])
def test_refused_before_any_work(tmp_path: Path, args: list[str], message: str) -> None:
    proc = segexport(TINY_SEG, "--num-classes", "3", *args, cwd=tmp_path)
    assert error_line(proc, 2) == message
    assert list(tmp_path.iterdir()) == []


def test_binary_classes_file(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_bytes(b"road\n\x89PNG\r\n\x1a\n\xff\xfe")
    proc = segexport(TINY_SEG, "--classes", "classes.txt", cwd=tmp_path)
    assert error_line(proc, 2) == (
        "--classes: expected a UTF-8 text file with one class name per line, got classes.txt, "
        "which is not UTF-8 text (byte 0x89 at offset 5)")
    (tmp_path / "classes.txt").write_bytes(b"road\x00car\n")
    proc = segexport(TINY_SEG, "--classes", "classes.txt", cwd=tmp_path)
    assert error_line(proc, 2) == (
        "--classes: expected a UTF-8 text file with one class name per line, got classes.txt, "
        "which is a binary file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.txt"]


def test_constructor_arguments_that_do_not_fit(tmp_path: Path) -> None:
    proc = segexport(f"{TINY}:ShadowsModules", "--num-classes", "3", "--model-args",
                     "classes=3", "p=2", "q=8", "r=1", cwd=tmp_path)
    assert error_line(proc, 2) == (
        f"--model-args: expected arguments {TINY}:ShadowsModules takes (classes, p, q), got "
        "classes=3, p=2, q=8, r=1: got an unexpected keyword argument 'r'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("code", "where", "got"), [
    ("import sys\nsys.exit(0)\n", "importing it", "sys.exit(0) (SystemExit)"),
    ("raise SystemExit\n", "importing it", "sys.exit(None) (SystemExit)"),
    ("raise KeyboardInterrupt\n", "importing it",
     "a KeyboardInterrupt it raised itself (no Ctrl-C was pressed)"),
])
def test_model_file_that_exits_at_import(tmp_path: Path, code: str, where: str,
                                         got: str) -> None:
    (tmp_path / "net.py").write_text(code)
    proc = segexport("net.py:Net", "--num-classes", "3", cwd=tmp_path)
    assert error_line(proc, 2) == (f"net.py: {where}: expected the model code to return, "
                                   f"got {got}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.py"]


def test_model_that_exits_in_forward(tmp_path: Path) -> None:
    proc = segexport(f"{TINY}:ExitsInForward", "--num-classes", "3", "--imgsz", "32", "32",
                     cwd=tmp_path)
    assert error_line(proc, 2) == (f"{TINY}:ExitsInForward: expected the model code to "
                                   "return, got sys.exit(0) (SystemExit)")
    assert list(tmp_path.iterdir()) == []


def test_non_finite_checkpoint_fails_verification(tmp_path: Path) -> None:
    """argmax of all-NaN logits is 0 on both sides: parity must not call that agreement."""
    import torch

    from tests.export.fixtures.tiny_model import TinySeg

    state = TinySeg(3).state_dict()
    state["head.bias"][1] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    proc = segexport(TINY_SEG, "--num-classes", "3", "--imgsz", "32", "32", "--checkpoint",
                     "nan.pth", cwd=tmp_path)
    assert error_line(proc, 3) == (
        "PyTorch produced NaN in 33.33% of logits on 4 of 4 frame(s): check the checkpoint "
        "(NaN/Inf weights), the model's forward and --mean/--std")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pth"]
