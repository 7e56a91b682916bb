"""Generated road scenes with per-instance car masks (for training and checking Mask R-CNN).

The background is scenes.render with no cars; cars are painted here, far to
near, each into its own id, so occlusion gives exact visible masks.  Same
look as the semantic demo scenes (and the demo clip), deterministic per seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from segedge.export import scenes

INSTANCE_CLASSES = ("background", "car")
MIN_CAR_PIXELS = 30  # instances hidden below this are dropped from the targets


@dataclass(frozen=True)
class InstanceSample:
    image: np.ndarray  # HxWx3 BGR uint8
    ids: np.ndarray  # HxW uint8: 0 background, k = car k
    boxes: np.ndarray  # [k, 4] float32 x0, y0, x1, y1 (pixels, inclusive-exclusive)
    labels: np.ndarray  # [k] int64, 1 = car
    masks: np.ndarray  # [k, H, W] uint8 0/1


def _car_polys(layout: scenes.Layout, size: tuple[int, int], lane: float, depth: float,
               t: float) -> tuple[list[tuple[float, float]], list[tuple[float, float]],
                                  float, float, float]:
    h, w = size
    hy = int(layout.horizon * h)
    vx = layout.vanish_x * w
    half = layout.road_half * w
    d = min(max(depth + 0.05 * np.sin(t * 0.7 + lane * 3), 0.1), 0.98)
    y_bottom = hy + d * d * (h - hy)
    scale = 0.05 + 0.3 * d * d
    cw, ch = scale * w, scale * w * 0.6
    f = (y_bottom - hy) / max(h - hy, 1)
    cx = vx + (w / 2 + lane * 0.7 * half - vx) * f
    body = [(cx - cw / 2, y_bottom - ch * 0.6), (cx + cw / 2, y_bottom - ch * 0.6),
            (cx + cw / 2, y_bottom), (cx - cw / 2, y_bottom)]
    cabin = [(cx - cw * 0.35, y_bottom - ch), (cx + cw * 0.35, y_bottom - ch),
             (cx + cw * 0.42, y_bottom - ch * 0.6), (cx - cw * 0.42, y_bottom - ch * 0.6)]
    return body, cabin, cx, y_bottom, ch


def render_instances(layout: scenes.Layout, size: tuple[int, int], t: float = 0.0,
                     noise_seed: int | None = 0) -> InstanceSample:
    """Paint the scene, then its cars with one id each (near cars occlude far ones)."""
    img, _ = scenes.render(replace(layout, cars=()), size, t, noise_seed=None)
    ids = np.zeros(size, np.uint8)
    cars = sorted(layout.cars, key=lambda c: c[1])
    for k, (lane, depth, colour) in enumerate(cars, start=1):
        body, cabin, cx, y_bottom, ch = _car_polys(layout, size, lane, depth, t)
        bgr = tuple(int(c) for c in colour[::-1])
        for poly, col in ((body, bgr), (cabin, tuple(int(c * 0.6) for c in bgr))):
            pts = np.round(np.array(poly)).astype(np.int32)
            cv2.fillPoly(img, [pts], col)
            cv2.fillPoly(ids, [pts], k)
        cw = abs(body[1][0] - body[0][0])
        for wx in (cx - cw * 0.3, cx + cw * 0.3):
            cv2.circle(img, (int(wx), int(y_bottom)), max(1, int(ch * 0.15)), (20, 20, 20), -1)
            cv2.circle(ids, (int(wx), int(y_bottom)), max(1, int(ch * 0.15)), k, -1)
    if noise_seed is not None:
        noise = np.random.default_rng(noise_seed).normal(0, 6, img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    masks, boxes = [], []
    for k in range(1, len(cars) + 1):
        m = (ids == k).astype(np.uint8)
        if int(m.sum()) < MIN_CAR_PIXELS:
            continue
        ys, xs = np.nonzero(m)
        masks.append(m)
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    h, w = size
    return InstanceSample(
        image=img, ids=ids,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.ones(len(masks), np.int64),
        masks=np.stack(masks) if masks else np.zeros((0, h, w), np.uint8),
    )


def sample(seed: int, size: tuple[int, int], max_cars: int = 4) -> InstanceSample:
    """One random scene with 1..max_cars cars at visible depths."""
    rng = np.random.default_rng(seed)
    layout = scenes.random_layout(rng)
    cars = tuple(
        (float(rng.uniform(-0.8, 0.8)), float(rng.uniform(0.35, 0.95)),
         tuple(int(v) for v in rng.integers(20, 240, 3)))
        for _ in range(int(rng.integers(1, max_cars + 1)))
    )
    layout = replace(layout, cars=cars)  # type: ignore[arg-type]
    return render_instances(layout, size, t=float(rng.uniform(0, 10)), noise_seed=seed)


def empty_scene(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A road scene with no cars at all (the zero-detection path on a real-looking image)."""
    layout = replace(scenes.random_layout(np.random.default_rng(seed)), cars=())
    return scenes.render(layout, size, t=0.0, noise_seed=seed)[0]
