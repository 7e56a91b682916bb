"""`segedge`: which segedge is installed, from where, and which commands it brought.

Everything is read from the installed distribution's metadata (version, console scripts), so
the answer is what pip installed (a wheel or an editable checkout), never a hand-kept list.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import click

import segedge.runtime
from segedge.runtime.cli_support import DISTRIBUTION, run_cli, version_option

PROG = "segedge"


def installed_commands() -> list[str]:
    """The console scripts the installed distribution declares, except this one."""
    scripts = metadata.distribution(DISTRIBUTION).entry_points.select(group="console_scripts")
    return sorted(ep.name for ep in scripts if ep.name != PROG)


def install_location() -> Path:
    """The folder that holds the imported segedge packages (site-packages or a checkout)."""
    return Path(segedge.runtime.__file__).resolve().parent.parent


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@version_option(PROG)
def about() -> None:
    """Print the installed version, where it is imported from, and the commands."""
    click.echo(f"{PROG} {metadata.version(DISTRIBUTION)} ({install_location()})")
    click.echo(f"commands: {', '.join(installed_commands())} (each takes --help and --version)")


def main(argv: list[str] | None = None) -> None:
    run_cli(PROG, about, argv)
