"""`segeval`: mIoU, accuracies and the confusion matrix of any segedge artifact on labelled images.

An ``.onnx`` runs in ONNX Runtime (or ``--backend openvino``), a
``.plan``/``.engine`` in TensorRT (all through the runtime's backends), anything
else is a PyTorch model: a zoo name or ``file.py:Class`` (with
``--checkpoint``), or a checkpoint written by ``tools.camvid_model`` that
records its architecture.  A PyTorch model takes segexport's own
preprocessing options (the same click definitions, so the same flags, help and
rule), so it is scored exactly as it will be exported.  Everything goes
through the same preprocessing and is scored by the one metrics
implementation (metrics.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from segedge.runtime.cli_support import run_cli, version_option
from segedge.runtime.errors import InputError, VerificationError

ARTIFACT_SUFFIXES = (".onnx", ".plan", ".engine")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
# segexport's parameters that say how a PyTorch model is fed; segeval attaches segexport's
# own click options with these names (below), never a copy of them.
PREPROCESSING_PARAMS = ("mean", "std", "norm_units", "scale_text", "model_rgb", "model_args",
                        "interpolation")


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
                        weights=opts["weights"], quiet=True, **_preprocessing(opts))


def _preprocessing(opts: dict[str, Any]) -> dict[str, Any]:
    """segexport's preprocessing values -> the ExportConfig fields they set (as segexport
    converts them: --scale by the one rule, --model-args by the user-model parser)."""
    from segedge.export.models.user_model import parse_model_args
    from segedge.runtime.normalization import parse_scale

    out: dict[str, Any] = {}
    if opts.get("mean"):
        out["mean"] = tuple(opts["mean"])
    if opts.get("std"):
        out["std"] = tuple(opts["std"])
    if opts.get("norm_units") is not None:
        out["norm_units"] = opts["norm_units"]
    if opts.get("scale_text") is not None:
        out["scale"] = parse_scale(opts["scale_text"])
    if opts.get("model_rgb") is not None:
        out["model_color"] = "RGB" if opts["model_rgb"] else "BGR"
    if opts.get("model_args"):
        out["model_args"] = parse_model_args(opts["model_args"])
    if opts.get("interpolation"):  # frames resized as the artifact of this model would be
        out["interpolation"] = opts["interpolation"]
    return out


def _check_outputs(json_path: Path | None, confusion: Path | None) -> Path | None:
    """Refuse unwritable outputs before any work; returns the confusion files' stem."""
    from segedge.runtime.io import check_writable

    if json_path is not None:
        check_writable(json_path, "--json")
    if confusion is not None:
        if confusion.exists() and not confusion.is_dir():
            raise InputError("--confusion", "a folder (confusion.csv and .png go in it)",
                             f"the file {confusion}")
        return check_writable(confusion / "confusion.csv", "--confusion").with_suffix("")
    if json_path is not None:
        return json_path.with_name(json_path.stem + ".confusion")
    return None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@version_option("segeval")
@click.argument("artifact")
@click.option("--images", required=True, help="Folder (or glob) of images.")
@click.option("--labels", required=True, type=click.Path(path_type=Path),
              help="Folder of label PNGs named like the images, the same size "
                   "(class index per pixel).")
@click.option("--ignore-index", type=int, default=255, show_default=True,
              help="Label id left out of scoring and of every mean, also when the network "
                   "predicts it (e.g. 11 for a 12-output CamVid model whose class 11 is void); "
                   "ids >= the class count always are.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write results here (and the confusion matrix beside it).")
@click.option("--confusion", type=click.Path(path_type=Path), metavar="DIR",
              help="Write confusion.csv (counts) and confusion.png (row shares) into DIR.")
@click.option("--backend", default="auto", show_default=True,
              help="Runtime backend for an artifact: auto (segrun's rule: a plan on TensorRT, "
                   "a GPU that executes, else OpenVINO vs ONNX Runtime timed on the "
                   "artifact), onnxruntime, openvino, tensorrt.")
@click.option("--provider", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]),
              default="auto", show_default=True, help="ONNX Runtime provider for an .onnx.")
