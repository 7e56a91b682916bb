"""ARCHITECTURE.md's "how to add things" recipes, followed literally by a test.

A toy SOURCE (``toy://?frames=N``), a toy SINK (``-o toy://PATH``: a JSON list of the
frames it received) and a toy TASK ("toycount") are each written as ONE file of a
temporary package and registered with the ONE line the recipe names.  They must then
show up everywhere they should: the registries' listings (what ``segrun --help`` and
the error messages print), ``-o`` picking the sink, a run of ``segrun`` reading the
source, decoding with the task and writing the sink with exact frame counts, and the
export task registry.  Nothing in segedge is edited for them.

Backend and precision-mode toys live with their owners' tests
(tests/runtime/test_backend_descriptor.py adds a toy backend the same way).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from segedge.runtime.errors import SourceError
from segedge.runtime.sinks import base as sinks
from segedge.runtime.sources import base as sources
from segedge.runtime.tasks import base as tasks
from tests.architecture.toy_package import toy_package
from tests.runtime.onnx_fixtures import make_labels_model
from tests.runtime.test_cli import call

PKG = "segedge_toyplug"  # a package name nothing else uses

TOY_SOURCE = '''
"""toy://?frames=N: N generated 64x48 BGR frames; frame i has i+8 red columns on the left."""
from urllib.parse import parse_qs, urlsplit

import numpy as np

from segedge.runtime.errors import SourceError
from segedge.runtime.sources.base import Frame, SourceOptions


class ToySource:
    live = False

    def __init__(self, uri: str, options: SourceOptions) -> None:
        self.uri = uri
        try:
            self.total = int(parse_qs(urlsplit(uri).query).get("frames", ["3"])[0])
        except ValueError:
            raise SourceError(f"{uri}: expected toy://?frames=N, got another query") from None
        self.index = 0

    @property
    def fps(self) -> float:
        return 10.0

    @property
    def dropped(self) -> int:
        return 0

    @property
    def corrupt(self) -> int:
        return 0

    def read(self) -> Frame | None:
        if self.index >= self.total:
            return None
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, : self.index + 8] = (0, 0, 255)
        frame = Frame(self.index, image, self.index / 10.0)
        self.index += 1
        return frame

    def close(self) -> None:
        pass


def create(uri: str, options: SourceOptions) -> ToySource:
    return ToySource(uri, options)
'''

TOY_SINK = '''
"""-o toy://PATH: the frames it received (index, labelled pixels) as JSON at PATH on close."""
from pathlib import Path

from segedge.runtime.io import write_json_atomic
from segedge.runtime.sinks.base import SinkContext, SinkOutcome


class ToySink:
    needs_pixels = False
    main_thread = False
    quit_requested = False

    def __init__(self, target: str, ctx: SinkContext) -> None:
        self.target, self.path = target, Path(target.split("://", 1)[1])
        self.frames: list[list[int]] = []

    def write(self, index, image, labels) -> None:
        self.frames.append([index, int((labels > 0).sum())])

    def close(self, complete: bool = True) -> SinkOutcome:
        write_json_atomic(self.path, self.frames)
        return SinkOutcome(self.target, len(self.frames))


def create(target: str, ctx: SinkContext) -> ToySink:
    return ToySink(target, ctx)


def check(target: str, flag: str) -> None:
    from segedge.runtime.errors import InputError

    if not target.endswith(".json"):
        raise InputError(flag, "toy://PATH.json", repr(target))
'''

TOY_TASK = '''
"""Task "toycount": label maps decoded as they are; stats count the frames and labelled pixels."""
from typing import Any, ClassVar

import numpy as np

from segedge.runtime.errors import ArtifactError
from segedge.runtime.preprocess import labels_to_frame
from segedge.runtime.tasks.base import RuntimeTask


class Result:
    def __init__(self, mask: np.ndarray) -> None:
        self.mask, self.confidence, self.instances = mask, None, None


class Drawer:
    config = None
    view = None
    hud_wanted = False

    def draw(self, frame, result, hud=None):
        out = frame.copy()
        out[result.mask > 0] = (0, 255, 255)
        return out

    def overlay(self, frame, result, alpha):
        return self.draw(frame, result)


class Stats:
    def __init__(self) -> None:
        self.frames = self.pixels = 0

    def add(self, index: int, result: Result) -> None:
        self.frames += 1
        self.pixels += int((result.mask > 0).sum())

    def extra(self) -> dict[str, Any]:
        return {"toycount": {"frames": self.frames, "pixels": self.pixels}}


