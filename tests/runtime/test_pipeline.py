"""run(RunConfig): frames in order, outputs complete, stop/abort semantics, stats."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime import Segmenter
from segedge.runtime.config import RunConfig
from segedge.runtime.draw import UNKNOWN_LABEL, DrawConfig
from segedge.runtime.errors import InputError, ShapeError, SourceError
from segedge.runtime.pipeline import run
from segedge.runtime.signals import StopRequest
from segedge.runtime.sinks.video import partial_path
from segedge.runtime.sources.base import SourceOptions
from tests.runtime.onnx_fixtures import count_frames, scene, write_video


def decoded_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while True:
        ok, image = cap.read()
        if not ok:
            return frames
        frames.append(image)


def read_mask(directory: Path, index: int | str) -> np.ndarray:
    """Mask `index` of a video source, or the mask named after image `index` (its stem)."""
    name = index if isinstance(index, str) else f"{index:06d}"
    mask = cv2.imread(str(directory / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    assert mask is not None, f"mask {index} missing"
    return np.asarray(mask)


def config(model: Path, source: Path | str, **kw: object) -> RunConfig:
    return RunConfig(model=model, source=str(source), display=False, **kw)  # type: ignore[arg-type]


def test_video_masks_and_stats(models: dict[str, Path], video: Path, tmp_path: Path) -> None:
    out, masks, stats_path = tmp_path / "out.mp4", tmp_path / "masks", tmp_path / "s.json"
    stats = run(config(models["labels_dynamic"], video, output=out, save_masks=masks,
                       stats_path=stats_path))
    assert stats.frames_read == stats.frames_processed == 40
    assert stats.frames_dropped == 0 and stats.frames_corrupt == 0
    assert not stats.interrupted and stats.stop_reason == "end of stream"
    assert stats.provider == "CPUExecutionProvider" and stats.fps > 0
    assert count_frames(out) == (40, (64, 48))
    assert not partial_path(out).exists()
    data = json.loads(stats_path.read_text())
    assert data["frames_processed"] == 40
    for stage in ("read", "preprocess", "infer", "postprocess", "draw", "write", "latency"):
        assert data["stages"][stage]["count"] == 40
        assert 0 <= data["stages"][stage]["p50_ms"] <= data["stages"][stage]["p99_ms"]
    # every mask equals the Python API on the same decoded frame: order is preserved
    seg = Segmenter(models["labels_dynamic"])
    frames = decoded_frames(video)
    assert len(list(masks.iterdir())) == 40
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(read_mask(masks, i), seg(frame).labels)


def test_logits_model_fast_postprocess_matches_api(models: dict[str, Path], video: Path,
                                                   tmp_path: Path) -> None:
    stats = run(config(models["logits"], video, save_masks=tmp_path, postprocess="fast",
                       max_frames=6))
    assert stats.frames_processed == 6 and stats.stop_reason == "max frames"
    seg = Segmenter(models["logits"], postprocess="fast")
    for i, frame in enumerate(decoded_frames(video)[:6]):
        np.testing.assert_array_equal(read_mask(tmp_path, i), seg(frame).labels)
    assert sorted(p.name for p in tmp_path.iterdir())[-1] == "000005.png"


def test_run_never_computes_confidence_it_does_not_use(
        models: dict[str, Path], video: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from segedge.runtime.tasks import semantic

    calls = {"n": 0}
    real = semantic.softmax_max

    def counting(logits: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        return real(logits)

    monkeypatch.setattr(semantic, "softmax_max", counting)
    stats = run(config(models["logits"], video, output=tmp_path / "o.avi", max_frames=4))
    assert stats.frames_processed == 4 and calls["n"] == 0
    run(config(models["logits"], video, save_masks=tmp_path / "m", max_frames=4,
               score_threshold=0.5))
    assert calls["n"] == 4  # the threshold needs it: once per frame


def test_side_by_side_doubles_the_width(models: dict[str, Path], video: Path,
                                        tmp_path: Path) -> None:
    out = tmp_path / "sbs.avi"
    run(config(models["labels"], video, output=out, max_frames=5,
               draw=DrawConfig(mode="side-by-side")))
    assert count_frames(out) == (5, (128, 48))


def test_image_directory_to_video(models: dict[str, Path], tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(4):
        cv2.imwrite(str(images / f"{i}.png"), scene(i, 64, 48))
    out = tmp_path / "o.avi"
    stats = run(config(models["labels"], images, output=out, save_masks=tmp_path / "m"))
    assert stats.frames_processed == 4 and count_frames(out) == (4, (64, 48))
    assert (read_mask(tmp_path / "m", "2")[:, :10] == 1).all()  # named after 2.png


def test_truncated_video_is_processed_up_to_the_damage(models: dict[str, Path],
                                                       tmp_path: Path) -> None:
    data = write_video(tmp_path / "full.avi", 60).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.mp4"
    stats = run(config(models["labels"], cut, output=out))
    assert 10 < stats.frames_processed < 60
    assert stats.frames_corrupt == 60 - stats.frames_processed
    assert count_frames(out)[0] == stats.frames_processed


def test_score_threshold_writes_unknown_labels(models: dict[str, Path], tmp_path: Path) -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :32, 2] = 150  # red, confidence 0.59
    cv2.imwrite(str(tmp_path / "f.png"), frame)
    run(config(models["labels_dynamic"], tmp_path / "f.png", save_masks=tmp_path / "m",
               score_threshold=0.7))
    mask = read_mask(tmp_path / "m", "f")  # named after f.png
    assert (mask[:, :32] == UNKNOWN_LABEL).all()  # red but unsure
    assert (mask[:, 32:] == UNKNOWN_LABEL).all()  # background, confidence 0


def test_stop_request_finalises_the_output(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    stop = StopRequest()
    timer = threading.Timer(0.5, lambda: stop.set("SIGINT", 2))
    timer.start()
    stats = run(config(models["labels"], "synthetic://?frames=100000&size=64x48", output=out,
                       realtime=True), stop=stop)
    timer.cancel()
    assert stats.interrupted and stats.stop_reason == "SIGINT"
    assert 3 <= stats.frames_processed < 100000
    assert stats.frames_processed == stats.frames_read  # in-flight frames were drained
    assert count_frames(out)[0] == stats.frames_processed


def test_failure_mid_run_leaves_only_a_partial_file(
        models: dict[str, Path], video: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = Segmenter.infer

    def flaky(self: Segmenter, tensor: np.ndarray) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 10:
            raise ShapeError("tensor: expected something, got something else")
        return real(self, tensor)

    monkeypatch.setattr(Segmenter, "infer", flaky)
    out, stats_path = tmp_path / "o.mp4", tmp_path / "s.json"
    with pytest.raises(ShapeError, match="got something else"):
        run(config(models["labels"], video, output=out, stats_path=stats_path))
    assert not out.exists()
    assert partial_path(out).exists()  # what was written is kept, under a partial name
    data = json.loads(stats_path.read_text())
    assert data["stop_reason"].startswith("error: ") and data["frames_processed"] < 10


def test_live_source_counts_drops(models: dict[str, Path]) -> None:
    stats = run(config(models["labels"], "synthetic://?frames=300&fps=1000&live=1&size=64x48"))
    assert stats.frames_read == stats.frames_processed
    assert stats.frames_read + stats.frames_dropped == 300


def test_bad_inputs_fail_before_anything_is_written(models: dict[str, Path], video: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    with pytest.raises(SourceError, match="no such file"):
        run(config(models["labels"], tmp_path / "missing.mp4", output=out))
    with pytest.raises(InputError, match="--output"):
        config(models["labels"], video, output=tmp_path / "o.gif")
    with pytest.raises(InputError, match="--max-frames"):
        config(models["labels"], video, max_frames=0)
    assert list(tmp_path.iterdir()) == []


def test_window_on_the_main_thread_quits_on_q(models: dict[str, Path], video: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With a display the sinks run on the calling thread (GUI rule); q stops the run."""
    import segedge.runtime.sinks.window as sinks_mod

    monkeypatch.setattr(sinks_mod, "display_available", lambda: True)
    monkeypatch.setattr(sinks_mod, "gui_available", lambda: True)  # the cv2.imshow window
    shown: list[str] = []
    keys = iter([-1, -1, -1, ord("q")] + [-1] * 100)
    monkeypatch.setattr(cv2, "imshow", lambda name, image: shown.append(
        threading.current_thread().name))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda name, prop: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda name: None)
    stats = run(RunConfig(model=models["labels"], source=str(video)))
    assert stats.stop_reason == "window closed" and not stats.interrupted
    assert 4 <= stats.frames_processed < 40
    assert set(shown) == {threading.main_thread().name}


