"""Calibration frames, the frames held back from them, and the calibration cache.

Frames are preprocessed with the runtime's ``prepare`` (via LabelledFrames),
so INT8 ranges are measured on exactly what the deployed graph will see.
Accuracy is always reported on frames the calibration never saw: the user's
``--eval-images`` (minus any overlap), or frames held back from ``--calib``.
The cache is keyed on the graph, the prepared tensors and the settings, so a
re-run with the same frames skips the calibration pass and anything else
recalibrates.  One file holds every calibration a run measured (the user's and
the calibration search's), never one file per trial.

Frames stream: with ``convert`` (the lowering passes the runtime's ``prepare``)
each calibration image is converted as it is read, so the full-size decoded
frames (6 MB each at 2048x1024) are never all held at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segedge.export.frames import VIDEO_SUFFIXES, FrameSet, list_images, read_video
from segedge.runtime.errors import InputError
from segedge.runtime.io import write_json_atomic

CACHE_SCHEMA = 2  # one file, several content-keyed entries (1: one entry)
CACHE_ENTRIES = 8
# frames held back from --calib to report on (at most a fifth of them): per-frame INT8
# agreement spreads 1-3 points on real models, so 64 (32 report frames after the
# selection/report split) gives a 95 % interval of about +-1 point; the report says how
# many frames its measured spread needs for +-0.5 (precision_report.agreement_spread)
DEFAULT_HOLDOUT = 64


@dataclass(frozen=True)
class Split:
    calib: FrameSet
    held: FrameSet  # frames for the accuracy report, never used to calibrate
    truths: list[np.ndarray] | None  # label maps for `held`, when labels were given


def spread(items: list[Any], count: int) -> list[Any]:
    if count >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count)]


def read_images(files: list[Path], what: str,
                convert: Callable[[np.ndarray], Any] | None = None) -> list[Any]:
    """Decoded frames, each passed through `convert` as soon as it is read."""
    frames = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(what, "readable image files", str(f))
        frames.append(img if convert is None else convert(img))
    return frames


def split_frames(calib: str, count: int, eval_images: str | None = None,
                 eval_labels: Path | None = None, eval_count: int | None = None,
                 holdout: int = DEFAULT_HOLDOUT,
                 convert: Callable[[np.ndarray], Any] | None = None) -> Split:
    """Calibration frames from `calib` (folder, glob or video) and disjoint held-out frames.

    The calibration frames depend on `calib` and `count` only: the frames held
    back from `calib` are reserved whether or not `--eval-images` is given, so
    adding evaluation flags never changes the calibration (nor misses its cache).
    `convert` is applied to each calibration image as it is read (streaming).
    """
    if count < 1:
        raise InputError("--calib-count", "a positive number of frames", count)
    held: FrameSet | None = None
    truths: list[np.ndarray] | None = None
    if eval_images:
        held, truths = eval_frames(eval_images, eval_labels, eval_count)
    elif eval_labels is not None:
        raise InputError("--eval-labels", "--eval-images DIR as well", "labels only")
    path = Path(calib)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        split = _split_video(path, count, held, truths, eval_count or holdout)
        if convert is None:
            return split
        return replace(split, calib=replace(split.calib, frames=[
            convert(f) for f in split.calib.frames]))
    files = list_images(calib)
    if not files:
        raise InputError("--calib", "a folder, glob or video with frames", repr(calib))
    if len(files) < 2:
        raise InputError("--calib", "at least 2 frames (some are held back to measure "
                         "accuracy)", f"{len(files)} frame")
    reserved = spread(files, min(holdout, max(1, len(files) // 5)))
    pool = [f for f in files if f not in set(reserved)]
    picked = spread(pool, count)
    if held is not None:
        taken = {Path(p).resolve() for p in held.paths}
        both = [f for f in picked if f.resolve() in taken]
        if both:
            raise InputError("--calib", "frames that are not also evaluation frames",
                             f"{len(both)} of the {len(picked)} calibration frames are in "
                             "--eval-images")
    else:
        held_files = spread(reserved, eval_count) if eval_count else reserved
        held = FrameSet(read_images(held_files, "--calib"),
                        f"{calib} ({len(held_files)} held-out frames)",
                        tuple(str(p) for p in held_files))
    return Split(FrameSet(read_images(picked, "--calib", convert),
                          f"{calib} ({len(picked)} frames)",
                          tuple(str(p) for p in picked)), held, truths)


def _split_video(path: Path, count: int, held: FrameSet | None,
                 truths: list[np.ndarray] | None, n_held: int) -> Split:
    """Frames spread over the video, every k-th one held back (also with eval images)."""
    frames = read_video(path, count + n_held)
    step = max(2, len(frames) // max(n_held, 1))
    held_idx = set(range(step // 2, len(frames), step))
    calib = [f for i, f in enumerate(frames) if i not in held_idx]
    if held is None:
        held = FrameSet([f for i, f in enumerate(frames) if i in held_idx],
                        f"video {path} ({len(held_idx)} held-out frames)")
    if not calib or not held.frames:
        raise InputError("--calib", "a readable video with at least 2 frames", str(path))
    return Split(FrameSet(calib, f"video {path} ({len(calib)} frames)"), held, truths)


def read_label(path: Path) -> np.ndarray:
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None or lab.ndim != 2:
        raise InputError("--eval-labels", "single-channel label PNGs", str(path))
    return lab


def eval_frames(images: str, labels: Path | None, count: int | None
                ) -> tuple[FrameSet, list[np.ndarray] | None]:
    """Evaluation frames (every `count`-th spread), with their label maps when given."""
    if labels is not None:
        from segedge.export.evaluation.evaluate import pair_labels

        pairs = pair_labels(images, labels)
        pairs = spread(pairs, count) if count else pairs
        return (FrameSet(read_images([p for p, _ in pairs], "--eval-images"),
                         f"{images} ({len(pairs)} labelled frames)",
                         tuple(str(p) for p, _ in pairs)), [read_label(lab) for _, lab in pairs])
    files = list_images(images)
    if not files:
        raise InputError("--eval-images", "a folder, glob or image with frames", repr(images))
    files = spread(files, count) if count else files
    return FrameSet(read_images(files, "--eval-images"), f"{images} ({len(files)} frames)",
                    tuple(map(str, files))), None


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def frame_digests(tensors: list[np.ndarray]) -> tuple[bytes, ...]:
    """Each prepared frame's content hash, in order (a run hashes a frame set once)."""
    return tuple(digest(np.ascontiguousarray(t).tobytes()) for t in tensors)


