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
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from segedge.export.models.user_model import shadowing_hint
from segedge.export.onnx.rewrites import static_adaptive_pooling
from segedge.export.workspace import is_write_error
from segedge.runtime.errors import ExportError

INPUT_NAME = "input"
TORCHSCRIPT_MAX_OPSET = 17  # the TorchScript fallback writes at most this opset
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
    exporter: str  # "dynamo" | "torchscript": the one that wrote the file
    seconds: float
    fallback_reason: str | None  # "name: why; ..." of the exporters tried first, or None
    failures: tuple[tuple[str, str], ...] = ()  # (exporter, first full line of its error)
    rewrites: tuple[str, ...] = ()  # graph rewrites made while tracing (static pooling)

    @property
    def note(self) -> str | None:
        """What happened, for the report: who wrote the file and why the other did not."""
        if not self.failures:
            return None
        why = "; ".join(f"{name} failed: {line}" for name, line in self.failures)
        return f"{self.exporter} exporter wrote the ONNX ({why})"


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
                contextlib.redirect_stderr(buf), _native_output_silenced():
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _native_output_silenced() -> Iterator[None]:
    """torch's C++ side writes straight to file descriptors 1 and 2 (e.g. a whole
    TorchScript graph on stdout when an op has no symbolic); the CLI's contract is one
    error line on stderr and a clean stdout, so both point at a scratch file meanwhile."""
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                except OSError:  # not open: nothing to protect
                    continue
                os.dup2(sink.fileno(), fd)
            yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY = re.compile(r"^## Exception summary\s*$\s*^(.+)$", re.M)
_CLASS = re.compile(r"<class '(?:[\w.]*\.)?(\w+)'>: (.*)")
MAX_REASON = 400  # one report line, not a page


def _first_line(err: BaseException) -> str:
    """`Type: first full line` of an exporter error (terminal colours dropped).

    The dynamo exporter wraps the real error in a page of advice whose first
    line is always the same; its "## Exception summary" line is the cause.
    TorchScript's SymbolicValueError can start with an empty message and a
    bracketed value description: that line is kept whole rather than skipped,
    so the reason is never a fragment from the middle of a sentence.
    """
    text = _ANSI.sub("", str(err))
    summary = _SUMMARY.search(text)
    if summary:
        line = summary.group(1).strip()
        cause = _CLASS.match(line)
        return _cap(f"{cause.group(1)}: {cause.group(2)}" if cause else line)
    line = next((t.strip() for t in text.splitlines() if t.strip()), "")
    return _cap(f"{type(err).__name__}: {line}") if line else type(err).__name__


def _cap(line: str) -> str:
    if len(line) <= MAX_REASON:
        return line
    cut = line.rfind(" ", 0, MAX_REASON)
    return line[:cut if cut > MAX_REASON // 2 else MAX_REASON].rstrip() + " ..."


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
        module, (example,), str(path), dynamo=False,
        opset_version=min(spec.opset, TORCHSCRIPT_MAX_OPSET),
        input_names=[INPUT_NAME], output_names=list(spec.output_names), dynamic_axes=dyn,
        do_constant_folding=True,
    )


EXPORTERS = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def written_opset(path: Path) -> int | None:
    """The default-domain opset of an ONNX file (its header only: no weights loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _check_opset(name: str, path: Path, asked: int) -> None:
    """The dynamo exporter writes opset 18 when its version converter cannot go lower: that
    is a failure of this exporter for this request, and the next one is tried."""
    want = min(asked, TORCHSCRIPT_MAX_OPSET) if name == "torchscript" else asked
    got = written_opset(path)
    if got != want:
        raise ExportError(f"wrote opset {got}, not the {asked} asked for")


def _shapes_from_float(path: Path, example: torch.Tensor, spec: ExportSpec) -> list[str]:
    """A dynamic uint8 export reads its sizes from the bytes (Shape on UINT8, which TensorRT
    refuses): point them at the float Cast (export/onnx/portable.py); static graphs have
    no Shape on the input."""
    if not spec.input_axes or example.dtype != torch.uint8:
        return []
    import onnx

    from segedge.export.onnx.portable import shapes_from_float_input

    model = onnx.load(str(path))
    moved = shapes_from_float_input(model)
    if not moved:
        return []
    onnx.save(model, str(path))
    return [f"{moved} Shape node(s) read the uint8 input's float Cast (TensorRT's Shape "
            "takes no UINT8)"]


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, spec: ExportSpec
                ) -> ExportResult:
    """Try the spec's exporters in order; raise ExportError (every reason) if all fail."""
    failures: list[tuple[str, str]] = []
    for name in spec.exporters:
        start = time.perf_counter()
        try:
            with _quiet(), torch.no_grad(), \
                    static_adaptive_pooling(not spec.input_axes) as rewrites:
                EXPORTERS[name](module, example, path, spec)
            _check_opset(name, path, spec.opset)
            rewrites.extend(_shapes_from_float(path, example, spec))
            return ExportResult(name, time.perf_counter() - start,
                                "; ".join(f"{n}: {why}" for n, why in failures) or None,
                                tuple(failures), tuple(rewrites))
        except Exception as err:  # noqa: BLE001 - any exporter failure means "try the next"
            path.unlink(missing_ok=True)
            written = _write_failure(err)
            if written is not None:  # the disk, not the exporter: the next one fails alike
                raise OSError(written.errno, written.strerror, str(path)) from None
            failures.append((name, _first_line(err)))
    what = "both ONNX exporters" if len(failures) == 2 else "the ONNX export"
    hint = shadowing_hint(module)
    raise ExportError(f"{what} failed: " + " | ".join(f"{n}: {why}" for n, why in failures)
                      + hint)


def _write_failure(err: BaseException) -> OSError | None:
    """The OSError (disk full, read-only, ...) behind an exporter failure, if it was one."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        if is_write_error(cur):
            return cur  # type: ignore[return-value]
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None
