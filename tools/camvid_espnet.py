"""An ESPNet-like road-scene model trained briefly on CamVid: the INT8 portability reference.

Why a second trained model next to tools.camvid_model's DemoNet: DemoNet is
ReLU-only with every BatchNorm foldable into its conv, and its Q/DQ graph
agrees with FP32 the same on ONNX Runtime and OpenVINO.  Published road-scene
nets (ESPNet, 2018) have the structures where the two runtimes part ways:
PReLU, parallel dilated convs summed hierarchically, a Concat of branches,
the down-sampled *input image* concatenated with features, and BatchNorm +
PReLU after a Concat (a BatchNormalization that cannot be folded into a conv).

Usable as a segexport custom model: ``segexport tools/espnet_lite.py:ESPNetLite
--num-classes 11 --checkpoint <file>``.  From the repository root:

    python -m tools.camvid_espnet --data ../shared/data --out camvid_espnet.pt
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segedge.export.models.registry import CAMVID_CLASSES
from segedge.runtime.errors import InputError
from tools.camvid_model import CAMVID_SIZE, VOID, camvid_root, load_split
from tools.espnet_lite import ESPNetLite
from tools.train_demo import batch_tensors

DEFAULT_STEPS = 400


def train(root: Path, steps: int = DEFAULT_STEPS, batch: int = 8,
          size: tuple[int, int] = CAMVID_SIZE, seed: int = 0,
          log: Callable[[str], None] = print) -> ESPNetLite:
    """The DemoNet recipe (AdamW, one-cycle, flips) on ESPNetLite."""
    torch.manual_seed(seed)
    images, labels = load_split(root, "train", size)
    model = ESPNetLite(len(CAMVID_CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        idx = rng.integers(0, len(images), batch)
        flips = rng.random(batch) < 0.5
        ims = [images[i][:, ::-1] if f else images[i] for i, f in zip(idx, flips, strict=True)]
        labs = [labels[i][:, ::-1] if f else labels[i] for i, f in zip(idx, flips, strict=True)]
        x, y = batch_tensors(ims, labs)
        loss = F.cross_entropy(model(x), y, ignore_index=VOID)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step} loss {loss.item():.3f} {time.perf_counter() - t0:.0f}s")
    return model.eval()


def save(model: ESPNetLite, path: Path, **info: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state_dict": model.state_dict(), "classes": list(CAMVID_CLASSES),
                "architecture": "ESPNetLite", "size": list(CAMVID_SIZE), **info}, tmp)
    tmp.replace(path)
    return path


def cached_checkpoint(folder: Path, data: Path | None, steps: int = DEFAULT_STEPS,
                      log: Callable[[str], None] = print) -> Path:
    """Train once per (steps, size) into `folder`; later calls return the saved file."""
    root = camvid_root(data)
    if root is None:
        raise InputError("CamVid", "a data root holding camvid/train", f"none under {data}")
    h, w = CAMVID_SIZE
    path = folder / f"camvid_espnet_{steps}steps_{h}x{w}.pt"
    if not path.is_file():
        save(train(root, steps=steps, log=log), path, steps=steps)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="data root holding camvid/train and camvid/trainannot")
    parser.add_argument("--out", type=Path, default=Path("camvid_espnet.pt"))
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    root = camvid_root(args.data)
    if root is None:
        raise SystemExit(f"camvid_espnet: expected {args.data}/camvid/train, got no such folder")
    torch.set_num_threads(args.threads)
    model = train(root, steps=args.steps)
    print(f"wrote {save(model, args.out, steps=args.steps)}")


if __name__ == "__main__":
    main()