def key_of(graph_digest: bytes, frames: tuple[bytes, ...], **settings: Any) -> str:
    """The cache key: same graph (``digest`` of its bytes), same prepared frames
    (``frame_digests``: in order, so their count too), same settings (method, target
    flavour, ...) -> same key.  It takes digests, not bytes, so a run hashes its graph and
    each frame set once (int8_steps.Int8Run.key) however many candidates it keys."""
    key = hashlib.sha256(graph_digest)
    for frame in frames:
        key.update(frame)
    key.update(json.dumps({"frames": len(frames), **settings}, sort_keys=True).encode())
    return key.hexdigest()


def _entries(path: Path) -> dict[str, Any]:
    """key -> entry of a cache file (schema 2: several keys; schema 1: one)."""
    try:
        blob = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(blob, dict):
        return {}
    if blob.get("schema") == 1 and isinstance(blob.get("key"), str):
        return {blob["key"]: blob}
    if blob.get("schema") == CACHE_SCHEMA and isinstance(blob.get("entries"), dict):
        return blob["entries"]
    return {}


def load_cache(path: Path, key: str, ranges_out: Path) -> bool:
    """Write the cached ranges to `ranges_out` when `path` holds ranges for `key`."""
    entry = _entries(path).get(key)
    if not isinstance(entry, dict) or "ranges" not in entry:
        return False
    ranges_out.write_text(json.dumps(entry["ranges"]))
    return True


def save_cache(path: Path, key: str, ranges_file: Path, info: dict[str, Any]) -> None:
    """Add (or refresh) `key` in the one cache file: every calibration a run measured (the
    user's and the search's) lives in it, the newest ``CACHE_ENTRIES`` kept."""
    entries = {k: v for k, v in _entries(path).items() if k != key}
    entries[key] = {**info, "ranges": json.loads(ranges_file.read_text())}
    entries = dict(list(entries.items())[-CACHE_ENTRIES:])
    write_json_atomic(path, {"schema": CACHE_SCHEMA, "entries": entries})
