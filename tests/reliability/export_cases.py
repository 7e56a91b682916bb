"""Shared by the segexport reliability tests: the CLI in a real process and what it leaves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "export" / "fixtures" / "tiny_model.py"
PREFIX = "segexport: error: "


def segexport_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "segedge.export.cli", *map(str, args)]


def segexport(*args: str | Path, cwd: Path, timeout: float = 300
              ) -> subprocess.CompletedProcess[str]:
    """segexport in a real process (exit codes and stderr exactly as a user sees them)."""
    return subprocess.run(segexport_cmd(*args), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """Exit `code`, nothing on stdout, stderr exactly one ``segexport: error:`` line (no
    traceback); returns the message after the prefix."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), proc.stderr
    return lines[0][len(PREFIX):]


def work_folders(folder: Path) -> list[str]:
    """Export work folders (``.segedge-*``) in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".segedge-"))
