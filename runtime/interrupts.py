"""Ctrl-C and SIGTERM that unwind, and are never lost on the way.

Python runs a signal handler at whatever bytecode the main thread has reached, and the
exception the handler raises (KeyboardInterrupt, cli_support.Terminated) starts there.
Where that is a finalizer (``__del__``, a weakref callback: the garbage collector runs them
at any allocation) Python prints "Exception ignored" and carries on; where it is a library's
``except BaseException`` (or an ``except Exception`` around a C++ layer that turned it into
a RuntimeError) the library swallows it.  Measured: segexport, SIGTERM 0.3 s into its work
folder on a loaded 2-core machine (two CPU hogs, load about 9), went on to publish its
artifact and exit 0 in one run of about twenty.

``KeptSignals.guard()`` records every SIGINT/SIGTERM that arrives while inside, then hands it
to the handler that was there before (which raises), so a signal that unwinds as it should is
unchanged.  One that a finalizer swallowed is delivered again (``sys.unraisablehook``: the
handler runs once more at the main thread's next bytecode, as if the signal came again, and
no "Exception ignored" text reaches stderr); ``raise_pending()`` raises one a library
swallowed outright, at the points where the caller is about to do what a signal must prevent
(publish an artifact); leaving the guard normally, or with another exception, raises it too.
A KeyboardInterrupt leaving the guard is marked handled (``forget_unhandled_interrupt``), so
the caller's exit code is the one the process ends with.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class KeptSignals:
    """The first SIGINT/SIGTERM received inside ``guard()`` (``pending``) and what raises it."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._below: dict[int, Any] = {}
        self._hook_below: Callable[[Any], Any] = sys.unraisablehook
        self._again: list[threading.Thread] = []  # deliveries scheduled by _again_soon
        self._leaving = False
        # a delivery raised and nothing swallowed it since: the program is unwinding, and a
        # second one (the re-delivery of a swallowed signal arriving late on a loaded
        # machine) would break off its clean-up (measured: a work folder left behind)
        self._unwinding = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._below.get(signum) is signal.SIG_IGN:
            return
        if self.pending is None:
            self.pending = signum
        if self._leaving or self._unwinding:  # a late second delivery: already raised
            return
        if _in_hook(frame):  # raised here it would be lost again: once the hook is left
            self._again_soon(signum)
            return
        self._deliver(signum, frame)

    def _deliver(self, signum: int, frame: FrameType | None) -> None:
        """What the handler beneath does with ``signum`` (it raises: unwinding starts here)."""
        below = self._below.get(signum)
        if callable(below):
            self._unwinding = True
            below(signum, frame)
        elif below is signal.SIG_DFL:  # nothing in Python handled it: the default action
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def raise_pending(self) -> None:
        """Raise the recorded signal's exception now (nothing pending: return)."""
        if self.pending is not None:
            self._deliver(self.pending, None)

    def _unraisable(self, unraisable: Any) -> None:
        """sys.unraisablehook while guarded: the signal's exception, swallowed by a finalizer,
        is delivered again (the handler defers itself until this frame is left)."""
        if self.pending is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
            self._unwinding = False  # the finalizer swallowed it: nothing unwinds
            self._again_soon(self.pending)
            return
        self._hook_below(unraisable)

    def _again_soon(self, signum: int) -> None:
        """The handler runs again at the main thread's next bytecode after ``SOON_S``, as if
        the signal came again: from a thread, as tripping it here would run it here."""

        def trip() -> None:
            time.sleep(SOON_S)
            _thread.interrupt_main(signal.Signals(signum))

        again = threading.Thread(target=trip, name="signal-again", daemon=True)
        self._again.append(again)
        again.start()

    def _settle(self) -> None:
        """Leaving: wait for scheduled deliveries and let this handler absorb them, so none
        reaches the handler restored beneath (a second KeyboardInterrupt mid-exit)."""
        self._leaving = True
        for again in self._again:
            again.join()
        _next_bytecode()  # a tripped handler runs at a call's first bytecode: here, ours

    @contextmanager
    def guard(self) -> Iterator[KeptSignals]:
        """Record SIGINT/SIGTERM while inside (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        saved: dict[signal.Signals, Any] = {}
        for sig in SIGNALS:
            saved[sig] = signal.signal(sig, self._handler)
        self._below = {int(s): old for s, old in saved.items()}
        hook = self._hook_below = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        try:
            yield self
        except KeyboardInterrupt:
            forget_unhandled_interrupt()  # it is handled: by the caller, with its exit code
            raise
        except BaseException:
            self.raise_pending()  # a signal turned into another error: the signal wins
            raise
        else:
            self.raise_pending()  # swallowed on the way and never raised again
        finally:
            self._settle()
            sys.unraisablehook = hook
            for sig, old in saved.items():
                signal.signal(sig, old)


def forget_unhandled_interrupt() -> None:
    """CPython marks a KeyboardInterrupt that leaves an ``exec()`` of source text as unhandled
    for good (dataclasses and namedtuples are made that way, so a Ctrl-C lands there often),
    and the interpreter then ends with SIGINT (exit -2) however the program handled it and
    whatever it passed to sys.exit (measured: segexport exited -2 after printing its
    "interrupted" line).  Running an empty source text resets that mark."""
    exec("")  # noqa: S102 - empty and constant: only the mark is reset


_HOOK_CODE = KeptSignals._unraisable.__code__  # the frame a handler must not raise in
SOON_S = 0.001


def _in_hook(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code is _HOOK_CODE:
            return True
        frame = frame.f_back
    return False


def _next_bytecode() -> None:
    """Nothing: calling it runs the signal handlers already tripped."""
