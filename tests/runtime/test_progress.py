"""Progress bars draw only on a terminal: a log file or CI capture gets no bar at all."""

from __future__ import annotations

import io

from segedge.runtime.progress import on_terminal, progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Closed(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


def test_on_terminal() -> None:
    assert on_terminal(FakeTTY()) is True
    assert on_terminal(io.StringIO()) is False
    assert on_terminal(Closed()) is False
    assert on_terminal(object()) is False  # type: ignore[arg-type]


def test_bar_only_on_a_terminal() -> None:
    log = io.StringIO()
    assert list(progress(range(5), desc="x", stream=log)) == [0, 1, 2, 3, 4]
    assert log.getvalue() == ""
    tty = FakeTTY()
    with progress(total=3, desc="evaluating", unit="img", stream=tty) as bar:
        bar.update(3)
    assert tty.getvalue().startswith("\revaluating:   0%|") and "0/3" in tty.getvalue()
    quiet = FakeTTY()
    with progress(total=3, stream=quiet, quiet=True) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""
