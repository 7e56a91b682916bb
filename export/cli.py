"""`segexport`: click parses into an ExportConfig; the exporter does the work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from segedge.runtime.cli_support import run_cli
from segedge.runtime.errors import InputError


def list_models() -> str:
    """The zoo as a table; parameters counted on the meta device (nothing allocated)."""
    import torch

    from segedge.export.models import registry
    from segedge.export.models.registry import BuildRequest
    from segedge.export.models.resolve import _cached

    rows = [("name", "family", "params", "size", "stride", "classes", "pretrained")]
    for spec in registry.all_specs():
        try:
            with torch.device("meta"):
                model = spec.build(BuildRequest(spec.num_classes, "random"))
            count = sum(p.numel() for p in model.parameters())
            params = f"{count / 1e6:.1f}M" if count >= 100_000 else f"{count / 1e3:.0f}K"
        except Exception:  # noqa: BLE001 - listing must never fail on one entry
            params = "?"
        if spec.pretrained is None:
            pre = "no"
        elif "default-pretrained" in spec.tags:
            pre = "shipped"
        else:
            pre = "cached" if _cached(spec) else "download"
        rows.append((spec.name, spec.family, params, f"{spec.default_size[0]}x"
                     f"{spec.default_size[1]}", str(spec.stride), str(spec.num_classes), pre))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", required=False)
@click.option("--list", "list_", is_flag=True, help="List the model zoo and exit.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Default ./<model>.onnx")
@click.option("--weights", type=click.Choice(["auto", "random", "pretrained"]), default="auto",
              show_default=True, help="auto: pretrained when cached locally, else random.")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="state_dict to load.")
@click.option("--classes", "classes_file", type=click.Path(path_type=Path),
              help="Text file, one class name per line.")
@click.option("--num-classes", type=int)
@click.option("--mean", type=float, nargs=3, help="Per-channel mean in 0..1 (model order).")
@click.option("--std", type=float, nargs=3, help="Per-channel std in 0..1 (model order).")
@click.option("--rgb/--bgr", "model_rgb", default=None,
              help="Colour order the network was trained on (default: the zoo's, else RGB).")
@click.option("--imgsz", type=int, nargs=2, metavar="H W", help="Static input size.")
@click.option("--dynamic", is_flag=True, help="Symbolic batch, height and width.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--opset", type=int, default=18, show_default=True)
@click.option("--input-format", type=click.Choice(["uint8", "float"]), default="uint8",
              show_default=True, help="uint8: camera bytes NHWC, normalised in the graph.")
@click.option("--input-color", type=click.Choice(["bgr", "rgb"]), default="bgr",
              show_default=True, help="Colour order of the uint8 input (OpenCV gives BGR).")
@click.option("--emit", type=click.Choice(["logits", "labels", "both"]), default="labels",
              show_default=True)
@click.option("--confidence", is_flag=True, help="Also output per-pixel max probability.")
@click.option("--no-simplify", is_flag=True)
@click.option("--no-verify", is_flag=True, help="Skip the parity gate against PyTorch.")
@click.option("--verify-images", help="Folder, image, glob or video for the parity check.")
@click.option("--verify-count", type=int, default=4, show_default=True)
@click.option("--min-agreement", type=float, default=None,
              help="Percent argmax agreement: the FP32 parity gate against PyTorch (default "
                   "99.9); with --int8, the INT8 budget against FP32 instead.")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "torchscript"]), default="auto",
              show_default=True)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--max-detections", type=int, default=100, show_default=True,
              help="Instance models: fixed detection count of the outputs (padded, + count).")
@click.option("--mask-threshold", type=float, default=0.5, show_default=True,
              help="Instance models: mask probability that counts as inside.")
@click.option("--box-score-threshold", type=float,
              help="Instance models: minimum detection score baked into the graph.")
@click.option("--fp16", is_flag=True, help="Write an FP16 ONNX, verified against FP32 "
              "(>= 99.5% argmax agreement); also an engine where TensorRT and a GPU exist.")
@click.option("--int8", is_flag=True, help="Static INT8 (Q/DQ ONNX) calibrated on --calib, "
              "kept within the accuracy budget.")
@click.option("--int8-target", type=click.Choice(["tensorrt", "cpu"]), default="tensorrt",
              show_default=True, help="Q/DQ flavour: TensorRT (S8S8 symmetric) or ONNX Runtime "
              "CPU (U8S8, faster there).")
@click.option("--calib", metavar="DIR|VIDEO|GLOB", help="Calibration frames for --int8.")
@click.option("--calib-count", type=int, default=300, show_default=True)
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]),
              default="percentile", show_default=True,
              help="Activation ranges: percentile (99.999) kept CamVid closest to FP32 here; "
                   "minmax is fastest.")
@click.option("--calib-cache", type=click.Path(path_type=Path),
              help="Calibration cache file (default <output>.calib.json).")
@click.option("--eval-images", help="Held-out frames for the accuracy report (folder/glob).")
@click.option("--eval-labels", type=click.Path(path_type=Path),
              help="Label PNGs named like --eval-images: adds mIoU and pixel accuracy.")
@click.option("--eval-count", type=int, help="Use at most N eval frames (spread).")
@click.option("--ignore-index", type=int, default=255, show_default=True,
              help="Label id left out of mIoU (ids >= the class count always are).")
@click.option("--max-miou-drop", type=float,
              help="INT8 budget: mIoU points it may lose against FP32 (needs --eval-labels). "
                   "Without a budget: 1.0 point with labels, else 97% agreement.")
@click.option("--engine/--no-engine", default=None,
              help="Build a TensorRT plan + sidecar beside the ONNX (default: with --fp16/--int8 "
                   "when TensorRT and a GPU are present).")
@click.option("--workspace", "workspace_mib", type=int, metavar="MIB",
              help="TensorRT builder workspace in MiB.")
@click.option("--dla-core", type=int, help="Build for this DLA core (Jetson).")
@click.option("--timing-cache", type=click.Path(path_type=Path),
              help="TensorRT timing cache file, read before and updated after the build.")
def segexport(model: str | None, list_: bool, classes_file: Path | None, model_rgb: bool | None,
         imgsz: tuple[int, int] | None, mean: tuple[float, ...] | None,
         std: tuple[float, ...] | None, **opts: Any) -> None:
    """Export MODEL (a zoo name or path/to/model.py:Class) to a verified, self-describing ONNX."""
    if list_:
        click.echo(list_models())
        return
    if not model:
        raise click.UsageError("missing MODEL (a zoo name, see --list, or file.py:Class)")
    if opts["fp16"] and opts["int8"]:
        raise InputError("--fp16/--int8", "one precision", "both")
    from segedge.export.config import ExportConfig
    from segedge.export.models.resolve import read_classes
    from segedge.export.pipeline import export

    precision = "int8" if opts["int8"] else "fp16" if opts["fp16"] else "fp32"
    agreement = opts["min_agreement"]
    fp32_gate = agreement if agreement is not None and precision != "int8" else 99.9

    cfg = ExportConfig(
        model=model, output=opts["output"], weights=opts["weights"],
        checkpoint=opts["checkpoint"],
        classes=read_classes(classes_file) if classes_file else None,
        num_classes=opts["num_classes"], mean=mean or None, std=std or None,  # type: ignore[arg-type]
        model_color=None if model_rgb is None else ("RGB" if model_rgb else "BGR"),
        imgsz=imgsz or None, dynamic=opts["dynamic"], batch=opts["batch"],
        opset=opts["opset"], input_format=opts["input_format"],
        input_color=opts["input_color"].upper(), emit=opts["emit"],
        confidence=opts["confidence"], simplify=not opts["no_simplify"],
        verify=not opts["no_verify"], verify_images=opts["verify_images"],
        verify_count=opts["verify_count"], min_agreement=fp32_gate,
        exporter=opts["exporter"], quiet=opts["quiet"], precision=precision,  # type: ignore[arg-type]
        max_detections=opts["max_detections"], mask_threshold=opts["mask_threshold"],
        box_score_threshold=opts["box_score_threshold"],
        int8_target=opts["int8_target"], calib=opts["calib"],
        calib_count=opts["calib_count"], calib_method=opts["calib_method"],
        calib_cache=opts["calib_cache"], eval_images=opts["eval_images"],
        eval_labels=opts["eval_labels"], eval_count=opts["eval_count"],
        ignore_index=opts["ignore_index"], max_miou_drop=opts["max_miou_drop"],
        int8_min_agreement=agreement if precision == "int8" else None,
        engine=opts["engine"], workspace_mib=opts["workspace_mib"],
        dla_core=opts["dla_core"], timing_cache=opts["timing_cache"],
    )
    export(cfg)


def main(argv: list[str] | None = None) -> None:
    run_cli("segexport", segexport, argv)


if __name__ == "__main__":
    main()
