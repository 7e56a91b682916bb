"""The confusion matrix on disk: a CSV of raw counts and a PNG heat map of row shares.

The CSV holds exact counts (rows truth, columns prediction, plus an ``other``
column for predicted ids outside the class range), so any figure can be
recomputed from it; the PNG shows where each class's pixels went, rows
normalised, which is what one looks at to see which classes get confused.
Drawn with OpenCV (no plotting library needed at run time); both written
atomically through runtime.io.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from segedge.export.evaluation.metrics import Confusion, class_names
from segedge.runtime.errors import InputError
from segedge.runtime.io import write_bytes_atomic, write_text_atomic

CELL = 28  # pixels per matrix cell in the PNG
FONT = cv2.FONT_HERSHEY_SIMPLEX


def csv_text(conf: Confusion, classes: Sequence[str]) -> str:
    names = class_names(classes, conf.n)
    out = io.StringIO()
    out.write(",".join(["truth\\prediction", *map(_quote, names), "other"]) + "\n")
    for name, row in zip(names, conf.counts, strict=True):
        out.write(",".join([_quote(name), *(str(int(v)) for v in row)]) + "\n")
    return out.getvalue()


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def row_shares(conf: Confusion) -> np.ndarray:
    """Each truth row as fractions of its pixels (0 for rows with none)."""
    counts = conf.counts.astype(np.float64)
    totals = counts.sum(1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def render_png(conf: Confusion, classes: Sequence[str]) -> np.ndarray:
    """A BGR image: names on both axes, row shares as colour and, where large, as numbers."""
    names = class_names(classes, conf.n) + ["other"]
    shares = row_shares(conf)[:, : len(names)]
    rows, cols = shares.shape
    label_w = 12 + max(cv2.getTextSize(n, FONT, 0.45, 1)[0][0] for n in names)
    heat = cv2.applyColorMap(np.round(shares * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    heat = cv2.resize(heat, (cols * CELL, rows * CELL), interpolation=cv2.INTER_NEAREST)
    for r in range(rows):
        for c in range(cols):
            if shares[r, c] >= 0.005:
                text = f"{100 * shares[r, c]:.0f}"
                colour = (0, 0, 0) if shares[r, c] > 0.6 else (255, 255, 255)
                cv2.putText(heat, text, (c * CELL + 3, r * CELL + 18), FONT, 0.38, colour, 1,
                            cv2.LINE_AA)
    canvas = np.full((label_w + rows * CELL + 24, label_w + cols * CELL + 8, 3), 255, np.uint8)
    canvas[label_w:label_w + rows * CELL, label_w:label_w + cols * CELL] = heat
    for r, name in enumerate(names[:rows]):
        cv2.putText(canvas, name, (4, label_w + r * CELL + 18), FONT, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    top = np.full((cols * CELL, label_w, 3), 255, np.uint8)  # column names, drawn then rotated
    for c, name in enumerate(names[:cols]):
        cv2.putText(top, name, (4, c * CELL + 18), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    canvas[:label_w, label_w:label_w + cols * CELL] = np.rot90(top, 1)[:, :]
    cv2.putText(canvas, "rows: truth, columns: prediction, % of the row",
                (4, canvas.shape[0] - 8), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def write_confusion(conf: Confusion, classes: Sequence[str], stem: Path) -> tuple[Path, Path]:
    """`stem`.csv and `stem`.png; returns both paths."""
    csv_path, png_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".png")
    ok, data = cv2.imencode(".png", render_png(conf, classes))
    if not ok:
        raise InputError("confusion PNG", "an image OpenCV can encode", f"{conf.n} classes")
    write_text_atomic(csv_path, csv_text(conf, classes))
    write_bytes_atomic(png_path, data.tobytes())
    return csv_path, png_path
