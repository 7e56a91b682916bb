"""Activation ranges streamed a frame at a time: exact min/max, histograms of a strided sample.

Why not ONNX Runtime's ``HistogramCalibrater.collect_data`` as it is: it keeps every
activation of a pass before collecting (292 MB a frame for ddrnet23_slim at 1024x512),
then merges each tensor into its running histogram with ``np.histogram`` on explicit
bin edges, which sorts the data.  Profiled at 1024x512 on 2 cores (quiet machine): the
augmented network ran in 0.13 s a frame, the collection took 1.65 s, 1.43 s of it in
that sort; under a load of 10 the same frame took 14 s and the time bound cut the
calibration at 26 of 300 frames.

Here each frame's outputs are folded in as soon as the network has produced them (one
frame's activations in memory, never a pass of them):

* min and max are exact, over every element (a reduction, 0.2 ns an element);
* the histogram is fed a strided sample of each tensor, at most ``sample_cap(frames)``
  elements a frame, so that a tensor contributes about ``SAMPLE_TOTAL`` elements over the
  whole calibration whatever the frame count (few frames: every element).  The stride
  is odd (no aliasing with the power-of-two widths of feature maps) and its offset moves
  from frame to frame.  The 99.999th percentile is then estimated from about 335 tail
  samples of 33.5 M per tensor; benchmarks/int8_budget.py measures the range difference
  against the exact histogram on the real frames and writes it to INT8_BUDGET.md;
* the percentile histogram (symmetric: absolute values) is a fixed-width bincount from 0
  (4 ns an element, no sort), laid out as ORT lays it out, so the thresholds are ORT's own
  ``HistogramCollector.compute_percentile``; entropy (and asymmetric percentile) feed
  the sample plus the exact extremes to ORT's ``HistogramCollector`` itself (its
  range-based histogram has no sort).

With ``sample=None`` every element is histogrammed: the ranges then equal ORT's
reference within a bin (tests/export/test_int8_calibration_speed.py).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnxruntime.quantization.calibrate import CalibrationMethod, HistogramCollector, TensorsData

# histogrammed elements per tensor over a whole calibration: the 99.999th percentile then
# rests on about 335 tail samples (count noise about 1/sqrt(335) = 5.5 %)
SAMPLE_TOTAL = 1 << 25
SAMPLE_MIN = 1 << 16  # ... but never fewer than this a frame
MAX_BINS = 1 << 16  # a percentile histogram coarsens (pairs of bins) beyond this
_GOLDEN = 0.6180339887


def sample_cap(frames: int) -> int:
    """Elements a tensor contributes to its histogram per frame, for `frames` frames."""
    return max(SAMPLE_MIN, -(-SAMPLE_TOTAL // max(frames, 1)))


def strided(arr: np.ndarray, cap: int | None, frame: int) -> np.ndarray:
    """At most about `cap` elements of `arr` (flattened): every k-th, k odd, offset by frame."""
    flat = arr.reshape(-1)
    if cap is None or flat.size <= cap:
        return flat
    k = -(-flat.size // cap) | 1
    return flat[int(frame * _GOLDEN * k) % k::k]


@dataclass
class _AbsHistogram:
    """|x| counts in bins of a fixed width from 0 (ORT's symmetric percentile layout)."""

    bins: int
    lo: np.float32
    hi: np.float32
    width: float = 0.0
    hist: np.ndarray | None = None
    zeros: int = 0  # elements seen while every value so far was 0 (no width yet)

    def add(self, sample: np.ndarray, lo: np.float32, hi: np.float32) -> None:
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        amax = max(-float(lo), float(hi))  # the exact extreme: the bins always reach it
        if not np.isfinite(amax):
            raise ValueError(f"non-finite activation values ({lo}, {hi})")
        if self.hist is None:
            if amax == 0.0:
                self.zeros += sample.size
                return
            self.width = amax / self.bins
            self.hist = np.zeros(self.bins, np.int64)
            self.hist[0] += self.zeros
        elif amax >= self.width * self.hist.size:
            self._grow(amax)
        assert self.hist is not None
        idx = (np.abs(sample) * np.float32(1.0 / self.width)).astype(np.intp)
        np.minimum(idx, self.hist.size - 1, out=idx)
        self.hist += np.bincount(idx, minlength=self.hist.size)

    def _grow(self, amax: float) -> None:
        """More bins of the same width (as ORT extends), halving the resolution past MAX_BINS."""
        assert self.hist is not None
        need = int(amax // self.width) + 1
        while need > MAX_BINS:
            hist = self.hist if self.hist.size % 2 == 0 else np.append(self.hist, 0)
            self.hist = hist.reshape(-1, 2).sum(axis=1)
            self.width *= 2.0
            need = int(amax // self.width) + 1
        self.hist = np.concatenate([self.hist, np.zeros(max(0, need - self.hist.size),
                                                        np.int64)])

    def as_ort(self) -> tuple[np.ndarray, np.ndarray, np.float32, np.float32]:
        """(hist, edges, min, max) as HistogramCollector.collect_absolute_value keeps them."""
        if self.hist is None:  # every value 0: one bin holds them all
            hist = np.zeros(self.bins, np.int64)
            hist[0] = max(self.zeros, 1)
            return hist, np.linspace(0, 1, self.bins + 1, dtype=np.float32), self.lo, self.hi
        edges = (np.arange(self.hist.size + 1, dtype=np.float64) * self.width).astype(np.float32)
        return self.hist, edges, self.lo, self.hi


class RangeStream:
    """Per-tensor statistics for ORT's histogram calibrators, one frame at a time.

    `calibrator` is ORT's Percentile/Entropy calibrater (its method, bins and percentile
    are read from it); `sample` caps the elements a tensor contributes per frame
    (None: all of them).
    """

    def __init__(self, calibrator: Any, sample: int | None) -> None:
        self.method: str = calibrator.method
        self.symmetric: bool = bool(calibrator.symmetric)
        self.sample = sample
        self.frames = 0
        self._collector = HistogramCollector(
            method=self.method, symmetric=self.symmetric, num_bins=calibrator.num_bins,
            num_quantized_bins=calibrator.num_quantized_bins,
            percentile=calibrator.percentile, scenario=calibrator.scenario)
        self._abs: dict[str, _AbsHistogram] = {}
        self._own = self.method == "percentile" and self.symmetric

    def add(self, tensors: dict[str, np.ndarray]) -> None:
        """Fold one frame's activations in (they may be freed as soon as this returns)."""
        ort_part: dict[str, np.ndarray] = {}
        for name, arr in tensors.items():
            flat = arr.reshape(-1)
            if flat.dtype not in (np.float32, np.float16):
                continue
            if flat.size:
                lo, hi = np.fmin.reduce(flat), np.fmax.reduce(flat)
            else:
                lo = hi = flat.dtype.type(0)
            part = strided(flat, self.sample, self.frames)
            if self._own:
                lo, hi = np.float32(lo), np.float32(hi)
                state = self._abs.get(name)
                if state is None:
                    state = self._abs[name] = _AbsHistogram(self._collector.num_bins, lo, hi)
                state.add(part, lo, hi)
            else:  # ORT's own collector; the exact extremes ride along with the sample
                ort_part[name] = part if part.size == flat.size else np.concatenate(
                    [part, np.array([lo, hi], flat.dtype)])
        if ort_part:
            with contextlib.redirect_stdout(io.StringIO()):  # ORT prints per call
                self._collector.collect(ort_part)
        self.frames += 1

    def compute(self) -> TensorsData:
        """ORT's thresholds (compute_percentile / compute_entropy) on the streamed histograms."""
        if self.frames == 0:
            raise ValueError("No data is collected.")
        if self._own:
            self._collector.histogram_dict = {n: s.as_ort() for n, s in self._abs.items()}
        method = {"percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy,
                  "distribution": CalibrationMethod.Distribution}[self.method]
        if self.method == "entropy":
            nq = self._collector.num_quantized_bins
            return TensorsData(method, {name: (*entropy_threshold(h, nq), *h[:2])
                                        for name, h in self._collector.histogram_dict.items()})
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints its settings
            return TensorsData(method, self._collector.compute_collection_result())


def entropy_threshold(histogram: tuple[Any, ...], num_quantized_bins: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """ORT's ``HistogramCollector.get_entropy_threshold`` (the KL-divergence search of
    TensorRT's calibration), the same arithmetic step for step, with its per-element
    Python ``sum()`` calls replaced by numpy reductions: ORT's loop is quadratic in the
    bins in Python, and its histograms grow with the range (same bin width, more bins):
    measured on a random YOLO at 64x64, 232 tensors up to 10,870 bins took 130 s in
    ORT's version for 16 frames (357 s for 64), unbounded by the step's time bound.
    Equal to ORT's thresholds (tests/export/test_int8_calibration_speed.py)."""
    from onnxruntime.quantization.calibrate import entropy, smooth_distribution

    hist, edges = histogram[0], histogram[1]
    nb = hist.size
    zero = nb // 2
    half = num_quantized_bins // 2
    dtype = edges.dtype
    below = np.concatenate([[0], np.cumsum(hist)])  # below[k] = sum(hist[:k])
    kl = np.zeros(zero - half + 1)
    thresholds = []
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, nb)
        thresholds.append((edges[start], edges[end]))
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += below[start]
        p[-1] += below[-1] - below[end]
        nonzeros = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        body = num_quantized_bins * merged
        quantized = sliced[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        quantized[-1] += sliced[body:].sum()
        norm = nonzeros[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        q = np.zeros(p.size, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(norm != 0, quantized / np.maximum(norm, 1), 0.0)
        q[:body] = np.repeat(share, merged)  # truncated to int64, as ORT's assignment
        p, q = smooth_distribution(p), smooth_distribution(q)
        div = np.array(np.inf if p is None or q is None else entropy(p, q), dtype=dtype)
        kl[i - half] = div
    best = thresholds[int(np.argmin(kl))]
    low, high = histogram[2], histogram[3]
    if best[0] < low:
        best = (low, best[1])
    if best[1] > high:
        best = (best[0], high)
    return best


@dataclass(frozen=True)
class Streamed:
    data: TensorsData
    frames: int  # frames folded in (fewer than given when `tick` raised the bound)
    activation_bytes: int  # one frame's calibrated activations (what one pass holds)
    sample: int | None  # elements per tensor per frame histogrammed (None: all)


def stream_ranges(calibrator: Any, tensors: Any, input_name: str, tick: Any,
                  sample: int | None) -> Streamed:
    """Run ORT's augmented graph frame by frame, folding each frame in before the next.

    `tick` runs after every folded frame and may raise steps.BoundReached: the ranges of
    the frames folded so far stand (the interrupted frame was already complete).
    """
    from segedge.export.precision.steps import BoundReached

    session = calibrator.infer_session
    names = [o.name for o in session.get_outputs()]
    wanted = set(calibrator.tensors_to_calibrate)
    keep = [(i, n) for i, n in enumerate(names) if n in wanted]
    stream = RangeStream(calibrator, sample)
    size = 0
    for tensor in tensors:
        outs = session.run(None, {input_name: tensor})
        if stream.frames == 0:
            size = int(sum(getattr(o, "nbytes", 0) for o in outs))
        stream.add({n: outs[i] for i, n in keep})
        del outs
        try:
            tick()
        except BoundReached:
            break
    return Streamed(stream.compute(), stream.frames, size, sample)
