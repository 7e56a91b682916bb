"""segrun end to end with the new outputs: image in / image out, folders, several outputs at
once, the end-of-run summary, --stats -, -q, bad targets, and several streams."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime.cli import main
from tests.runtime.onnx_fixtures import count_frames, scene, write_video

SUMMARY = [
    re.compile(r"^segrun: 12 frames read, 12 processed, 0 dropped in \d+\.\d\d s: \d+\.\d FPS "
               r"end to end \(stopped: max frames\)$"),
    re.compile(r"^segrun: mean ms per frame: read \d+\.\d, resize \d+\.\d, preprocess \d+\.\d, "
               r"infer \d+\.\d, postprocess \d+\.\d, draw \d+\.\d, write \d+\.\d; "
               r"latency \d+\.\d$"),
]


def call(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_on_stderr_and_nothing_on_stdout(capsys: pytest.CaptureFixture[str],
                                                 models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "a.mp4"
    code, stdout, err = call(capsys, models["labels"], "demo://", "-o", out, "--max-frames",
                             "12", "--no-display")
    assert code == 0, err
    assert stdout == ""
    lines = err.splitlines()
    assert lines[-1] == f"segrun: outputs: {out} (12 frames)"
    for pattern, line in zip(SUMMARY, lines[-3:-1], strict=True):
        assert pattern.match(line), line
    assert count_frames(out)[0] == 12


def test_stats_dash_is_the_json_alone_and_quiet_has_no_summary(
        capsys: pytest.CaptureFixture[str], models: dict[str, Path], tmp_path: Path) -> None:
    code, stdout, err = call(capsys, models["labels"], "demo://", "-o", tmp_path / "a.mp4",
                             "--max-frames", "12", "--no-display", "--stats", "-")
    assert code == 0, err
    stats = json.loads(stdout)  # the whole of stdout is one JSON document
    assert stats["frames_processed"] == 12
    assert stats["outputs"] == {str(tmp_path / "a.mp4"): "ok"}
    assert stats["output"] == str(tmp_path / "a.mp4")
    assert "segrun: outputs: " in err
    code, stdout, err = call(capsys, models["labels"], "demo://", "-o", tmp_path / "b.mp4",
                             "--max-frames", "12", "--no-display", "-q")
    assert code == 0 and stdout == "" and err == ""
    code, stdout, err = call(capsys, models["labels"], "demo://", "--max-frames", "2",
                             "--no-display", "-v")
    assert code == 0 and stdout == "" and "segrun: outputs: none" in err


def test_photo_in_photo_out(capsys: pytest.CaptureFixture[str], models: dict[str, Path],
                            tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    original = scene(5, 96, 72)  # red on the left (class 1), blue on the right (class 0)
    cv2.imwrite(str(photo), original)
    out = tmp_path / "res" / "photo_out.png"
    code, _, err = call(capsys, models["labels_dynamic"], photo, "-o", out, "--no-display",
                        "--no-legend", "--no-hud", "--ignore-class", "background")
    assert code == 0, err
    assert err.splitlines()[-1] == f"segrun: outputs: {out} (1 frame)"
    back = cv2.imread(str(out))
    assert back is not None and back.shape == original.shape
    red = (original == np.array(scene(5, 96, 72)[0, 0])).all(axis=2)  # the red pixels
    diff = np.abs(back.astype(int) - original.astype(int)).sum(axis=2)
    assert diff[red].mean() > 30  # drawn where the class is
    assert diff[~red].max() <= 1  # the ignored class shows the photo unchanged (PNG: lossless)
    assert sorted(p.name for p in out.parent.iterdir()) == ["photo_out.png"]


def test_folder_in_folder_out(capsys: pytest.CaptureFixture[str], models: dict[str, Path],
                              tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    sizes = {"a.jpg": (64, 48), "b.png": (80, 60), "c.bmp": (48, 32)}
    for i, (name, (w, h)) in enumerate(sizes.items()):
        cv2.imwrite(str(images / name), scene(i, w, h))
    out = tmp_path / "overlays"
    code, stdout, err = call(capsys, models["labels_dynamic"], images, "-o", f"{out}/",
                             "--no-display", "--stats", "-")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    for name, (w, h) in sizes.items():
        back = cv2.imread(str(out / f"{Path(name).stem}.png"))
        assert back is not None and back.shape == (h, w, 3)
    stats = json.loads(stdout)
    assert stats["outputs"] == {str(out): "ok"} and stats["frames_written"] == {str(out): 3}


def test_video_and_folder_and_masks_at_once(capsys: pytest.CaptureFixture[str],
                                            models: dict[str, Path], video: Path,
                                            tmp_path: Path) -> None:
    out, frames, masks = tmp_path / "o.avi", tmp_path / "frames", tmp_path / "masks"
    code, stdout, err = call(capsys, models["labels"], video, "-o", out, "-o", frames,
                             "--save-masks", masks, "--max-frames", "6", "--no-display",
                             "--stats", "-")
    assert code == 0, err
    assert count_frames(out) == (6, (64, 48))
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:06d}.png" for i in range(6)]
    assert sorted(p.name for p in masks.iterdir()) == [f"{i:06d}.png" for i in range(6)]
    stats = json.loads(stdout)
    assert stats["frames_written"] == {str(out): 6, str(frames): 6, str(masks): 6}
    assert err.splitlines()[-1] == (f"segrun: outputs: {out} (6 frames), {frames} (6 frames), "
                                    f"{masks} (6 frames)")


@pytest.mark.parametrize(("args", "message"), [
    (["VIDEO", "-o", "TMP/photo.png"],
     "--output: expected a folder (DIR/) or a video file for a source that is not one image "
     "(VIDEO), got 'TMP/photo.png'"),
    (["VIDEO", "-o", "foo://x"],
     "--output: expected a video path ending in .mp4, .m4v, .mov, .avi, .mkv, an image path "
     "ending in .png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp, a folder (DIR/) or a URI "
     "(display://, rtp://, udp://, rtsp://), got unsupported scheme 'foo' ('foo://x')"),
    (["VIDEO", "VIDEO", "-o", "TMP/one.mp4"],
     "--output: expected a pattern holding {stream} (e.g. out_{stream}.mp4) or a folder (DIR/) "
     "for 2 sources, got 'TMP/one.mp4'"),
    (["VIDEO", "--stats", "TMP/a.json", "--stats", "TMP/b.json"],
     "--stats: expected one file path (and '-' for stdout), got TMP/a.json, TMP/b.json"),
    (["-q", "-v"], "--verbose: expected either -q or -v, got both"),
])
def test_bad_targets_are_one_line_exit_2_and_create_nothing(
        capsys: pytest.CaptureFixture[str], video: Path, tmp_path: Path, args: list[str],
        message: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    names = {"VIDEO": str(video), "TMP": str(work)}
    # The model does not exist: an error about the target proves it was checked first.
    argv = [tmp_path / "missing.onnx"] + [
        names.get(a, a.replace("TMP", str(work))) for a in args]
    code, stdout, err = call(capsys, *argv, "--no-display")
    assert code == 2 and stdout == ""
    expected = message.replace("TMP", str(work)).replace("VIDEO", str(video))
    assert err.splitlines() == [f"segrun: error: {expected}"]
    assert list(work.iterdir()) == []


def test_model_uri_is_not_a_path(capsys: pytest.CaptureFixture[str], video: Path) -> None:
    """triton://host:port/model reaches the backend registry as written (never host:port/m)."""
    code, _, err = call(capsys, "nope://127.0.0.1:1/seg", video, "--no-display", "-q")
    assert code == 2 and "nope://127.0.0.1:1/seg" in err and "nope:/127" not in err


