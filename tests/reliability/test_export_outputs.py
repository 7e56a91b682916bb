"""segexport outputs: checked writable before work; a full disk is one line, exit 4, and
nothing is left under a final name or as a hidden temporary (issue 10 items 4 and 6).

The full-disk cases use a small tmpfs (root only, skipped with the reason otherwise);
the report case fails the report write itself, in process.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

import pytest

from segedge.export import cli, report
from tests.reliability.export_cases import TINY, error_line, segexport, work_folders
from tests.reliability.runtime_media import fill, hidden_leftovers, tmpfs

NOSPC = "No space left on device (ENOSPC)"


@pytest.mark.parametrize(("args", "message"), [
    (["-o", "DIR.onnx"], "--output: expected a file path, got the folder DIR.onnx"),
    (["-o", "FILE/x.onnx"], "--output: expected a path in an existing folder, got no folder "
                            "TMP/FILE"),
    (["-o", "x.onnx", "--timing-cache", "DIR.onnx"],
     "--timing-cache: expected a file path, got the folder DIR.onnx"),
    (["--int8", "--calib", "frames/", "--calib-cache", "DIR.onnx"],
     "--calib-cache: expected a file path, got the folder DIR.onnx"),
    (["-o", "x.onnx", "--calib-cache", "FILE/c.json", "--int8", "--calib", "frames/"],
     "--calib-cache: expected a path under a folder, got FILE is a file"),
])
def test_unwritable_outputs_are_refused_before_work(tmp_path: Path, args: list[str],
                                                    message: str) -> None:
    (tmp_path / "DIR.onnx").mkdir()
    (tmp_path / "FILE").write_text("x")
    proc = segexport(f"{TINY}:TinySeg", "--num-classes", "3", *args, cwd=tmp_path)
    assert error_line(proc, 2) == message.replace("TMP", str(tmp_path.resolve()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIR.onnx", "FILE"]
    assert list((tmp_path / "DIR.onnx").iterdir()) == []  # no hidden temp file either


def test_read_only_destination_is_refused_before_work(tmp_path: Path) -> None:
    with tmpfs("64k", read_only=True) as disk:
        proc = segexport(f"{TINY}:TinySeg", "--num-classes", "3", "-o", disk / "x.onnx",
                         cwd=tmp_path)
        assert error_line(proc, 2) == f"--output: expected a writable folder, got no write " \
                                      f"permission in {disk}"
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_saving_the_onnx(tmp_path: Path) -> None:
    """A 200 kB disk and a ~340 kB model: one line naming the file and the cause, exit 4."""
    with tmpfs("200k") as disk:
        out = disk / "wide.onnx"
        proc = segexport(f"{TINY}:WideSeg", "--num-classes", "3", "--imgsz", "32", "32",
                         "-o", out, cwd=tmp_path)
        line = error_line(proc, 4)
        work = rf"{re.escape(str(disk))}/\.segedge-\d+@[0-9a-f]{{8}}-[\w]+"
        assert re.fullmatch(rf"cannot write {work}/raw\.onnx: {re.escape(NOSPC)}; no artifact "
                            rf"written at {re.escape(str(out))}", line), line
        assert list(disk.iterdir()) == []  # no artifact, no report, no work folder
    assert list(tmp_path.iterdir()) == []


def test_nearly_full_disk_fails_late_and_still_leaves_nothing(tmp_path: Path) -> None:
    """Room for the first work file but not the verified copies: the same clean failure."""
    with tmpfs("1m") as disk:
        fill(disk, leave_bytes=450_000)
        out = disk / "wide.onnx"
        proc = segexport(f"{TINY}:WideSeg", "--num-classes", "3", "--imgsz", "32", "32",
                         "-o", out, cwd=tmp_path)
        line = error_line(proc, 4)
        assert line.startswith(f"cannot write {disk}/.segedge-") and NOSPC in line
        assert line.endswith(f"; no artifact written at {out}")
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin"]
        assert hidden_leftovers(disk) == []


def test_full_disk_while_saving_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The report is written before the artifact is renamed: no ONNX without its report."""
    def no_space(path: Path, data: Any) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_json_atomic", no_space)
    out = tmp_path / "tiny.onnx"
    with pytest.raises(SystemExit) as code:
        cli.main([f"{TINY}:TinySeg", "--num-classes", "3", "--imgsz", "32", "32", "-o",
                  str(out), "-q"])
    assert code.value.code == 4
    err = capsys.readouterr().err
    assert err == (f"segexport: error: cannot write {tmp_path / 'tiny.report.json'}: "
                   f"{NOSPC}; no artifact written\n")
    assert list(tmp_path.iterdir()) == []
    assert work_folders(tmp_path) == []


def test_unwritable_segbench_json_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "DIR").mkdir()
    proc = subprocess.run([sys.executable, "-m", "segedge.benchmarks.cli", "demo", "--json",
                           "DIR"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == "segbench: error: --json: expected a file path, got the folder DIR\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIR"]
