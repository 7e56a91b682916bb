"""runtime/registry.py: the one lazy registry behind sources, sinks, tasks (and more)."""

from __future__ import annotations

import sys

import pytest

from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.registry import Entry, Registry, UnknownNameError
from segedge.runtime.uri import scheme


def test_entries_keep_their_place_and_load_lazily_once() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("b", "json:dumps", suffixes=(".b",))
    reg.register("a", "json:loads")
    reg.register("b", "json:JSONDecoder", suffixes=(".bb",))  # replaced in place
    assert reg.names() == ["a", "b"] and [e.name for e in reg] == ["b", "a"]
    assert reg.get("b").info["suffixes"] == (".bb",) and reg.get("b").target == "json:JSONDecoder"
    assert reg.load("b") is sys.modules["json"].JSONDecoder
    assert reg.find(lambda e: ".bb" in e.info.get("suffixes", ())) is reg.get("b")
    assert reg.find(lambda e: False) is None
    assert reg.listing() == "b, a" and reg.listing(lambda e: e.name.upper()) == "B, A"
    reg.unregister("b")
    assert "b" not in reg and len(reg) == 1


def test_an_unknown_name_is_one_typed_line_naming_the_known_ones() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("gear", "json:dumps")
    reg.register("cog", "json:dumps")
    with pytest.raises(UnknownNameError) as err:
        reg.load("sprocket")
    assert isinstance(err.value, InputError) and err.value.known == ["cog", "gear"]
    assert str(err.value) == "widget: expected one of cog, gear, got 'sprocket'"
    own: Registry[object] = Registry("task", unknown=lambda known, name: ArtifactError(
        f"expected {known}, got {name!r}"))
    with pytest.raises(ArtifactError, match=r"^expected \[\], got 'x'$"):
        own.get("x")
    with pytest.raises(InputError, match=r"^registry target: expected 'package.module:attribute'"):
        reg.register("bad", "json.dumps")


def test_check_runs_on_first_load_and_a_failed_check_is_not_cached() -> None:
    seen: list[str] = []

    def check(entry: Entry, obj: object) -> None:
        seen.append(entry.name)
        if obj is not sys.modules["json"].dumps:
            raise ArtifactError("not dumps")

    reg: Registry[object] = Registry("widget", check=check)
    reg.register("ok", "json:dumps")
    reg.register("bad", "json:loads")
    assert reg.load("ok") is reg.load("ok") and seen == ["ok"]  # cached after one check
    for _ in range(2):
        with pytest.raises(ArtifactError):
            reg.load("bad")
    assert seen == ["ok", "bad", "bad"]


@pytest.mark.parametrize(("uri", "expected"), [
    ("rtsp://u:p@cam/s", "rtsp"), ("TRITON+GRPC://h/m", "triton+grpc"), ("display://0", "display"),
    ("clip.mp4", None), ("C:\\clip.mp4", None), ("/dev/video0", None), ("1rtsp://x", None),
])
def test_one_scheme_rule(uri: str, expected: str | None) -> None:
    assert scheme(uri) == expected
