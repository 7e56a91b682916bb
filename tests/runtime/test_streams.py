"""run_many: several streams on one model, batched inference, per-stream outputs and stats."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from segedge.runtime import Segmenter
from segedge.runtime.batching import BatchPolicy
from segedge.runtime.config import RunConfig
from segedge.runtime.draw import DrawConfig
from segedge.runtime.errors import ArtifactError, InputError, ShapeError
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata
from segedge.runtime.signals import StopRequest
from segedge.runtime.sources.base import SourceOptions
from segedge.runtime.streams import MultiRunStats, run_many
from tests.runtime.onnx_fixtures import BLUE, RED, count_frames, make_labels_model

FRAMES = 24
SIZE = (64, 48)  # W, H


def with_batch(source: Path, target: Path, batch: int | str) -> Path:
    """The fixture labels model with batch dim ``batch`` (an int: static; a name: dynamic)."""
    model = onnx.load(str(source))
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        if isinstance(batch, int):
            dim.dim_value = batch
        else:
            dim.dim_param = batch
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    meta = ArtifactMetadata.from_json(entry.value)
    spec = meta.input
    entry.value = meta.with_changes(input=spec.__class__(**{
        **spec.__dict__, "batch": batch if isinstance(batch, int) else None,
        "dynamic_axes": (batch,) if isinstance(batch, str) else ()})).to_json()
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="module")
def batch_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch_models")
    base = make_labels_model(root / "labels.onnx", confidence=False)
    return {"one": base, "dynamic": with_batch(base, root / "dyn.onnx", "batch"),
            "static4": with_batch(base, root / "b4.onnx", 4)}


def frame_of(index: int, stream: int) -> np.ndarray:
    """Red left part 2 + 2*((index + 5*stream) % FRAMES) columns wide: every frame of every
    stream differs, so a mask says which frame (and stream) it came from."""
    image = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
    image[:] = BLUE
    image[:, : 2 + 2 * ((index + 5 * stream) % FRAMES)] = RED
    return image


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("clips")
    paths = []
    for k in range(4):
        path = root / f"cam{k}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, SIZE)
        for i in range(FRAMES):
            writer.write(frame_of(i, k))
        writer.release()
        paths.append(path)
    return paths


def decoded(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    return frames


def cfg(model: Path, source: Path | str, **kw: object) -> RunConfig:
    return RunConfig(model=model, source=str(source), display=False, **kw)  # type: ignore[arg-type]


def red_width(image: np.ndarray) -> int:
    """Columns of the middle row whose overlay is red (the frame's red part)."""
    return int((image[image.shape[0] // 2, :, 2] > 127).sum())


def test_four_streams_batched_outputs_complete_and_in_order(
        batch_models: dict[str, Path], clips: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = Segmenter.infer_many
    calls = {"n": 0}

    def slow(self: Segmenter, tensors: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        calls["n"] += 1  # the readers get ahead: every lane holds several frames
        time.sleep(0.3 if calls["n"] == 1 else 0.01)
        return real(self, tensors)

    monkeypatch.setattr(Segmenter, "infer_many", slow)
    plain = DrawConfig(legend=False, hud=False)  # the frame's red part stays measurable
    configs = [cfg(batch_models["dynamic"], clip, output=tmp_path / f"o{k}.avi",
                   save_masks=tmp_path / f"m{k}", draw=plain) for k, clip in enumerate(clips)]
    stats_path = tmp_path / "stats.json"
    stats = run_many(configs, stats_path, names=["a", "b", "c", "d"],
                     batching=BatchPolicy(max_batch=8, wait_ms=20.0))
    assert stats.exit_code == 0 and stats.degraded == ()
    assert stats.names == ("a", "b", "c", "d")
    for k, one in enumerate(stats.streams):
        assert one.frames_read == one.frames_processed == FRAMES
        assert one.stop_reason == "end of stream"
        assert count_frames(tmp_path / f"o{k}.avi") == (FRAMES, SIZE)
        widths = [red_width(image) for image in decoded(tmp_path / f"o{k}.avi")]
        expected = [2 + 2 * ((i + 5 * k) % FRAMES) for i in range(FRAMES)]
        assert np.abs(np.subtract(widths, expected)).max() <= 1  # written in frame order
    seg = Segmenter(batch_models["one"])
    for k, clip in enumerate(clips):  # every mask is its own stream's frame
        masks = sorted((tmp_path / f"m{k}").iterdir())
        assert [p.name for p in masks] == [f"{i:06d}.png" for i in range(FRAMES)]
        for i, frame in enumerate(decoded(clip)):
            mask = np.asarray(cv2.imread(str(masks[i]), cv2.IMREAD_UNCHANGED))
            np.testing.assert_array_equal(mask, seg(frame).labels)
            assert int(mask[0].sum()) == 2 + 2 * ((i + 5 * k) % FRAMES)
    agg = stats.aggregate
    hist = {int(size): n for size, n in agg["batch"]["histogram"].items()}
    assert sum(size * n for size, n in hist.items()) == agg["frames_processed"] == 4 * FRAMES
    assert max(hist) > 4 and max(hist) <= 8  # batches formed, several frames of a stream each
    assert agg["batch"]["limit"] == 8 and agg["batch"]["artifact_batch"] == "dynamic"
    assert agg["infer_ms_per_batch"]["count"] == sum(hist.values())
    assert 0 <= agg["batch_wait_ms"]["p50_ms"] <= 20.0 + 15.0  # the wait is bounded
    data = json.loads(stats_path.read_text())
    assert sorted(data["streams"]) == ["a", "b", "c", "d"]
    assert data["streams"]["c"]["frames_processed"] == FRAMES
    assert data["aggregate"]["frames_processed"] == 4 * FRAMES
    assert data["aggregate"]["exit_code"] == 0 and data["aggregate"]["degraded"] == []
    lines = stats.summary_lines()  # the aggregate, then each stream's counts and outputs
    assert len(lines) == 9 and lines[0].startswith("4 streams: 96 frames")
    assert [ln.split(":")[0].strip() for ln in lines[1::2]] == ["a", "b", "c", "d"]
    assert all(" outputs: " in ln and f"({FRAMES} frames)" in ln for ln in lines[2::2])


def test_static_batch_is_padded_and_one_by_one_without_a_batch(
        batch_models: dict[str, Path], clips: list[Path], tmp_path: Path) -> None:
    configs = [cfg(batch_models["static4"], clip, save_masks=tmp_path / f"s{k}",
                   max_frames=10) for k, clip in enumerate(clips[:3])]
    stats = run_many(configs)
    hist = stats.aggregate["batch"]["histogram"]
    batch = stats.aggregate["batch"]
    assert batch["limit"] == 4 and batch["artifact_batch"] == 4
    assert sum(int(k) * v for k, v in hist.items()) == 30
    assert [s.frames_processed for s in stats.streams] == [10, 10, 10]
    seg = Segmenter(batch_models["one"])
    for k, clip in enumerate(clips[:3]):
        for i, frame in enumerate(decoded(clip)[:10]):
            mask = cv2.imread(str(tmp_path / f"s{k}" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(mask, seg(frame).labels)
    single = run_many([cfg(batch_models["one"], clip, max_frames=5) for clip in clips[:2]])
    assert single.aggregate["batch"]["histogram"] == {"1": 10}  # batch 1: one by one


def test_infer_many_pads_a_static_batch_and_splits_the_outputs(
        batch_models: dict[str, Path]) -> None:
    seg = Segmenter(batch_models["static4"])
    one = Segmenter(batch_models["one"])
    tensors = [seg.preprocess(frame_of(i, 0))[0] for i in (0, 7)]
    outs = seg.infer_many(tensors)
    assert len(outs) == 2 and outs[0]["labels"].shape == (1, 32, 48)
    for tensor, out in zip(tensors, outs, strict=True):
        np.testing.assert_array_equal(out["labels"], one.infer(tensor)["labels"])
    with pytest.raises(InputError, match="at most 4 frames"):
        seg.infer_many(tensors * 3)
    with pytest.raises(InputError, match="one or more tensors"):
        seg.infer_many([])
    broken = Segmenter(batch_models["dynamic"])
    broken.infer = lambda tensor: {"labels": np.zeros((1, 32, 48), np.uint8)}  # type: ignore[method-assign]
    with pytest.raises(ArtifactError, match="expected output 'labels' with a batch of 2"):
        broken.infer_many(tensors)


def test_a_lost_live_stream_does_not_stop_the_others(
        batch_models: dict[str, Path], clips: list[Path], tmp_path: Path) -> None:
    from tests.reliability.runtime_media import dropping_mjpeg_camera

    options = SourceOptions(reconnect_attempts=1, reconnect_backoff_s=0.05)
    with dropping_mjpeg_camera() as url:
        configs = [cfg(batch_models["dynamic"], clip, output=tmp_path / f"o{k}.avi")
                   for k, clip in enumerate(clips[:3])]
        configs.append(cfg(batch_models["dynamic"], url, source_options=options,
                           save_masks=tmp_path / "cam"))
        stats_path = tmp_path / "stats.json"
        stats = run_many(configs, stats_path, names=["f0", "f1", "f2", "cam"])
    for k in range(3):
        assert stats.streams[k].frames_processed == FRAMES
        assert count_frames(tmp_path / f"o{k}.avi") == (FRAMES, SIZE)
    cam = stats.by_name("cam")
    assert cam.stop_reason == "source lost" and 1 <= cam.frames_processed <= 15
    assert "SECRET" not in stats.to_json()
    assert stats.exit_code == 4
    assert stats.degraded == ("cam: http://admin:***@127.0.0.1:"
                              f"{url.rsplit(':', 1)[1]}: source lost (every reconnect attempt "
                              "failed)",)
    data = json.loads(stats_path.read_text())
    assert data["aggregate"]["exit_code"] == 4 and data["aggregate"]["degraded"][0].startswith(
        "cam: ")
    assert len(list((tmp_path / "cam").iterdir())) == cam.frames_processed


def test_a_slow_live_stream_does_not_pace_the_others(
        batch_models: dict[str, Path], clips: list[Path]) -> None:
    slow = "synthetic://?frames=8&size=64x48&fps=5&live=1"  # 1.6 s of frames
    stats = run_many([cfg(batch_models["dynamic"], clips[0]),
                      cfg(batch_models["dynamic"], clips[1]),
                      cfg(batch_models["dynamic"], slow)])
    fast, other, late = stats.streams
    assert fast.frames_processed == other.frames_processed == FRAMES
    assert late.frames_processed >= 6 and late.wall_s >= 1.2
    assert max(fast.wall_s, other.wall_s) < late.wall_s / 2  # they finished on their own


def test_stop_request_finalises_every_stream(batch_models: dict[str, Path],
                                             tmp_path: Path) -> None:
    stop = StopRequest()
    timer = threading.Timer(0.5, lambda: stop.set("SIGINT", 2))
    timer.start()
    configs = [cfg(batch_models["dynamic"], "synthetic://?frames=100000&size=64x48",
                   output=tmp_path / f"o{k}.avi", realtime=True) for k in range(3)]
    stats = run_many(configs, tmp_path / "s.json", stop=stop)
    timer.cancel()
    assert stats.exit_code == 130 and stats.aggregate["stop_reason"] == "SIGINT"
    for k, one in enumerate(stats.streams):
        assert one.interrupted and one.stop_reason == "SIGINT"
        assert 3 <= one.frames_processed == one.frames_read
        assert count_frames(tmp_path / f"o{k}.avi")[0] == one.frames_processed
    assert json.loads((tmp_path / "s.json").read_text())["aggregate"]["exit_code"] == 130


def test_shared_model_failure_is_raised_with_stats_written(
        batch_models: dict[str, Path], clips: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = Segmenter.infer_many

    def flaky(self: Segmenter, tensors: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ShapeError("tensor: expected something, got something else")
        return real(self, tensors)

    monkeypatch.setattr(Segmenter, "infer_many", flaky)
    stats_path = tmp_path / "s.json"
    with pytest.raises(ShapeError, match="got something else"):
        run_many([cfg(batch_models["dynamic"], clip, output=tmp_path / f"o{k}.avi")
                  for k, clip in enumerate(clips[:2])], stats_path)
    data = json.loads(stats_path.read_text())
    assert data["aggregate"]["stop_reason"].startswith("error: tensor: expected something")
    for name in ("stream1", "stream2"):
        assert data["streams"][name]["stop_reason"].startswith("error: ")
    assert not (tmp_path / "o0.avi").exists() and not (tmp_path / "o1.avi").exists()


def test_streams_must_share_the_model_and_names_must_differ(
        batch_models: dict[str, Path], clips: list[Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="stream stream2 model: expected the model of stream "
                                         "stream1"):
        run_many([cfg(batch_models["dynamic"], clips[0]), cfg(batch_models["one"], clips[1])])
    with pytest.raises(InputError, match="postprocess"):
        run_many([cfg(batch_models["dynamic"], clips[0]),
                  cfg(batch_models["dynamic"], clips[1], postprocess="fast")])
    with pytest.raises(InputError, match="distinct, non-empty names"):
        run_many([cfg(batch_models["dynamic"], c) for c in clips[:2]], names=["x", "x"])
    with pytest.raises(InputError, match="one combined stats file"):
        run_many([cfg(batch_models["dynamic"], clips[0], stats_path=tmp_path / "one.json")])
    with pytest.raises(InputError, match="one or more streams"):
        run_many([])
    with pytest.raises(InputError, match="--max-batch"):
        BatchPolicy(max_batch=0)
    assert list(tmp_path.iterdir()) == []


def test_stats_are_written_when_a_source_never_opens(
        batch_models: dict[str, Path], clips: list[Path], tmp_path: Path) -> None:
    stats_path = tmp_path / "s.json"
    with pytest.raises(Exception, match="no such file"):
        run_many([cfg(batch_models["dynamic"], clips[0]),
                  cfg(batch_models["dynamic"], tmp_path / "missing.avi")], stats_path)
    data = json.loads(stats_path.read_text())
    assert data["aggregate"]["frames_processed"] == 0
    assert data["streams"]["stream2"]["stop_reason"].endswith("got no such file")


def test_multi_run_stats_validate_and_exit_codes(batch_models: dict[str, Path],
                                                 clips: list[Path]) -> None:
    stats = run_many([cfg(batch_models["dynamic"], clips[0], max_frames=2)])
    assert isinstance(stats, MultiRunStats) and stats.exit_code == 0
    with pytest.raises(InputError, match="one RunStats per stream name"):
        MultiRunStats(stats.streams, ("a", "b"))
    assert stats.with_degraded("x: why").exit_code == 4


def test_a_stream_whose_source_fails_ends_alone(
        batch_models: dict[str, Path], clips: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import segedge.runtime.engine as streams_mod
    from segedge.runtime.errors import SourceError

    real_open = streams_mod.open_source

    def opener(uri: str, options: SourceOptions | None = None) -> object:
        source = real_open(uri, options)
        if uri == str(clips[1]):
            read = source.read

            def failing() -> object:
                frame = read()
                if frame is not None and frame.index == 5:
                    raise SourceError(f"{uri}: expected a readable disk, got EIO")
                return frame

            source.read = failing  # type: ignore[method-assign]
        return source

    monkeypatch.setattr(streams_mod, "open_source", opener)
    stats = run_many([cfg(batch_models["dynamic"], clip, output=tmp_path / f"o{k}.avi")
                      for k, clip in enumerate(clips[:3])])
    assert [s.frames_processed for s in stats.streams][::2] == [FRAMES, FRAMES]
    assert stats.streams[1].frames_processed <= 5
    assert stats.exit_code == 4
    assert stats.degraded == (f"stream2: {clips[1]}: stream failed: {clips[1]}: expected a "
                              "readable disk, got EIO",)
    assert count_frames(tmp_path / "o0.avi") == (FRAMES, SIZE)
    assert not (tmp_path / "o1.avi").exists()  # the failed stream's video stays partial
