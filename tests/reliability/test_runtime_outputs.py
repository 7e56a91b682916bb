"""segrun outputs: verified before they get their name; unwritable ones refused up front.

Issue 10 items 1 and 4: a full disk must not yield exit 0 and an unplayable
file; --output / --stats / --save-masks that cannot be written fail before
the model loads; the stats say what was and was not written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from segedge.runtime.sinks.video import partial_path
from tests.reliability.runtime_media import (
    assert_fails,
    fill,
    hidden_leftovers,
    segrun,
    tmpfs,
)
from tests.runtime.onnx_fixtures import count_frames

NOSPC = "No space left on device"


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_full_disk_video_is_removed_and_reported(rt_models: dict[str, Path], rt_noise_clip: Path,
                                                 tmp_path: Path, suffix: str) -> None:
    stats_path = tmp_path / "s.json"
    with tmpfs("300k") as disk:
        out = disk / f"o{suffix}"
        proc = segrun(rt_models["labels"], rt_noise_clip, "-o", out, "--stats", stats_path,
                      "--stats", "-", "--no-display", "-q")
        line = assert_fails(proc, 4, f"run degraded: {out}: video not written ({NOSPC}): ")
        assert "30 frame(s) were sent, the incomplete file was removed" in line
        assert list(disk.iterdir()) == []  # neither a final file nor a temp file
    stats = json.loads(stats_path.read_text())
    assert stats["frames_processed"] == 30
    assert stats["frames_written"] == {str(out): 0}
    assert stats["outputs"][str(out)].startswith(f"failed: video not written ({NOSPC})")
    assert len(stats["degraded"]) == 1 and stats["degraded"][0] in line
    assert json.loads(proc.stdout)["outputs"] == stats["outputs"]  # stdout says the same


def test_full_disk_masks_are_counted_and_never_half_written(
        rt_models: dict[str, Path], rt_noise_clip: Path, tmp_path: Path) -> None:
    stats_path = tmp_path / "s.json"
    with tmpfs("300k") as disk:
        fill(disk, leave_bytes=40_000)
        masks = disk / "masks"
        proc = segrun(rt_models["labels"], rt_noise_clip, "--save-masks", masks,
                      "--stats", stats_path, "--no-display", "-q")
        line = assert_fails(proc, 4, f"run degraded: {masks}: ")
        written = sorted(masks.glob("*.png"))
        for png in written:  # what is there is complete
            assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED) is not None, png
        assert hidden_leftovers(disk) == []
    stats = json.loads(stats_path.read_text())
    failed = 30 - len(written)
    assert 0 < failed <= 30
    assert stats["frames_written"] == {str(masks): len(written)}
    assert f"{failed} of 30 mask(s) not written (first: " in line and NOSPC in line
    assert stats["outputs"][str(masks)].startswith(f"failed: {failed} of 30 mask(s)")


def test_stats_file_on_a_full_disk_still_reaches_stdout(rt_models: dict[str, Path],
                                                        rt_clip: Path) -> None:
    with tmpfs("64k") as disk:
        fill(disk, leave_bytes=0)
        proc = segrun(rt_models["labels"], rt_clip, "--stats", disk / "s.json", "--stats", "-",
                      "--no-display", "-q")
        assert_fails(proc, 4, f"run degraded: {disk / 's.json'}: stats file not written ({NOSPC})")
        assert not (disk / "s.json").exists() and hidden_leftovers(disk) == []
    stats = json.loads(proc.stdout)
    assert stats["frames_processed"] == 40 and len(stats["degraded"]) == 1


@pytest.mark.parametrize(("flag", "where", "fragment"), [
    ("-o", "FILE/o.mp4", "--output: expected a path under a folder, got FILE is a file"),
    ("-o", "FILE/deeper/o.mp4", "--output: expected a path under a folder, got FILE is a file"),
    ("--stats", "DIR", "--stats: expected a file path, got the folder DIR"),
    ("--stats", "FILE/s.json", "--stats: expected a path under a folder, got FILE is a file"),
    ("--save-masks", "FILE", "--save-masks: expected a directory, got existing file FILE"),
    ("--save-masks", "FILE/m", "--save-masks: expected a path under a folder, got FILE is a file"),
])
def test_unwritable_destinations_fail_before_the_model_loads(
        rt_clip: Path, tmp_path: Path, flag: str, where: str, fragment: str) -> None:
    names = {"FILE": str(tmp_path / "a_file"), "DIR": str(tmp_path)}
    (tmp_path / "a_file").write_text("x")
    before = sorted(tmp_path.iterdir())
    # The model does not exist: an error about the output proves it was checked first.
    proc = segrun(tmp_path / "missing.onnx", rt_clip, flag,
                  where.replace("FILE", names["FILE"]).replace("DIR", names["DIR"]),
                  "--no-display", "-q")
    assert_fails(proc, 2, fragment.replace("FILE", names["FILE"]).replace("DIR", names["DIR"]))
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("flag", ["-o", "--stats", "--save-masks"])
def test_read_only_destination_is_refused_up_front(rt_models: dict[str, Path], rt_clip: Path,
                                                   flag: str) -> None:
    with tmpfs("64k", read_only=True) as ro:
        target = ro / {"-o": "o.mp4", "--stats": "s.json", "--save-masks": "masks"}[flag]
        proc = segrun(rt_models["labels"], rt_clip, flag, target, "--no-display", "-q")
        name = {"-o": "--output"}.get(flag, flag)
        assert_fails(proc, 2, f"{name}: expected a writable folder, got no write permission "
                              f"in {ro}")


def test_verified_video_and_stats_say_what_was_written(rt_models: dict[str, Path], rt_clip: Path,
                                                       tmp_path: Path) -> None:
    out, masks = tmp_path / "o.mp4", tmp_path / "masks"
    proc = segrun(rt_models["labels"], rt_clip, "-o", out, "--save-masks", masks, "--no-display",
                  "-q", "--stats", "-")
    assert proc.returncode == 0 and proc.stderr == ""
    stats = json.loads(proc.stdout)
    assert stats["outputs"] == {str(out): "ok", str(masks): "ok"}
    assert stats["frames_written"] == {str(out): 40, str(masks): 40}
    assert stats["degraded"] == []
    assert count_frames(out) == (40, (64, 48)) and len(list(masks.iterdir())) == 40
    assert hidden_leftovers(tmp_path) == []


def test_partial_of_a_killed_run_is_removed_by_the_next(rt_models: dict[str, Path], rt_clip: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = partial_path(out, int(gone.stdout))  # as a SIGKILLed segrun leaves it
    stale.write_bytes(b"half a video")
    alive = partial_path(out, os.getpid())  # another run still writing: kept
    alive.write_bytes(b"in progress")
    proc = segrun(rt_models["labels"], rt_clip, "-o", out, "--no-display")
    assert proc.returncode == 0, proc.stderr
    assert f"removed {stale}, left by an earlier run that did not finish" in proc.stderr
    assert not stale.exists() and alive.exists()
    assert count_frames(out)[0] == 40
