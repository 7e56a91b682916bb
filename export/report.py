"""The export report written beside every artifact (`<artifact>.report.json`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from segedge.runtime.io import write_json_atomic
from segedge.runtime.sidecar import sha256_file

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


def format_summary(report: dict[str, Any]) -> str:
    """A few human lines for the terminal; the JSON holds everything."""
    lines = [f"wrote {report['artifact']} ({report['size_bytes'] / 1e6:.1f} MB, "
             f"{report['exporter']} exporter, opset {report['opset']}, {report['precision']})"]
    par = report.get("parity")
    if par:
        mad = par.get("max_abs_diff")
        diff = f", max |dlogit| {mad:.2e}" if mad is not None else ""
        lines.append(f"parity vs PyTorch on {par['images']} frames ({par['source']}): "
                     f"argmax agreement {par['argmax_agreement']:.3f}%{diff}")
    else:
        lines.append("parity: not verified (--no-verify)")
    unsupported = report["tensorrt"]["unsupported"]
    lines.append("tensorrt lint: " + ("clean" if not unsupported else
                 f"{len(unsupported)} unsupported: " +
                 ", ".join(sorted({u['op_type'] for u in unsupported}))))
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
