"""User models that signal their own export once, where Python or a library swallows the
exception the handler raises (runtime/interrupts.py): inside a finalizer, as the garbage
collector runs torch's at any allocation, or under a library's ``except BaseException``; or
inside an ``exec()``, where CPython marks a Ctrl-C unhandled for good."""

import os
import signal

import torch
from torch import nn

SIGNAL = signal.Signals[os.environ.get("SEGEDGE_TEST_SIGNAL", "SIGTERM")]
_sent = False


def _signal_once() -> bool:
    global _sent
    first, _sent = not _sent, True
    return first


class _SignalsWhenCollected:
    def __del__(self) -> None:
        signal.raise_signal(SIGNAL)  # the handler runs here: Python prints it and carries on


class _Seg(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, num_classes, 3, 1, 1)


class InFinalizer(_Seg):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _signal_once():
            _SignalsWhenCollected()  # made and collected at once
        return self.head(x)


class InExec(_Seg):
    """The signal lands in source text run by exec(), as dataclasses and namedtuples are made:
    CPython then marks the interrupt unhandled and would end the process with SIGINT (-2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _signal_once():
            exec("import signal\nsignal.raise_signal(SIGNAL)", {"SIGNAL": SIGNAL})
        return self.head(x)


class SwallowsIt(_Seg):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _signal_once():
            try:
                signal.raise_signal(SIGNAL)
            except BaseException:  # noqa: BLE001 - what a careless library does
                pass
        return self.head(x)
