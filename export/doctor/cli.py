"""`segdoctor`: the platform report, the stack proof, a JSON report and a one-screen summary.

Exit codes (besides the common 1, 2, 130 and 143 of every segedge CLI):

    0  ready: every check passed (n/a ones say why they do not apply)
    3  not ready: at least one check failed; each failure prints the fix to try
    5  no NVIDIA GPU here: one line, nothing else is done
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from segedge.export.doctor.checks import Check, DoctorConfig, run_checks
from segedge.export.doctor.probe import platform_report
from segedge.runtime.cli_support import EXIT_OK, run_cli, version_option
from segedge.runtime.io import check_writable, write_json_atomic
from segedge.runtime.platform import find_gpu

EXIT_READY = EXIT_OK
EXIT_NOT_READY = 3
EXIT_NO_GPU = 5
MARK = {"pass": "PASS", "fail": "FAIL", "n/a": "n/a "}


def check_line(check: Check) -> str:
    timing = f"  {check.ms:.2f} ms/frame" if check.ms is not None else ""
    line = f"{MARK[check.status]}  {check.name:<22} {check.detail}{timing}"
    return line + (f"\n      fix: {check.fix}" if check.status == "fail" else "")


def platform_lines(report: dict[str, Any]) -> list[str]:
    gpu = ", ".join(f"{g.get('name')} (sm {g.get('compute_capability')})"
                    for g in report["gpus"] if "name" in g) or "none from CUDA"
    trt = report["tensorrt"]
    ort = report["onnxruntime"]
    jet = report["jetson"]
    lines = [f"segedge {report['segedge']} on {report['host']} ({report['machine']}, "
             f"{report['os']}, Python {report['python']})"]
    if jet:
        lines.append(f"Jetson: {jet.get('model', '?')}, L4T {jet.get('l4t', '?')} (JetPack "
                     f"{jet.get('jetpack', '?')}), power mode {jet.get('power_mode', '?')}")
    cuda = report["cuda"]
    driver = f"driver CUDA {cuda['driver']}" if cuda.get("driver") else "no CUDA driver found"
    lines += [f"GPU: {gpu}; {driver}, runtime {cuda.get('runtime', '?')}, cuDNN "
              f"{report['cudnn'] or 'not found'}",
              f"TensorRT: {trt.get('version', trt['detail'])}"
              + (f", {trt['dla_cores']} DLA core(s)" if trt.get("dla_cores") else ""),
              f"ONNX Runtime {ort.get('version', '?')}: "
              f"{', '.join(ort.get('available_providers', [])) or ort.get('error')}"]
    if report["openvino"]:
        ov = report["openvino"]
        lines.append(f"OpenVINO {ov.get('version')}: {', '.join(ov.get('devices', []))}")
    return lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@version_option("segdoctor")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              default=Path("segdoctor.json"), show_default=True, help="Where the report goes.")
@click.option("--device", "device_id", type=int, default=0, show_default=True,
              help="CUDA device index.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Keep the demo engines here (default: a temporary folder, removed).")
@click.option("--frames", type=int, default=8, show_default=True,
              help="Demo clip frames compared with the CPU.")
@click.option("--iters", type=int, default=20, show_default=True,
              help="Timed runs per check (after 3 warm-up runs).")
@click.option("--quiet", is_flag=True, help="Only the verdict line.")
def segdoctor(json_path: Path, device_id: int, workdir: Path | None, frames: int, iters: int,
              quiet: bool) -> int:
    """Is this device ready for segedge on its GPU?  Reports the platform, builds the demo
    model into FP32/FP16/INT8 TensorRT engines, runs them natively and through ONNX Runtime's
    TensorRT provider, compares the masks with the CPU and times them."""
    found, how = find_gpu()
    if not found:
        click.echo(f"segdoctor: no NVIDIA GPU here ({how}); segedge runs on the CPU "
                   f"(exit {EXIT_NO_GPU})")
        return EXIT_NO_GPU
    check_writable(json_path, "--json")
    if device_id < 0:
        raise click.BadParameter("expected a CUDA device index >= 0", param_hint="--device")
    report = platform_report(device_id)
    if not quiet:
        for line in platform_lines(report):
            click.echo(line)
    work = workdir or Path(tempfile.mkdtemp(prefix="segdoctor-"))
    try:
        checks = run_checks(DoctorConfig(work, device_id, frames, iters),
                            progress=None if quiet else lambda c: click.echo(check_line(c)))
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    failed = [c for c in checks if c.status == "fail"]
    code = EXIT_NOT_READY if failed else EXIT_READY
    write_json_atomic(json_path, {"ready": not failed, "exit_code": code, "found": how,
                                  "platform": report,
                                  "checks": [vars(c) for c in checks]})
    passed = sum(c.status == "pass" for c in checks)
    verdict = "READY" if not failed else f"NOT READY ({len(failed)} failed: " \
        f"{', '.join(c.name for c in failed)})"
    click.echo(f"segdoctor: {verdict}; {passed} passed, "
               f"{sum(c.status == 'n/a' for c in checks)} n/a; report {json_path}")
    return code


def main(argv: list[str] | None = None) -> None:
    run_cli("segdoctor", segdoctor, argv)