@click.option("--threads", type=int, help="CPU threads (ONNX Runtime, OpenVINO, PyTorch).")
@click.option("--batch", type=int,
              help="Frames per forward (default: 8 for PyTorch, the artifact's batch else).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="PyTorch: state_dict.")
@click.option("--classes", "classes_file", type=click.Path(path_type=Path),
              help="PyTorch: class names file.")
@click.option("--num-classes", type=int, help="PyTorch: class count.")
@click.option("--imgsz", type=int, nargs=2, metavar="H W", help="PyTorch: input size.")
@click.option("--weights", type=click.Choice(["auto", "random", "pretrained"]), default="auto",
              show_default=True, help="PyTorch zoo weights when no --checkpoint.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (none when stderr is not a "
                                                  "terminal either).")
def segeval(artifact: str, images: str, labels: Path, ignore_index: int, json_path: Path | None,
            confusion: Path | None, backend: str, provider: str, threads: int | None,
            batch: int | None, quiet: bool, **opts: Any) -> None:
    """Score ARTIFACT (.onnx, .plan/.engine, zoo model, file.py:Class or checkpoint)."""
    from segedge.export.evaluation.confusion_files import write_confusion
    from segedge.export.evaluation.evaluate import (
        BackendPredictor,
        Predictor,
        TorchPredictor,
        accumulate,
        format_table,
        pair_labels,
        scores,
    )
    from segedge.runtime.progress import progress

    stem = _check_outputs(json_path, confusion)
    pairs = pair_labels(images, labels)
    start = time.perf_counter()
    kind = Path(artifact).suffix.lower()
    predictor: Predictor
    if kind in ARTIFACT_SUFFIXES:
        predictor = BackendPredictor(Path(artifact), provider, threads, backend=backend,
                                     batch=batch or 1)
        runner = f"{predictor.backend.name} ({predictor.backend.active})"
        backend_reason: str | None = predictor.reason
    else:
        import torch

        predictor = TorchPredictor(_torch_config(artifact, opts), threads=threads,
                                   **({"batch": batch} if batch else {}))
        runner = f"pytorch (cpu, {torch.get_num_threads()} threads)"
        backend_reason = None
    loaded = time.perf_counter()
    with progress(total=len(pairs), desc="evaluating", unit="img", quiet=quiet) as bar:
        conf = accumulate(predictor, pairs, ignore_index, bar)
    result = scores(conf, predictor.classes, len(pairs))
    done = time.perf_counter()
    click.echo(format_table(result, f"{artifact} on {images} via {runner}"))
    if backend_reason:
        click.echo(f"backend: {backend_reason}")
    files: dict[str, str] = {}
    if stem is not None:
        csv_path, png_path = write_confusion(conf, predictor.classes, stem)
        files = {"confusion_csv": str(csv_path), "confusion_png": str(png_path)}
    if json_path is not None:
        from segedge.runtime.io import write_json_atomic

        write_json_atomic(json_path, {
            "artifact": artifact, "runner": runner, "backend_reason": backend_reason,
            "images_dir": str(images),
            "labels_dir": str(labels), **result.to_dict(), **files,
            "confusion": conf.counts.tolist(), "seconds": round(done - start, 2),
            "eval_seconds": round(done - loaded, 2),
            "images_per_s": round(len(pairs) / max(done - loaded, 1e-9), 2)})
    if result.degenerate:
        raise VerificationError(f"{artifact}: {result.degenerate}: a degenerate result; check "
                                "the checkpoint and --mean/--std/--norm-units/--bgr")


def _share_preprocessing_options() -> None:
    """Attach segexport's preprocessing options to segeval (same objects: one definition)."""
    from segedge.export.cli import segexport

    shared = [p for p in segexport.params if p.name in PREPROCESSING_PARAMS]
    at = next(i for i, p in enumerate(segeval.params) if p.name == "imgsz")
    segeval.params[at:at] = shared


_share_preprocessing_options()


def main(argv: list[str] | None = None) -> None:
    import sys

    from segedge.export.cli import group_model_args

    args = list(sys.argv[1:] if argv is None else argv)
    run_cli("segeval", segeval, group_model_args(args))  # --model-args a=1 b=2, as segexport


if __name__ == "__main__":
    main()
