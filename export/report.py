"""The export report written beside every artifact (`<artifact>.report.json`)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def report_path(artifact: Path) -> Path:
    return artifact.with_suffix(".report.json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


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
