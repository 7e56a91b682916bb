"""The auto backend's verdicts, cached per artifact and machine (runtime.backends.auto).

One JSON file, ``~/.cache/segedge/auto_backend.json`` (``SEGEDGE_AUTO_BACKEND_CACHE``
elsewhere), written atomically through runtime.io: a verdict is keyed by the
artifact's sha256, the CPU model, the thread count, the precision hint, the probe
size and the library versions, so a re-export, another machine or an upgrade
measures again.  A damaged file is ignored and rewritten, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segedge.runtime.errors import InputError, SegedgeError
from segedge.runtime.io import write_json_atomic

log = logging.getLogger("segedge.runtime")

CACHE_ENV = "SEGEDGE_AUTO_BACKEND_CACHE"  # path of the cache file (tests, read-only homes)
CACHE_SCHEMA = 1
CACHE_MAX_ENTRIES = 256


def cpu_candidates() -> tuple[str, ...]:
    """The backends the auto chooser times on the CPU, in registration order (the first is the
    reference: opened first, and an exact tie keeps it); each says so in its own file."""
    from segedge.runtime.backends.base import descriptors

    return tuple(d.name for d in descriptors() if d.cpu_candidate)


def base_name(candidate: str) -> str:
    """'openvino:f16' -> 'openvino': a candidate is a backend, or a backend at a second hint."""
    return candidate.split(":", 1)[0]


def default_cache_path() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    return Path.home() / ".cache" / "segedge" / "auto_backend.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    sha256: str
    cpu: str
    threads: int | None
    hint: str
    probe_hw: tuple[int, int]
    versions: tuple[tuple[str, str], ...] = ()

    def text(self) -> str:
        versions = ",".join(f"{k}={v}" for k, v in self.versions)
        threads = "default" if self.threads is None else str(self.threads)
        h, w = self.probe_hw
        return f"{self.sha256}|{self.cpu}|threads={threads}|{self.hint}|{h}x{w}|{versions}"


@dataclass(frozen=True)
class Verdict:
    """What the CPU probe found (median ms per candidate), or why the challengers could not take
    part (``note``: one crashed or failed compiling the artifact); cached as JSON.

    ``labels`` name each candidate as its one-line reason does ('openvino CPU (bf16)'), so a
    cached verdict can be explained without opening the losers; ``probe_frames`` is the
    frames per probed call (a static batch); ``contradicted`` says why a later run disagreed (the
    next run measures again); ``how`` is 'measured' or 're-measured (...)'."""

    backend: str
    timings_ms: dict[str, float]
    probe_hw: tuple[int, int]
    measured_at: str = ""
    note: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    probe_frames: int = 1
    contradicted: str = ""
    how: str = "measured"

    def __post_init__(self) -> None:
        names = cpu_candidates()
        if base_name(self.backend) not in names:
            raise InputError("auto backend verdict", f"one of {names}", repr(self.backend))
        if not self.note and not all(n in self.timings_ms for n in names):
            raise InputError("auto backend verdict", f"a median for each of {names} "
                             "or a note why there is none", dict(self.timings_ms))

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "timings_ms": self.timings_ms,
                "probe_hw": list(self.probe_hw), "measured_at": self.measured_at,
                "note": self.note, "labels": self.labels,
                "probe_frames": self.probe_frames, "contradicted": self.contradicted,
                "how": self.how}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Verdict:
        h, w = (int(v) for v in raw["probe_hw"])
        return cls(str(raw["backend"]), {str(k): float(v) for k, v in raw["timings_ms"].items()},
                   (h, w), str(raw.get("measured_at", "")), str(raw.get("note", "")),
                   {str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
                   int(raw.get("probe_frames", 1)), str(raw.get("contradicted", "")),
                   str(raw.get("how", "measured")))


@dataclass
class DecisionCache:
    """The probe verdicts of this machine; a damaged file is ignored and rewritten."""

    path: Path = field(default_factory=default_cache_path)

    def _entries(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict) or raw.get("schema") != CACHE_SCHEMA:
            return {}
        entries = raw.get("entries")
        return entries if isinstance(entries, dict) else {}

    def get(self, key: CacheKey) -> Verdict | None:
        raw = self._entries().get(key.text())
        try:
            return Verdict.from_dict(raw) if isinstance(raw, dict) else None
        except (KeyError, TypeError, ValueError, SegedgeError):
            return None

    def put(self, key: CacheKey, verdict: Verdict) -> None:
        entries = self._entries()
        entries.pop(key.text(), None)
        entries[key.text()] = verdict.to_dict()
        while len(entries) > CACHE_MAX_ENTRIES:  # oldest first (insertion order)
            entries.pop(next(iter(entries)))
        try:
            write_json_atomic(self.path, {"schema": CACHE_SCHEMA, "entries": entries})
        except OSError as err:  # a read-only home must not stop a run: measure next time
            log.warning("auto backend: cannot cache the verdict in %s (%s)", self.path,
                        err.strerror or err)
