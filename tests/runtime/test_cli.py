"""segrun command line: one-line errors, exit codes, outputs, signals, the real clip."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segedge.runtime.cli import RedactFilter, main
from segedge.runtime.cli_parse import (
    parse_classes,
    parse_palette,
    parse_reconnect,
    parse_size,
    source_options,
)
from segedge.runtime.errors import InputError
from segedge.runtime.sinks.video import partial_path
from tests.runtime.onnx_fixtures import count_frames, write_video

REPO = Path(__file__).resolve().parents[2]


def segrun(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "segedge.runtime.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def call(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = 0
    try:
        main([str(a) for a in args])  # returns on success, exits non-zero on failure
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("segrun: error:")]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err


def test_success_prints_stats_json(capsys: pytest.CaptureFixture[str], models: dict[str, Path],
                                   video: Path, tmp_path: Path) -> None:
    code, out, err = call(capsys, models["labels"], video, "--output", tmp_path / "o.mp4",
                          "--no-display", "--max-frames", "8", "--visualize", "contours",
                          "--ignore-class", "background", "--palette", "#000000,#00ff00",
                          "--stats", "-")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["frames_processed"] == 8 and stats["provider"] == "CPUExecutionProvider"
    assert count_frames(tmp_path / "o.mp4")[0] == 8


@pytest.mark.parametrize(("args", "fragment"), [
    (["MISSING.onnx", "VIDEO"], "expected a model file, got no such file"),
    (["CLASSIFIER", "VIDEO"], "expected a segmentation model"),
    (["LABELS", "ftp://host/x.mp4"], "unsupported scheme 'ftp'"),
    (["LABELS", "MISSING.mp4"], "expected an existing video file, got no such file"),
    (["LABELS", "VIDEO", "--alpha", "3"], "--alpha: expected a number between 0 and 1"),
    (["LABELS", "VIDEO", "--output", "x.gif"], "--output: expected a video path ending in"),
    (["LABELS", "VIDEO", "--provider", "cuda"], "expected CUDAExecutionProvider"),
    (["LABELS", "VIDEO", "--ignore-class", "bus"], "--ignore-class"),
    (["LABELS", "VIDEO", "--mean", "1,2"], "--mean: expected three comma-separated numbers"),
])
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], models: dict[str, Path],
                             video: Path, tmp_path: Path, args: list[str],
                             fragment: str) -> None:
    names = {"MISSING.onnx": str(tmp_path / "missing.onnx"), "VIDEO": str(video),
             "CLASSIFIER": str(models["classifier"]), "LABELS": str(models["labels"]),
             "MISSING.mp4": str(tmp_path / "missing.mp4")}
    code, _, err = call(capsys, *[names.get(a, a) for a in args], "--no-display")
    assert_one_line_error(code, err, fragment)


def test_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = call(capsys, "--visualize", "heatmap", "m.onnx", "0")
    assert code == 2 and "Invalid value for '--visualize'" in err
    code, out, _ = call(capsys, "--help")
    assert code == 0 and "--save-masks" in out and "--score-threshold" in out


def test_foreign_model_flags(capsys: pytest.CaptureFixture[str], models: dict[str, Path],
                             video: Path, tmp_path: Path) -> None:
    code, out, err = call(capsys, models["foreign"], video, "--no-display", "--max-frames", "2",
                          "--mean", "0,0,0", "--std", "1,1,1", "--classes", "b,r,g", "--bgr",
                          "--save-masks", tmp_path, "--stats", "-")
    assert code == 0, err
    assert json.loads(out)["frames_processed"] == 2
    code, _, err = call(capsys, models["foreign"], video, "--classes", "a,b", "--no-display")
    assert_one_line_error(code, err, "--classes: expected 3 names")


def test_flag_parsers(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("road\ncar\n\n")
    assert parse_classes(str(tmp_path / "c.txt")) == ("road", "car")
    assert parse_palette("#ff0000,#00FF00") == ((255, 0, 0), (0, 255, 0))
    assert parse_palette("1,2,3;4,5,6") == ((1, 2, 3), (4, 5, 6))
    (tmp_path / "p.json").write_text("[[9, 8, 7]]")
    assert parse_palette(str(tmp_path / "p.json")) == ((9, 8, 7),)
    assert parse_size("1280x720") == (1280, 720) and parse_size(None) is None
    with pytest.raises(InputError, match="--camera-size"):
        parse_size("big")
    for bad in ("#12", "1,2,300", "red"):
        with pytest.raises(InputError, match="--palette"):
            parse_palette(bad)


def test_missing_path_in_a_real_process(models: dict[str, Path], tmp_path: Path) -> None:
    proc = segrun(models["labels"], tmp_path / "nope.mp4", "--no-display")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("segrun: error: ")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_half_way_leaves_a_playable_file(models: dict[str, Path], tmp_path: Path,
                                                sig: signal.Signals) -> None:
    clip = write_video(tmp_path / "long.mp4", 150)  # 6 s at 25 fps with --realtime
    out, stats_path = tmp_path / "out.mp4", tmp_path / "s.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "segedge.runtime.cli", str(models["labels"]), str(clip),
         "--output", str(out), "--no-display", "--realtime", "--stats", str(stats_path),
         "--stats", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 60
    while not partial_path(out).with_name(partial_path(out).name.replace(
            f"-{os.getpid()}", f"-{proc.pid}")).exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    frames, size = count_frames(out)
    stats = json.loads(stats_path.read_text())
    assert stats["interrupted"] and stats["stop_reason"] == sig.name
    assert 0 < frames < 150 and frames == stats["frames_processed"] and size == (64, 48)
    assert json.loads(stdout)["frames_processed"] == frames
    assert not any(p.name.startswith(".out.partial") for p in tmp_path.iterdir())


def test_real_clip_outputs_masks_and_stats(models: dict[str, Path], tmp_path: Path,
                                           dashcam_video: Path) -> None:
    out, masks, stats_path = tmp_path / "out.mp4", tmp_path / "masks", tmp_path / "s.json"
    proc = segrun(models["labels_dynamic"], dashcam_video, "--output", out, "--no-display",
                  "--stats", stats_path, "--save-masks", masks, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert count_frames(out) == (221, (960, 540))
    assert len(list(masks.glob("*.png"))) == 221
    assert (masks / "000000.png").exists() and (masks / "000220.png").exists()
    stats = json.loads(stats_path.read_text())
    assert stats["frames_read"] == stats["frames_processed"] == 221
    assert stats["frames_dropped"] == 0 and stats["frames_corrupt"] == 0
    assert stats["fps"] > 0 and stats["stages"]["infer"]["p99_ms"] > 0


def test_real_clip_truncated(models: dict[str, Path], tmp_path: Path,
                             dashcam_video: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(dashcam_video.read_bytes()[: dashcam_video.stat().st_size // 3])
    out, stats_path = tmp_path / "o.mp4", tmp_path / "s.json"
    proc = segrun(models["labels"], cut, "--output", out, "--no-display", "--stats", stats_path)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(stats_path.read_text())
    assert 30 < stats["frames_processed"] < 221
    assert stats["frames_processed"] + stats["frames_corrupt"] == 221
    assert count_frames(out)[0] == stats["frames_processed"]
    assert "could not be decoded" in proc.stderr and "Traceback" not in proc.stderr


def test_reconnect_flags_feed_source_options() -> None:
    assert parse_reconnect("forever") is None and parse_reconnect("FOREVER") is None
    assert parse_reconnect("0") == 0 and parse_reconnect("12") == 12
    with pytest.raises(InputError, match="--reconnect: expected a count >= 0 or 'forever'"):
        parse_reconnect("often")
    options = source_options(None, None, "forever", 0.5)
    assert options.reconnect_attempts is None and options.reconnect_backoff_s == 0.5
    assert options.reconnect_max_s == 8.0
    slow = source_options(12.5, "640x480", "3", 30.0)  # a long first wait is allowed
    assert (slow.fps, slow.camera_size, slow.reconnect_attempts) == (12.5, (640, 480), 3)
    assert slow.reconnect_backoff_s == slow.reconnect_max_s == 30.0


def test_classes_and_palette_files_must_be_text(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"\x00\x01car")
    with pytest.raises(InputError) as info:
        parse_classes(str(tmp_path / "bin"))
    assert str(info.value) == (f"--classes: expected a UTF-8 text file, one class name per line, "
                               f"got {tmp_path / 'bin'}, which is a binary file")
    (tmp_path / "latin1.json").write_bytes(b"[[255, 0, 0]] \xe9")
    with pytest.raises(InputError, match="--palette: expected a JSON file of .r,g,b., got .*"
                                         "which is not UTF-8 text .byte 0xe9 at offset 14."):
        parse_palette(str(tmp_path / "latin1.json"))
    (tmp_path / "bom.txt").write_bytes("\ufeffroad\ncar\n".encode())
    assert parse_classes(str(tmp_path / "bom.txt")) == ("road", "car")


def test_log_filter_redacts_every_line() -> None:
    record = logging.LogRecord("segedge.runtime", logging.WARNING, __file__, 1,
                               "%s: reopening", ("rtsp://u:pw1234@cam/x",), None)
    assert RedactFilter().filter(record) is True
    assert record.getMessage() == "rtsp://u:***@cam/x: reopening"
    plain = logging.LogRecord("segedge", logging.INFO, __file__, 1, "model %s", ("m",), None)
    RedactFilter().filter(plain)
    assert plain.getMessage() == "model m" and plain.args == ("m",)


def test_degraded_run_prints_stats_then_one_line_and_exits_4(
        capsys: pytest.CaptureFixture[str], models: dict[str, Path], tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes(b"not a png")
    code, out, err = call(capsys, models["labels"], images, "--no-display", "-q", "--stats", "-")
    assert code == 4
    assert json.loads(out)["frames_corrupt"] == 3
    assert err.strip() == (f"segrun: error: run degraded: {images}: no frame could be processed "
                           "(3 unreadable)")


def test_backend_openvino_and_precision_hint_reach_the_backend(
        capsys: pytest.CaptureFixture[str], models: dict[str, Path], video: Path) -> None:
    pytest.importorskip("openvino")
    code, out, err = call(capsys, models["labels"], video, "--backend", "openvino",
                          "--precision-hint", "f32", "--threads", "1", "--no-display",
                          "--max-frames", "4", "--stats", "-")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["backend"] == "openvino" and stats["provider"] == "CPU (f32)"
    assert stats["backend_reason"] == "openvino CPU (f32): --backend openvino"
    assert stats["frames_processed"] == 4
    code, _, err = call(capsys, models["labels"], video, "--precision-hint", "int4")
    assert code == 2 and "'int4' is not one of 'f32', 'bf16', 'f16'" in err


AUTO_LINE = re.compile(
    r"^segrun: model \S+labels\.onnx on (?P<winner>openvino CPU \(f32\)|onnxruntime CPU): "
    r"[0-9.]+ ms vs (openvino CPU \(f32\)|onnxruntime CPU) [0-9.]+ ms at 32x48, 1 thread, "
    r"(?P<how>measured|measured earlier \(cached\)); bf16 not verified by the export report, "
    r"so f32; mode (?P<mode>throughput) \(auto: not a live source\): up to 3 frame\(s\) per "
    r"stream and (?P<calls>\d+) inference call\(s\) in flight$")


def test_auto_says_in_its_first_line_what_it_measured_and_then_reads_the_cache(
        models: dict[str, Path], video: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    env = {k: v for k, v in os.environ.items() if k != "SEGEDGE_AUTO_BACKEND"}
    env["SEGEDGE_AUTO_BACKEND_CACHE"] = str(tmp_path / "auto.json")
    seen = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "segedge.runtime.cli", str(models["labels"]), str(video),
             "--no-display", "--max-frames", "3", "--threads", "1", "--stats", "-"],
            capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
        assert proc.returncode == 0, proc.stderr
        first = proc.stderr.splitlines()[0]
        match = AUTO_LINE.match(first)
        assert match is not None, first
        stats = json.loads(proc.stdout)
        assert stats["backend_reason"] == first.split(" on ", 1)[1].rsplit("; mode ", 1)[0]
        assert stats["backend"] == match["winner"].split()[0]
        assert stats["mode"] == "throughput" and int(match["calls"]) >= 1
        seen.append((match["winner"], match["how"]))
    assert seen[0][1] == "measured" and seen[1] == (seen[0][0], "measured earlier (cached)")
    assert len(json.loads((tmp_path / "auto.json").read_text())["entries"]) == 1