class ToyTask(RuntimeTask):
    name: ClassVar[str] = "toycount"
    output_kinds: ClassVar[tuple[str, ...]] = ("labels", "both")

    def output_names(self, meta):
        return [meta.output.labels or ""]

    def check_output_names(self, meta, graph_outputs, source):
        if meta.output.labels not in graph_outputs:
            raise ArtifactError(f"{source}: expected a labels output, got {graph_outputs}")

    def decoder(self, meta, options):
        def decode(outputs, geom, *, confidence=False):
            return Result(labels_to_frame(np.ascontiguousarray(outputs[meta.output.labels][0]),
                                          geom))
        return decode

    def drawer(self, config, meta, options):
        return Drawer()

    def stats(self, options):
        return Stats()


TASK = ToyTask()
'''

TOY_EXPORT_TASK = '''
"""The export side of "toycount": a semantic export whose metadata names the toy task."""
from segedge.export.tasks.semantic import SemanticTask


class ToyExportTask(SemanticTask):
    name = "toycount"
'''


@pytest.fixture
def toys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The toy package on sys.path and each toy's one registration line; undone after."""
    from segedge.export.tasks import base as export_tasks

    with toy_package(tmp_path, monkeypatch, PKG, {
            "toy_source": TOY_SOURCE, "toy_sink": TOY_SINK, "toy_task": TOY_TASK,
            "toy_export_task": TOY_EXPORT_TASK}):
        # The recipes' registration lines, as ARCHITECTURE.md writes them:
        sources.register_source("toy", None, f"{PKG}.toy_source", schemes=("toy",))
        sinks.register_sink("toy", f"{PKG}.toy_sink", "create", schemes=("toy",),
                            check="check")
        tasks.register_task("toycount", f"{PKG}.toy_task")
        export_tasks.register_task("toycount", f"{PKG}.toy_export_task:ToyExportTask")
        yield tmp_path
        sources.SOURCES.unregister("toy")
        sinks.SINKS.unregister("toy")
        tasks.TASKS.unregister("toycount")
        export_tasks.TASKS.unregister("toycount")


@pytest.mark.usefixtures("toys")
def test_the_toys_are_listed_where_their_kinds_are() -> None:
    from segedge.export.tasks.base import get_task as export_task
    from segedge.export.tasks.base import task_names as export_task_names

    assert "toy://" in sources.source_uris().split(", ")
    assert "toy: toy://" in sinks.sink_targets().split("; ")
    assert "toy" in sinks.sink_names()
    assert "toycount" in tasks.task_names() and "toycount" in export_task_names()
    assert type(export_task("toycount")).__name__ == "ToyExportTask"
    assert tasks.get_task("toycount").name == "toycount"
    with pytest.raises(SourceError, match=r"expected a source URI \(demo://, .*toy://, a camera"):
        sources.source_kind("nope://x")


@pytest.mark.usefixtures("toys")
def test_the_toy_sink_is_picked_by_its_scheme_and_checked_before_any_work() -> None:
    from segedge.runtime.config import RunConfig
    from segedge.runtime.errors import InputError

    assert sinks.check_output("toy://out.json").name == "toy"
    with pytest.raises(InputError, match=r"^--output: expected toy://PATH.json, got 'toy://x'$"):
        RunConfig(model=Path("m.onnx"), source="toy://?frames=2", outputs=("toy://x",))


@pytest.mark.usefixtures("toys")
def test_segrun_help_lists_the_toy_source_and_sink(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call(capsys, "--help")
    assert code == 0
    assert out.count("toy://") >= 2  # once among the SOURCEs, once among the -o targets


def test_a_toy_source_runs_through_segrun_into_the_toy_sink_with_the_toy_task(
        toys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.runtime.test_tasks import retask

    model = retask(make_labels_model(toys / "labels.onnx", size=None), toys / "toy.onnx",
                   task="toycount")
    out = toys / "frames.json"
    code, stdout, err = call(capsys, model, "toy://?frames=5", "-o", f"toy://{out}",
                                   "--no-display", "--backend", "onnxruntime", "--stats", "-")
    assert code == 0, err
    stats = json.loads(stdout)
    assert stats["frames_processed"] == 5
    assert stats["extra"]["toycount"]["frames"] == 5  # the task's own stats
    frames = json.loads(out.read_text())  # the sink's file reopens
    assert [i for i, _ in frames] == [0, 1, 2, 3, 4]
    # frame i: i+8 red columns of 48 rows; the toy model labels red (R > 127) pixels 1
    assert [pixels for _, pixels in frames] == [48 * (i + 8) for i in range(5)]
    assert stats["extra"]["toycount"]["pixels"] == sum(p for _, p in frames)
