"""Runtime tasks: the registry, each task's output check, and a third task added from outside.

The third task ("edges", defined in this file) proves the extension point: a
new task is one module plus one ``register_task`` line; the backend, the
Segmenter and the pipeline run it without edits.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import onnx
import pytest

from segedge.runtime.config import RunConfig
from segedge.runtime.draw import DrawConfig
from segedge.runtime.errors import ArtifactError
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata, OutputSpec
from segedge.runtime.pipeline import run
from segedge.runtime.preprocess import Geometry, labels_to_frame
from segedge.runtime.segmenter import Segmenter
from segedge.runtime.tasks import base as tasks_base
from segedge.runtime.tasks import get_task, task_names
from segedge.runtime.tasks.base import DecodeOptions, RuntimeTask
from segedge.runtime.tasks.instance import InstanceTask
from segedge.runtime.tasks.semantic import SemanticTask
from tests.runtime.onnx_fixtures import scene, write_video


def retask(src: Path, dst: Path, **changes: Any) -> Path:
    """A copy of ``src`` whose segedge metadata has ``changes`` (e.g. task="edges")."""
    model = onnx.load(str(src))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    raw = json.loads(entry.value)
    raw.update(changes)
    entry.value = json.dumps(raw)
    onnx.save(model, str(dst))
    return dst


def labels_meta(kind: str = "labels") -> ArtifactMetadata:
    return ArtifactMetadata(model="m", family="f", classes=("a", "b"), palette=(),
                            output=OutputSpec(kind=kind, logits=None, labels="labels"))  # type: ignore[arg-type]


def test_registry_names_and_types() -> None:
    assert task_names() == ["instance", "semantic"]
    assert isinstance(get_task("semantic"), SemanticTask)
    assert isinstance(get_task("instance"), InstanceTask)
    assert get_task("semantic") is get_task("semantic")  # one stateless task per name


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ArtifactError) as err:
        get_task("panoptic", "m.onnx")
    assert str(err.value) == "m.onnx: expected task one of instance, semantic, got 'panoptic'"


def test_artifact_with_an_unknown_task_is_refused(models: dict[str, Path],
                                                  tmp_path: Path) -> None:
    path = retask(models["labels"], tmp_path / "pan.onnx", task="panoptic")
    with pytest.raises(ArtifactError, match="expected task one of instance, semantic, "
                                            "got 'panoptic'"):
        Segmenter(path)


def test_each_task_checks_its_output_kind_and_names() -> None:
    semantic, instance = get_task("semantic"), get_task("instance")
    semantic.check_outputs(labels_meta(), {"labels"}, "m.onnx")  # fits: no error
    with pytest.raises(ArtifactError) as err:
        semantic.check_outputs(labels_meta("instances"), {"labels"}, "m.onnx")
    assert str(err.value) == ("m.onnx: expected 'logits' or 'labels' or 'both' outputs for "
                              "task 'semantic', got 'instances' outputs")
    with pytest.raises(ArtifactError) as err:
        semantic.check_outputs(labels_meta(), {"scores"}, "m.onnx")
    assert str(err.value) == ("m.onnx: expected graph outputs ['labels'] for kind 'labels' "
                              "(from metadata), got ['scores']")
    with pytest.raises(ArtifactError, match="expected 'instances' outputs for task"):
        instance.check_outputs(labels_meta().with_changes(task="instance"), {"labels"}, "m")
    assert semantic.output_names(labels_meta()) == ["labels"]


def test_semantic_artifact_with_instance_outputs_is_refused(models: dict[str, Path],
                                                            tmp_path: Path) -> None:
    meta = json.loads(next(p.value for p in onnx.load(str(models["labels"])).metadata_props
                           if p.key == METADATA_KEY))
    path = retask(models["labels"], tmp_path / "mixed.onnx",
                  output={**meta["output"], "kind": "instances"})
    with pytest.raises(ArtifactError, match="expected 'logits' or 'labels' or 'both' outputs"):
        Segmenter(path)


# -- a third task, defined here: label edges (1 where the label changes, else 0) --

@dataclass(frozen=True)
class EdgeResult:
    edges: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.edges

    @property
    def confidence(self) -> None:
        return None

    @property
    def instances(self) -> None:
        return None


class EdgeDrawer:
    def draw(self, frame: np.ndarray, result: EdgeResult,
             hud: Sequence[str] | None = None) -> np.ndarray:
        out = frame.copy()
        out[result.edges > 0] = (0, 255, 255)
        return out

    def overlay(self, frame: np.ndarray, result: EdgeResult, alpha: float) -> np.ndarray:
        return self.draw(frame, result)


class EdgeStats:
    def __init__(self) -> None:
        self.pixels = 0

    def add(self, index: int, result: EdgeResult) -> None:
        self.pixels += int(result.edges.sum())

    def extra(self) -> dict[str, Any]:
        return {"edges": {"pixels": self.pixels}}


class EdgeTask(RuntimeTask):
    name: ClassVar[str] = "edges"
    output_kinds: ClassVar[tuple[str, ...]] = ("labels",)

    def output_names(self, meta: ArtifactMetadata) -> list[str]:
        return [meta.output.labels or ""]

    def check_output_names(self, meta: ArtifactMetadata, graph_outputs: Collection[str],
                           source: str) -> None:
        if meta.output.labels not in graph_outputs:
            raise ArtifactError(f"{source}: expected a labels output, got {graph_outputs}")

    def decoder(self, meta: ArtifactMetadata, options: DecodeOptions) -> Any:
        def decode(outputs: dict[str, np.ndarray], geom: Geometry, *,
                   confidence: bool = False) -> EdgeResult:
            labels = labels_to_frame(np.ascontiguousarray(outputs["labels"][0]), geom)
            grad = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            return EdgeResult((grad > 0).astype(np.uint8))

        return decode

    def drawer(self, config: DrawConfig, meta: ArtifactMetadata,
               options: DecodeOptions) -> EdgeDrawer:
        return EdgeDrawer()

    def stats(self, options: DecodeOptions) -> EdgeStats:
        return EdgeStats()


EDGE_TASK = EdgeTask()


@pytest.fixture
def edges_task() -> Iterator[None]:
    tasks_base.register_task("edges", __name__, "EDGE_TASK")
    yield
    tasks_base.TASKS.unregister("edges")


@pytest.mark.usefixtures("edges_task")
def test_a_third_task_runs_through_segmenter_and_pipeline(models: dict[str, Path],
                                                          tmp_path: Path) -> None:
    path = retask(models["labels_dynamic"], tmp_path / "edges.onnx", task="edges")
    frame = scene(2, 64, 48)  # red columns 0..15, blue after: one vertical label edge
    with Segmenter(path) as seg:
        result = seg(frame)
    assert seg.task is EDGE_TASK and not seg.is_instance
    assert result.labels.shape == (48, 64)
    assert result.labels[:, 15:17].all() and not result.labels[:, :14].any()
    assert result.confidence is None and result.instances is None
    assert (result.overlay(frame)[:, 16] == (0, 255, 255)).all()
    clip = write_video(tmp_path / "clip.avi", 3)
    masks, out = tmp_path / "m", tmp_path / "o.avi"
    stats = run(RunConfig(model=path, source=str(clip), output=out, save_masks=masks,
                          display=False, draw=DrawConfig(hud=False)))
    assert stats.frames_processed == 3
    png = cv2.imread(str(masks / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert png is not None and set(np.unique(png).tolist()) == {0, 1}
    assert stats.extra["edges"]["pixels"] > 0
    saved = [cv2.imread(str(masks / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED) for i in range(3)]
    assert stats.extra["edges"]["pixels"] == sum(int(np.asarray(m).sum()) for m in saved)
