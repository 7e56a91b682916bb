"""The export report written beside every artifact (`<artifact>.report.json`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segedge.export.precision import modes
from segedge.runtime.io import write_json_atomic
from segedge.runtime.sidecar import sha256_file

if TYPE_CHECKING:
    from segedge.export.tasks.base import ExportTask

__all__ = ["format_summary", "publish", "report_path", "sha256_file", "write_failed_report",
           "write_json_atomic"]


def report_path(artifact: Path) -> Path:
    return artifact.with_suffix(".report.json")


def write_failed_report(out: Path, report: dict[str, Any]) -> Path:
    """A gate failed: keep the evidence under a name that cannot pass for the artifact's report."""
    report["status"] = "failed"
    failed = out.with_suffix(".failed.report.json")
    write_json_atomic(failed, report)
    return failed


def publish(tmp: Path, out: Path, report: dict[str, Any]) -> None:
    """Rename the verified temp artifact into place and record what was published."""
    os.replace(tmp, out)
    report["status"] = "ok"
    report["sha256"] = sha256_file(out)
    report["size_bytes"] = out.stat().st_size


def format_summary(report: dict[str, Any], task: ExportTask[Any]) -> str:
    """A few human lines for the terminal; the JSON holds everything.

    The frame of it is shared; the task words its parity and lint lines, the
    precision mode its check against FP32.
    """
    lines = [f"wrote {report['artifact']} ({report['size_bytes'] / 1e6:.1f} MB, "
             f"{report['exporter']} exporter, opset {report['opset']}, {report['precision']}"
             f"{task.header_extra(report)})"]
    par = report.get("parity")
    if par:
        lines.append(f"parity vs PyTorch on {par['images']} frames ({par['source']}): "
                     + task.parity_line(par))
    else:
        lines.append("parity: not verified (--no-verify)")
    lines.append(task.lint_line(report["tensorrt"]))
    lines += [f"note: {note}" for note in report.get("notes", [])]
    sec = report.get("precision_report")
    if sec:
        lines += modes.get(sec["precision"]).report_lines(sec)
    eng = report.get("engine") or {}
    if eng.get("plan"):
        lines.append(f"wrote TensorRT engine {eng['plan']} ({eng['precision']}"
                     f"{', reused' if eng.get('reused') else ''})")
    elif eng.get("reason"):
        lines.append(f"no TensorRT engine built: {eng['reason']}")
    return "\n".join(lines)
