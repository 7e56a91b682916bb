"""The export report (``<artifact>.report.json``), read once, typed (no torch needed).

``segexport`` writes it (export/report.py); the runtime (the auto chooser) and segbench read
it here, so neither re-derives its file name nor walks its dict by key path.  The JSON format
is the writer's; this reader takes what it needs and keeps the rest in ``raw``.

A runtime-precision check (OpenVINO's bf16/f16 hint against FP32 on the verification frames)
is stored under the backend's name: ``report[<backend>][<hint>] = {"checked": ..., "frames":
..., "argmax_agreement": ..., "gate": {"min_argmax_agreement": ..., "passed": ...}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segedge.runtime.errors import ArtifactError

REPORT_SUFFIX = ".report.json"


def report_path(artifact: Path) -> Path:
    """Where segexport writes the report of ``artifact`` (beside it)."""
    return Path(artifact).with_suffix(REPORT_SUFFIX)


@dataclass(frozen=True)
class PrecisionCheck:
    """One runtime precision checked against FP32: did its gate pass, and at what agreement."""

    hint: str
    checked: bool
    passed: bool = False
    agreement: float | None = None  # percent of pixels with FP32's label
    frames: int = 0
    reason: str = ""  # why it was not checked
    min_agreement: float | None = None  # the gate

    @classmethod
    def from_dict(cls, hint: str, raw: Mapping[str, Any]) -> PrecisionCheck:
        gate: Mapping[str, Any] = raw["gate"] if isinstance(raw.get("gate"), Mapping) else {}
        agreement, least = raw.get("argmax_agreement"), gate.get("min_argmax_agreement")
        return cls(hint=hint, checked=raw.get("checked", "gate" in raw) is True,
                   passed=gate.get("passed") is True,
                   agreement=float(agreement) if isinstance(agreement, (int, float)) else None,
                   frames=int(raw.get("frames") or 0), reason=str(raw.get("reason") or ""),
                   min_agreement=float(least) if isinstance(least, (int, float)) else None)

    def line(self, backend: str, graph: str = "FP32") -> str:
        """'openvino bf16 vs FP32 on 4 frames: 99.99 % argmax agreement (gate 99.5 %), passed'
        (`graph`: the artifact's own precision, on the reference runtime)"""
        if not self.checked:
            return f"{backend} {self.hint}: not checked ({self.reason or 'no reason given'})"
        gate = f" (gate {self.min_agreement:g} %)" if self.min_agreement is not None else ""
        agreement = "?" if self.agreement is None else f"{self.agreement:.2f}"
        return (f"{backend} {self.hint} vs {graph} on {self.frames} frames: {agreement} % argmax "
                f"agreement{gate}, {'passed' if self.passed else 'failed: not used'}")


@dataclass(frozen=True)
class ExportReport:
    """What the runtime and segbench read of an export report."""

    path: Path
    status: str
    sha256: str | None
    precision: str
    task: str
    weights: str = ""
    total_seconds: float | None = None
    agreement_vs_fp32: float | None = None  # the lowered graph's argmax agreement with FP32
    plan: Path | None = None  # a TensorRT plan built beside it
    checks: Mapping[str, Mapping[str, PrecisionCheck]] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describes(self, sha256: str) -> bool:
        """A report of another file (a re-export, a copy) verifies nothing about this one."""
        return self.sha256 is not None and self.sha256 == sha256

    def verified(self, backend: str) -> tuple[str, ...]:
        """The runtime precisions of ``backend`` whose gate passed, in the order written."""
        return tuple(h for h, c in self.checks.get(backend, {}).items() if c.passed)

    def precision_lines(self) -> list[str]:
        """The export summary's lines on runtime precisions: what was verified, and what
        ``segrun --backend auto`` will consider ([] when nothing was checked)."""
        if not self.checks:
            return []
        graph = (self.precision or "fp32").upper()  # an INT8/FP16 artifact is its own reference
        lines = [c.line(b, graph) for b, hints in self.checks.items() for c in hints.values()]
        verified = [f"{b} {h}" for b in self.checks for h in self.verified(b)]
        if verified:
            lines.append(f"segrun --backend auto will time {', '.join(verified)} (verified) "
                         f"against {graph} and run the fastest")
        else:
            lines.append(f"segrun --backend auto will run {graph} (no reduced precision "
                         "verified)")
        return lines

    @classmethod
    def from_dict(cls, path: Path, raw: Mapping[str, Any]) -> ExportReport:
        if not isinstance(raw, Mapping):
            raise ArtifactError(f"{path}: expected an export report (a JSON object), got "
                                f"{type(raw).__name__}")
        section = raw.get("precision_report") or {}
        engine = raw.get("engine") or {}
        plan = engine.get("plan") if isinstance(engine, Mapping) else None
        checks: dict[str, dict[str, PrecisionCheck]] = {}
        for backend, hints in raw.items():  # {backend: {hint: {... "gate": {...}}}}
            if not isinstance(hints, Mapping):
                continue
            found = {str(h): PrecisionCheck.from_dict(str(h), c) for h, c in hints.items()
                     if isinstance(c, Mapping) and ("gate" in c or "checked" in c)}
            if found:
                checks[str(backend)] = found
        seconds = raw.get("total_seconds")
        agreement = section.get("argmax_agreement") if isinstance(section, Mapping) else None
        return cls(path=path, status=str(raw.get("status", "")),
                   sha256=str(raw["sha256"]) if raw.get("sha256") else None,
                   precision=str(raw.get("precision", "")), task=str(raw.get("task", "")),
                   weights=str(raw.get("weights", "")),
                   total_seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
                   agreement_vs_fp32=float(agreement)
                   if isinstance(agreement, (int, float)) else None,
                   plan=Path(plan) if plan else None, checks=checks, raw=dict(raw))


def read_report(artifact: Path) -> ExportReport | None:
    """The report beside ``artifact``; None when there is none or it is unreadable (a missing
    report verifies nothing, it is not an error)."""
    path = report_path(artifact)
    try:
        raw = json.loads(path.read_text())
        return ExportReport.from_dict(path, raw)
    except (OSError, ValueError, ArtifactError, TypeError, AttributeError):
        return None
