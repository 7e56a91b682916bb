"""Instance artifacts in the runtime: decode, draw, Segmenter.detect, segrun end to end.

The model is a constant-output ONNX built with onnx.helper (no torch): three
valid detections padded to four rows, one of them below the default score
threshold, so every number below is known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from segedge.runtime.draw import DrawConfig
from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata, InputSpec, OutputSpec
from segedge.runtime.preprocess import Geometry
from segedge.runtime.segmenter import Segmenter
from segedge.runtime.tasks.instance import InstanceDrawer, InstanceResult, decode
from tests.runtime.onnx_fixtures import write_video

H, W, N = 24, 32, 4
CLASSES = ("background", "car", "person")
BOXES = np.array([[2, 2, 14, 12], [10, 6, 26, 20], [20, 0, 30, 6], [0, 0, 0, 0]], np.float32)
LABELS = np.array([1, 2, 1, 0], np.int64)
SCORES = np.array([0.9, 0.8, 0.3, 0.0], np.float32)


def _masks() -> np.ndarray:
    m = np.zeros((N, H, W), np.uint8)
    for k in range(3):
        x0, y0, x1, y1 = BOXES[k].astype(int)
        m[k, y0:y1, x0:x1] = 1
    return m


def _meta(count_name: str = "count") -> ArtifactMetadata:
    return ArtifactMetadata(
        model="const_instances", family="maskrcnn", classes=CLASSES,
        palette=((0, 0, 0), (230, 30, 30), (30, 30, 230)), task="instance",
        input=InputSpec(name="input", format="uint8", layout="NHWC", color_order="BGR",
                        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), size=(H, W), batch=1),
        output=OutputSpec(kind="instances", logits=None, labels="labels", boxes="boxes",
                          scores="scores", masks="masks", count=count_name, max_detections=N))


def _outputs(count: int = 3) -> dict[str, np.ndarray]:
    return {"boxes": BOXES[None], "labels": LABELS[None], "scores": SCORES[None],
            "masks": _masks()[None], "count": np.array([count], np.int64)}


def make_instance_model(path: Path, meta: ArtifactMetadata | None = None, count: int = 3
                        ) -> Path:
    """uint8 [1,H,W,3] -> the constant padded detections above (input is ignored)."""
    values = _outputs(count)
    types = {"boxes": TensorProto.FLOAT, "labels": TensorProto.INT64,
             "scores": TensorProto.FLOAT, "masks": TensorProto.UINT8, "count": TensorProto.INT64}
    nodes, inits, outs = [], [], []
    for name, value in values.items():
        inits.append(helper.make_tensor(f"{name}_c", types[name], value.shape,
                                        value.ravel().tolist()))
        nodes.append(helper.make_node("Identity", [f"{name}_c"], [name]))
        outs.append(helper.make_tensor_value_info(name, types[name], list(value.shape)))
    graph = helper.make_graph(nodes, "const_instances",
                              [helper.make_tensor_value_info("input", TensorProto.UINT8,
                                                             [1, H, W, 3])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, (meta or _meta()).to_json()
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_decode_keeps_count_rows_above_threshold_in_frame_pixels() -> None:
    geom = Geometry((H * 2, W * 2), (H, W), 0.5, 0.5)  # frame twice the network size
    res = decode(_outputs(), _meta(), geom)  # default threshold 0.5 drops the 0.3 one
    assert [(i.class_name, round(i.score, 2)) for i in res.instances] == [("car", 0.9),
                                                                          ("person", 0.8)]
    assert res.instances[0].box == (4.0, 4.0, 28.0, 24.0)
    assert res.ids.shape == (H * 2, W * 2)
    # Overlap goes to the higher score (instance 1); areas are what stays visible.
    assert res.instances[0].mask_area == 12 * 10 * 4
    assert res.instances[1].mask_area == (16 * 14 - 4 * 6) * 4
    assert int((res.ids == 1).sum()) == res.instances[0].mask_area
    low = decode(_outputs(), _meta(), geom, score_threshold=0.2)
    assert len(low) == 3 and low.instances[2].score == pytest.approx(0.3)


def test_decode_zero_detections_is_empty_not_an_error() -> None:
    geom = Geometry((H, W), (H, W), 1.0, 1.0)
    res = decode(_outputs(count=0), _meta(), geom)
    assert len(res) == 0 and res.to_dicts() == []
    assert res.ids.shape == (H, W) and not res.ids.any()


def test_decode_refuses_bad_threshold_and_missing_output() -> None:
    geom = Geometry((H, W), (H, W), 1.0, 1.0)
    with pytest.raises(InputError, match="score-threshold"):
        decode(_outputs(), _meta(), geom, score_threshold=1.5)
    with pytest.raises(ArtifactError, match="count"):
        decode(_outputs(), _meta(count_name="num"), geom)


def test_drawer_one_colour_per_instance_and_optional_boxes() -> None:
    geom = Geometry((H * 4, W * 4), (H, W), 0.25, 0.25)
    res = decode(_outputs(), _meta(), geom)
    frame = np.full((H * 4, W * 4, 3), 90, np.uint8)
    with_boxes = InstanceDrawer(DrawConfig(alpha=0.6, hud=False), CLASSES).draw(frame, res)
    plain = InstanceDrawer(DrawConfig(alpha=0.6, hud=False, boxes=False), CLASSES).draw(
        frame, res)
    inner1 = with_boxes[res.ids == 1].reshape(-1, 3)
    inner2 = with_boxes[res.ids == 2].reshape(-1, 3)
    c1 = np.median(inner1, 0)
    c2 = np.median(inner2, 0)
    assert np.abs(c1 - c2).max() > 30  # distinct colours
    assert not np.array_equal(with_boxes, plain)  # boxes add pixels
    assert (plain[84:] == 90).all()  # below every instance (labels sit above boxes)
    assert (plain[res.ids == 0][:, 0] == 90).mean() > 0.8  # background mostly untouched
    empty = InstanceResult((), np.zeros((H * 4, W * 4), np.uint8))
    assert np.array_equal(InstanceDrawer(DrawConfig(hud=False), CLASSES).draw(frame, empty),
                          frame)


def test_segmenter_detect_and_call(tmp_path: Path) -> None:
    path = make_instance_model(tmp_path / "inst.onnx")
    frame = np.zeros((H * 2, W * 2, 3), np.uint8)
    with Segmenter(path, score_threshold=0.25) as seg:
        assert seg.is_instance
        res = seg.detect(frame)
        assert [i.class_id for i in res.instances] == [1, 2, 1]
        assert set(res.timings) == {"preprocess", "infer", "postprocess"}
        out = seg(frame)
        assert out.instances is not None and len(out.instances) == 3
        assert out.labels.shape == (H * 2, W * 2)


def test_backend_refuses_instance_metadata_without_its_outputs(tmp_path: Path) -> None:
    meta = _meta().with_changes(output=OutputSpec(kind="instances", logits=None,
                                                  labels="labels", boxes="boxes",
                                                  scores="scores", masks="segm",
                                                  count="count", max_detections=N))
    path = make_instance_model(tmp_path / "bad.onnx", meta)
    with pytest.raises(ArtifactError, match="instance outputs"):
        Segmenter(path)


def test_segrun_draws_instances_records_them_and_saves_id_pngs(tmp_path: Path) -> None:
    from segedge.runtime.config import RunConfig
    from segedge.runtime.pipeline import run

    model = make_instance_model(tmp_path / "inst.onnx")
    clip = write_video(tmp_path / "clip.mp4", 6)
    out, masks, stats_path = tmp_path / "out.mp4", tmp_path / "masks", tmp_path / "s.json"
    stats = run(RunConfig(model=model, source=str(clip), output=out, save_masks=masks,
                          stats_path=stats_path, display=False,
                          draw=DrawConfig(hud=False)))
    assert stats.frames_processed == 6
    rec = json.loads(stats_path.read_text())["extra"]["instances"]
    assert rec["total"] == 12 and rec["score_threshold"] == 0.5
    first = rec["frames"][0]
    assert first["count"] == 2 and first["instances"][0]["class_name"] == "car"
    assert set(first["instances"][0]) == {"class_id", "class_name", "score", "box",
                                          "mask_area"}
    png = cv2.imread(str(masks / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert png is not None
    fh, fw = png.shape
    assert sorted(np.unique(png).tolist()) == [0, 1, 2]
    assert int(np.count_nonzero(png == 1)) == first["instances"][0]["mask_area"]
    cap = cv2.VideoCapture(str(out))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert frames == 6 and (fh, fw) == (png.shape[0], png.shape[1])


def test_api_overlay_draws_instances_with_one_reused_drawer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segedge.runtime.tasks import instance as instance_task

    built: list[object] = []

    class CountingDrawer(instance_task.InstanceDrawer):
        def __init__(self, *args: object, **kwargs: object) -> None:
            built.append(self)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(instance_task, "InstanceDrawer", CountingDrawer)
    path = make_instance_model(tmp_path / "inst.onnx")
    frame = np.full((H * 4, W * 4, 3), 90, np.uint8)
    with Segmenter(path) as seg:
        first, second = seg(frame), seg(frame)
        over = first.overlay(frame, alpha=0.6)
        again = second.overlay(frame, alpha=0.6)
    assert len(built) == 1
    np.testing.assert_array_equal(over, again)
    expected = InstanceDrawer(DrawConfig(alpha=0.6, legend=False, hud=False), CLASSES).draw(
        frame, InstanceResult(first.instances or (), first.labels))
    np.testing.assert_array_equal(over, expected)  # what segrun draws, without the HUD
    assert (over[first.labels == 0][:, 0] == 90).mean() > 0.8
