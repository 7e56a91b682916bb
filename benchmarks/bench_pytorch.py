"""PyTorch eager: the reference every deployment path is compared with.

One iteration is what a PyTorch user writes: uint8 frames to a normalised
float tensor, forward, upsample to the input size when the head is coarser,
argmax.  Same weights as the exported graphs (seeded), same input frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segedge.benchmarks.jobs import Loaded, ModelJob, Needs, SkipCell, frame_batch
from segedge.benchmarks.source_frame import reference_frame
from segedge.runtime import precisions


def probe(name: str) -> str | None:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (pip install segedge[export])"
    if name == "pytorch-cuda" and not torch.cuda.is_available():
        return "no CUDA GPU visible to PyTorch"
    return None


def needs(name: str, precision: str) -> Needs | str:
    spec = precisions.precision(precision)
    if spec.quantized or not spec.artifact:  # a Q/DQ graph, or a runtime hint (bf16)
        return (f"eager {precision} is not a deployment path ({precision} runs in "
                f"{'OpenVINO' if not spec.artifact else 'ONNX Runtime, OpenVINO or TensorRT'})")
    if spec.reduced_float and name == "pytorch-cpu":
        return f"{precision} eager on a CPU is emulated and slow (not a deployment path)"
    return Needs("torch", precision)


def _config(job: ModelJob) -> Any:
    from segedge.export.config import ExportConfig

    return ExportConfig(model=job.model, weights=job.weights,  # type: ignore[arg-type]
                        checkpoint=Path(job.checkpoint) if job.checkpoint else None,
                        num_classes=job.num_classes, imgsz=job.imgsz, quiet=True)


def load(name: str, job: ModelJob) -> Loaded:
    import torch

    from segedge.benchmarks.artifacts import WEIGHT_SEED
    from segedge.export.models.resolve import resolve
    from segedge.export.verify.torch_ref import forward_labels

    if Path(job.model).suffix.lower() in (".onnx", ".plan", ".engine"):
        raise SkipCell("needs a zoo model name, got an exported artifact")
    torch.set_num_threads(job.threads)
    torch.manual_seed(WEIGHT_SEED)
    res = resolve(_config(job))
    device = torch.device("cuda" if name == "pytorch-cuda" else "cpu")
    dtype = getattr(torch, precisions.precision(job.precision).float_dtype)
    model = res.model.eval().to(device=device, dtype=dtype)
    size = sum(p.numel() * p.element_size() for p in model.parameters()) + \
        sum(b.numel() * b.element_size() for b in model.buffers())
    images = torch.from_numpy(frame_batch(reference_frame(job.frame_source, job.imgsz),
                                          job.imgsz, job.batch))
    mean = torch.tensor(res.mean, device=device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(res.std, device=device).view(1, 3, 1, 1) * 255.0
    rgb = res.model_color == "RGB"

    def step() -> np.ndarray:
        with torch.inference_mode():
            x = images.to(device).permute(0, 3, 1, 2).float()
            if rgb:
                x = x.flip(1)
            x = ((x - mean) / std).to(dtype)
            labels: np.ndarray = forward_labels(model, x).cpu().numpy()
            return labels

    def predictor() -> Any:
        if not precisions.is_reference(job.precision):
            raise SkipCell("accuracy of eager fp16 is not measured (the fp32 row is the "
                           "reference)")
        from segedge.export.evaluation.evaluate import TorchPredictor

        return TorchPredictor(_config(job))

    def gpu_mem() -> float | None:
        if device.type != "cuda":
            return None
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)

    return Loaded(step=step, provider=f"torch {torch.__version__} {device.type}",
                  close=lambda: None, size_bytes=size, predictor=predictor, gpu_mem_mib=gpu_mem)
