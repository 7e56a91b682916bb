"""The export report written beside every artifact (`<artifact>.report.json`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segedge.export.precision import modes
from segedge.runtime.io import write_json_atomic
from segedge.runtime.report import REPORT_SUFFIX, report_path
from segedge.runtime.sidecar import sha256_file

if TYPE_CHECKING:
    from segedge.export.tasks.base import ExportTask

__all__ = ["failed_report_path", "format_summary", "publish", "report_path", "sha256_file",
           "write_failed_report", "write_json_atomic", "write_report"]


def failed_report_path(artifact: Path) -> Path:
    """Beside ``report_path`` (runtime.report: the one name readers look for), never it."""
    return artifact.with_suffix(".failed" + REPORT_SUFFIX)


def write_report(path: Path, report: dict[str, Any], outcome: str | None = None) -> Path:
    """Atomically; a failed write (disk full, ...) is one line naming `path` (exit 4)."""
    from segedge.export.workspace import NOTHING_WRITTEN, writing

    with writing(path, outcome or NOTHING_WRITTEN):
        return write_json_atomic(path, report)


def write_failed_report(out: Path, report: dict[str, Any]) -> Path:
    """A gate failed: keep the evidence under a name that cannot pass for the artifact's report."""
    report["status"] = "failed"
    return write_report(failed_report_path(out), report)


def publish(tmp: Path, out: Path, report: dict[str, Any]) -> None:
    """Record what is published, write its report, then rename the artifact into place.

    The report goes first: if it cannot be written (disk full) the artifact never
    gets its final name, so a published ONNX always has its report beside it.
    """
    report["status"] = "ok"
    report["sha256"] = sha256_file(tmp)
    report["size_bytes"] = tmp.stat().st_size
    written = write_report(report_path(out), report)
    try:
        os.replace(tmp, out)
    except OSError:
        written.unlink(missing_ok=True)
        raise


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
    acc = (par or {}).get("accuracy")
    if par and acc:
        pt, ox = acc["pytorch"], acc["onnx"]
        lines.append(f"accuracy on {par['images']} labelled frames ({acc['labels']}): mIoU "
                     f"PyTorch {pt['miou']:.2f} / ONNX {ox['miou']:.2f}, pixel accuracy "
                     f"PyTorch {pt['pixel_accuracy']:.2f} / ONNX {ox['pixel_accuracy']:.2f}")
    lines.append(task.lint_line(report["tensorrt"]))
    lines += [f"note: {note}" for note in report.get("notes", [])]
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
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
