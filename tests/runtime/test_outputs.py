"""Outputs by URI: the sink registry, image and folder sinks, RunConfig's up-front checks,
and the multi-stream naming and output rules (no model needed)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime.cli_parse import gather_sources, log_levels, parse_model, parse_stats
from segedge.runtime.config import RunConfig, single_image_source
from segedge.runtime.errors import InputError
from segedge.runtime.paths import IMAGE_SUFFIXES
from segedge.runtime.sinks import base as sinks_base
from segedge.runtime.sinks.base import SinkContext, SinkOutcome, check_output, sink_for, sink_kind
from segedge.runtime.sinks.images import FolderSink, ImageSink
from segedge.runtime.sinks.video import CODECS
from segedge.runtime.streams import (
    per_stream_masks,
    per_stream_outputs,
    stream_name,
    stream_names,
)
from tests.runtime.onnx_fixtures import scene

EXPECTED = ("a video path ending in .mp4, .m4v, .mov, .avi, .mkv, an image path ending in "
            ".png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp, a folder (DIR/) or a URI (display://, "
            "rtp://, udp://, rtsp://)")
LABELS = np.zeros((48, 64), np.uint8)


@pytest.mark.parametrize(("target", "kind"), [
    ("a.mp4", "video"), ("b/A.AVI", "video"), ("c.mkv", "video"), ("p.png", "image"),
    ("p.JPG", "image"), ("out/", "folder"), ("out", "folder"), ("display://0", "display"),
    ("udp://127.0.0.1:5000", "network"), ("rtp://10.0.0.2:5004", "network"),
    ("rtsp://0.0.0.0:8554/seg", "network"), ("DISPLAY://1", "display"),
])
def test_targets_pick_their_kind_by_scheme_folder_or_suffix(target: str, kind: str) -> None:
    assert sink_for(target).name == kind


def test_an_existing_folder_is_a_folder_whatever_its_name(tmp_path: Path) -> None:
    (tmp_path / "looks.mp4").mkdir()
    assert sink_for(tmp_path / "looks.mp4").name == "folder"


@pytest.mark.parametrize(("target", "received"), [
    ("foo://x", "unsupported scheme 'foo' ('foo://x')"),
    ("x.gif", "'x.gif'"),
    ("  ", "an empty string"),
])
def test_unknown_targets_name_every_kind(target: str, received: str) -> None:
    with pytest.raises(InputError) as info:
        sink_for(target)
    assert str(info.value) == f"--output: expected {EXPECTED}, got {received}"


def test_registered_suffixes_agree_with_the_writers() -> None:
    assert sink_kind("video").suffixes == tuple(CODECS)  # every codec the video sink knows
    assert set(sink_kind("image").suffixes) <= set(IMAGE_SUFFIXES)
    for suffix in sink_kind("image").suffixes:  # OpenCV can encode each one
        ok, _ = cv2.imencode(suffix, scene(0))
        assert ok, suffix


def make_printer(target: str, ctx: SinkContext) -> ImageSink:
    return ImageSink(Path(target.split("://", 1)[1]))


def check_printer(target: str, flag: str) -> None:
    if not target.endswith(".png"):
        raise InputError(flag, "lp://NAME.png", repr(target))


@pytest.fixture
def printer_kind() -> Iterator[None]:
    sinks_base.register_sink("printer", __name__, "make_printer", schemes=("lp",),
                             check="check_printer")
    yield
    sinks_base.SINKS.unregister("printer")


@pytest.mark.usefixtures("printer_kind")
def test_a_new_kind_is_one_registry_line(tmp_path: Path) -> None:
    assert check_output(f"lp://{tmp_path}/x.png").name == "printer"
    with pytest.raises(InputError, match=r"^--output: expected lp://NAME.png, got 'lp://x'$"):
        RunConfig(model=Path("m.onnx"), source="clip.mp4", outputs=("lp://x",))
    sink = sinks_base.open_sink("printer", f"lp://{tmp_path}/x.png", SinkContext())
    assert isinstance(sink, ImageSink) and sink.path == tmp_path / "x.png"


def test_a_kind_whose_module_is_missing_is_one_input_error() -> None:
    kind = sinks_base.SinkKind("ghost", "segedge.runtime.sinks.ghost", "create",
                               schemes=("ghost",), check="check")
    with pytest.raises(InputError) as info:
        kind.validate("ghost://x")
    assert str(info.value) == ("--output: expected a ghost output (module "
                               "segedge.runtime.sinks.ghost), got a segedge without it")


# -- RunConfig ------------------------------------------------------------------------------

def cfg(source: str | Path, **kw: object) -> RunConfig:
    return RunConfig(model=Path("m.onnx"), source=str(source), **kw)  # type: ignore[arg-type]


def test_output_and_outputs_merge_once(tmp_path: Path) -> None:
    config = cfg("clip.mp4", output=tmp_path / "a.mp4", outputs=(f"{tmp_path}/f/",))
    assert config.outputs == (str(tmp_path / "a.mp4"), f"{tmp_path}/f/")
    again = dataclasses.replace(config, max_frames=3)  # replace() runs the merge again
    assert again.outputs == config.outputs
    with pytest.raises(InputError, match=r"^--output: expected each target once, got "):
        cfg("clip.mp4", outputs=(str(tmp_path / "a.mp4"), str(tmp_path / "a.mp4")))
    assert cfg("clip.mp4", outputs=str(tmp_path / "b.avi")).outputs == (str(tmp_path / "b.avi"),)


def test_model_uri_stays_text_and_paths_become_paths() -> None:
    uri = "triton://127.0.0.1:8000/seg"
    assert RunConfig(model=uri, source="clip.mp4").model == uri
    assert parse_model(uri) == uri  # a Path would collapse // into /
    assert RunConfig(model="dir/m.onnx", source="clip.mp4").model == Path("dir/m.onnx")
    assert parse_model("m.onnx") == Path("m.onnx")


@pytest.mark.parametrize(("source", "target", "message"), [
    ("clip.mp4", "PNG", "--output: expected a folder (DIR/) or a video file for a source that "
                        "is not one image (clip.mp4), got 'PNG'"),
    ("IMGS", "PNG", "--output: expected a folder (DIR/) or a video file for a source that is "
                    "not one image (IMGS), got 'PNG'"),
    ("rtsp://u:pw@cam/x", "PNG", "--output: expected a folder (DIR/) or a video file for a "
                                 "source that is not one image (rtsp://u:***@cam/x), got 'PNG'"),
    ("PHOTO", "PHOTO", "--output: expected a path other than the source, got 'PHOTO'"),
    ("IMGS", "IMGS", "--output: expected a folder other than the source folder (overlays "
                     "would replace its images), got 'IMGS'"),
])
def test_image_out_needs_one_image_in_and_no_output_overwrites_the_source(
        tmp_path: Path, source: str, target: str, message: str) -> None:
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "photo.png"), scene(0))
    names = {"PNG": str(tmp_path / "out.png"), "IMGS": str(tmp_path / "imgs"),
             "PHOTO": str(tmp_path / "photo.png")}
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputError) as info:
        cfg(names.get(source, source), outputs=(names[target],))
    expected = message
    for key, value in names.items():
        expected = expected.replace(f"'{key}'", repr(value)).replace(f"({key})", f"({value})")
    assert str(info.value) == expected
    assert sorted(tmp_path.rglob("*")) == before  # nothing created


def test_image_out_for_one_image_and_other_conflicts(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "photo.png"), scene(0))
    assert cfg(tmp_path / "photo.png", outputs=(str(tmp_path / "o.jpg"),)).outputs
    assert single_image_source(str(tmp_path / "photo.png"))
    assert not single_image_source(str(tmp_path / "*.png"))
    assert not single_image_source("rtsp://cam/x.png")
    with pytest.raises(InputError) as info:
        cfg("clip.mp4", outputs=(f"{tmp_path}/o/",), save_masks=tmp_path / "o")
    assert str(info.value) == ("--save-masks: expected a folder other than the overlay folder "
                               f"of -o (both name files <image>.png), got {tmp_path / 'o'}")
    with pytest.raises(InputError) as info:
        cfg("clip.mp4", outputs=("display://0",), display=False)
    assert str(info.value) == "--no-display: expected no display:// output with it, got " \
                              "display://0"
    with pytest.raises(InputError, match=r"^--stats: expected a path other than --output, got "):
        cfg("clip.mp4", outputs=(str(tmp_path / "s.mp4"),), stats_path=tmp_path / "s.mp4")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError) as info:
        cfg("clip.mp4", outputs=(str(tmp_path / "afile"),))
    assert str(info.value) == ("--output: expected a folder (or a path ending in a video or "
                               f"image suffix), got existing file {tmp_path / 'afile'}")
    with pytest.raises(InputError) as info:
        cfg("clip.mp4", outputs=("display://x",))
    assert str(info.value) == ("--output: expected display://N (N: the screen, e.g. "
                               "display://0), got 'display://x'")
    assert not (tmp_path / "o").exists()


# -- image and folder sinks -------------------------------------------------------------------

def test_image_sink_writes_one_verified_picture(tmp_path: Path) -> None:
    sink = ImageSink(tmp_path / "sub" / "out.png")
    image = scene(3, 80, 60)
    sink.write(0, image, LABELS)
    assert sink.close() == SinkOutcome(str(tmp_path / "sub" / "out.png"), 1)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "sub" / "out.png")), image)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.png"]  # no temp left
    jpg = ImageSink(tmp_path / "o.jpg")
    jpg.write(0, image, LABELS)
    jpg.write(1, image, LABELS)
    assert jpg.close() == SinkOutcome(str(tmp_path / "o.jpg"), 1, "failed",
                                      "an image holds one frame; 1 more were not written "
                                      "(use a folder: -o DIR/)")
    assert cv2.imread(str(tmp_path / "o.jpg")).shape == (60, 80, 3)
    assert ImageSink(tmp_path / "e.png").close().state == "empty"


def test_image_sink_that_cannot_write_says_why(tmp_path: Path) -> None:
    (tmp_path / "taken.png").mkdir()  # this name cannot become a file
    sink = ImageSink(tmp_path / "taken.png")
    sink.write(0, scene(0), LABELS)
    outcome = sink.close()
    assert outcome.failed and outcome.frames_written == 0
    assert outcome.detail == "image not written: Is a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"]


def test_folder_sink_names_overlays_after_their_images(tmp_path: Path) -> None:
    names = {0: "street", 1: None, 2: "car"}
    sink = FolderSink(tmp_path / "o", frame_names=names.get)
    frames = [scene(i) for i in range(3)]
    for i, image in enumerate(frames):
        sink.write(i, image, LABELS)
    assert sink.close() == SinkOutcome(str(tmp_path / "o"), 3)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "000001.png", "car.png", "street.png"]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "o" / "car.png")), frames[2])
    assert FolderSink(tmp_path / "n").close().state == "empty"
    partial = FolderSink(tmp_path / "p")
    partial.write(0, frames[0], LABELS)
    assert partial.close(complete=False) == SinkOutcome(
        str(tmp_path / "p"), 1, "partial", "run did not finish; 1 overlay(s) written")


def test_folder_sink_counts_failures_and_rereads_what_it_wrote(tmp_path: Path) -> None:
    sink = FolderSink(tmp_path / "o")
    (tmp_path / "o" / "000001.png").mkdir()
    for i in range(3):
        sink.write(i, scene(i), LABELS)
    assert sink.close() == SinkOutcome(str(tmp_path / "o"), 2, "failed",
                                       "1 of 3 overlay(s) not written (first: 000001.png: "
                                       "Is a directory)")
    gone = FolderSink(tmp_path / "g")
    for i in range(2):
        gone.write(i, scene(i), LABELS)
    (tmp_path / "g" / "000000.png").unlink()  # lost after writing (another process, a disk)
    assert gone.close() == SinkOutcome(str(tmp_path / "g"), 0, "failed",
                                       "1 of 2 overlay(s) missing or changed after writing "
                                       "(first: 000000.png)")
    bad = FolderSink(tmp_path / "b")
    bad.write(0, scene(0), LABELS)
    (tmp_path / "b" / "000000.png").write_bytes(b"\x89PNG" + b"\0" * (
        (tmp_path / "b" / "000000.png").stat().st_size - 4))  # same size, not a picture
    assert bad.close() == SinkOutcome(str(tmp_path / "b"), 0, "failed",
                                      "000000.png: written, but it does not decode")


# -- several streams --------------------------------------------------------------------------

def test_stream_names_come_from_the_sources_never_a_password(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    assert stream_name("videos/front.mp4") == "front"
    assert stream_name(str(tmp_path / "frames")) == "frames"
    assert stream_name("shots/*.jpg") == "shots" and stream_name("*.png") == "images"
    assert stream_name("0") == "cam0" and stream_name("/dev/video2") == "cam2"
    assert stream_name("rtsp://admin:hunter2@10.0.0.7:554/stream1") == "10.0.0.7"
    assert stream_name("http://cam-north.local/mjpg?x=1") == "cam-north.local"
    assert stream_name("csi://1") == "csi1" and stream_name("demo://") == "demo"
    assert stream_name("v4l2src ! videoconvert ! appsink") == "gst"
    assert stream_name("weird name (1).mp4") == "weird_name_1"
    assert stream_names(["a/x.mp4", "b/x.mp4", "x.avi", "x-2.mp4"]) == (
        "x", "x-2", "x-3", "x-2-2")
    assert all("hunter2" not in n for n in stream_names(
        ["rtsp://admin:hunter2@h/a", "rtsp://admin:hunter2@h/b"]))


def test_outputs_per_stream_from_patterns_and_folders(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    sources = ["a.mp4", str(tmp_path / "imgs"), "0"]
    out = tmp_path / "out"
    per = per_stream_outputs([f"{out}/", "seg_{stream}.avi", "display://0"], sources)
    assert per == [
        (str(out / "a.mp4"), "seg_a.avi", "display://0"),
        (f"{out / 'imgs'}/", "seg_imgs.avi", "display://0"),
        (str(out / "cam0.mp4"), "seg_cam0.avi", "display://0")]
    assert per_stream_outputs(["o_{stream}.mp4", "x.png"], ["photo.png"]) == [
        ("o_photo.mp4", "x.png")]  # one source: today's targets
    assert per_stream_masks(tmp_path / "m", ("a", "b")) == [tmp_path / "m" / "a",
                                                            tmp_path / "m" / "b"]
    assert per_stream_masks(tmp_path / "m", ("a",)) == [tmp_path / "m"]
    assert per_stream_masks(None, ("a", "b")) == [None, None]


@pytest.mark.parametrize("target", ["one.mp4", "udp://127.0.0.1:5000", "photo.png"])
def test_one_plain_target_cannot_take_several_streams(target: str) -> None:
    with pytest.raises(InputError) as info:
        per_stream_outputs([target], ["a.mp4", "b.mp4"])
    assert str(info.value) == ("--output: expected a pattern holding {stream} (e.g. "
                               "out_{stream}.mp4) or a folder (DIR/) for 2 sources, got "
                               f"{target!r}")


# -- CLI parsing helpers ----------------------------------------------------------------------

def test_sources_file_stats_targets_and_log_levels(tmp_path: Path) -> None:
    listing = tmp_path / "cams.txt"
    listing.write_text("# front and rear\nfront.mp4\n\n  rtsp://cam/rear  \n# off: 2\n")
    assert gather_sources(("x.mp4",), listing) == ("x.mp4", "front.mp4", "rtsp://cam/rear")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputError) as info:
        gather_sources((), tmp_path / "empty.txt")
    assert str(info.value) == ("SOURCE: expected at least one source (or --sources FILE), got "
                               f"{tmp_path / 'empty.txt'} lists none")
    assert parse_stats(()) == (False, None)
    assert parse_stats(("-",)) == (True, None)
    assert parse_stats(("s.json", "-")) == (True, Path("s.json"))
    with pytest.raises(InputError, match=r"^--stats: expected one file path \(and '-' for "
                                         r"stdout\), got a.json, b.json$"):
        parse_stats(("a.json", "b.json"))
    assert log_levels(False, False) == logging.INFO
    assert log_levels(True, False) == logging.WARNING
    assert log_levels(False, True) == logging.DEBUG
    with pytest.raises(InputError, match=r"^--verbose: expected either -q or -v, got both$"):
        log_levels(True, True)
