"""segexport and signals (issue 10 item 6): SIGTERM unwinds like Ctrl-C (143 / 130) and
removes its work folder, also when a finalizer or a library swallowed the exception the
handler raised; a folder left by a SIGKILLed export is removed by the next export into the
same folder, and only when its owner is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from segedge.export.workspace import host_tag, sweep_stale, work_prefix
from tests.reliability.export_cases import (
    REPO,
    TINY,
    segexport,
    segexport_cmd,
    work_folders,
)

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
# a model and size that keep the export busy for a few seconds after its work folder exists
SLOW = (f"{TINY}:WideSeg", "--num-classes", "3", "--imgsz", "256", "256")
SIGNALLED = REPO / "tests" / "reliability" / "signalled_model.py"


def start_export(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(segexport_cmd(*SLOW, "-o", folder / "wide.onnx"), cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_work_folder(folder: Path, proc: subprocess.Popen[str], seconds: float = 60
                         ) -> str:
    deadline = time.monotonic() + seconds
    while not work_folders(folder):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the export never made its work folder"
        time.sleep(0.02)
    (name,) = work_folders(folder)
    return name


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_export_removes_the_work_folder(tmp_path: Path,
                                                    sig: signal.Signals) -> None:
    proc = start_export(tmp_path)
    name = wait_for_work_folder(tmp_path, proc)
    assert name.startswith(work_prefix(proc.pid))  # owner recorded in the name
    time.sleep(0.3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT[sig], stderr
    assert stderr == f"segexport: {WORDS[sig]}\n" and stdout == ""
    assert list(tmp_path.iterdir()) == []  # no work folder, no artifact, no report


@pytest.mark.parametrize(("model", "sig"), [("InFinalizer", signal.SIGTERM),
                                            ("SwallowsIt", signal.SIGINT),
                                            ("InExec", signal.SIGINT)])
def test_a_swallowed_signal_still_stops_the_export(tmp_path: Path, model: str,
                                                   sig: signal.Signals) -> None:
    """The races a loaded machine hit (a SIGTERM landing in a finalizer: exit 0, artifact
    published; a Ctrl-C landing in a dataclass's exec: exit -2), made certain: the model's
    forward signals its own export once, there; one line, the signal's exit code, nothing
    left."""
    env = {**os.environ, "SEGEDGE_TEST_SIGNAL": sig.name}
    done = subprocess.run(segexport_cmd(f"{SIGNALLED}:{model}", "--num-classes", "3", "--imgsz",
                                        "32", "32", "-o", tmp_path / "s.onnx"),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT[sig], done.stderr
    assert done.stderr == f"segexport: {WORDS[sig]}\n" and done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_sigkill_leftovers_are_removed_by_the_next_export(tmp_path: Path) -> None:
    proc = start_export(tmp_path)
    name = wait_for_work_folder(tmp_path, proc)
    proc.kill()
    proc.communicate(timeout=60)  # reaped: the PID is gone, not a zombie
    assert work_folders(tmp_path) == [name]  # SIGKILL leaves it, as nothing can run
    alive = tmp_path / f"{work_prefix(os.getpid())}inuse"  # this process owns it: alive
    elsewhere = "0" * 8 if host_tag() != "0" * 8 else "1" * 8  # another machine's folder
    other_host = tmp_path / f".segedge-{proc.pid}@{elsewhere}-x"
    alive.mkdir()
    other_host.mkdir()
    done = segexport(f"{TINY}:TinySeg", "--num-classes", "3", "--imgsz", "32", "32", "-o",
                     "tiny.onnx", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert work_folders(tmp_path) == sorted([alive.name, other_host.name])
    report = json.loads((tmp_path / "tiny.report.json").read_text())
    assert f"removed 1 work folder(s) left by killed exports: {name}" in report["notes"]


def test_sweep_keeps_folders_of_running_exports(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        live = tmp_path / f"{work_prefix(sleeper.pid)}abc"
        live.mkdir()
        (live / "raw.onnx").write_bytes(b"x")
        assert sweep_stale(tmp_path) == []
        sleeper.kill()
        sleeper.wait()
        assert sweep_stale(tmp_path) == [live] and not live.exists()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


@pytest.mark.parametrize("failing", [False, True])
def test_a_signal_during_the_work_folder_removal_does_not_leave_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: bool) -> None:
    """A second Ctrl-C/SIGTERM that lands inside the removal (the full suite's case: a
    swallowed signal delivered again late) breaks it off no more: the folder goes, the
    error already unwinding goes on, and one arriving after a normal run is raised after."""
    import shutil

    from segedge.export import workspace

    real, calls = shutil.rmtree, []

    def interrupted_once(path: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the late delivery, mid removal
        real(path, *args, **kwargs)

    monkeypatch.setattr(workspace.shutil, "rmtree", interrupted_once)
    with pytest.raises(ValueError if failing else KeyboardInterrupt):
        with workspace.work_dir(tmp_path) as work:
            (work / "raw.onnx").write_bytes(b"x")
            if failing:
                raise ValueError("the export failed")
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_a_signal_right_after_the_work_folder_is_made_does_not_leave_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full suite's case, made certain: a swallowed signal's re-delivery waits for the GIL,
    and mkdir is the first call that releases it, so the handler ran just after the folder
    was made and before anything could remove it (mkdtemp: left behind every time)."""
    real, made = os.mkdir, []

    def then_interrupted(path: Any, *args: Any, **kwargs: Any) -> None:
        real(path, *args, **kwargs)
        made.append(Path(path))
        raise KeyboardInterrupt  # the handler, at the first bytecode after the syscall

    from segedge.export import workspace

    monkeypatch.setattr(os, "mkdir", then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        with workspace.work_dir(tmp_path):
            pytest.fail("the body never runs: the signal came first")
    assert len(made) == 1 and made[0].parent == tmp_path
    assert made[0].name.startswith(work_prefix())
    assert list(tmp_path.iterdir()) == []


def test_work_folders_are_private_and_never_reuse_a_taken_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name already taken (a leftover of an earlier process with this PID) is skipped and
    kept; the new folder is the owner's alone (0700, as mkdtemp made it)."""
    from segedge.export import workspace

    names = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(workspace.secrets, "token_hex", lambda n: next(names))
    taken = tmp_path / f"{work_prefix()}aaaaaaaa"
    taken.mkdir()
    (taken / "keep").write_bytes(b"x")
    with workspace.work_dir(tmp_path) as work:
        assert work == tmp_path / f"{work_prefix()}bbbbbbbb" and work.is_dir()
        assert work.stat().st_mode & 0o777 == 0o700
    assert list(tmp_path.iterdir()) == [taken] and (taken / "keep").exists()
