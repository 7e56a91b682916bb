"""The one wrapper every segedge CLI runs in: documented exit codes, one-line errors.

Exit codes (README "Exit codes"), the same in segexport, segrun, segeval and segbench:

    0    ok
    1    internal error (a bug: one line, SEGEDGE_DEBUG=1 shows the traceback)
    2    bad input or usage (typed SegedgeError, click usage errors)
    3    verification failed (a parity / precision / accuracy gate)
    4    the run finished degraded (source lost, frames unreadable, outputs incomplete)
    130  interrupted (SIGINT / Ctrl-C)
    143  terminated (SIGTERM)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click

from segedge.runtime.errors import SegedgeError
from segedge.runtime.interrupts import forget_unhandled_interrupt
from segedge.runtime.redact import redact

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_VERIFICATION = 3
EXIT_DEGRADED = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


DISTRIBUTION = "segedge"
FC = TypeVar("FC", bound=Callable[..., Any])


def version_option(prog: str) -> Callable[[FC], FC]:
    """`--version` for a segedge command: one decorator line per CLI, so no command lacks it.

    click reads the version from the installed distribution's metadata
    (importlib.metadata.version("segedge")), so a wheel and an editable install both say what
    pip installed, never a second hand-kept number.
    """
    return click.version_option(package_name=DISTRIBUTION, prog_name=prog,
                                message="%(prog)s %(version)s")


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, systemd, docker stop) unwinds like Ctrl-C, so `finally` blocks run."""


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into a Terminated exception on the main thread while inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# click >= 8.2 raises it for a group run with no command (8.1 printed the help and exited 0)
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def fail(prog: str, message: str, code: int) -> NoReturn:
    """One line, whatever the message holds (a library's text may carry newlines)."""
    lines = (line.strip() for line in redact(message).splitlines())
    click.echo(f"{prog}: error: {' '.join(line for line in lines if line)}", err=True)
    sys.exit(code)


def run_cli(prog: str, command: click.Command, argv: list[str] | None = None,
            obj: Any = None) -> None:
    """Run a click command; map every outcome to one stderr line and a documented exit code.

    Returns normally on success (exit 0, callable from Python); exits non-zero otherwise.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with sigterm_unwinds():
            # make_context + invoke, not command.main: main prints a blank stderr line and
            # turns Ctrl-C / SIGTERM into a bare Abort before we could tell them apart.
            with command.make_context(prog, args, obj=obj) as ctx:
                code = command.invoke(ctx)
    except SegedgeError as err:
        fail(prog, str(err), err.exit_code)
    except _NO_ARGS_IS_HELP as err:  # a group run bare: its help, asked for in effect
        if err.ctx is not None:
            click.echo(err.ctx.get_help(), err=True)
        sys.exit(err.exit_code)
    except click.UsageError as err:  # one line, as every other error (click prints four)
        hint = f" ({err.ctx.command_path} --help)" if err.ctx is not None else ""
        fail(prog, f"{err.format_message()}{hint}", err.exit_code)
    except click.ClickException as err:
        fail(prog, err.format_message(), err.exit_code)
    except click.exceptions.Exit as err:  # --help, --version, ctx.exit(n)
        if err.exit_code:
            sys.exit(err.exit_code)
        return
    except (click.exceptions.Abort, KeyboardInterrupt) as err:
        forget_unhandled_interrupt()  # the exit code below is the one the process ends with
        if isinstance(err, Terminated) or isinstance(err.__context__, Terminated):
            click.echo(f"{prog}: terminated", err=True)
            sys.exit(EXIT_TERMINATED)
        click.echo(f"{prog}: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - the last line of defence: never a traceback
        if os.environ.get("SEGEDGE_DEBUG"):
            raise
        first = (str(err).strip().splitlines() or [""])[0][:300]
        fail(prog, f"internal error: {type(err).__name__}: {first} (SEGEDGE_DEBUG=1 for the "
                   "traceback)", EXIT_INTERNAL)
    if isinstance(code, int) and code != EXIT_OK:
        sys.exit(code)
