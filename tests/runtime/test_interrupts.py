"""runtime.interrupts: a SIGINT/SIGTERM whose exception a finalizer or a library swallowed
still unwinds, exactly once, with nothing printed on the way."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segedge.runtime.cli_support import Terminated, sigterm_unwinds
from segedge.runtime.interrupts import KeptSignals

pytestmark = pytest.mark.skipif(not hasattr(signal, "raise_signal"), reason="no signals")


class SignalsWhenCollected:
    def __init__(self, sig: signal.Signals) -> None:
        self.sig = sig

    def __del__(self) -> None:
        signal.raise_signal(self.sig)  # the handler runs in here: Python would print and go on


def busy(seconds: float, done: list[float]) -> None:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        done.append(time.monotonic() - start)


def test_a_signal_swallowed_by_a_finalizer_is_delivered_again_at_once(
        capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[float] = []
    kept = KeptSignals()
    with sigterm_unwinds(), pytest.raises(Terminated):
        with kept.guard():
            SignalsWhenCollected(signal.SIGTERM)  # made and collected at once
            busy(5.0, ran)  # the signal lands in here, far before the end
    assert kept.pending == signal.SIGTERM
    assert ran and ran[-1] < 1.0, ran[-1:]  # delivered again within a second (1 ms asked)
    assert capsys.readouterr().err == ""  # no "Exception ignored" page


def test_a_second_delivery_still_on_its_way_when_the_guard_is_left_is_absorbed() -> None:
    after: list[float] = []
    with pytest.raises(KeyboardInterrupt):  # once: from the guard, or the delivery, not both
        with KeptSignals().guard():
            SignalsWhenCollected(signal.SIGINT)  # swallowed: delivered again 1 ms later
    try:
        busy(0.3, after)  # Python's own SIGINT handler is back: a late delivery raises here
    except KeyboardInterrupt:
        pytest.fail("a delivery scheduled inside the guard reached the handler beneath it")
    assert after[-1] > 0.25  # ran to its end, uninterrupted


def test_a_late_redelivery_does_not_break_off_the_clean_up_of_the_first() -> None:
    """On a loaded machine the re-delivery of a finalizer-swallowed signal (a thread, 1 ms
    later) can arrive after the checkpoint already raised it, while the export removes its
    work folder: the full suite left one behind.  Made certain here: the checkpoint raises,
    and the re-delivery lands in the clean-up."""
    kept = KeptSignals()
    cleaned: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with kept.guard():
            kept._handler(signal.SIGINT, None)  # delivered: unwinds from here
    kept = KeptSignals()
    with pytest.raises(KeyboardInterrupt):
        with kept.guard():
            try:
                try:
                    signal.raise_signal(signal.SIGINT)
                except KeyboardInterrupt:
                    pass  # a library swallowed it
                kept.raise_pending()  # the checkpoint raises it
            finally:
                kept._handler(signal.SIGINT, None)  # the late re-delivery, mid clean-up
                cleaned.append("work folder removed")
    assert cleaned == ["work folder removed"]


def test_a_signal_a_library_swallowed_raises_at_the_checkpoint() -> None:
    kept = KeptSignals()
    reached = []
    with pytest.raises(KeyboardInterrupt):  # SIGINT beneath: Python's default handler
        with kept.guard():
            try:
                signal.raise_signal(signal.SIGINT)
            except BaseException:  # noqa: BLE001 - what a careless library does
                reached.append("swallowed")
            kept.raise_pending()
            reached.append("after the checkpoint")
    assert reached == ["swallowed"]


def test_leaving_the_guard_raises_a_signal_still_pending_even_over_another_error() -> None:
    with sigterm_unwinds():
        with pytest.raises(Terminated):  # left normally, the signal never raised again
            with KeptSignals().guard():
                try:
                    signal.raise_signal(signal.SIGTERM)
                except BaseException:  # noqa: BLE001
                    pass
        with pytest.raises(Terminated) as info:  # a C++ layer turned it into another error
            with KeptSignals().guard():
                try:
                    signal.raise_signal(signal.SIGTERM)
                except BaseException as err:  # noqa: BLE001
                    raise RuntimeError("wrapped by a library") from err
        assert isinstance(info.value.__context__, RuntimeError)


def test_without_a_signal_it_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[BaseException] = []

    def hook(unraisable: object) -> None:
        seen.append(unraisable.exc_value)  # type: ignore[attr-defined]

    monkeypatch.setattr(sys, "unraisablehook", hook)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    kept = KeptSignals()
    with pytest.raises(ValueError, match="own error"), kept.guard():
        assert signal.getsignal(signal.SIGTERM) == kept._handler
        raise ValueError("own error")
    with kept.guard():  # a finalizer's own KeyboardInterrupt, no signal: reported as ever
        SelfInterrupting()
    assert kept.pending is None and [type(e) for e in seen] == [KeyboardInterrupt]
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert sys.unraisablehook is hook


class SelfInterrupting:
    def __del__(self) -> None:
        raise KeyboardInterrupt("raised by a finalizer itself")


def test_an_ignored_signal_stays_ignored_and_a_default_one_still_kills() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with KeptSignals().guard() as kept:
            signal.raise_signal(signal.SIGTERM)
        assert kept.pending is None
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = ("import signal; from segedge.runtime.interrupts import KeptSignals\n"
            "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
            "with KeptSignals().guard():\n    signal.raise_signal(signal.SIGTERM)\n"
            "print('survived')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -signal.SIGTERM and done.stdout == ""


@pytest.mark.parametrize(("guarded", "code"), [(True, 130), (False, -signal.SIGINT)])
def test_a_ctrl_c_raised_in_exec_ends_with_the_exit_code_the_program_chose(
        tmp_path: Path, guarded: bool, code: int) -> None:
    """Run as ``python -m`` (as segexport is), CPython ends with SIGINT once a KeyboardInterrupt
    left an exec(), however it was handled (the unguarded run shows it); through the guard the
    program's own 130 stands."""
    (tmp_path / "ctrl_c_in_exec.py").write_text(
        "import contextlib, signal, sys\nfrom segedge.runtime.interrupts import KeptSignals\n"
        "guard = KeptSignals().guard() if sys.argv[1] == '1' else contextlib.nullcontext()\n"
        "try:\n    with guard:\n"
        "        exec('import signal; signal.raise_signal(signal.SIGINT)')\n"
        "except KeyboardInterrupt:\n    sys.exit(130)\n")
    done = subprocess.run([sys.executable, "-m", "ctrl_c_in_exec", "1" if guarded else "0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == code and done.stderr == "", done.stderr
