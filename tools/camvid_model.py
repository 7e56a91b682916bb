"""A small road-scene model trained on CamVid, the reference for precision fidelity.

Quantization error is only meaningful on a trained network (random weights
give flat logits whose argmax flips at the slightest noise), so the FP16/INT8
tests and the numbers in the docs use the zoo's ``demo`` architecture
(DemoNet) trained here on CamVid train at low resolution, a few CPU minutes.
The checkpoint loads with ``segexport demo --num-classes 11 --checkpoint``.
The data root is always given (it holds ``camvid/train``, ``camvid/trainannot``);
nothing here searches for it.  From the repository root:

    python -m tools.camvid_model --data ../shared/data --out camvid_demo.pt
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from segedge.export.models.demo import DemoNet
from segedge.export.models.registry import CAMVID_CLASSES
from segedge.runtime.errors import InputError
from segedge.runtime.paths import list_images
from tools.train_demo import batch_tensors

CAMVID_SIZE = (128, 160)  # (H, W): CamVid 360x480 at a third, rounded to the stride 16
VOID = 11  # CamVid's void label, ignored in training and evaluation
DEFAULT_STEPS = 500


def camvid_root(data: Path | None) -> Path | None:
    """`data`/camvid when it holds a train split; None for no data root or no CamVid."""
    path = Path(data) / "camvid" if data is not None else None
    return path if path is not None and (path / "train").is_dir() else None


def load_split(root: Path, split: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(images BGR NxHxWx3, labels NxHxW) resized to `size`; labels with nearest."""
    files = list_images(str(root / split))
    if not files:
        raise InputError(f"CamVid {split}", "a folder of PNG images", f"none in {root / split}")
    h, w = size
    images, labels = [], []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        lab = cv2.imread(str(root / f"{split}annot" / f.name), cv2.IMREAD_UNCHANGED)
        if img is None or lab is None:
            raise InputError(f"CamVid {split}", "readable image/label pairs", str(f))
        images.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
        labels.append(cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST))
    return np.stack(images), np.stack(labels)


def train(root: Path, steps: int = DEFAULT_STEPS, batch: int = 8,
          size: tuple[int, int] = CAMVID_SIZE, seed: int = 0,
          log: Callable[[str], None] = print,
          build: Callable[[int], torch.nn.Module] = DemoNet) -> torch.nn.Module:
    """AdamW + one-cycle on random crops-free flips: enough for a stable, useful model.

    `build(num_classes)` makes the network (DemoNet; tools/camvid_espnet.py passes ESPNetLite)."""
    torch.manual_seed(seed)
    images, labels = load_split(root, "train", size)
    model = build(len(CAMVID_CLASSES))
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


def save(model: torch.nn.Module, path: Path, architecture: str = "demo", **info: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state_dict": model.state_dict(), "classes": list(CAMVID_CLASSES),
                "architecture": architecture, "size": list(CAMVID_SIZE), **info}, tmp)
    tmp.replace(path)
    return path


def cached_checkpoint(folder: Path, data: Path | None, steps: int = DEFAULT_STEPS,
                      log: Callable[[str], None] = print,
                      build: Callable[[int], torch.nn.Module] = DemoNet,
                      name: str = "demo", architecture: str = "demo") -> Path:
    """Train once per (network, steps, size) into `folder` on `data`/camvid; later calls
    return the saved file."""
    root = camvid_root(data)
    if root is None:
        raise InputError("CamVid", "a data root holding camvid/train", f"none under {data}")
    h, w = CAMVID_SIZE
    path = folder / f"camvid_{name}_{steps}steps_{h}x{w}.pt"
    if not path.is_file():
        save(train(root, steps=steps, log=log, build=build), path, architecture, steps=steps)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="data root holding camvid/train and camvid/trainannot")
    parser.add_argument("--out", type=Path, default=Path("camvid_demo.pt"))
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    root = camvid_root(args.data)
    if root is None:
        raise SystemExit(f"camvid_model: expected {args.data}/camvid/train, got no such folder")
    torch.set_num_threads(args.threads)
    model = train(root, steps=args.steps)
    print(f"wrote {save(model, args.out, steps=args.steps)}")


if __name__ == "__main__":
    main()
