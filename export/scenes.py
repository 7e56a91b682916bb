"""Procedurally generated road scenes with exact labels.

They let the demo model be trained, the demo clip be made and exports be
verified anywhere, offline, with no licensed data: every pixel's class is
known because it was painted.  Deterministic for a given seed and time.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SCENE_CLASSES = ("sky", "building", "tree", "road", "lane_marking", "sidewalk", "car")
SCENE_PALETTE = (
    (70, 130, 180), (120, 70, 60), (60, 160, 60), (128, 64, 128),
    (250, 250, 80), (200, 200, 200), (230, 30, 30),
)
SKY, BUILDING, TREE, ROAD, LANE, SIDEWALK, CAR = range(7)


@dataclass(frozen=True)
class Layout:
    """The random but time-invariant parts of a scene; time moves things along."""

    horizon: float
    vanish_x: float
    road_half: float
    buildings: tuple[tuple[float, float, float, tuple[int, int, int]], ...]
    trees: tuple[tuple[float, float, float], ...]
    cars: tuple[tuple[float, float, tuple[int, int, int]], ...]  # lane offset, depth, colour
    sky_top: tuple[int, int, int]
    road_grey: int
    dash_speed: float


def random_layout(rng: np.random.Generator) -> Layout:
    def colour(lo: int, hi: int) -> tuple[int, int, int]:
        return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]

    buildings = tuple(
        (float(rng.uniform(0, 1)), float(rng.uniform(0.04, 0.16)), float(rng.uniform(0.1, 0.3)),
         colour(60, 170))
        for _ in range(int(rng.integers(2, 7)))
    )
    trees = tuple(
        (float(rng.uniform(0, 1)), float(rng.uniform(0.03, 0.07)), float(rng.uniform(0.05, 0.15)))
        for _ in range(int(rng.integers(0, 5)))
    )
    cars = tuple(
        (float(rng.uniform(-0.8, 0.8)), float(rng.uniform(0.15, 0.95)), colour(20, 240))
        for _ in range(int(rng.integers(0, 4)))
    )
    return Layout(
        horizon=float(rng.uniform(0.35, 0.5)), vanish_x=float(rng.uniform(0.35, 0.65)),
        road_half=float(rng.uniform(0.45, 0.8)), buildings=buildings, trees=trees, cars=cars,
        sky_top=colour(150, 255), road_grey=int(rng.integers(50, 110)),
        dash_speed=float(rng.uniform(0.02, 0.05)),
    )


def render(layout: Layout, size: tuple[int, int], t: float = 0.0,
           noise_seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Paint one scene: (BGR uint8 image, uint8 label map) of the given (H, W)."""
    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    lab = np.zeros((h, w), np.uint8)
    hy = int(layout.horizon * h)
    vx = layout.vanish_x * w
    # Sky: vertical gradient.
    top = np.array(layout.sky_top[::-1], np.float32)
    ramp = np.linspace(0.0, 1.0, max(hy, 1), dtype=np.float32)[:, None, None]
    img[:hy] = (top * (1 - 0.4 * ramp) + 255 * 0.4 * ramp).astype(np.uint8)
    lab[:hy] = SKY
    # Ground (sidewalk) below the horizon.
    img[hy:] = (150, 160, 165)
    lab[hy:] = SIDEWALK

    def fill(poly: list[tuple[float, float]], colour: tuple[int, int, int], cls: int) -> None:
        pts = np.round(np.array(poly)).astype(np.int32)
        cv2.fillPoly(img, [pts], colour)
        cv2.fillPoly(lab, [pts], cls)

    # Buildings slide outwards as the camera moves forward.
    for bx, bw, bh, colour in layout.buildings:
        cx = ((bx - 0.5) * (1 + 0.3 * t) + 0.5) * w
        x0, x1 = cx - bw * w / 2, cx + bw * w / 2
        y0 = hy - bh * h
        fill([(x0, y0), (x1, y0), (x1, hy), (x0, hy)], colour, BUILDING)
        for wy in np.arange(y0 + 4, hy - 6, max(6, h // 40)):
            for wx in np.arange(x0 + 3, x1 - 5, max(6, w // 50)):
                cv2.rectangle(img, (int(wx), int(wy)), (int(wx) + 2, int(wy) + 3), (40, 40, 40), -1)
    for tx, tr, th in layout.trees:
        cx = ((tx - 0.5) * (1 + 0.3 * t) + 0.5) * w
        trunk_top = hy - th * h * 0.5
        fill([(cx - 2, trunk_top), (cx + 2, trunk_top), (cx + 2, hy), (cx - 2, hy)],
             (30, 60, 90), TREE)
        cv2.circle(img, (int(cx), int(trunk_top)), max(2, int(tr * w)), (40, 140, 50), -1)
        cv2.circle(lab, (int(cx), int(trunk_top)), max(2, int(tr * w)), TREE, -1)
    # Road: a trapezoid to the vanishing point.
    half = layout.road_half * w
    g = layout.road_grey
    fill([(vx - 3, hy), (vx + 3, hy), (w / 2 + half, h), (w / 2 - half, h)], (g, g, g), ROAD)

    def road_x(offset: float, y: float) -> float:
        f = (y - hy) / max(h - hy, 1)
        return vx + (w / 2 + offset * half - vx) * f

    # Dashed lane markings moving towards the camera with time.
    phase = (t * layout.dash_speed * 10) % 1.0
    for offset in (-0.33, 0.33):
        for k in range(8):
            d0, d1 = ((k + phase) / 8) ** 2, ((k + phase + 0.45) / 8) ** 2
            y0, y1 = hy + d0 * (h - hy), hy + min(d1, 1.0) * (h - hy)
            wd0, wd1 = 0.6 + 5 * d0, 0.6 + 5 * min(d1, 1.0)
            fill([(road_x(offset, y0) - wd0, y0), (road_x(offset, y0) + wd0, y0),
                  (road_x(offset, y1) + wd1, y1), (road_x(offset, y1) - wd1, y1)],
                 (240, 240, 240), LANE)
    # Cars, far to near so near ones overlap.
    for lane, depth, colour in sorted(layout.cars, key=lambda c: c[1]):
        d = min(max(depth + 0.05 * np.sin(t * 0.7 + lane * 3), 0.1), 0.98)
        y_bottom = hy + d * d * (h - hy)
        scale = 0.05 + 0.3 * d * d
        cw, ch = scale * w, scale * w * 0.6
        cx = road_x(lane * 0.7, y_bottom)
        body = [(cx - cw / 2, y_bottom - ch * 0.6), (cx + cw / 2, y_bottom - ch * 0.6),
                (cx + cw / 2, y_bottom), (cx - cw / 2, y_bottom)]
        cabin = [(cx - cw * 0.35, y_bottom - ch), (cx + cw * 0.35, y_bottom - ch),
                 (cx + cw * 0.42, y_bottom - ch * 0.6), (cx - cw * 0.42, y_bottom - ch * 0.6)]
        fill(body, colour[::-1], CAR)  # type: ignore[arg-type]
        fill(cabin, tuple(int(c * 0.6) for c in colour[::-1]), CAR)  # type: ignore[arg-type]
        for wx in (cx - cw * 0.3, cx + cw * 0.3):
            cv2.circle(img, (int(wx), int(y_bottom)), max(1, int(ch * 0.15)), (20, 20, 20), -1)
    if noise_seed is not None:
        noise = np.random.default_rng(noise_seed).normal(0, 6, img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return img, lab


def sample(seed: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One random scene (image BGR, labels) for training or verification."""
    rng = np.random.default_rng(seed)
    layout = random_layout(rng)
    return render(layout, size, t=float(rng.uniform(0, 10)), noise_seed=seed)


def frames(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    return [sample(seed + i, size)[0] for i in range(count)]


def write_clip(path: Path, frames_count: int = 120, size: tuple[int, int] = (240, 320),
               fps: float = 12.0, seed: int = 7) -> Path:
    """Write the demo clip (mp4v) atomically: temp file, then rename."""
    layout = random_layout(np.random.default_rng(seed))
    layout = Layout(**{**layout.__dict__, "cars": (
        (-0.45, 0.55, (200, 30, 30)), (0.4, 0.8, (30, 60, 200)), (0.05, 0.3, (230, 200, 40)))})
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (size[1], size[0]))
    try:
        for i in range(frames_count):
            writer.write(render(layout, size, t=i / fps, noise_seed=None)[0])
    finally:
        writer.release()
    os.replace(tmp, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the procedurally generated demo clip.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    print(write_clip(args.output, args.frames))


if __name__ == "__main__":
    main()
