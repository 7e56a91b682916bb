"""The one registry behind every plug-in kind: name -> lazily imported ``module:attr``.

Backends, sources, sinks, tasks, precision modes and model sources are each one
file plus one registration line.  The line names the file by its import path,
never by importing it: a kind whose library is absent (TensorRT, pygame, torch
on the runtime side) costs nothing until it is used.  Each registry keeps the
entries in registration order (sources are tried in that order, first match
wins), lists them for ``--help`` and error messages, and turns an unknown name
into one typed line that names the known ones.

Use::

    SINKS: Registry[SinkFactory] = Registry("sink")
    SINKS.register("video", "segedge.runtime.sinks.video:create", suffixes=(".mp4",))
    SINKS.get("video").info["suffixes"]   # the extra keys, as given
    SINKS.load("video")                   # imports the module once, returns ``create``
    SINKS.find(lambda e: ".mp4" in e.info.get("suffixes", ()))   # first match or None

``info`` holds whatever a kind needs to choose an entry (suffixes, URI schemes,
a predicate, flags); the registry only stores it.  Registering a name again
replaces the entry in place (a test's toy, a user's override); ``unregister``
removes it.  The error for an unknown name is an ``UnknownNameError`` (an
InputError: exit code 2) unless the registry is given its own ``unknown``
factory (e.g. an ArtifactError where the name came from an artifact).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from segedge.runtime.errors import InputError, SegedgeError

T = TypeVar("T")


class UnknownNameError(InputError):
    """A name no registry entry has; the message lists the registered names."""

    def __init__(self, kind: str, known: list[str], received: str) -> None:
        self.kind, self.known = kind, known
        super().__init__(kind, "one of " + ", ".join(known) if known else "a registered name",
                         repr(received))


@dataclass(frozen=True)
class Entry:
    """One registered name: where its object lives (``module:attr``) and what else it declares."""

    name: str
    module: str
    attr: str
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attr}"

    def load(self) -> Any:
        """Import the module (once: Python caches it) and return the attribute."""
        return getattr(importlib.import_module(self.module), self.attr)


def _split(target: str) -> tuple[str, str]:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise InputError("registry target", "'package.module:attribute'", repr(target))
    return module, attr


class Registry(Generic[T]):
    """Entries of one plug-in kind, in registration order; objects loaded on first use.

    ``kind`` names the kind in messages ("sink", "task").  ``unknown(known, name)``,
    when given, makes the error ``get``/``load`` raise for an unknown name.
    ``check(entry, obj)``, when given, validates a freshly loaded object (raise a
    SegedgeError) before it is cached.
    """

    def __init__(self, kind: str, *,
                 unknown: Callable[[list[str], str], SegedgeError] | None = None,
                 check: Callable[[Entry, Any], None] | None = None) -> None:
        self.kind = kind
        self._unknown = unknown
        self._check = check
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def register(self, name: str, target: str, **info: Any) -> Entry:
        """Add (or replace, keeping its place) ``name`` -> ``target`` ('module:attr')."""
        module, attr = _split(target)
        entry = Entry(name, module, attr, MappingProxyType(dict(info)))
        with self._lock:
            self._entries[name] = entry
            self._loaded.pop(name, None)
        return entry

    def unregister(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)
            self._loaded.pop(name, None)

    def names(self) -> list[str]:
        """Registered names, sorted (for listings and messages)."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """Registered entries in registration order (the order ``find`` tries them)."""
        return list(self._entries.values())

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name is the registry's typed error."""
        entry = self._entries.get(name)
        if entry is None:
            known = self.names()
            raise (self._unknown(known, name) if self._unknown is not None
                   else UnknownNameError(self.kind, known, name))
        return entry

    def load(self, name: str) -> T:
        """The object registered as ``name``, imported on first use and cached."""
        if name in self._loaded:
            return self._loaded[name]  # type: ignore[no-any-return]
        entry = self.get(name)
        obj = entry.load()
        if self._check is not None:
            self._check(entry, obj)
        with self._lock:
            if self._entries.get(name) is entry:  # not replaced meanwhile
                self._loaded[name] = obj
        return obj  # type: ignore[no-any-return]

    def find(self, predicate: Callable[[Entry], bool]) -> Entry | None:
        """The first entry (registration order) ``predicate`` accepts, or None."""
        return next((e for e in self.entries() if predicate(e)), None)

    def listing(self, describe: Callable[[Entry], str] | None = None) -> str:
        """One comma-separated line for --help: each name, or ``describe(entry)``."""
        return ", ".join(describe(e) if describe else e.name for e in self.entries())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
