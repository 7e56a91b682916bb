"""What a precision mode is: one object per mode owns every rule that differs between them.

A mode provides (class attributes and methods of ``PrecisionMode`` below):

* ``name`` (the ``--precision`` choice and the artifact metadata's ``precision``),
  ``suffix`` (default output name), ``flag_help`` (its ``--<name>`` shorthand);
* ``validate(opts)`` - refuse options it cannot use, before any work;
* ``lower(req) -> Lowered | None`` - its ONNX lowering of the verified FP32 graph, with
  its own gate against FP32 and its report section (``Lowered.failure`` when the gate
  missed: the pipeline writes the failed report and publishes nothing);
* ``ungated(opts)`` - the same options with its gate open (measure, never refuse);
* ``report_lines(section)`` - the summary lines for its report section;
* ``implies_engine`` - build a TensorRT plan by default (from the spec: a reduced ONNX);
* ``spec`` - its facts in runtime/precisions (``calibrated``, ``tensorrt_flags(dla)`` read
  them: one table, so a mode's name must be registered there first).

The pipeline, the CLI, the export tasks and the benchmarks ask the mode (by
name, through the registry in ``__init__``) instead of comparing strings, so a
new mode is one new file plus its ``register_precision`` and ``register_mode`` lines.
What both reduced modes share (the comparisons against FP32 on each runtime) is in
precision/ladder.py.
Kept free of torch / onnxruntime imports: the CLI builds its choices from it.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from segedge.runtime.errors import InputError

if TYPE_CHECKING:
    from segedge.export.config import ExportConfig, PrecisionOptions
    from segedge.runtime.metadata import ArtifactMetadata, Precision
    from segedge.runtime.precisions import PrecisionSpec


@dataclass(frozen=True)
class LowerRequest:
    """Everything a lowering needs: the verified FP32 graph and where to work."""

    cfg: ExportConfig
    fp32: Path  # the verified FP32 ONNX (temporary)
    meta: ArtifactMetadata  # its metadata
    workdir: Path  # temporary folder beside the output
    out: Path  # the final artifact path (names caches)
    size: tuple[int, int]  # the export size (H, W)


@dataclass(frozen=True)
class Lowered:
    """What a lowering returns: the lowered graph, its metadata and its report section."""

    path: Path  # the lowered ONNX (temporary, in the work folder)
    meta: ArtifactMetadata  # its metadata (``precision`` = the mode's name)
    section: dict[str, Any]  # the report's ``precision_report`` (``precision`` key included)
    failure: str | None = None  # why the artifact must not be published (its gate missed)


class PrecisionMode(ABC):
    """One precision: validation, artifact name, lowering, engine and TensorRT needs."""

    name: ClassVar[Precision]
    lowers: ClassVar[bool] = True  # transforms the verified FP32 graph (False: it is final)
    flag_help: ClassVar[str] = ""  # segexport --<name> shorthand help (modes that lower)

    @property
    def spec(self) -> PrecisionSpec:
        """This precision's facts (runtime/precisions: one table for the runtime, segbench,
        the TensorRT builder and this mode; register_mode refuses a name it lacks)."""
        from segedge.runtime.precisions import precision

        return precision(self.name)

    @property
    def suffix(self) -> str:
        """Appended to the default output stem, demo{suffix}.onnx: ``_<name>``, nothing for
        the reference.  A mode may override it with a class attribute."""
        return "" if self.spec.reference else f"_{self.name}"

    @property
    def implies_engine(self) -> bool:
        """Build a TensorRT plan by default where TensorRT exists: a reduced-precision ONNX of
        its own (the reference is final as it is; a runtime hint is no ONNX).  A mode may
        override it with a class attribute."""
        return self.spec.artifact and not self.spec.reference

    @property
    def calibrated(self) -> bool:
        """Takes --calib frames and an accuracy budget (the spec's ``calibrated``)."""
        return self.spec.calibrated

    def tensorrt_flags(self, dla: bool = False) -> tuple[str, ...]:
        """Builder flags when TensorRT cannot take the typed graph as it is (weak typing):
        the spec's ``builder_flags``."""
        return self.spec.builder_flags(dla)

    def validate(self, opts: PrecisionOptions) -> None:
        """Refuse options this mode cannot use (one line each, before any work)."""
        if self.calibrated:
            return
        if opts.calib:
            raise InputError("--calib", "--int8 as well", f"precision {self.name}")
        for flag, value in (("--max-miou-drop", opts.max_miou_drop),
                            ("--int8-min-agreement", opts.int8_min_agreement)):
            if value is not None:
                raise InputError(flag, "--int8 as well (it is the INT8 accuracy budget)",
                                 f"precision {self.name}")
        if opts.int8_stop_if_slower is False:  # --int8-even-if-slower: only INT8 is timed
            raise InputError("--int8-even-if-slower", "--int8 as well (it confirms a slower "
                             "INT8)", f"precision {self.name}")

    def ungated(self, opts: PrecisionOptions) -> PrecisionOptions:
        """The same options with this mode's accuracy gate open (measure, never refuse)."""
        return opts

    def lower(self, req: LowerRequest) -> Lowered | None:
        """The lowered graph (report section included); None: the FP32 graph is final."""
        return None

    def report_lines(self, section: dict[str, Any]) -> list[str]:
        """Terminal lines for this mode's check against FP32."""
        line = (f"{self.name} vs fp32 on {section['frames']} frames: argmax agreement "
                f"{section['argmax_agreement']:.3f}%")
        if "miou" in section:
            m = section["miou"]
            line += f", mIoU {m['fp32']:.2f} -> {m[self.name]:.2f} ({-m['drop']:+.2f} points)"
        lat = section["cpu_latency_ms"]
        line += f"; CPU {lat['fp32']:.1f} -> {lat[self.name]:.1f} ms"
        lines = [line]
        for rt, entry in section.get("runtimes", {}).items():
            lines.append(f"  on {rt}: " + (f"cannot load: {entry['error']}" if "error" in entry
                                          else f"agreement {entry['argmax_agreement']:.3f}%"
                                          + (f", mIoU drop {entry['miou']['drop']:+.2f}"
                                             if "miou" in entry else "")))
        return lines

    @staticmethod
    def _open(opts: PrecisionOptions, **changes: Any) -> PrecisionOptions:
        return replace(opts, **changes)
