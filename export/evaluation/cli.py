"""`segeval`: mIoU, pixel accuracy and per-class IoU of any segedge artifact on labelled images.

An ``.onnx`` runs in ONNX Runtime, a ``.plan``/``.engine`` in TensorRT (both
through the runtime's backends), anything else is a PyTorch model: a zoo name
or ``file.py:Class`` (with ``--checkpoint``), or a checkpoint written by
``tools.camvid_model`` that records its architecture.  All of them
go through the same preprocessing and are scored at label resolution.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from segedge.runtime.cli_support import run_cli
from segedge.runtime.errors import InputError

ARTIFACT_SUFFIXES = (".onnx", ".plan", ".engine")
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def _torch_config(artifact: str, opts: dict[str, Any]) -> Any:
    """ExportConfig for a PyTorch model; a self-describing checkpoint fills in the model."""
    from segedge.export.config import ExportConfig
    from segedge.export.models.resolve import read_classes

    model, checkpoint = artifact, opts["checkpoint"]
    classes = read_classes(opts["classes_file"]) if opts["classes_file"] else None
    imgsz = opts["imgsz"] or None
    if Path(artifact).suffix.lower() in CHECKPOINT_SUFFIXES:
        import torch

        path = Path(artifact)
        if not path.is_file():
            raise InputError("ARTIFACT", "an existing checkpoint file", f"no such file {path}")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        arch = blob.get("architecture") if isinstance(blob, dict) else None
        if not arch:
            raise InputError("ARTIFACT", "a checkpoint recording its architecture, or "
                             "MODEL --checkpoint PATH", f"{path} without one")
        model, checkpoint = str(arch), path
        classes = classes or tuple(blob.get("classes") or ()) or None
        imgsz = imgsz or (tuple(blob["size"]) if blob.get("size") else None)
    return ExportConfig(model=model, checkpoint=checkpoint, classes=classes,
                        num_classes=opts["num_classes"], imgsz=imgsz,
                        weights=opts["weights"], quiet=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("artifact")
@click.option("--images", required=True, help="Folder (or glob) of images.")
@click.option("--labels", required=True, type=click.Path(path_type=Path),
              help="Folder of label PNGs named like the images (class index per pixel).")
@click.option("--ignore-index", type=int, default=255, show_default=True,
              help="Label id left out (ids >= the class count, e.g. CamVid's void 11, always are).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write results here.")
@click.option("--provider", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]),
              default="auto", show_default=True, help="ONNX Runtime provider for an .onnx.")
@click.option("--threads", type=int, help="CPU threads for ONNX Runtime.")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="PyTorch: state_dict.")
@click.option("--classes", "classes_file", type=click.Path(path_type=Path),
              help="PyTorch: class names file.")
@click.option("--num-classes", type=int, help="PyTorch: class count.")
@click.option("--imgsz", type=int, nargs=2, metavar="H W", help="PyTorch: input size.")
@click.option("--weights", type=click.Choice(["auto", "random", "pretrained"]), default="auto",
              show_default=True, help="PyTorch zoo weights when no --checkpoint.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def segeval(artifact: str, images: str, labels: Path, ignore_index: int, json_path: Path | None,
         provider: str, threads: int | None, quiet: bool, **opts: Any) -> None:
    """Score ARTIFACT (.onnx, .plan/.engine, zoo model, file.py:Class or checkpoint)."""
    from tqdm import tqdm

    from segedge.export.evaluation.evaluate import (
        BackendPredictor,
        Predictor,
        TorchPredictor,
        evaluate,
        format_table,
        pair_labels,
    )

    pairs = pair_labels(images, labels)
    start = time.perf_counter()
    kind = Path(artifact).suffix.lower()
    predictor: Predictor
    if kind in ARTIFACT_SUFFIXES:
        predictor = BackendPredictor(Path(artifact), provider, threads)
        runner = f"{predictor.backend.name} ({predictor.backend.active})"
    else:
        predictor = TorchPredictor(_torch_config(artifact, opts))
        runner = "pytorch (cpu)"
    result = evaluate(predictor, pairs, len(predictor.classes), ignore_index,
                      progress=None if quiet else
                      (lambda it: tqdm(it, desc="evaluating", unit="img", leave=False)))
    seconds = round(time.perf_counter() - start, 2)
    click.echo(format_table(result, f"{artifact} on {images} via {runner}"))
    if json_path is not None:
        from segedge.export.report import write_json_atomic

        write_json_atomic(json_path, {"artifact": artifact, "runner": runner,
                                      "images_dir": str(images), "labels_dir": str(labels),
                                      **result.to_dict(), "seconds": seconds})


def main(argv: list[str] | None = None) -> None:
    run_cli("segeval", segeval, argv)


if __name__ == "__main__":
    main()
