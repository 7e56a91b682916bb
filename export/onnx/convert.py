"""torch -> ONNX with the dynamo exporter, falling back to TorchScript automatically.

Real user models break one exporter or the other (data-dependent control
flow, odd module attributes, max_unpool2d in TorchScript), so both are tried
and the one used is recorded; only when both fail does the export fail, with
both reasons on one line.  The task decides the order (an ExportSpec); instance
models allow TorchScript only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from segedge.runtime.errors import ExportError

INPUT_NAME = "input"
Axes = dict[int, str]  # tensor dim -> symbolic name


@dataclass(frozen=True)
class ExportSpec:
    """What to export, as the task decided: outputs, symbolic dims, opset, exporter order."""

    output_names: tuple[str, ...]
    input_axes: Axes  # symbolic dims of the input (empty: static)
    output_axes: dict[str, Axes]  # symbolic dims per output (the TorchScript exporter needs them)
    opset: int = 18
    exporters: tuple[str, ...] = ("dynamo", "torchscript")  # tried in this order

    def __post_init__(self) -> None:
        unknown = [e for e in self.exporters if e not in EXPORTERS]
        if not self.exporters or unknown:
            raise ExportError(f"exporters: expected some of {sorted(EXPORTERS)}, got "
                              f"{list(self.exporters)}")


def exporter_order(choice: str) -> tuple[str, ...]:
    """--exporter auto|dynamo|torchscript -> the order to try (the other one is the fallback)."""
    first = "torchscript" if choice == "torchscript" else "dynamo"
    return (first, *(n for n in ("dynamo", "torchscript") if n != first))


@dataclass(frozen=True)
class ExportResult:
    exporter: str  # "dynamo" | "torchscript"
    seconds: float
    fallback_reason: str | None


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """The exporters print pages of progress and warnings; keep them for errors only."""
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch", "torch.onnx", "torch._dynamo",
                                              "torch.export", "torch.fx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), \
                contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("[", "-", "#")) and "https://" not in line:
            return f"{type(err).__name__}: {line[:200]}"
    return type(err).__name__


def dynamic_axes_for(layout_nhwc: bool, dynamic: bool) -> dict[int, str]:
    if not dynamic:
        return {}
    return {0: "batch", 1: "height", 2: "width"} if layout_nhwc else \
        {0: "batch", 2: "height", 3: "width"}


def _export_dynamo(module: nn.Module, example: torch.Tensor, path: Path, spec: ExportSpec
                   ) -> None:
    axes = spec.input_axes
    shapes = ({i: torch.export.Dim.DYNAMIC for i in axes},) if axes else None
    program = torch.onnx.export(
        module, (example,), dynamo=True, external_data=False, opset_version=spec.opset,
        input_names=[INPUT_NAME], output_names=list(spec.output_names), dynamic_shapes=shapes,
        optimize=True, verbose=False,
    )
    if program is None:
        raise ExportError("dynamo exporter returned no program")
    program.save(str(path), external_data=False)


def _export_torchscript(module: nn.Module, example: torch.Tensor, path: Path,
                        spec: ExportSpec) -> None:
    dyn = None
    if spec.input_axes or spec.output_axes:
        dyn = {INPUT_NAME: spec.input_axes, **spec.output_axes}
    torch.onnx.export(
        module, (example,), str(path), dynamo=False, opset_version=min(spec.opset, 17),
        input_names=[INPUT_NAME], output_names=list(spec.output_names), dynamic_axes=dyn,
        do_constant_folding=True,
    )


EXPORTERS = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, spec: ExportSpec
                ) -> ExportResult:
    """Try the spec's exporters in order; raise ExportError (every reason) if all fail."""
    failures: list[str] = []
    for name in spec.exporters:
        start = time.perf_counter()
        try:
            with _quiet(), torch.no_grad():
                EXPORTERS[name](module, example, path, spec)
            return ExportResult(name, time.perf_counter() - start,
                                "; ".join(failures) if failures else None)
        except Exception as err:  # noqa: BLE001 - any exporter failure means "try the next"
            failures.append(f"{name}: {_first_line(err)}")
            path.unlink(missing_ok=True)
    what = "both ONNX exporters" if len(failures) == 2 else "the ONNX export"
    raise ExportError(f"{what} failed: " + " | ".join(failures))