def test_several_streams_into_a_folder(capsys: pytest.CaptureFixture[str],
                                       models: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("segedge.runtime.streams")
    front = write_video(tmp_path / "front.avi", 5)
    rear = write_video(tmp_path / "rear.mp4", 7)
    listing = tmp_path / "more.txt"
    listing.write_text(f"# the same camera again\n{front}\n")
    out, masks = tmp_path / "out", tmp_path / "masks"
    code, stdout, err = call(capsys, models["labels"], front, rear, "--sources", listing,
                             "-o", f"{out}/", "--save-masks", masks, "--no-display",
                             "--stats", "-")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["front-2.mp4", "front.mp4", "rear.mp4"]
    assert count_frames(out / "front.mp4")[0] == count_frames(out / "front-2.mp4")[0] == 5
    assert count_frames(out / "rear.mp4")[0] == 7
    assert len(list((masks / "rear").glob("*.png"))) == 7
    stats = json.loads(stdout)
    assert sorted(stats["streams"]) == ["front", "front-2", "rear"]
    assert stats["streams"]["rear"]["frames_processed"] == 7
    assert stats["streams"]["front-2"]["outputs"] == {str(out / "front-2.mp4"): "ok",
                                                      str(masks / "front-2"): "ok"}
    assert "segrun: error" not in err


def test_stats_dash_on_a_failed_run_is_json_without_the_password(
        capsys: pytest.CaptureFixture[str], models: dict[str, Path]) -> None:
    uri = "rtsp://viewer:hunter2-s3cret@127.0.0.1:1/live"  # refused at once
    code, stdout, err = call(capsys, models["labels"], uri, "--reconnect", "0", "--no-display",
                             "-q", "--stats", "-")
    assert code == 2
    stats = json.loads(stdout)
    assert stats["source"] == "rtsp://viewer:***@127.0.0.1:1/live"
    assert stats["stop_reason"].startswith("error: ") and stats["frames_processed"] == 0
    assert "hunter2-s3cret" not in stdout + err
    assert err.splitlines()[-1].startswith("segrun: error: rtsp://viewer:***@127.0.0.1:1/live")
