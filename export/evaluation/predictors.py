"""What segeval scores: an artifact through a runtime backend, or a PyTorch model.

Both take BGR uint8 frames and return network-resolution labels plus the
geometry that maps them back, through the runtime's own preprocessing, so a
PyTorch model, its ONNX and its engine are scored on identical pixels.  Both
also take frames in batches: the PyTorch path must run in ONNX Runtime's
speed class (inference mode, a thread count, channels-last convolutions,
several frames per forward), or nobody evaluates the model they export.
Non-finite outputs are refused (VerificationError), never scored as class 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segedge.export.verify.compare import FiniteCheck
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec
from segedge.runtime.preprocess import Geometry, prepare

DEFAULT_BATCH = 8  # frames per PyTorch forward: most of the batching gain on a CPU


class Predictor(Protocol):
    """Frame in (BGR uint8), network-resolution labels + geometry out."""

    classes: tuple[str, ...]

    def predict(self, frame: np.ndarray) -> tuple[np.ndarray, Geometry]: ...


def predict_many(predictor: Predictor, frames: Sequence[np.ndarray]
                 ) -> list[tuple[np.ndarray, Geometry]]:
    """The predictor's batched path when it has one, else one frame at a time."""
    batched = getattr(predictor, "predict_batch", None)
    if batched is not None:
        return list(batched(list(frames)))
    return [predictor.predict(f) for f in frames]


def labels_from_outputs(outputs: dict[str, np.ndarray], meta: ArtifactMetadata) -> np.ndarray:
    """First image's labels: the baked labels output, else the argmax of the logits."""
    return labels_of_batch(outputs, meta)[0]


def labels_of_batch(outputs: dict[str, np.ndarray], meta: ArtifactMetadata) -> np.ndarray:
    """N label maps: the baked labels output, else the argmax of the logits."""
    if meta.output.labels and meta.output.labels in outputs:
        return np.asarray(outputs[meta.output.labels])
    logits = outputs.get(meta.output.logits or "logits")
    if logits is None:
        raise InputError("artifact outputs", "labels or logits", sorted(outputs))
    return np.asarray(logits).argmax(1).astype(np.uint8)


def _runs(frames: list[np.ndarray], size: int, same_shape: bool) -> list[list[np.ndarray]]:
    """Consecutive batches of at most `size` frames; of one frame shape each when the graph
    takes the frame's own size (a dynamic-size artifact cannot stack different sizes)."""
    runs: list[list[np.ndarray]] = []
    for frame in frames:
        if runs and len(runs[-1]) < size and (
                not same_shape or runs[-1][-1].shape == frame.shape):
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs


class BackendPredictor:
    """An .onnx (ONNX Runtime, OpenVINO) or engine (TensorRT) through the runtime's backends.

    A static batch of N is filled with N different frames (padded with the last
    one); a dynamic batch takes up to `batch` frames per call.
    """

    batch = 1
    name = "the artifact"
    checks: dict[str, FiniteCheck] | None = None

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None,
                 options: Any = None, backend: str = "auto", batch: int = 1) -> None:
        from segedge.runtime.backends.auto import label, open_auto
        from segedge.runtime.backends.base import BackendOptions, open_backend

        if batch < 1:
            raise InputError("--batch", "a frame count >= 1", batch)
        opts = options or BackendOptions(provider=provider, threads=threads)
        if backend == "auto":  # the runtime's one rule (segrun, Segmenter, segbench use it too)
            choice = open_auto(path, opts)
            self.backend, self.reason = choice.backend, choice.reason
        else:
            self.backend = open_backend(path, backend, opts)
            self.reason = f"--backend {backend}: {label(self.backend)}"
        self.name = Path(path).name
        self.meta: ArtifactMetadata = self.backend.metadata
        self.classes = self.meta.classes
        self.batch = self.meta.input.batch or batch

    def predict(self, frame: np.ndarray) -> tuple[np.ndarray, Geometry]:
        return self.predict_batch([frame])[0]

    def predict_batch(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, Geometry]]:
        static = self.meta.input.batch
        out: list[tuple[np.ndarray, Geometry]] = []
        for chunk in _runs(frames, self.batch, same_shape=self.meta.input.size is None):
            fill = chunk + [chunk[-1]] * ((static or len(chunk)) - len(chunk))
            tensor, geoms = prepare(fill, self.meta.input)
            outputs = self.backend.infer(tensor)
            self._check_finite(outputs, len(chunk))
            labels = labels_of_batch(outputs, self.meta)
            out += [(labels[i], geoms[i]) for i in range(len(chunk))]
        return out

    def _check_finite(self, outputs: dict[str, np.ndarray], n: int) -> None:
        if self.checks is None:
            self.checks = {}
        for kind in ("logits", "confidence"):
            key = getattr(self.meta.output, kind)
            if key and key in outputs:
                check = self.checks.setdefault(kind, FiniteCheck(self.name, kind))
                for i in range(n):
                    check.add(outputs[key][i])
                check.raise_if_bad()


class TorchPredictor:
    """A zoo model, checkpoint or user model in PyTorch, fed like the export's parity check."""

    def __init__(self, cfg: Any, threads: int | None = None, batch: int = DEFAULT_BATCH,
                 channels_last: bool = True) -> None:
        import torch

        from segedge.export.models.resolve import resolve

        if batch < 1:
            raise InputError("--batch", "a frame count >= 1", batch)
        if threads is not None:
            if threads < 1:
                raise InputError("--threads", "a thread count >= 1", threads)
            torch.set_num_threads(threads)
        res = resolve(cfg)  # an ExportConfig (kept lazy: no torch import at module level)
        self.model = res.model.eval()
        # NHWC convolutions are oneDNN's fast path on CPUs; models without convs ignore it.
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.classes = res.classes
        self.batch = batch
        self.spec = InputSpec(format="float", layout="NCHW", color_order=res.model_color,
                              mean=res.mean, std=res.std, size=res.size, batch=1,
                              stride=res.stride, interpolation=cfg.interpolation)
        self.check = FiniteCheck("PyTorch", "logits")

    def predict(self, frame: np.ndarray) -> tuple[np.ndarray, Geometry]:
        return self.predict_batch([frame])[0]

    def predict_batch(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, Geometry]]:
        import torch

        from segedge.export.verify.torch_ref import forward_logits

        out: list[tuple[np.ndarray, Geometry]] = []
        for start in range(0, len(frames), self.batch):
            tensor, geoms = prepare(frames[start:start + self.batch], self.spec)
            x = torch.from_numpy(tensor)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                logits = forward_logits(self.model, x)
                labels = logits.argmax(1).to(torch.uint8).numpy()
                values = logits.float().numpy()
            for i in range(len(geoms)):
                self.check.add(values[i])
            self.check.raise_if_bad()
            out += [(labels[i], geoms[i]) for i in range(len(geoms))]
        return out
