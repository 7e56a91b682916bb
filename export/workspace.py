"""Where an export writes: outputs checked before work, work folders that never outlive it.

An export works in a hidden folder beside its output,
``.segedge-<pid>@<host>-XXXXXXXX``, removed when the export ends however it
ends (errors, Ctrl-C, SIGTERM unwind through ``finally``).  Only SIGKILL (or
a power cut) can leave one behind; the owner recorded in its name lets the
next export into the same folder remove it once that process is gone (same
host, PID no longer running), and never touch one still in use.

Every output path is checked for writability before the model is even built,
and a write that fails mid-way (disk full, quota, I/O error) becomes one line
naming the path and the cause, exit 4, with nothing left under a final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from segedge.runtime.errors import DegradedRunError, InputError
from segedge.runtime.io import check_writable

if TYPE_CHECKING:
    from segedge.export.config import ExportConfig

WORK_PREFIX = ".segedge-"
_OWNED = re.compile(r"^\.segedge-(\d+)@([0-9a-f]{8})-")
# errnos that mean "the destination cannot take this write", not "the program is wrong"
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO,
                          errno.EACCES, errno.EPERM})


def host_tag() -> str:
    """8 hex digits naming this machine (folders on shared disks belong to one host)."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def work_prefix(pid: int | None = None) -> str:
    return f"{WORK_PREFIX}{os.getpid() if pid is None else pid}@{host_tag()}-"


@contextlib.contextmanager
def work_dir(folder: Path) -> Iterator[Path]:
    """A fresh work folder in `folder`, removed on the way out (also on SIGTERM/Ctrl-C).

    The folder is made inside the ``try`` that removes it: a signal whose handler runs
    between the ``mkdir`` and the ``try`` would leave it behind (measured: a swallowed
    signal's re-delivery waits for the GIL, and ``mkdir`` is the first call to release it,
    so with mkdtemp the full suite left a folder every time).  The name carries this PID,
    so whatever exists under it when a signal lands is this export's to remove.
    Removed to the end even when another Ctrl-C/SIGTERM lands during the removal (a second
    key press, or a late re-delivery): the one already unwinding goes on; one arriving after
    a normal run raises once the folder is gone.
    """
    base = Path(folder).absolute()
    path = _candidate(base)
    try:
        while True:
            try:
                os.mkdir(path, 0o700)
                break
            except FileExistsError:  # taken (a leftover of a process with this PID): next
                path = _candidate(base)
        yield path
    except BaseException:
        _remove(path)
        raise
    late = _remove(path)
    if late is not None:
        raise late


def _candidate(base: Path) -> Path:
    return base / f"{work_prefix()}{secrets.token_hex(4)}"


def _remove(path: Path) -> KeyboardInterrupt | None:
    """rmtree `path` to the end; a KeyboardInterrupt (SIGTERM's too) meanwhile is returned."""
    late: KeyboardInterrupt | None = None
    while True:
        try:
            shutil.rmtree(path)
            return late
        except FileNotFoundError:
            return late
        except KeyboardInterrupt as err:
            late = err


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs here (a zombie does not; another user's process does)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)
    return state not in ("Z", "X")


def sweep_stale(folder: Path) -> list[Path]:
    """Remove work folders in `folder` whose owner (this host, recorded PID) is gone."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    me = host_tag()
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match is None or match.group(2) != me or not entry.is_dir():
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or pid_alive(pid):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed


def is_write_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in WRITE_ERRNOS


NOTHING_WRITTEN = "no artifact written"


def write_error(path: Path | str, err: OSError, outcome: str = NOTHING_WRITTEN
                ) -> DegradedRunError:
    """One line: which path could not be written, why, and what exists now (exit 4)."""
    cause = err.strerror or str(err) or type(err).__name__
    code = errno.errorcode.get(err.errno or 0, "")
    return DegradedRunError(f"cannot write {path}: {cause}{f' ({code})' if code else ''}; "
                            f"{outcome}")


@contextlib.contextmanager
def writing(path: Path | str, outcome: str = NOTHING_WRITTEN) -> Iterator[None]:
    """Turn a failed write under `path` (disk full, read-only, ...) into `write_error`."""
    try:
        yield
    except OSError as err:
        if is_write_error(err):
            raise write_error(err.filename or path, err, outcome) from None
        raise


def check_outputs(cfg: ExportConfig, out: Path) -> None:
    """Every file the export will write can be written: refuse before any work (exit 2)."""
    from segedge.export.report import failed_report_path, report_path

    parent = Path(out).resolve().parent
    if not parent.is_dir():
        raise InputError("--output", "a path in an existing folder", f"no folder {parent}")
    check_writable(out, "--output")
    check_writable(report_path(out), "--output (its .report.json)")
    check_writable(failed_report_path(out), "--output (its .failed.report.json)")
    if cfg.precision.calib_cache is not None:
        check_writable(cfg.precision.calib_cache, "--calib-cache")
    if cfg.engine.timing_cache is not None:
        check_writable(cfg.engine.timing_cache, "--timing-cache")