def test_stats_are_written_when_the_source_never_opens(models: dict[str, Path],
                                                       tmp_path: Path) -> None:
    stats_path = tmp_path / "s.json"
    with pytest.raises(SourceError, match="no such file"):
        run(config(models["labels"], tmp_path / "missing.mp4", stats_path=stats_path))
    data = json.loads(stats_path.read_text())
    assert data["stop_reason"] == (f"error: {tmp_path / 'missing.mp4'}: expected an existing "
                                   "video file, got no such file")
    assert data["frames_processed"] == 0 and data["provider"] == "CPUExecutionProvider"
    assert not data["interrupted"] and data["outputs"] == {}


def test_lost_live_source_is_degraded_not_an_end_of_stream(models: dict[str, Path],
                                                           tmp_path: Path) -> None:
    uri = "synthetic://?frames=6&size=64x48&fps=300&live=1&lost=1"
    options = SourceOptions(reconnect_attempts=1, reconnect_backoff_s=0.01)
    stats = run(config(models["labels"], uri, source_options=options,
                       save_masks=tmp_path / "m"))
    assert stats.stop_reason == "source lost" and stats.exit_code == 4
    assert stats.degraded == (f"{uri}: source lost (every reconnect attempt failed)",)
    assert stats.outputs == {str(tmp_path / "m"): "ok"}
    assert stats.frames_written == {str(tmp_path / "m"): stats.frames_processed}


