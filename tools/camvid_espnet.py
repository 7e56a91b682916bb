"""An ESPNet-like road-scene model trained briefly on CamVid: the INT8 portability reference.

Why a second trained model next to tools.camvid_model's DemoNet: DemoNet is
ReLU-only with every BatchNorm foldable into its conv, and its Q/DQ graph
agrees with FP32 the same on ONNX Runtime and OpenVINO.  Published road-scene
nets (ESPNet, 2018) have the structures where the two runtimes part ways:
PReLU, parallel dilated convs summed hierarchically, a Concat of branches,
the down-sampled *input image* concatenated with features, and BatchNorm +
PReLU after a Concat (a BatchNormalization that cannot be folded into a conv).

``--arch full`` trains the published ESPNet layout (tools/espnet_lite.py:ESPNet, p=2,
q=8) with its ConvTranspose decoder, the model of the ONNX Runtime vs OpenVINO INT8
question (export/precision/int8.py says what was measured on it).

Usable as a segexport custom model: ``segexport tools/espnet_lite.py:ESPNetLite
--num-classes 11 --checkpoint <file>`` (``:ESPNet --model-args classes=11 p=2 q=8`` for
``--arch full``).  From the repository root:

    python -m tools.camvid_espnet --data ../shared/data --out camvid_espnet.pt
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from tools import camvid_model
from tools.camvid_model import camvid_root
from tools.espnet_lite import ESPNet, ESPNetLite

DEFAULT_STEPS = 400
FULL_ARGS = {"p": 2, "q": 8}  # the published CamVid configuration


def _full(classes: int) -> torch.nn.Module:
    return ESPNet(classes, **FULL_ARGS)


# arch -> (network factory, checkpoint name, architecture recorded in the checkpoint)
ARCHS: dict[str, tuple[Callable[[int], torch.nn.Module], str, str]] = {
    "lite": (ESPNetLite, "espnet", "ESPNetLite"),
    "full": (_full, "espnet_full", "ESPNet"),
}


def train(root: Path, steps: int = DEFAULT_STEPS, seed: int = 0,
          log: Callable[[str], None] = print, arch: str = "lite") -> torch.nn.Module:
    """The DemoNet recipe (AdamW, one-cycle, flips; tools/camvid_model.py) on an ESPNet."""
    return camvid_model.train(root, steps=steps, seed=seed, log=log, build=ARCHS[arch][0])


def cached_checkpoint(folder: Path, data: Path | None, steps: int = DEFAULT_STEPS,
                      log: Callable[[str], None] = print, arch: str = "lite") -> Path:
    """Train once per (arch, steps, size) into `folder`; later calls return the saved file."""
    build, name, architecture = ARCHS[arch]
    return camvid_model.cached_checkpoint(folder, data, steps, log, build=build, name=name,
                                          architecture=architecture)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="data root holding camvid/train and camvid/trainannot")
    parser.add_argument("--out", type=Path, default=Path("camvid_espnet.pt"))
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="lite")
    args = parser.parse_args()
    root = camvid_root(args.data)
    if root is None:
        raise SystemExit(f"camvid_espnet: expected {args.data}/camvid/train, got no such folder")
    torch.set_num_threads(args.threads)
    model = train(root, steps=args.steps, arch=args.arch)
    print(f"wrote {camvid_model.save(model, args.out, ARCHS[args.arch][2], steps=args.steps)}")


if __name__ == "__main__":
    main()
