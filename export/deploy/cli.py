"""`segdeploy`: hand a verified artifact to Triton or DeepStream; one line out, a documented exit.

Exit codes (the common ones of every segedge CLI, runtime/cli_support.py):

    0  written
    1  internal error
    2  bad input: not a segedge artifact, a flag that does not fit it, an existing model
       folder without --force, an unwritable output
    3  the nvinfer copy does not reproduce the artifact's labels (nothing written)
"""

from __future__ import annotations

from pathlib import Path

import click

from segedge.export.deploy.artifact import load_artifact
from segedge.export.deploy.deepstream import DeepStreamOptions, write_deepstream
from segedge.export.deploy.triton import KINDS, TritonOptions, write_repository
from segedge.runtime.cli_support import run_cli, version_option

SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=SETTINGS)
@version_option("segdeploy")
def segdeploy() -> None:
    """Write a Triton model repository or a DeepStream configuration from a segedge artifact."""


@segdeploy.command(context_settings=SETTINGS)
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("-o", "--output", "repo", required=True, type=click.Path(path_type=Path),
              help="Model repository folder (created if missing).")
@click.option("--name", help="Model name (default: the artifact's file stem).")
@click.option("--max-batch", default=8, show_default=True, type=int,
              help="max_batch_size when the artifact has a dynamic batch dim.")
@click.option("--instances", default=1, show_default=True, type=int,
              help="Model instances (instance_group count).")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default="auto", show_default=True,
              help="instance_group kind.")
@click.option("--dynamic-batching/--no-dynamic-batching", default=None,
              help="Default: on when the artifact has a dynamic batch dim.")
@click.option("--max-queue-delay-us", default=100, show_default=True, type=int,
              help="Dynamic batching: how long a request may wait for others.")
@click.option("--version", "version", default=1, show_default=True, type=int,
              help="Model version folder.")
@click.option("--force", is_flag=True, help="Replace an existing model folder.")
def triton(artifact: Path, repo: Path, name: str | None, max_batch: int, instances: int,
           kind: str, dynamic_batching: bool | None, max_queue_delay_us: int, version: int,
           force: bool) -> None:
    """REPO/<name>/config.pbtxt and REPO/<name>/<version>/model.onnx or model.plan."""
    loaded = load_artifact(artifact)
    options = TritonOptions(name=name or artifact.stem, max_batch=max_batch,
                            instances=instances, kind=kind,  # type: ignore[arg-type]
                            dynamic_batching=dynamic_batching,
                            max_queue_delay_us=max_queue_delay_us, version=version, force=force)
    model = write_repository(loaded, repo, options)
    batching = "dynamic batching on" if model.dynamic_batching else "no dynamic batching"
    click.echo(f"segdeploy: {model.folder} ({model.platform}, max_batch_size "
               f"{model.max_batch_size}, {batching}): {model.note}")


@segdeploy.command(context_settings=SETTINGS)
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for the configs, labels and the nvinfer ONNX.")
@click.option("--sources", multiple=True, metavar="URI",
              help="A source (file path, file://, rtsp://, http(s)://); repeat for N streams. "
                   "Default: the shipped demo clip.")
@click.option("--engine", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A TensorRT plan (with its segedge sidecar) built from the nvinfer ONNX.")
@click.option("--batch", type=int, help="nvinfer batch-size (default: the number of sources, "
              "or the artifact's static batch).")
@click.option("--width", type=int, help="Network input width (artifacts with a dynamic size).")
@click.option("--height", type=int, help="Network input height (with --width).")
@click.option("--mux-width", default=1280, show_default=True, type=int,
              help="nvstreammux / tiler width.")
@click.option("--mux-height", default=720, show_default=True, type=int,
              help="nvstreammux / tiler height.")
@click.option("--output-file", default="segedge_deepstream.mp4", show_default=True,
              help="What the file sink writes (beside the configs).")
def deepstream(artifact: Path, out_dir: Path, sources: tuple[str, ...], engine: Path | None,
               batch: int | None, width: int | None, height: int | None, mux_width: int,
               mux_height: int, output_file: str) -> None:
    """nvinfer + deepstream-app configs for semantic segmentation of N streams."""
    options = DeepStreamOptions(sources=sources, engine=engine, batch=batch, width=width,
                                height=height, mux_width=mux_width, mux_height=mux_height,
                                output_file=output_file)
    bundle = write_deepstream(artifact, out_dir, options)
    pre = bundle.preprocess
    folded = "; per-channel std folded into the ONNX" if pre.folded_std else ""
    n = len(sources) or 1
    click.echo(f"segdeploy: {bundle.app_config} ({n} source(s), batch {bundle.batch}, "
               f"{bundle.size[1]}x{bundle.size[0]}, net-scale-factor {pre.scale:.6g}{folded}; "
               f"{bundle.onnx.name} matches the artifact on {bundle.agreement:.2f} % of pixels; "
               "unverified on DeepStream)")


def main(argv: list[str] | None = None) -> None:
    run_cli("segdeploy", segdeploy, argv)


if __name__ == "__main__":
    main()
