"""`segexport`: click parses into an ExportConfig; the pipeline does the work.

Every choice comes from a registry or the config's types: precision modes
(``--precision``, and a ``--<mode>`` shorthand for each mode that lowers),
INT8 targets and calibration methods, export tasks, weights, exporters.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import click

from segedge.export.config import (
    DEFAULT_MAX_DETECTIONS,
    FP32_MIN_AGREEMENT,
    MAX_OPSET,
    MIN_OPSET,
    Emit,
    Exporter,
    WeightsMode,
)
from segedge.export.precision import modes
from segedge.export.precision.modes.int8 import CALIB_METHODS, INT8_TARGETS
from segedge.export.tasks.base import task_names
from segedge.runtime.cli_support import run_cli, version_option
from segedge.runtime.contract import MAX_SIDE
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ColorOrder, InputFormat, Interpolation
from segedge.runtime.normalization import NORM_UNITS, RULE, parse_scale

F = Callable[..., Any]
_SHORTHANDS = tuple(m for m in map(modes.get, modes.names()) if m.lowers)


class _ModeChoice(click.Choice):
    """--precision's choices, read from the mode registry when asked (help, parsing), so a
    mode registered after this module was imported (a plug-in, a test's toy) is listed."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        return modes.names()

    @choices.setter
    def choices(self, _: object) -> None:  # click's __init__ assigns; the registry decides
        pass


def _precision_flags(f: F) -> F:
    """--fp16, --int8, ...: one flag per precision mode that lowers the FP32 graph."""
    for mode in reversed(_SHORTHANDS):
        f = click.option(f"--{mode.name}", is_flag=True, help=mode.flag_help)(f)
    return f


def _precision(opts: dict[str, Any]) -> str:
    """--precision and the shorthand flags must name one mode (default fp32)."""
    flags = [f"--{m.name}" for m in _SHORTHANDS if opts.pop(m.name)]
    named = [m.name for m in _SHORTHANDS if f"--{m.name}" in flags]
    if opts["precision"]:
        flags.insert(0, "--precision")
        named.insert(0, opts["precision"])
    if len(set(named)) > 1:
        raise InputError("/".join(flags), "one precision", ", ".join(named))
    return named[0] if named else "fp32"


class _ModelSourcesHelp(click.Command):
    """segexport's help lists the model sources registered when it is shown (a source added
    by one file + its registration line appears without editing this CLI)."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        from segedge.export.models.sources import library_usage

        with formatter.section("Library models (pip install 'segedge[models]'; "
                               "nothing is downloaded)"):
            for line in library_usage().splitlines():  # as registered: no re-wrapping
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


@click.command(cls=_ModelSourcesHelp, context_settings={"help_option_names": ["-h", "--help"]})
@version_option("segexport")
@click.argument("model", required=False)
@click.option("--list", "list_", is_flag=True, help="List the model zoo and exit.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Default ./<model>.onnx (fp16/int8: ./<model>_<precision>.onnx).")
@click.option("--task", type=click.Choice(task_names()),
              help="Export task (default: the zoo entry's; semantic for file.py:Class).")
@click.option("--weights", type=click.Choice(get_args(WeightsMode)), default="auto",
              show_default=True, help="auto: pretrained when cached locally, else random.")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="state_dict to load.")
@click.option("--classes", "classes_file", type=click.Path(path_type=Path),
              help="Text file, one class name per line.")
@click.option("--num-classes", type=int)
@click.option("--model-args", multiple=True, metavar="NAME=VALUE ...",
              help="file.py:Class and smp:Class models: constructor arguments, e.g. "
                   "--model-args classes=12 "
                   "p=2 q=8 (values read as Python literals, else strings; num_classes is "
                   "also passed when the constructor takes it).")
@click.option("--mean", type=float, nargs=3,
              help="Per-channel mean, model colour order, in --norm-units. " + RULE)
@click.option("--std", type=float, nargs=3,
              help="Per-channel std, model colour order, in --norm-units (> 0).")
@click.option("--norm-units", type=click.Choice(NORM_UNITS),
              help="Units of --mean/--std: unit (0..1, torchvision) or pixel (0..255).")
@click.option("--scale", "scale_text", metavar="K",
              help="K in y = (x - M) / S * K, e.g. 1/255 for (x - mean) / std / 255 [1].")
@click.option("--rgb/--bgr", "model_rgb", default=None,
              help="Colour order the network was trained on (default: the zoo's, else RGB).")
@click.option("--imgsz", type=int, nargs=2, metavar="H W",
              help=f"Static input size (1..{MAX_SIDE} per side).")
@click.option("--dynamic", is_flag=True, help="Symbolic batch, height and width.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--opset", type=int, default=18, show_default=True,
              help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET}.")
@click.option("--input-format", type=click.Choice(get_args(InputFormat)), default="uint8",
              show_default=True, help="uint8: camera bytes NHWC, normalised in the graph.")
@click.option("--input-color", type=click.Choice([c.lower() for c in get_args(ColorOrder)]),
              default="bgr",
              show_default=True, help="Colour order of the uint8 input (OpenCV gives BGR).")
@click.option("--emit", type=click.Choice(get_args(Emit)), default="labels",
              show_default=True)
@click.option("--confidence", is_flag=True, help="Also output per-pixel max probability.")
@click.option("--no-simplify", is_flag=True)
@click.option("--no-verify", is_flag=True, help="Skip the parity gate against PyTorch.")
@click.option("--verify-images", help="Folder, image, glob or video for the parity check.")
@click.option("--verify-count", type=int, default=4, show_default=True, help="At least 1.")
@click.option("--verify-labels", type=click.Path(path_type=Path),
              help="Label PNGs named like --verify-images: the report shows PyTorch and ONNX "
                   "mIoU side by side, and the export fails (exit 3) when PyTorch's score says "
                   "the preprocessing is wrong (degenerate, or far better with the other colour "
                   "order or the std/mean in other units).")
@click.option("--check-bf16/--no-check-bf16", default=True, show_default=True,
              help="Gate OpenVINO bf16 (and f16 where the CPU has AMX-FP16) against FP32 on "
                   "the verification frames, where OpenVINO is installed and the CPU runs it "
                   "natively; segrun --backend auto uses a reduced precision only where this "
                   "passed. On by default (--check-bf16 is accepted and changes nothing).")
@click.option("--min-agreement", type=float, default=FP32_MIN_AGREEMENT, show_default=True,
              help="The FP32 parity gate: percent argmax agreement with PyTorch.")
@click.option("--interpolation", type=click.Choice(get_args(Interpolation)),
              default="torch-bilinear-aa", show_default=True,
              help="How the training pipeline resized frames, recorded in the artifact so "
                   "segrun/segeval resize alike: torch-bilinear-aa (torchvision Resize on "
                   "tensors), torch-bilinear (F.interpolate, no antialias), pil-bilinear (PIL "
                   "Image.resize; torchvision Resize on PIL images), cv2-linear (cv2.resize).")
@click.option("--exporter", type=click.Choice(get_args(Exporter)), default="auto",
              show_default=True)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--max-detections", type=int, default=DEFAULT_MAX_DETECTIONS, show_default=True,
              help="Instance models: fixed detection count of the outputs (padded, + count).")
@click.option("--mask-threshold", type=float, default=0.5, show_default=True,
              help="Instance models: mask probability that counts as inside.")
@click.option("--box-score-threshold", type=float,
              help="Instance models: minimum detection score baked into the graph.")
@click.option("--precision", type=_ModeChoice(),
              help="Precision mode (default fp32); the flags below are shorthands.")
@_precision_flags
@click.option("--int8-target", type=click.Choice(INT8_TARGETS), default="tensorrt",
              show_default=True, help="Q/DQ flavour: TensorRT (S8S8 symmetric) or ONNX Runtime "
              "CPU (U8S8, faster there).")
@click.option("--calib", metavar="DIR|VIDEO|GLOB", help="Calibration frames for --int8.")
@click.option("--calib-count", type=int, default=300, show_default=True)
@click.option("--calib-method", type=click.Choice(CALIB_METHODS),
              default="percentile", show_default=True,
              help="Activation ranges: percentile (99.999) kept CamVid closest to FP32 here; "
                   "minmax is fastest.  Without a budget flag, when full INT8 misses the default "
                   "budget the tool also tries the other methods, 128/64/32 frames and "
                   "per-channel off (at most 3 minutes).")
@click.option("--calib-cache", type=click.Path(path_type=Path),
              help="Calibration cache file (default <output>.calib.json).")
@click.option("--eval-images", help="Held-out frames for the accuracy report (folder/glob); "
                                    "from 32 on, half choose (calibration, layers kept in "
                                    "FP32), the other half report the drop.")
@click.option("--eval-labels", type=click.Path(path_type=Path),
              help="Label PNGs named like --eval-images: adds mIoU and pixel accuracy.")
@click.option("--eval-count", type=int, help="Use at most N eval frames (spread).")
@click.option("--ignore-index", type=int, default=255, show_default=True,
              help="Label id left out of mIoU (ids >= the class count always are).")
@click.option("--max-miou-drop", type=float,
              help="INT8 budget: mIoU points it may lose against FP32 (needs --eval-labels). "
                   "Without a budget: 0.5 point with labels, else 99% agreement, on every "
                   "runtime checked (ONNX Runtime, OpenVINO).")
@click.option("--int8-min-agreement", type=float,
              help="INT8 budget: percent argmax agreement with FP32 it must keep.")
@click.option("--int8-time-limit", type=float, default=720.0, show_default=True,
              metavar="SECONDS", help="Bound on INT8's long steps (calibration, calibration "
              "search, sensitivity, keep-in-float search), checked inside each step.")
@click.option("--int8-keep-closest", is_flag=True,
              help="When the INT8 budget is missed, keep the closest artifact as "
                   "<output>.missed-budget.onnx (never under the final name).")
@click.option("--int8-even-if-slower", is_flag=True,
              help="With --int8 --int8-target cpu (refused otherwise), quantize even when "
                   "INT8 measured slower than FP32/bf16 on this CPU (without it the export "
                   "stops before the INT8 search, exit 3).")
@click.option("--engine/--no-engine", default=None,
              help="Build a TensorRT plan + sidecar beside the ONNX (default: with --fp16/--int8 "
                   "when TensorRT and a GPU are present).")
@click.option("--workspace", "workspace_mib", type=int, metavar="MIB",
              help="TensorRT builder workspace in MiB.")
@click.option("--dla-core", type=int, help="Build for this DLA core (Jetson).")
@click.option("--engine-profiles", type=int, metavar="N",
              help="Optimization profiles of a dynamic-size plan, one per execution slot "
                   "segrun runs at once in throughput mode (default 2; 1: faster build, "
                   "smaller plan, one slot).")
@click.option("--timing-cache", type=click.Path(path_type=Path),
              help="TensorRT timing cache file, read before and updated after the build.")
def segexport(model: str | None, list_: bool, classes_file: Path | None, model_rgb: bool | None,
              imgsz: tuple[int, int] | None, mean: tuple[float, ...] | None,
              std: tuple[float, ...] | None, **opts: Any) -> None:
    """Export MODEL (a zoo name or path/to/model.py:Class) to a verified, self-describing ONNX.

    \b
    Exit codes: 0 ok; 1 internal error; 2 bad input (checked before work);
    3 verification failed; 4 an output could not be written (disk full: nothing
    left under the final name); 130 interrupted; 143 terminated (SIGTERM):
    work folders are removed."""
    if list_:
        from segedge.export.models.listing import list_models

        click.echo(list_models())
        return
    if not model:
        raise click.UsageError("missing MODEL (a zoo name, see --list, or file.py:Class)")
    from segedge.export.config import (
        EngineOptions,
        ExportConfig,
        InstanceOptions,
        PrecisionOptions,
        VerifyOptions,
    )
    from segedge.export.models.resolve import read_classes
    from segedge.export.models.user_model import parse_model_args
    from segedge.export.pipeline import export

    precision = PrecisionOptions(
        mode=_precision(opts), int8_target=opts["int8_target"], calib=opts["calib"],
        calib_count=opts["calib_count"], calib_method=opts["calib_method"],
        calib_cache=opts["calib_cache"], eval_images=opts["eval_images"],
        eval_labels=opts["eval_labels"], eval_count=opts["eval_count"],
        ignore_index=opts["ignore_index"], max_miou_drop=opts["max_miou_drop"],
        int8_min_agreement=opts["int8_min_agreement"],
        int8_time_limit=opts["int8_time_limit"], int8_keep_closest=opts["int8_keep_closest"],
        int8_stop_if_slower=not opts["int8_even_if_slower"])
    cfg = ExportConfig(
        model=model, output=opts["output"], task=opts["task"], weights=opts["weights"],
        checkpoint=opts["checkpoint"],
        classes=read_classes(classes_file) if classes_file else None,
        num_classes=opts["num_classes"], mean=mean or None, std=std or None,  # type: ignore[arg-type]
        norm_units=opts["norm_units"],
        scale=parse_scale(opts["scale_text"]) if opts["scale_text"] is not None else 1.0,
        model_args=parse_model_args(opts["model_args"]),
        model_color=None if model_rgb is None else ("RGB" if model_rgb else "BGR"),
        imgsz=imgsz or None, dynamic=opts["dynamic"], batch=opts["batch"],
        opset=opts["opset"], input_format=opts["input_format"],
        input_color=opts["input_color"].upper(), emit=opts["emit"],
        interpolation=opts["interpolation"],
        confidence=opts["confidence"], simplify=not opts["no_simplify"],
        exporter=opts["exporter"], quiet=opts["quiet"],
        verify=VerifyOptions(enabled=not opts["no_verify"], images=opts["verify_images"],
                             count=opts["verify_count"], min_agreement=opts["min_agreement"],
                             labels=opts["verify_labels"], bf16=opts["check_bf16"]),
        precision=precision,
        instance=InstanceOptions(max_detections=opts["max_detections"],
                                 mask_threshold=opts["mask_threshold"],
                                 box_score_threshold=opts["box_score_threshold"]),
        engine=EngineOptions(build=opts["engine"], workspace_mib=opts["workspace_mib"],
                             dla_core=opts["dla_core"], timing_cache=opts["timing_cache"],
                             profiles=opts["engine_profiles"]),
    )
    export(cfg)


def group_model_args(argv: list[str]) -> list[str]:
    """``--model-args a=1 b=2`` -> ``--model-args a=1 --model-args b=2``.

    click options take a fixed count of values; the NAME=VALUE words after
    --model-args' own value (up to the next option or a word without "=")
    belong to it too.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        out.append(arg)
        i += 1
        if arg == "--model-args" and i < len(argv):
            out.append(argv[i])  # its own value, whatever it is (click checks it)
            i += 1
        elif not arg.startswith("--model-args="):
            continue
        while i < len(argv) and not argv[i].startswith("-") and "=" in argv[i]:
            out += ["--model-args", argv[i]]
            i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    run_cli("segexport", segexport, group_model_args(args))


if __name__ == "__main__":
    main()
