"""segrun inputs: unreadable media, lying artifacts, bad option values.

Issue 10 items 4, 5 and 7: a source none of whose frames decode exits 4 with
one line (not a warning per file); an artifact whose metadata lies fails with
one line naming what it promised; every option is honoured or refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.reliability.runtime_media import (
    assert_fails,
    corrupt_images,
    hidden_leftovers,
    lying_model,
    segrun,
    truncated,
)
from tests.runtime.onnx_fixtures import scene


def test_folder_of_only_corrupt_images_exits_4_with_one_line(
        rt_models: dict[str, Path], tmp_path: Path) -> None:
    images = corrupt_images(tmp_path / "imgs", 31)
    out, stats_path = tmp_path / "o.mp4", tmp_path / "s.json"
    proc = segrun(rt_models["labels"], images, "-o", out, "--stats", stats_path, "--no-display",
                  "-q")
    assert_fails(proc, 4, f"run degraded: {images}: no frame could be processed (31 unreadable)")
    stats = json.loads(stats_path.read_text())
    assert stats["frames_processed"] == 0 and stats["frames_corrupt"] == 31
    assert stats["outputs"] == {str(out): "empty: no frames reached it; no file written"}
    assert not out.exists() and hidden_leftovers(tmp_path) == []


def test_some_corrupt_images_give_one_summary_warning(rt_models: dict[str, Path],
                                                      tmp_path: Path) -> None:
    images = corrupt_images(tmp_path / "imgs", 10)
    for i in range(3):
        cv2.imwrite(str(images / f"good{i}.png"), scene(i))
    proc = segrun(rt_models["labels"], images, "--no-display", "-q", "--stats", "-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"segrun: {images}: 10 of 13 image(s) could not be decoded and were skipped "
        f"(first: {images / 'img000.png'})"]
    stats = json.loads(proc.stdout)
    assert stats["frames_processed"] == 3 and stats["frames_corrupt"] == 10


@pytest.mark.parametrize("damage", ["empty", "noise", "head_of_mp4"])
def test_unreadable_video_is_one_line(rt_models: dict[str, Path], rt_clip: Path, tmp_path: Path,
                                      damage: str) -> None:
    bad = tmp_path / "bad.mp4"
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "noise":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    else:  # mp4 without its moov index: FFmpeg's own "moov atom not found" must not show
        truncated(rt_clip, bad, 0.5)
    stats_path = tmp_path / "s.json"
    proc = segrun(rt_models["labels"], bad, "--stats", stats_path, "--no-display", "-q")
    assert_fails(proc, 2, f"{bad}: expected a video OpenCV can decode, got one it cannot open")
    assert json.loads(stats_path.read_text())["stop_reason"].startswith(f"error: {bad}: ")


@pytest.mark.parametrize(("model", "lie", "fragment"), [
    ("logits", {"layout": "NHWC"},
     "expected a graph that takes its NHWC float input 'input' of size 32x48 (as its metadata "
     "says), got InvalidArgument: Got invalid dimensions for input"),
    ("logits", {"size": [64, 64]},
     "expected a graph that takes its NCHW float input 'input' of size 64x64 (as its metadata "
     "says), got InvalidArgument: Got invalid dimensions for input"),
    ("logits", {"std": [0.0, 0.0, 0.0]},
     "expected a non-zero metadata input.std (it divides every pixel), got (0.0, 0.0, 0.0)"),
    ("logits", {"size": [100000, 100000]},
     "expected metadata input.size [H, W] with sides in 1..16384 (or null for a dynamic graph), "
     "got (100000, 100000)"),
    ("logits", {"layout": "CHW"}, "expected metadata input.layout one of NCHW, NHWC, got 'CHW'"),
    ("labels", {"format": "float", "layout": "NCHW"},
     "expected a graph that takes its NCHW float input 'input' of size 32x48"),
])
def test_metadata_that_lies_about_the_input_is_one_line(
        rt_models: dict[str, Path], rt_clip: Path, tmp_path: Path, model: str,
        lie: dict[str, object], fragment: str) -> None:
    liar = lying_model(rt_models[model], tmp_path / "liar.onnx", input_changes=lie)
    proc = segrun(liar, rt_clip, "--no-display", "-q")
    assert_fails(proc, 2, f"{liar}: {fragment}")


def test_metadata_that_lies_about_the_output_is_one_line(
        rt_models: dict[str, Path], rt_clip: Path, tmp_path: Path) -> None:
    liar = lying_model(rt_models["logits"], tmp_path / "liar.onnx",
                       output={"kind": "labels", "logits": None, "labels": "logits"})
    proc = segrun(liar, rt_clip, "--no-display", "-q")
    assert_fails(proc, 2, f"{liar}: output 'logits': expected integer labels [N,H,W] (metadata "
                          "kind 'labels'), got float32 [1, 3, 32, 48]")


@pytest.mark.parametrize(("content", "fragment"), [
    (b"road\n\xff\xfecar\n", "which is not UTF-8 text (byte 0xff at offset 5)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "which is not UTF-8 text (byte 0x89 at offset 0)"),
    (b"road\x00car\x00\x00", "which is a binary file"),
])
def test_binary_classes_file_is_one_line(rt_models: dict[str, Path], rt_clip: Path,
                                         tmp_path: Path, content: bytes, fragment: str) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_bytes(content)
    proc = segrun(rt_models["labels"], rt_clip, "--classes", classes, "--no-display", "-q")
    assert_fails(proc, 2, f"--classes: expected a UTF-8 text file, one class name per line, "
                          f"got {classes}, {fragment}")


@pytest.mark.parametrize(("args", "message"), [
    (["--fps", "0"], "--fps: expected a frame rate in (0, 1000], got 0.0"),
    (["--fps", "-5"], "--fps: expected a frame rate in (0, 1000], got -5.0"),
    (["--fps", "nan"], "--fps: expected a frame rate in (0, 1000], got nan"),
    (["--reconnect", "sometimes"], "--reconnect: expected a count >= 0 or 'forever', got "
                                   "'sometimes'"),
    (["--reconnect", "-1"], "--reconnect: expected a count >= 0 or 'forever', got -1"),
    (["--reconnect-backoff", "0"], "--reconnect-backoff: expected seconds in (0, 8.0], got 0.0"),
    (["--reconnect-backoff", "inf"],
     "--reconnect-backoff: expected seconds in (0, 3600.0], got inf"),
    (["--stride", "0"], "--stride: expected a positive integer, got 0"),
    (["--max-frames", "0"], "--max-frames: expected a positive integer, got 0"),
])
def test_option_values_are_refused_not_replaced(rt_models: dict[str, Path], rt_clip: Path,
                                                args: list[str], message: str) -> None:
    proc = segrun(rt_models["labels"], rt_clip, *args, "--no-display", "-q")
    assert_fails(proc, 2, message)
    assert proc.stderr.strip() == f"segrun: error: {message}"


def test_fps_is_honoured(rt_models: dict[str, Path], rt_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.avi"
    proc = segrun(rt_models["labels"], rt_clip, "--fps", "10", "-o", out, "--no-display", "-q")
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    cap.release()
