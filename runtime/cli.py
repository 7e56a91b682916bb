"""`segrun MODEL SOURCE`: the command line; it only parses into a RunConfig.

Every SegedgeError becomes one line ``segrun: error: ...`` on stderr and the
error's exit code, without a traceback.  An interrupted run (Ctrl-C,
SIGTERM) still finalises its outputs and exits with 128 + the signal number.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from segedge.runtime.backends.base import BackendOptions
from segedge.runtime.cli_support import run_cli
from segedge.runtime.draw import VISUALIZE_MODES, DrawConfig
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD, ArtifactMetadata, InputSpec
from segedge.runtime.sources.base import SourceOptions

RGB = tuple[int, int, int]


def parse_triple(flag: str, text: str) -> tuple[float, float, float]:
    """``0.485,0.456,0.406`` (0..1) or ``123.7,116.3,103.5`` (0..255, divided by 255)."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(flag, "three comma-separated numbers", repr(text))
    if any(v > 1.0 for v in values):
        values = tuple(v / 255.0 for v in values)
    return values  # type: ignore[return-value]


def parse_classes(text: str) -> tuple[str, ...]:
    """Comma-separated names, or a text file with one name per line."""
    path = Path(text)
    names = path.read_text().splitlines() if path.is_file() else text.split(",")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise InputError("--classes", "class names (a,b,c or a file, one per line)", repr(text))
    return tuple(names)


def parse_palette(text: str) -> tuple[RGB, ...]:
    """A JSON file ([[r,g,b], ...]) or ``#rrggbb,#rrggbb`` / ``r,g,b;r,g,b``."""
    path = Path(text)
    try:
        if path.is_file():
            raw = json.loads(path.read_text())
            colours = [tuple(int(v) for v in c) for c in raw]
        elif ";" in text or "#" not in text and text.count(",") == 2:
            colours = [tuple(int(v) for v in c.split(",")) for c in text.split(";")]
        else:
            hexes = [h.strip().lstrip("#") for h in text.split(",")]
            colours = [tuple(int(h[i : i + 2], 16) for i in (0, 2, 4)) for h in hexes
                       if len(h) == 6]
            if len(colours) != len(hexes):
                raise ValueError("hex colours need 6 digits")
    except (ValueError, TypeError, json.JSONDecodeError) as err:
        raise InputError("--palette", "a JSON file of [r,g,b] or #rrggbb,#rrggbb",
                         f"{text!r} ({err})") from err
    if not colours or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colours):
        raise InputError("--palette", "RGB colours with values 0..255", repr(text))
    return tuple(colours)  # type: ignore[arg-type]