def test_nothing_processed_is_degraded(models: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"broken")
    stats = run(config(models["labels"], tmp_path, output=tmp_path / "o.mp4"))
    assert stats.frames_processed == 0 and stats.exit_code == 4
    assert stats.degraded == (f"{tmp_path}: no frame could be processed (1 unreadable)",)
    assert stats.outputs == {str(tmp_path / "o.mp4"): "empty: no frames reached it; no file "
                                                      "written"}


def test_outputs_are_checked_for_writability_before_anything_runs(
        models: dict[str, Path], video: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="--output: expected a path under a folder"):
        config(models["labels"], video, output=tmp_path / "f" / "o.mp4")
    with pytest.raises(InputError, match="--stats: expected a file path, got the folder"):
        config(models["labels"], video, stats_path=tmp_path)
    with pytest.raises(InputError, match="--save-masks: expected a path under a folder"):
        config(models["labels"], video, save_masks=tmp_path / "f" / "m")
    with pytest.raises(InputError, match="--stats: expected a path other than --output"):
        config(models["labels"], video, output=tmp_path / "o.mp4",
               stats_path=tmp_path / "o.mp4")


def test_stats_time_the_resize_on_its_own_and_say_why_this_backend(
        models: dict[str, Path], video: Path) -> None:
    stats = run(config(models["labels"], video, max_frames=5))
    assert stats.stages["resize"].count == stats.stages["preprocess"].count == 5
    assert stats.stages["resize"].p50_ms > 0.0  # 64x48 frames into a 32x48 graph
    assert stats.backend_reason == "onnxruntime CPU: pinned by SEGEDGE_AUTO_BACKEND"
    pytest.importorskip("openvino")
    stats = run(config(models["labels"], video, max_frames=5, backend="openvino"))
    assert stats.backend == "openvino" and stats.provider == "CPU (f32)"
    assert stats.backend_reason == "openvino CPU (f32): --backend openvino"
    assert stats.frames_processed == 5
