"""The one CLI wrapper: documented exit codes and one stderr line for every outcome."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import click
import pytest

from segedge.runtime.cli_support import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    run_cli,
)
from segedge.runtime.errors import DegradedRunError, InputError, VerificationError


def command(action):  # noqa: ANN001, ANN201 - tiny test helper
    @click.command()
    def cmd() -> None:
        action()

    return cmd


def outcome(capsys: pytest.CaptureFixture[str], action) -> tuple[int, str]:  # noqa: ANN001
    try:
        run_cli("tool", command(action), [])
        code = 0
    except SystemExit as err:
        code = int(err.code or 0)
    return code, capsys.readouterr().err


def raise_(err: BaseException):  # noqa: ANN201
    def action() -> None:
        raise err

    return action


@pytest.mark.parametrize(("err", "code", "line"), [
    (InputError("--fps", "a frame rate in (0, 1000]", 0), 2,
     "tool: error: --fps: expected a frame rate in (0, 1000], got 0\n"),
    (VerificationError("parity gate failed"), 3, "tool: error: parity gate failed\n"),
    (DegradedRunError("source lost"), 4, "tool: error: source lost\n"),
    (InputError("uri", "a stream", "rtsp://u:pw@cam/x"), 2,
     "tool: error: uri: expected a stream, got rtsp://u:***@cam/x\n"),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "tool: interrupted\n"),
    (Terminated(), EXIT_TERMINATED, "tool: terminated\n"),
])
def test_exit_codes_and_one_line(capsys: pytest.CaptureFixture[str], err: BaseException,
                                 code: int, line: str) -> None:
    assert outcome(capsys, raise_(err)) == (code, line)


def test_usage_errors_are_one_line_naming_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    """click prints four lines (usage, a hint, a blank line, the error); segedge prints one,
    redacted like every other, and keeps click's exit code 2."""
    @click.group()
    def tool() -> None:
        pass

    @tool.command()
    @click.option("--mode", type=click.Choice(["latency", "throughput"]))
    @click.argument("uri")
    def sub(mode: str, uri: str) -> None:
        raise click.BadParameter(f"cannot open {uri}", param_hint="URI")

    def code_and_err(args: list[str]) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exited:
            run_cli("tool", tool, args)
        return int(exited.value.code or 0), capsys.readouterr().err

    assert code_and_err(["sub", "x", "--mode", "bogus"]) == (
        2, "tool: error: Invalid value for '--mode': 'bogus' is not one of 'latency', "
           "'throughput'. (tool sub --help)\n")
    assert code_and_err(["nope"]) == (2, "tool: error: No such command 'nope'. (tool --help)\n")
    assert code_and_err(["sub"]) == (2, "tool: error: Missing argument 'URI'. (tool sub --help)\n")
    code, err = code_and_err([])  # a group run bare: its help, as click prints it
    assert code == 2 and err.startswith("Usage: tool [OPTIONS] COMMAND [ARGS]...")
    assert "Commands:\n  sub" in err
    assert code_and_err(["sub", "rtsp://u:pw@cam/x"]) == (
        2, "tool: error: Invalid value for URI: cannot open rtsp://u:***@cam/x (tool sub --help)\n")


def test_a_message_with_newlines_is_still_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert outcome(capsys, raise_(InputError("--x", "a\nb", "c\n  d"))) == (
        2, "tool: error: --x: expected a b, got c d\n")


def test_unexpected_exception_is_one_line_not_a_traceback(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGEDGE_DEBUG", raising=False)
    code, err = outcome(capsys, raise_(ZeroDivisionError("division by zero\nmore")))
    assert code == EXIT_INTERNAL
    assert err == ("tool: error: internal error: ZeroDivisionError: division by zero "
                   "(SEGEDGE_DEBUG=1 for the traceback)\n")


def test_success_returns(capsys: pytest.CaptureFixture[str]) -> None:
    assert outcome(capsys, lambda: None) == (0, "")


def test_sigterm_exits_143_and_runs_finally(tmp_path) -> None:  # noqa: ANN001
    marker = tmp_path / "cleaned"
    script = textwrap.dedent(f"""
        import sys, time, click
        from segedge.runtime.cli_support import run_cli
        @click.command()
        def cmd():
            try:
                print("ready", flush=True)
                time.sleep(30)
            finally:
                open({str(marker)!r}, "w").close()
        run_cli("tool", cmd, [])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == EXIT_TERMINATED
    assert err == "tool: terminated\n"
    assert marker.exists()