def foreign_hints(model: Path, mean: str | None, std: str | None, classes: str | None,
                  bgr: bool, stride: int | None) -> ArtifactMetadata | None:
    """What the flags say about a model without segedge metadata (None: nothing said)."""
    if mean is None and std is None and classes is None and not bgr and stride is None:
        return None
    spec = InputSpec(mean=parse_triple("--mean", mean) if mean else IMAGENET_MEAN,
                     std=parse_triple("--std", std) if std else IMAGENET_STD,
                     color_order="BGR" if bgr else "RGB", stride=stride or 1)
    return ArtifactMetadata(model=model.stem, family="foreign",
                            classes=parse_classes(classes) if classes else (), palette=(),
                            input=spec)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``1280x720`` -> (1280, 720)."""
    if text is None:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        width = height = 0
    if width <= 0 or height <= 0:
        raise InputError("--camera-size", "WIDTHxHEIGHT, e.g. 1280x720", repr(text))
    return width, height


def _ignore(values: tuple[str, ...]) -> tuple[int | str, ...]:
    return tuple(int(v) if v.isdigit() else v for v in values)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("source")
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Video file to write (.mp4 -> mp4v, .avi -> MJPG).")
@click.option("--save-masks", type=click.Path(path_type=Path),
              help="Directory for PNG label maps named by frame index (000000.png); "
                   "instance models: instance-id maps (0 background, k = k-th detection).")
@click.option("--stats", "stats_path", type=click.Path(path_type=Path),
              help="Also write the end-of-run stats JSON here.")
@click.option("--display/--no-display", default=None,
              help="Show a window (default: only when a display exists).")
@click.option("--visualize", type=click.Choice(VISUALIZE_MODES), default="overlay",
              show_default=True)
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Overlay opacity.")
@click.option("--palette", help="Override colours: JSON file or #rrggbb,#rrggbb,...")
@click.option("--ignore-class", multiple=True, help="Class index or name not to draw.")
@click.option("--legend/--no-legend", default=True, show_default=True)
@click.option("--hud/--no-hud", default=True, show_default=True,
              help="FPS and per-stage milliseconds on the picture.")
@click.option("--provider", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]),
              default="auto", show_default=True, help="ONNX Runtime execution provider.")
@click.option("--threads", type=int, help="CPU provider intra-op threads.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]),
              default="auto", show_default=True)
@click.option("--fp16", is_flag=True, help="TensorRT EP: allow FP16 kernels.")
@click.option("--cache-dir", type=click.Path(path_type=Path),
              help="TensorRT EP engine and timing cache directory.")
@click.option("--device", "device_id", type=int, default=0, show_default=True,
              help="GPU index.")
@click.option("--postprocess", type=click.Choice(["exact", "fast"]), default="exact",
              show_default=True,
              help="Logits: upsample then argmax (exact) or argmax then nearest (fast).")
@click.option("--score-threshold", type=float,
              help="Leave pixels whose class probability is below this undrawn (label 255); "
                   "instance models: drop detections scoring below it (default 0.5).")
@click.option("--boxes/--no-boxes", default=True, show_default=True,
              help="Instance models: draw each detection's box.")
@click.option("--max-frames", type=int, help="Stop after this many frames.")
@click.option("--realtime", is_flag=True, help="Play files at their frame rate.")
@click.option("--fps", type=float, help="Override the source frame rate (output video).")
@click.option("--camera-size", help="Ask a camera for this size, e.g. 1280x720.")
@click.option("--mean", help="Foreign ONNX: normalisation mean, e.g. 0.485,0.456,0.406.")
@click.option("--std", help="Foreign ONNX: normalisation std, e.g. 0.229,0.224,0.225.")
@click.option("--classes", help="Foreign ONNX: class names a,b,c or a file (one per line).")
@click.option("--bgr", is_flag=True, help="Foreign ONNX: the model takes BGR.")
@click.option("--stride", type=int, help="Foreign ONNX with dynamic size: size multiple.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
def segrun(**kw: Any) -> int:
    """Segment SOURCE (camera index, /dev/videoN, csi://N, video, image(s), rtsp://,
    http(s)://, GStreamer pipeline, demo://) with MODEL (.onnx or TensorRT plan)."""
    logging.getLogger("segedge").setLevel(logging.WARNING if kw["quiet"] else logging.INFO)
    from segedge.runtime.config import RunConfig
    from segedge.runtime.pipeline import run

    model: Path = kw["model"]
    hints = foreign_hints(model, kw["mean"], kw["std"], kw["classes"], kw["bgr"], kw["stride"])
    config = RunConfig(
        model=model, source=kw["source"], output=kw["output"], save_masks=kw["save_masks"],
        stats_path=kw["stats_path"], display=kw["display"],
        draw=DrawConfig(mode=kw["visualize"], alpha=kw["alpha"],
                        palette=parse_palette(kw["palette"]) if kw["palette"] else None,
                        ignore=_ignore(kw["ignore_class"]), legend=kw["legend"],
                        hud=kw["hud"], boxes=kw["boxes"]),
        backend=kw["backend"],
        backend_options=BackendOptions(provider=kw["provider"], threads=kw["threads"],
                                       fp16=kw["fp16"], cache_dir=kw["cache_dir"],
                                       device_id=kw["device_id"], metadata=hints),
        source_options=SourceOptions(fps=kw["fps"], camera_size=parse_size(kw["camera_size"])),
        postprocess=kw["postprocess"], score_threshold=kw["score_threshold"],
        max_frames=kw["max_frames"], realtime=kw["realtime"])
    stats = run(config)
    click.echo(stats.to_json())
    if stats.interrupted and stats.stop_reason in ("SIGINT", "SIGTERM"):
        return 128 + (2 if stats.stop_reason == "SIGINT" else 15)
    return 0


def _quiet_opencv() -> None:
    """OpenCV's own WARN lines repeat what our one-line errors say better."""
    try:
        import cv2.utils.logging as cv_logging

        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> None:
    _quiet_opencv()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("segrun: %(message)s"))
    logger = logging.getLogger("segedge")
    logger.addHandler(handler)
    propagate, level = logger.propagate, logger.level
    logger.propagate = False
    try:
        run_cli("segrun", segrun, argv)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)


if __name__ == "__main__":
    main()
