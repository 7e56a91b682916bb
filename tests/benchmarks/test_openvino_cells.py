"""OpenVINO rows (segedge's backend and OpenVINO used directly), their agreement with FP32,
the peer ratio and the thread counts every ratio states; the plain loop's default threads;
the machine in every results file; exit 4 when nothing was measured."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from segedge.benchmarks import bench_openvino, env, report
from segedge.benchmarks.artifacts import Artifact, ArtifactRequest, ArtifactStore
from segedge.benchmarks.cells import PEER_TOLERANCE, Record, attach_ratios
from segedge.benchmarks.cli import main
from segedge.benchmarks.jobs import ModelJob, Needs, SkipCell
from segedge.benchmarks.measure import measure_model
from segedge.benchmarks.plan import ModelPlan
from segedge.benchmarks.suite import Suite, SuiteConfig, SuiteResult

SIZE = (64, 96)


def test_needs_maps_precisions_to_artifacts_and_hints() -> None:
    assert bench_openvino.needs("openvino-cpu", "fp32") == Needs("onnx", "fp32", reference=True)
    assert bench_openvino.needs("openvino-cpu", "bf16") == Needs("onnx", "fp32", reference=True)
    assert bench_openvino.needs("openvino-cpu", "int8") == Needs(
        "onnx", "int8", int8_target="cpu", reference=True)
    assert bench_openvino.needs("openvino-direct", "bf16") == Needs("onnx", "fp32")
    assert bench_openvino.needs("openvino-cpu", "int4") == ("OpenVINO rows are fp32, fp16, "
                                                            "bf16, int8")
    assert bench_openvino.HINTS == {"fp32": "f32", "bf16": "bf16", "fp16": "f16",
                                    "int8": "f32"}


def _rec(backend: str, p50: float, precision: str = "fp32", threads: int = 2) -> Record:
    return Record(model="m", backend=backend, precision=precision, imgsz=[64, 96], batch=1,
                  p50_ms=p50, threads=threads)


def test_peer_ratio_is_direct_over_segedge_at_the_same_precision_with_threads() -> None:
    recs = [_rec("plain-ort", 30.0, threads=2), _rec("pytorch-cpu", 60.0, threads=2),
            _rec("openvino-direct", 20.0), _rec("openvino-direct", 10.0, "bf16"),
            _rec("openvino-cpu", 20.5), _rec("openvino-cpu", 12.0, "bf16"),
            _rec("ort-cpu", 25.0)]
    attach_ratios(recs)
    f32, bf16, ort = recs[4], recs[5], recs[6]
    assert f32.vs_peer == pytest.approx(20.0 / 20.5, abs=5e-4) and f32.peer_threads == 2
    assert bf16.vs_peer == pytest.approx(10.0 / 12.0, abs=5e-4)
    assert bf16.vs_peer < 1 - PEER_TOLERANCE  # 17 % slower than its peer: outside the bound
    assert ort.vs_peer is None and ort.peer_threads is None  # only openvino-cpu has a peer
    assert bf16.vs_plain == pytest.approx(2.5) and bf16.plain_threads == 2
    assert bf16.vs_pytorch == pytest.approx(5.0) and bf16.pytorch_threads == 2
    rows = report.peer_lines(recs)
    assert any("| m | 64x96 | 1 | bf16 | 12.00 | 0.83x (2t vs 2t) | NO |" in r for r in rows)
    assert any("| m | 64x96 | 1 | fp32 | 20.50 | 0.98x (2t vs 2t) | yes |" in r for r in rows)


def test_the_interleaved_pair_decides_the_peer_ratio_over_the_separate_row() -> None:
    row = _rec("openvino-cpu", 20.0)
    row.extra = {"peer": {"segedge_p50_ms": 10.0, "peer_p50_ms": 9.8, "threads": 2}}
    recs = [_rec("openvino-direct", 30.0), row]
    attach_ratios(recs)
    assert row.vs_peer == pytest.approx(0.98) and row.peer_threads == 2


def _job(artifact: Artifact, backend: str, precision: str = "fp32",
         reference: str | None = None) -> ModelJob:
    return ModelJob(backend=backend, precision=precision, model="demo",
                    artifact=str(artifact.path), imgsz=SIZE, batch=1, iters=4, warmup=1,
                    threads=1, reference_artifact=reference)


def test_segedge_openvino_row_reads_back_its_precision_and_measures_agreement(
        demo_labels: Artifact) -> None:
    pytest.importorskip("openvino")
    out = measure_model(_job(demo_labels, "openvino-cpu", reference=str(demo_labels.path)))
    assert out["iters"] == 4 and out["threads"] == 1
    assert re.fullmatch(r"OpenVINO [0-9.]+ CPU \(f32\), 1 thread", out["provider"])
    assert out["agreement_vs_fp32"] >= 99.9  # f32 OpenVINO against f32 ONNX Runtime
    pair = out["extra"]["peer"]
    assert pair["iters"] == 4 and pair["threads"] == 1
    assert pair["segedge_p50_ms"] > 0 and pair["peer_p50_ms"] > 0
    direct = measure_model(_job(demo_labels, "openvino-direct"))
    assert direct["threads"] == 1 and direct["agreement_vs_fp32"] is None
    assert direct["provider"].endswith("Core().compile_model used directly")


def test_a_hint_the_cpu_does_not_honour_is_a_skip_not_a_mislabelled_row(
        demo_labels: Artifact) -> None:
    pytest.importorskip("openvino")
    from segedge.runtime.backends.openvino import shared_core

    caps = shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    for precision in ("bf16", "fp16"):
        job = _job(demo_labels, "openvino-cpu", precision)
        hint = bench_openvino.HINTS[precision]
        try:
            out = measure_model(job)
        except SkipCell as why:
            # what runs instead depends on the CPU: f32, or bf16 for an f16 hint on a CPU with
            # bf16 kernels but no f16 ones (AMD EPYC here); never the hint itself
            ran = re.fullmatch(rf"asked OpenVINO for {hint}, this CPU runs (f32|bf16) "
                               rf"\(no {hint} kernels\)", str(why))
            assert ran is not None and ran.group(1) != hint, str(why)
            assert precision.upper() not in caps
        else:
            assert f"CPU ({hint})" in out["provider"]


def test_plain_baseline_uses_and_reports_onnxruntimes_default_threads(
        demo_logits: Artifact) -> None:
    out = measure_model(ModelJob(backend="plain-ort", precision="fp32", model="demo",
                                 artifact=str(demo_logits.path), imgsz=SIZE, batch=1, iters=3,
                                 warmup=1, threads=1))
    assert out["threads"] == (env.cpu_info().get("physical_cores") or out["threads"])
    assert out["threads"] >= 1  # counted, never the job's 1 forced on it
    assert out["provider"] == f"CPUExecutionProvider (default options: {out['threads']} threads)"


@pytest.fixture(scope="module")
def ov_result(workdir: Path, demo_labels: Artifact, demo_logits: Artifact,
              labelled: tuple[str, str]) -> SuiteResult:
    pytest.importorskip("openvino")
    images, labels = labelled
    plan = ModelPlan("demo", sizes=(SIZE,),
                     backends=("plain-ort", "ort-cpu", "openvino-cpu", "openvino-direct"),
                     precisions=("fp32", "bf16"), eval_images=images, eval_labels=labels,
                     iters=5, warmup=1)
    cfg = SuiteConfig(plans=(plan,), threads=2, workdir=workdir, isolated=False,
                      progress=False, command="segbench demo (openvino test)")
    return Suite(cfg).run()


def test_suite_openvino_rows_score_agreement_miou_and_state_threads(
        ov_result: SuiteResult, tmp_path: Path) -> None:
    got = {(r.backend, r.precision): r for r in ov_result.records}
    assert got[("ort-cpu", "bf16")].reason == ("ONNX Runtime has no bf16 inference precision "
                                               "for an FP32 graph (OpenVINO rows)")
    ov = got[("openvino-cpu", "fp32")]
    assert ov.ok and ov.threads == 2 and ov.miou is not None
    assert ov.agreement_vs_fp32 is not None and ov.agreement_vs_fp32 >= 99.9
    peer, pair = got[("openvino-direct", "fp32")], ov.extra["peer"]
    assert peer.ok and peer.threads == 2
    assert ov.vs_peer == pytest.approx(pair["peer_p50_ms"] / pair["segedge_p50_ms"], abs=5e-4)
    assert ov.peer_threads == pair["threads"] == 2
    plain = got[("plain-ort", "fp32")]
    assert ov.plain_threads == plain.threads and plain.threads is not None
    md = report.markdown(ov_result, {}, {})
    assert f"({plain.threads}t vs 2t)" in md and "vs OpenVINO direct" in md
    assert "CPU features that decide the CPU rows" in md
    report.write_csv(ov_result.records, tmp_path / "r.csv", ov_result.environment)
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert {r["cpu_model"] for r in rows} == {env.cpu_model()}
    assert all(r["openvino"] not in ("", "absent") for r in rows)
    assert all(r["onnxruntime"] and r["torch"] for r in rows)


def test_environment_names_the_cpu_features_and_openvino() -> None:
    text = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_int8 sse\n"
    assert env.cpu_features(text) == ["avx2", "avx512f", "avx512_bf16", "amx_int8"]
    assert env.cpu_features("Features\t: fp asimd asimddp i8mm\n") == ["asimd", "asimddp",
                                                                      "i8mm"]
    assert "openvino" in env.LIBRARIES


def test_a_run_that_measured_nothing_exits_4_in_one_line(
        workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--backends", "ort-cpu", "--precisions", "bf16", "--imgsz", "64", "96",
              "--workdir", str(workdir), "--no-isolate", "-q", "--json", str(out)])
    assert exc.value.code == 4
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith("segbench: error:")]
    assert err == ["segbench: error: every one of the 1 cell(s) failed or was skipped (first: "
                   "ort-cpu bf16: ONNX Runtime has no bf16 inference precision for an FP32 "
                   "graph (OpenVINO rows))"]
    assert json.loads(out.read_text())["records"][0]["status"] == "skipped"  # files first


def test_int8_qdq_artifact_runs_int8_kernels_on_openvino(
        store: ArtifactStore, labelled: tuple[str, str], demo_labels: Artifact) -> None:
    pytest.importorskip("openvino")
    from segedge.runtime.backends.openvino import shared_core

    int8 = store.get(ArtifactRequest("demo", "int8", SIZE, calib=labelled[0]))
    out = measure_model(_job(int8, "openvino-cpu", "int8", reference=str(demo_labels.path)))
    match = re.search(r", (\d+) of (\d+) convolutions/matmuls in int8$", out["provider"])
    assert match is not None, out["provider"]
    assert 0 < int(match[1]) <= int(match[2])
    assert out["agreement_vs_fp32"] is not None and out["agreement_vs_fp32"] > 50.0
    fp32 = shared_core().compile_model(str(demo_labels.path), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    assert bench_openvino.quantized_ops(fp32) == (0, int(match[2]))
