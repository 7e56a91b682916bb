"""Verification frames come from the flags, else generated scenes: never a file-system search."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.export import frames, scenes
from segedge.export.frames import load_frames
from segedge.runtime.errors import InputError

SIZE = (48, 64)


def test_no_flag_means_generated_scenes_even_beside_shared_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A CamVid-shaped folder where the old lookup searched (cwd/../shared/data, cwd/shared/data,
    # $SEGEDGE_SHARED_DATA): the frames must not come from it.
    for root in (tmp_path / "shared" / "data", tmp_path / "work" / "shared" / "data"):
        (root / "camvid" / "val").mkdir(parents=True)
        cv2.imwrite(str(root / "camvid" / "val" / "0001.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "work" / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "work" / "repo")
    monkeypatch.setenv("SEGEDGE_SHARED_DATA", str(tmp_path / "shared" / "data"))
    got = load_frames(None, 3, SIZE, seed=4)
    assert got.source == "generated road scenes" and got.paths == ()
    want = scenes.frames(3, SIZE, 4)
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got.frames, want,
                                                                      strict=True))
    assert not hasattr(frames, "shared_data_dir") and not hasattr(frames, "camvid_dir")


def test_a_folder_is_read_in_order_with_its_paths(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), 40 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    got = load_frames(str(tmp_path), 2, SIZE)
    assert got.source == str(tmp_path)
    assert got.paths == (str(tmp_path / "0.png"), str(tmp_path / "1.png"))
    assert [int(f[0, 0, 0]) for f in got.frames] == [0, 40]


def test_a_video_gives_frames_spread_over_it(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    got = load_frames(str(path), 3, SIZE)
    assert got.source == f"video {path}" and len(got) == 3
    means = [float(f.mean()) for f in got.frames]
    assert means[0] < means[1] < means[2]  # first, middle, last: not three neighbours
    assert means[2] - means[0] > 120


def test_nothing_matching_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^--verify-images: expected a folder, image, glob "
                                         r"or video with frames, got '.*nothing\*\.png'$"):
        load_frames(str(tmp_path / "nothing*.png"), 2, SIZE)


def test_suffixes_are_the_runtime_rule() -> None:
    from segedge.runtime import paths

    assert frames.IMAGE_SUFFIXES is paths.IMAGE_SUFFIXES
    assert frames.VIDEO_SUFFIXES is paths.VIDEO_SUFFIXES
    assert frames.list_images is paths.list_images


def test_labelled_frames_pair_by_name_and_refuse_what_cannot_be_scored(tmp_path: Path) -> None:
    from segedge.export.frames import load_labelled_frames

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"f{i}.png"), np.full((12, 16, 3), i, np.uint8))
        cv2.imwrite(str(labels / f"f{i}.png"), np.full((12, 16), i, np.uint8))
    got = load_labelled_frames(str(images), labels, 2)
    assert got.paths == (str(images / "f0.png"), str(images / "f1.png"))
    assert got.truths is not None and [int(t[0, 0]) for t in got.truths] == [0, 1]
    assert got.labels_source == str(labels) and len(got) == 2
    cv2.imwrite(str(labels / "f0.png"), np.zeros((6, 8), np.uint8))
    with pytest.raises(InputError) as err:
        load_labelled_frames(str(images), labels, 2)
    assert str(err.value) == ("--verify-labels: expected label maps the size of their images, "
                              "got f0.png 8x6 for f0.png 16x12 (W x H)")
    (labels / "f2.png").unlink()
    with pytest.raises(InputError) as err:
        load_labelled_frames(str(images), labels, 2)
    assert str(err.value) == (f"--verify-labels: expected a label file named like every image "
                              f"in {images}, got 1 without one (first: f2.png)")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    with pytest.raises(InputError, match="^--verify-labels: expected --verify-images as image "):
        load_labelled_frames(str(video), labels, 2)
