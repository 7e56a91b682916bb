"""Atomic file output: the one place that writes results under their final name.

Every artifact, report, stats file, cache and plot is written beside its target
under a hidden temporary name, fsynced, made readable (0644: mkstemp's 0600 is
wrong for results a service account reads) and renamed into place, so a reader
sees the old file or the new one, never half of one, and a failure leaves no
partial file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from segedge.runtime.errors import InputError

FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes | memoryview) -> Path:
    """Write beside the target, fsync, then rename: a reader sees old or new, never half."""
    with atomic_path(Path(path)) as tmp:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def check_writable(path: Path | str, flag: str) -> Path:
    """Refuse an output path before any work starts (one line naming the flag and the cause)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(flag, "a file path", f"the folder {path}")
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():  # the nearest existing ancestor decides whether mkdir can work
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(flag, "a path under a folder", f"{probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(flag, "a writable folder", f"no write permission in {probe}")
    return path
