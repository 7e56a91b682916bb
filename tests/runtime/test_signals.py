"""SIGINT/SIGTERM become a stop request; a second SIGINT really interrupts."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from segedge.runtime.signals import StopRequest, stop_on_signals


def _wait_for(stop: StopRequest) -> None:
    deadline = time.monotonic() + 2
    while not stop.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_sigterm_and_sigint_set_the_stop_request() -> None:
    before = signal.getsignal(signal.SIGINT)
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
        stop = StopRequest()
        with stop_on_signals(stop):
            os.kill(os.getpid(), sig)
            _wait_for(stop)
        assert stop.is_set() and stop.reason == name and stop.signum == sig
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_second_sigint_raises_keyboard_interrupt() -> None:
    stop = StopRequest()
    with pytest.raises(KeyboardInterrupt), stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGINT)
        _wait_for(stop)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_off_the_main_thread_it_is_a_no_op() -> None:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with stop_on_signals(StopRequest()):
                pass
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert errors == []


def test_first_reason_wins() -> None:
    stop = StopRequest()
    stop.set("window closed")
    stop.set("SIGTERM", signal.SIGTERM)
    assert stop.reason == "window closed"
