"""segexport from the outside: exit codes, one-line errors, no leftover files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "segedge.export.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_list_shows_every_required_family(tmp_path: Path) -> None:
    proc = run("--list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("fcn32s", "fcn16s", "fcn8s", "fcn_resnet18", "fcn_resnet50", "unet", "segnet",
                 "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large", "deeplabv3plus",
                 "lraspp_mobilenet_v3_large", "demo"):
        assert f"\n{name} " in proc.stdout, name
    assert "134.3M" in proc.stdout or "134.2M" in proc.stdout  # FCN-8s VGG16, as in the paper


def test_unknown_model_suggests_nearest(tmp_path: Path) -> None:
    proc = run("fcn8", cwd=tmp_path)
    assert_one_line_error(proc, "fcn8s")
    assert list(tmp_path.iterdir()) == []


def test_bad_stride_names_the_stride(tmp_path: Path) -> None:
    proc = run("segnet", "--imgsz", "100", "100", cwd=tmp_path)
    assert_one_line_error(proc, "32")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(tmp_path: Path) -> None:
    proc = run(f"{FIXTURE}:TinySeg", "--num-classes", "3", "-o", "/nonexistent/dir/x.onnx",
               cwd=tmp_path)
    assert_one_line_error(proc, "/nonexistent/dir")


def test_missing_class_in_user_file(tmp_path: Path) -> None:
    proc = run(f"{FIXTURE}:Nope", "--num-classes", "3", cwd=tmp_path)
    assert_one_line_error(proc, "TinySeg")  # lists what the file does define
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint(tmp_path: Path) -> None:
    proc = run(f"{FIXTURE}:TinySeg", "--num-classes", "3", "--checkpoint", "nope.pth",
               cwd=tmp_path)
    assert_one_line_error(proc, "nope.pth")


def test_wrong_architecture_checkpoint_prints_key_diff(tmp_path: Path) -> None:
    ckpt = tmp_path / "other.pth"
    torch.save({"state_dict": torch.nn.Conv2d(3, 5, 1).state_dict()}, ckpt)
    proc = run(f"{FIXTURE}:TinySeg", "--num-classes", "3", "--checkpoint", str(ckpt),
               cwd=tmp_path)
    assert_one_line_error(proc, "missing", "unexpected")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pth"]


def test_untrusted_pickle_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "evil.pth"
    torch.save({"state_dict": TinyObject()}, ckpt)
    proc = run(f"{FIXTURE}:TinySeg", "--num-classes", "3", "--checkpoint", str(ckpt),
               cwd=tmp_path)
    assert_one_line_error(proc, "weights_only")


def test_non_segmentation_model(tmp_path: Path) -> None:
    proc = run(f"{FIXTURE}:NotSeg", "--num-classes", "3", cwd=tmp_path)
    assert_one_line_error(proc, "segmentation")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--imgsz", "0", "64"], "--imgsz: expected two positive sizes (H W), got 0x64"),
    (["--batch", "0"], "--batch: expected a positive integer, got 0"),
])
def test_nonsense_sizes(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run(f"{FIXTURE}:TinySeg", "--num-classes", "3", *args, cwd=tmp_path)
    assert proc.returncode == 2  # bad input (runtime.cli_support.EXIT_INPUT)
    assert proc.stderr.strip() == f"segexport: error: {message}"
    assert list(tmp_path.iterdir()) == []  # refused by the config, before any work


class TinyObject:
    """Pickled as a custom class: weights_only=True must refuse to load it."""
