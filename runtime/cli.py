"""`segrun MODEL SOURCE...`: the command line; it only parses into RunConfigs.

Every SegedgeError becomes one line ``segrun: error: ...`` on stderr and the
error's exit code, without a traceback.  Outputs (``-o`` by URI: files,
folders, display, network) are checked before the model loads (exit 2).  A
run ends with a short summary on stderr; the full statistics go where
``--stats`` says (a file, ``-`` for stdout) and nowhere else, so stdout is
empty unless asked.  A run that finished degraded (source lost, no frame
readable, an output that failed verification) prints its summary and one
error line and exits 4.  An interrupted run (Ctrl-C, SIGTERM) still
finalises its outputs and exits with 130 / 143.  No password in a source URI
reaches stdout, stderr or the stats file: the source is redacted where it is
opened and a filter on segrun's log handler redacts every line again.  One
source or several, the run is the one run engine (runtime.engine): one
source through segedge.runtime.pipeline.run (one lane), several through
segedge.runtime.streams.run_many, which also names and routes them; the
``--stats -`` JSON is the document the engine wrote, also when the run fails.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

# FFmpeg prints its own lines (e.g. "moov atom not found") straight to stderr when a
# damaged file is probed; segrun reports those cases in one line.  Read when cv2 loads;
# set OPENCV_FFMPEG_LOGLEVEL yourself to see them.
if not os.environ.get("SEGEDGE_DEBUG"):
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import click  # noqa: E402

from segedge.runtime.backends.base import BackendOptions  # noqa: E402
from segedge.runtime.cli_parse import (  # noqa: E402
    _ignore,
    foreign_hints,
    gather_sources,
    log_levels,
    parse_model,
    parse_palette,
    parse_stats,
    source_options,
)
from segedge.runtime.cli_support import (  # noqa: E402
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    run_cli,
    version_option,
)
from segedge.runtime.draw import VISUALIZE_MODES, DrawConfig  # noqa: E402
from segedge.runtime.errors import DegradedRunError  # noqa: E402
from segedge.runtime.normalization import (  # noqa: E402
    NORM_UNITS,
)
from segedge.runtime.normalization import RULE as NORM_RULE  # noqa: E402
from segedge.runtime.redact import redact  # noqa: E402
from segedge.runtime.view import KEYS_HELP  # noqa: E402

RGB = tuple[int, int, int]


class _FileBackends(click.Choice):  # type: ignore[type-arg]
    """`--backend`'s choices, read from the backend registry whenever click asks (help,
    validation), so a backend registered by one line is a choice without an edit here.
    Backends that only serve URIs (triton://) are chosen by the model's scheme instead.
    (click.Choice copies its choices when built, hence the property.)"""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from segedge.runtime.backends.base import descriptors

        return ("auto", *sorted(d.name for d in descriptors() if d.suffixes))

    @choices.setter
    def choices(self, _value: Any) -> None:
        pass  # always the registry's


class _SegrunHelp(click.Command):
    """`segrun --help` lists the SOURCE and -o kinds from their registries, so a source or
    sink added by one file and one registration line shows up here without an edit."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from segedge.runtime.sinks.base import sink_targets
        from segedge.runtime.sources.base import source_uris

        formatter.write_paragraph()
        formatter.write_text(f"SOURCE kinds: {source_uris()}.")
        formatter.write_text(f"-o kinds: {sink_targets()}.")
        super().format_epilog(ctx, formatter)


@click.command(cls=_SegrunHelp, context_settings={"help_option_names": ["-h", "--help"]})
@version_option("segrun")
@click.argument("model")
@click.argument("sources", nargs=-1, metavar="SOURCE...")
@click.option("--sources", "sources_file", type=click.Path(path_type=Path), metavar="FILE",
              help="More sources, one per line (# comments).")
@click.option("--output", "-o", "outputs", multiple=True, metavar="TARGET",
              help="Where the overlays go; repeat for several. x.mp4 / x.avi: video; x.png / "
                   "x.jpg: the image of a single-image source; DIR/ (an existing folder, a "
                   "path ending in / or without suffix): one PNG per frame, named after its "
                   "image (000000.png for video); display://0: a window; udp://HOST:PORT, "
                   "rtp://HOST:PORT, rtsp://HOST:PORT/PATH: a network stream. Several "
                   "sources: a pattern with {stream} or a folder. Files are verified before "
                   "they get their name; a failed output exits 4.")
@click.option("--save-masks", type=click.Path(path_type=Path),
              help="Directory for PNG label maps named after their image or by frame index "
                   "(000000.png); instance models: instance-id maps (0 background, k = k-th "
                   "detection); several sources: DIR/<stream>/. Masks that cannot be written "
                   "are counted; exit 4.")
@click.option("--stats", "stats_targets", multiple=True, metavar="PATH|-",
              help="The full end-of-run statistics as JSON: a file (also written when the run "
                   "fails or is interrupted), or - for stdout (nothing else goes there). May "
                   "be given twice (a file and -).")
@click.option("--display/--no-display", default=None,
              help="Show a window (default: only when a display exists; several sources: only "
                   "when asked).")
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
@click.option("--threads", type=int,
              help="CPU inference threads (ONNX Runtime intra-op, OpenVINO) [the library's].")
@click.option("--backend", type=_FileBackends(),
              default="auto", show_default=True,
              help="auto: a plan runs on TensorRT; an .onnx on ONNX Runtime's GPU providers "
                   "when a GPU executes it, else on OpenVINO or ONNX Runtime, whichever a short "
                   "timed probe finds faster on this CPU (cached per artifact, CPU and threads; "
                   "the first line says which and why).")
@click.option("--precision-hint", type=click.Choice(["f32", "bf16", "f16"]),
              help="OpenVINO inference precision [f32; auto: bf16 only where the artifact's "
                   "export report verified it].")
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
@click.option("--max-frames", type=int, help="Stop after this many frames (per stream).")
@click.option("--realtime", is_flag=True, help="Play files at their frame rate.")
@click.option("--fps", type=float,
              help="Override the source frame rate (output video); in (0, 1000].")
@click.option("--reconnect", default="5", show_default=True, metavar="N|forever",
              help="Live sources: reopen attempts after the stream drops (rtsp://, "
                   "http(s)://: also when the first connection is refused). When they all "
                   "fail the run ends 'source lost' with exit code 4.")
@click.option("--reconnect-backoff", type=float, default=0.5, show_default=True,
              metavar="SECONDS",
              help="Seconds before the first reopen attempt; doubles per attempt up to "
                   "8 s (or this value, if larger).")
@click.option("--camera-size", help="Ask a camera for this size, e.g. 1280x720.")
@click.option("--mean", help="Foreign ONNX: normalisation mean, e.g. 0.485,0.456,0.406 "
              "(0..1) or 123.7,116.3,103.5 (pixel). " + NORM_RULE)
@click.option("--std", help="Foreign ONNX: normalisation std, e.g. 0.229,0.224,0.225.")
@click.option("--norm-units", type=click.Choice(NORM_UNITS),
              help="Foreign ONNX: units of --mean/--std, unit (0..1) or pixel (0..255).")
@click.option("--scale", metavar="K",
              help="Foreign ONNX: K in y = (x - M) / S * K, e.g. 1/255 [1].")
@click.option("--classes", help="Foreign ONNX: class names a,b,c or a file (one per line).")
@click.option("--bgr", is_flag=True, help="Foreign ONNX: the model takes BGR.")
@click.option("--stride", type=int, help="Foreign ONNX with dynamic size: size multiple.")
@click.option("--max-batch", type=int,
              help="Frames per inference call [the artifact's static batch, or one per "
                   "stream for a dynamic batch].")
@click.option("--batch-wait", type=float, default=4.0, show_default=True, metavar="MS",
              help="Several sources: once a frame is ready, how long to wait for frames of "
                   "other streams to batch with it (the latency it costs is in the stats).")
@click.option("--mode", type=click.Choice(["auto", "latency", "throughput"]), default="auto",
              show_default=True,
              help="latency: the newest frame, one in flight (a camera); throughput: frames "
                   "queued per stream and as many inference calls in flight as the backend "
                   "runs at once (files, folders, several streams); auto: latency for one "
                   "live source, else throughput. The run's mode line says which and why.")
@click.option("--quiet", "-q", is_flag=True,
              help="Only warnings and errors on stderr (no progress lines, no summary).")
@click.option("--verbose", "-v", is_flag=True, help="Debug lines too.")
def segrun(**kw: Any) -> int:
    """Segment each SOURCE (camera index, /dev/videoN, csi://N, video, image, folder or glob
    of images, rtsp://, http(s)://, GStreamer pipeline, demo://) with MODEL (.onnx,
    TensorRT plan, or triton://HOST:PORT/NAME).

    Ends with a short summary on stderr (frames, FPS, per-stage ms, where each output
    went); the full statistics only with --stats PATH or --stats - (stdout).

    \b
    Exit codes: 0 ok; 1 internal error; 2 bad input (checked before the model loads);
    4 degraded run: source lost, no frame readable, an output failed (stats say which);
    130 interrupted (Ctrl-C); 143 terminated (SIGTERM). Outputs and stats are
    finalised on 130/143.

    \b
    Examples:
      segrun model.onnx photo.jpg -o photo_out.png     image in, image out
      segrun model.onnx frames/ -o overlays/           a folder of overlays named after
                                                       the images
      segrun model.onnx clip.mp4 -o out.mp4 -o overlays/ -o udp://127.0.0.1:5000
                                                       several outputs at once
      segrun model.onnx 0 -o display://0               a camera, on screen
      segrun model.onnx a.mp4 b.mp4 rtsp://cam3/s -o out/
                                                       several streams: out/a.mp4,
                                                       out/b.mp4, out/cam3.mp4
      segrun model.onnx --sources cams.txt -o out_{stream}.mp4 --stats -
                                                       sources from a file; the
                                                       statistics JSON on stdout
    """
    logging.getLogger("segedge").setLevel(log_levels(kw["quiet"], kw["verbose"]))
    from segedge.runtime.config import RunConfig
    from segedge.runtime.streams import per_stream_masks, per_stream_outputs, stream_names

    model = parse_model(kw["model"])
    sources = gather_sources(kw["sources"], kw["sources_file"])
    to_stdout, stats_path = parse_stats(kw["stats_targets"])
    hints = foreign_hints(model, kw["mean"], kw["std"], kw["classes"], kw["bgr"], kw["stride"],
                          kw["norm_units"], kw["scale"])
    several = len(sources) > 1
    shared: dict[str, Any] = dict(
        model=model, display=False if several and kw["display"] is None else kw["display"],
        draw=DrawConfig(mode=kw["visualize"], alpha=kw["alpha"],
                        palette=parse_palette(kw["palette"]) if kw["palette"] else None,
                        ignore=_ignore(kw["ignore_class"]), legend=kw["legend"],
                        hud=kw["hud"], boxes=kw["boxes"]),
        backend=kw["backend"],
        backend_options=BackendOptions(provider=kw["provider"], threads=kw["threads"],
                                       fp16=kw["fp16"], cache_dir=kw["cache_dir"],
                                       device_id=kw["device_id"], metadata=hints,
                                       precision_hint=kw["precision_hint"]),
        source_options=source_options(kw["fps"], kw["camera_size"], kw["reconnect"],
                                      kw["reconnect_backoff"]),
        postprocess=kw["postprocess"], score_threshold=kw["score_threshold"],
        max_frames=kw["max_frames"], realtime=kw["realtime"])
    from segedge.runtime.batching import BatchPolicy

    policy = BatchPolicy(max_batch=kw["max_batch"], wait_ms=kw["batch_wait"],
                         mode=kw["mode"])  # checked always
    names = stream_names(sources)
    outputs = per_stream_outputs(kw["outputs"], sources, names)
    masks = per_stream_masks(kw["save_masks"], names)
    if not several:
        configs = [RunConfig(source=sources[0], outputs=outputs[0], save_masks=masks[0],
                             stats_path=stats_path, **shared)]
    else:
        configs = [RunConfig(source=source, outputs=out, save_masks=mask, stream=name,
                             window_name=f"segrun {name}", **shared)
                   for source, out, mask, name in zip(sources, outputs, masks, names,
                                                      strict=True)]
    return execute(configs, stats_path, to_stdout, policy)


segrun.help = (segrun.help or "") + "\n\n\b\n" + KEYS_HELP  # the window's keys, one list
log = logging.getLogger("segedge.runtime.cli")


def _interrupted(err: KeyboardInterrupt) -> int:
    # Answered here: click would turn it into Abort (a blank line, and 130 even for SIGTERM).
    terminated = isinstance(err, Terminated)
    click.echo(f"segrun: {'terminated' if terminated else 'interrupted'}", err=True)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def finish(stats: Any) -> int:
    """The summary on stderr, one error line when degraded."""
    for line in stats.summary_lines():
        log.info("%s", line)
    if stats.degraded:
        raise DegradedRunError("run degraded: " + "; ".join(stats.degraded))
    return int(stats.exit_code)


def execute(configs: list[Any], stats_path: Path | None, to_stdout: bool,
            policy: Any = None) -> int:
    """Run the one run engine: one source (segedge.runtime.pipeline.run, one lane) or
    several (segedge.runtime.streams.run_many).  With ``--stats -`` the engine's document
    goes to stdout whatever happens (also when the run fails), the same for both."""
    from segedge.runtime.pipeline import run
    from segedge.runtime.streams import run_many

    def echo(stats: Any) -> None:
        click.echo(redact(stats.to_json()))

    on_stats = echo if to_stdout else None
    try:
        if len(configs) == 1:
            stats = run(configs[0], batching=policy, on_stats=on_stats)
        else:
            stats = run_many(configs, stats_path, batching=policy, on_stats=on_stats)
    except KeyboardInterrupt as err:  # a signal while loading, or a second Ctrl-C
        return _interrupted(err)
    return finish(stats)


class RedactFilter(logging.Filter):
    """Last line of defence: no log line leaves segrun with a password in a URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


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
    handler.addFilter(RedactFilter())
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
