"""Briefly train one of the zoo's real-time road-scene networks on CamVid.

Why: INT8's difficulty is a property of *trained* weights (peaked activation
ranges, confident logits); random weights say little about how a published
checkpoint quantizes, and no published checkpoint is cached here.  This gives
benchmarks/int8_budget.py (``--checkpoint``) a trained stand-in in the authors'
parameter layout: the file loads with ``segexport <model> --num-classes 11
--checkpoint FILE`` (strict).  Training data is CamVid train at ``--size``
(squashed like the export's resize), the DemoNet recipe (tools/camvid_model.py).
From the repository root:

    python -m tools.camvid_realtime --data ../shared/data --model ddrnet23_slim \
        --size 128 256 --steps 400 --out /tmp/ddrnet23_slim_camvid.pt
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from segedge.export.models.registry import CAMVID_CLASSES
from tools import camvid_model


def _networks() -> dict[str, Callable[[int], torch.nn.Module]]:
    from segedge.export.models.bisenetv2 import bisenetv2
    from segedge.export.models.ddrnet import ddrnet23_slim
    from segedge.export.models.pidnet import pidnet_s

    return {"ddrnet23_slim": ddrnet23_slim, "pidnet_s": pidnet_s, "bisenetv2": bisenetv2}


def main() -> None:
    nets = _networks()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="data root holding camvid/train and camvid/trainannot")
    parser.add_argument("--model", choices=sorted(nets), default="ddrnet23_slim")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    root = camvid_model.camvid_root(args.data)
    if root is None:
        raise SystemExit(f"camvid_realtime: expected {args.data}/camvid/train, got no such "
                         "folder")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = camvid_model.train(root, steps=args.steps, batch=args.batch,
                               size=tuple(args.size), build=nets[args.model])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    # the authors' layout: a bare state_dict under "state_dict", nothing that needs pickle
    torch.save({"state_dict": model.state_dict(), "classes": list(CAMVID_CLASSES),
                "architecture": args.model, "size": list(args.size), "steps": args.steps}, tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.model}, {args.steps} steps at {args.size[0]}x"
          f"{args.size[1]}, {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
