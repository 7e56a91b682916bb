"""Train the shipped demo model on generated scenes (CPU, a few minutes).

Reproducible: `python -m tools.train_demo` (from the repository root) rewrites
the demo's shipped weights file (export/models/checkpoints/demo.pt, the path
the catalog's `DEMO` weights entry names) from a fixed seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segedge.export import scenes
from segedge.export.evaluation.evaluate import Confusion, scores
from segedge.export.models.catalog import DEMO
from segedge.export.models.demo import DemoNet
from segedge.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD


def batch_tensors(images: list[np.ndarray], labels: list[np.ndarray]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    rgb = np.stack(images)[..., ::-1].astype(np.float32) / np.float32(255.0)  # BGR -> RGB
    x = (rgb - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    y = torch.from_numpy(np.stack(labels)).long()
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), y


def train(steps: int, size: tuple[int, int], batch: int, seed: int) -> tuple[DemoNet, float]:
    torch.manual_seed(seed)
    model = DemoNet(len(scenes.SCENE_CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    pool = [scenes.sample(seed * 100000 + i, size) for i in range(steps * batch // 4)]
    rng = np.random.default_rng(seed)
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(0, len(pool), batch)
        ims = [pool[i][0] for i in idx]
        labs = [pool[i][1] for i in idx]
        flips = rng.random(batch) < 0.5
        ims = [im[:, ::-1] if f else im for im, f in zip(ims, flips, strict=True)]
        labs = [lb[:, ::-1] if f else lb for lb, f in zip(labs, flips, strict=True)]
        x, y = batch_tensors(ims, labs)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
    model.eval()
    held = [scenes.sample(10**7 + i, (240, 320)) for i in range(32)]
    x, y = batch_tensors([h[0] for h in held], [h[1] for h in held])
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    conf = Confusion(len(scenes.SCENE_CLASSES), ignore_index=None)
    conf.add(pred, y.numpy())
    return model, scores(conf, scenes.SCENE_CLASSES, len(held)).miou / 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEMO.path())
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, score = train(args.steps, (176, 240), args.batch, args.seed)
    print(f"held-out mIoU at 240x320: {score:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "classes": list(scenes.SCENE_CLASSES),
                "heldout_miou_240x320": score, "steps": args.steps, "seed": args.seed},
               args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
