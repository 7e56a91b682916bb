"""Train the light Mask R-CNN on generated car scenes, so exports can be checked on a
model whose detections mean something (random weights detect noise or nothing).

A few minutes on two CPU cores; used by the slow tests (cached) and by hand:
``python -m tools.instance_train OUT.pt --steps 600`` from the repository root
(tools/ is training and test code, not part of the installed package).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segedge.export.models.maskrcnn import maskrcnn_mobilenet
from tools.instance_scenes import INSTANCE_CLASSES, sample

TRAIN_SIZE = (192, 256)
TRAIN_SEED_BASE = 100_000  # training scenes use seeds from here; held-out checks use < 1000


def _batch(seeds: list[int], size: tuple[int, int]
           ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = [], []
    for seed in seeds:
        s = sample(seed, size)
        rgb = np.ascontiguousarray(s.image[:, :, ::-1])
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
        targets.append({"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels),
                        "masks": torch.from_numpy(s.masks)})
    return images, targets


def train(steps: int = 600, batch: int = 4, size: tuple[int, int] = TRAIN_SIZE,
          seed: int = 0, lr: float = 0.01, log: Callable[[str], None] | None = None
          ) -> nn.Module:
    """Train from scratch (no pretrained backbone exists offline); returns the eval model."""
    torch.manual_seed(seed)
    denormal = torch.set_flush_denormal(True)  # from-scratch backward hits denormals: 10x slower
    try:
        return _train(steps, batch, size, seed, lr, log)
    finally:
        if denormal:
            torch.set_flush_denormal(False)


def _train(steps: int, batch: int, size: tuple[int, int], seed: int, lr: float,
           log: Callable[[str], None] | None) -> nn.Module:
    model = maskrcnn_mobilenet(len(INSTANCE_CLASSES), size, norm="batch")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * (0.1 if i > steps * 0.8 else 1.0))
    start = time.perf_counter()
    for step in range(steps):
        seeds = [TRAIN_SEED_BASE + seed * 1_000_000 + step * batch + i for i in range(batch)]
        images, targets = _batch(seeds, size)
        losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        sched.step()
        if log and (step % 50 == 0 or step == steps - 1):
            parts = " ".join(f"{k[5:]}={v.item():.3f}" for k, v in losses.items())
            log(f"step {step} loss {float(loss):.3f} {parts} "
                f"({time.perf_counter() - start:.0f}s)")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    model = train(args.steps, args.batch, log=print)
    torch.save(model.state_dict(), args.output)


if __name__ == "__main__":
    main()
