"""`--backend auto`: the measured rule with injected timings (nothing here is timed), the
cache keying, the one-line reason, bf16 only where the export verified it, and the refusals
and fallbacks around the probe."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segedge.runtime.backends import auto, auto_cache, auto_probe
from segedge.runtime.backends.auto import AutoSelector, verified_hints
from segedge.runtime.backends.auto_cache import CacheKey, DecisionCache, Verdict, file_sha256
from segedge.runtime.backends.auto_probe import pick
from segedge.runtime.backends.base import BackendOptions
from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec

META = ArtifactMetadata(model="m", family="f", classes=("a", "b"), palette=(),
                        input=InputSpec(format="uint8", layout="NHWC", color_order="BGR",
                                        size=(32, 48)))
ORT_MS, OV_MS = 43.1, 21.4


class FakeBackend:
    """What the selector needs of a backend: name, active, metadata, precision, close."""

    def __init__(self, name: str, options: BackendOptions, meta: ArtifactMetadata) -> None:
        self.name, self.options, self.metadata = name, options, meta
        self.input_name = meta.input.name
        self.precision = options.precision_hint or "f32"
        self.closed = False

    @property
    def active(self) -> str:
        return "CPUExecutionProvider" if self.name == "onnxruntime" else \
            f"CPU ({self.precision})"

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def close(self) -> None:
        self.closed = True


class Opener:
    def __init__(self, meta: ArtifactMetadata = META, fail: dict[str, Exception] | None = None
                 ) -> None:
        self.meta, self.fail = meta, fail or {}
        self.opened: list[FakeBackend] = []

    def __call__(self, path: Path, name: str, options: BackendOptions) -> FakeBackend:
        if name in self.fail:
            raise self.fail[name]
        backend = FakeBackend(name, options, self.meta)
        self.opened.append(backend)
        return backend


class Probe:
    def __init__(self, timings: dict[str, float] | Exception) -> None:
        self.timings, self.calls = timings, 0
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, backends: Mapping[str, Any], tensor: np.ndarray) -> dict[str, float]:
        self.calls += 1
        self.shapes.append(tensor.shape)
        assert sorted(backends) == ["onnxruntime", "openvino"]
        if isinstance(self.timings, Exception):
            raise self.timings
        return dict(self.timings)


@pytest.fixture()
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not really onnx, but hashed like one")
    return path


def selector(tmp_path: Path, opener: Opener, probe: Probe, *, cpu: str = "Test CPU",
             openvino: tuple[bool, str] = (True, "ok"), gpu: list[str] | None = None,
             pin: str = "", crash: list[str | None] | None = None) -> AutoSelector:
    def compile_check(path: Path, options: BackendOptions) -> str | None:
        assert crash, "compile_check called for an artifact that is not int8"
        return crash.pop(0)

    return AutoSelector(opener=opener, probe=probe, cache=DecisionCache(tmp_path / "c.json"),
                        cpu=cpu, gpu_providers=lambda: gpu or [], available=lambda name: openvino,
                        versions=lambda: (("onnxruntime", "1"), ("openvino", "2")), pin=pin,
                        compile_check=compile_check)


# -- the rule --

def test_the_smaller_median_wins_and_a_tie_keeps_onnxruntime() -> None:
    assert pick({"onnxruntime": ORT_MS, "openvino": OV_MS}) == "openvino"
    assert pick({"onnxruntime": 20.0, "openvino": 20.5}) == "onnxruntime"
    assert pick({"onnxruntime": 20.0, "openvino": 20.0}) == "onnxruntime"
    assert pick({"openvino": 5.0, "tensorrt": 1.0}) == "openvino"  # only CPU candidates
    with pytest.raises(InputError) as err:
        pick({"onnxruntime": 0.0})
    assert str(err.value) == ("probe timings: expected a positive median for one of "
                              "('onnxruntime', 'openvino'), got {'onnxruntime': 0.0}")


def test_measured_choice_opens_both_keeps_the_winner_and_says_why(
        tmp_path: Path, artifact: Path) -> None:
    opener, probe = Opener(), Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    choice = selector(tmp_path, opener, probe).select(artifact, BackendOptions(threads=2))
    assert choice.backend.name == "openvino" and not choice.backend.closed
    assert choice.reason == ("openvino CPU (f32): 21.4 ms vs onnxruntime CPU 43.1 ms at 32x48, "
                             "2 threads, measured; bf16 not verified by the export report, "
                             "so f32")
    assert "\n" not in choice.reason
    loser = next(b for b in opener.opened if b.name == "onnxruntime")
    assert loser.closed and loser.options.provider == "cpu"
    assert probe.calls == 1 and probe.shapes == [(1, 32, 48, 3)]  # the artifact's input size
    assert choice.timings_ms == {"onnxruntime": ORT_MS, "openvino": OV_MS}


def test_onnxruntime_wins_when_it_is_faster(tmp_path: Path, artifact: Path) -> None:
    opener, probe = Opener(), Probe({"onnxruntime": 20.0, "openvino": 46.4})
    choice = selector(tmp_path, opener, probe).select(artifact, BackendOptions())
    assert choice.backend.name == "onnxruntime" and not choice.backend.closed
    assert choice.reason.startswith("onnxruntime CPU: 20.0 ms vs openvino CPU (f32) 46.4 ms at "
                                    "32x48, default threads, measured")
    assert next(b for b in opener.opened if b.name == "openvino").closed


# -- the cache --

def test_the_verdict_is_cached_per_artifact_cpu_and_threads(tmp_path: Path,
                                                            artifact: Path) -> None:
    probe = Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    first = selector(tmp_path, Opener(), probe).select(artifact, BackendOptions(threads=2))
    again = selector(tmp_path, Opener(), probe).select(artifact, BackendOptions(threads=2))
    assert probe.calls == 1  # the second run read the verdict
    assert again.backend.name == "openvino"
    assert again.reason == first.reason.replace("measured;", "measured earlier (cached);")
    raw = json.loads((tmp_path / "c.json").read_text())
    assert raw["schema"] == 1 and len(raw["entries"]) == 1
    (key,) = raw["entries"]
    assert key.startswith(file_sha256(artifact) + "|Test CPU|threads=2|f32|32x48|")
    # another thread count, another CPU, another artifact: measured again
    selector(tmp_path, Opener(), probe).select(artifact, BackendOptions(threads=1))
    selector(tmp_path, Opener(), probe, cpu="Other CPU").select(artifact,
                                                               BackendOptions(threads=2))
    artifact.write_bytes(b"re-exported")
    selector(tmp_path, Opener(), probe).select(artifact, BackendOptions(threads=2))
    assert probe.calls == 4
    assert len(json.loads((tmp_path / "c.json").read_text())["entries"]) == 4


def test_a_cached_verdict_opens_only_the_winner(tmp_path: Path, artifact: Path) -> None:
    probe = Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    selector(tmp_path, Opener(), probe).select(artifact, BackendOptions())
    opener = Opener()
    got = selector(tmp_path, opener, probe).select(artifact, BackendOptions())
    assert [(b.name, b.closed) for b in opener.opened] == [("onnxruntime", True),
                                                           ("openvino", False)]
    assert got.backend is opener.opened[1] and probe.calls == 1
    slow_ov = Probe({"onnxruntime": 20.0, "openvino": 46.4})
    selector(tmp_path, Opener(), slow_ov).select(artifact, BackendOptions(threads=3))
    opener = Opener()
    got = selector(tmp_path, opener, slow_ov).select(artifact, BackendOptions(threads=3))
    assert [(b.name, b.closed) for b in opener.opened] == [("onnxruntime", False)]
    assert got.reason == ("onnxruntime CPU: 20.0 ms vs openvino CPU (f32) 46.4 ms at 32x48, "
                          "3 threads, measured earlier (cached); bf16 not verified by the "
                          "export report, so f32")


def test_an_int8_artifact_openvino_cannot_compile_is_found_once_in_a_child(
        tmp_path: Path, artifact: Path) -> None:
    int8 = META.with_changes(precision="int8")
    probe, crash = Probe({"onnxruntime": ORT_MS, "openvino": OV_MS}), ["its compiler crashed "
                                                                      "(signal 11)"]
    opener = Opener(int8)
    got = selector(tmp_path, opener, probe, crash=crash).select(artifact, BackendOptions())
    assert got.reason == "onnxruntime CPU: openvino cannot compile it (its compiler crashed " \
                         "(signal 11))"
    assert [b.name for b in opener.opened] == ["onnxruntime"] and probe.calls == 0
    again = selector(tmp_path, Opener(int8), probe, crash=[]).select(artifact,
                                                                     BackendOptions())
    assert again.reason == ("onnxruntime CPU: openvino cannot compile it (its compiler "
                            "crashed (signal 11); found earlier, cached)")
    # one that compiles is measured as usual
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another int8 graph")
    got = selector(tmp_path, Opener(int8), probe, crash=[None]).select(other, BackendOptions())
    assert got.backend.name == "openvino" and probe.calls == 1


def test_a_verdict_without_both_timings_needs_a_note() -> None:
    with pytest.raises(InputError) as err:
        Verdict("openvino", {"openvino": 1.0}, (32, 48))
    assert str(err.value) == ("auto backend verdict: expected a median for each of "
                              "('onnxruntime', 'openvino') or a note why there is none, got "
                              "{'openvino': 1.0}")
    assert Verdict("onnxruntime", {}, (32, 48), note="crashed").note == "crashed"


def test_compile_in_child_says_why_in_one_line(models: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    assert auto_probe.compile_in_child(models["labels"], BackendOptions()) is None
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    why = auto_probe.compile_in_child(broken, BackendOptions())
    assert why is not None and "\n" not in why
    assert why.startswith("segedge.runtime.errors.ArtifactError: ") and "broken.onnx" in why


def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path: Path, artifact: Path) -> None:
    (tmp_path / "c.json").write_text("{not json")
    probe = Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    selector(tmp_path, Opener(), probe).select(artifact, BackendOptions())
    assert probe.calls == 1
    assert json.loads((tmp_path / "c.json").read_text())["schema"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".c.json")] == []


def test_cache_entries_round_trip_and_bad_ones_read_as_missing(tmp_path: Path) -> None:
    cache = DecisionCache(tmp_path / "c.json")
    key = CacheKey("s" * 64, "cpu", 2, "f32", (32, 48))
    verdict = Verdict("openvino", {"onnxruntime": 2.0, "openvino": 1.0}, (32, 48), "t")
    cache.put(key, verdict)
    assert cache.get(key) == verdict
    raw = json.loads((tmp_path / "c.json").read_text())
    raw["entries"][key.text()]["backend"] = "tensorrt"
    (tmp_path / "c.json").write_text(json.dumps(raw))
    assert cache.get(key) is None


# -- bf16 only where the export verified it --

def _report(artifact: Path, passed: bool, sha: str | None = None) -> None:
    report = {"sha256": sha or file_sha256(artifact),
              "openvino": {"bf16": {"argmax_agreement": 99.95,
                                    "gate": {"min_argmax_agreement": 99.5, "passed": passed}}}}
    artifact.with_suffix(".report.json").write_text(json.dumps(report))


def test_bf16_is_picked_only_when_the_report_verified_this_file(tmp_path: Path,
                                                                artifact: Path) -> None:
    sha = file_sha256(artifact)
    assert verified_hints(artifact, sha, "openvino") == ()  # no report
    _report(artifact, passed=False)
    assert verified_hints(artifact, sha, "openvino") == ()
    _report(artifact, passed=True, sha="0" * 64)  # a report of another file
    assert verified_hints(artifact, sha, "openvino") == ()
    _report(artifact, passed=True)
    assert verified_hints(artifact, sha, "openvino") == ("bf16",)
    assert verified_hints(artifact, sha, "onnxruntime") == ()  # the report gated OpenVINO only
    opener = Opener()
    choice = selector(tmp_path, opener, Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
                      ).select(artifact, BackendOptions(threads=2))
    assert choice.backend.precision == "bf16"
    assert choice.reason == ("openvino CPU (bf16): 21.4 ms vs onnxruntime CPU 43.1 ms at "
                             "32x48, 2 threads, measured; bf16 verified by the export report")


def test_a_hint_the_user_gave_is_used_as_given(tmp_path: Path, artifact: Path) -> None:
    choice = selector(tmp_path, Opener(), Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
                      ).select(artifact, BackendOptions(precision_hint="f16"))
    assert choice.backend.precision == "f16"
    assert choice.reason.endswith("default threads, measured")  # nothing said about bf16


# -- the steps before the probe, and the fallbacks --

def test_plans_run_on_tensorrt_and_an_explicit_provider_on_onnxruntime(
        tmp_path: Path) -> None:
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    probe = Probe({"onnxruntime": 1.0, "openvino": 2.0})
    got = selector(tmp_path, Opener(), probe).select(plan, BackendOptions())
    assert got.backend.name == "tensorrt" and got.reason.endswith(": a .plan plan runs on "
                                                                  "tensorrt")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    got = selector(tmp_path, Opener(), probe).select(onnx, BackendOptions(provider="cpu"))
    assert got.backend.name == "onnxruntime"
    assert got.reason == "onnxruntime CPU: --provider cpu names onnxruntime"
    assert probe.calls == 0


def test_what_is_not_timed_opens_in_the_asked_mode_the_probe_in_latency(
        tmp_path: Path, artifact: Path) -> None:
    """A plan (or a named provider) opens once, in the run's mode: a latency copy reopened in
    throughput would hold the model twice.  The CPU candidates are timed one call at a time."""
    busy = BackendOptions(mode="throughput")
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    opener, probe = Opener(), Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    got = selector(tmp_path, opener, probe).select(plan, busy)
    assert [(b.name, b.options.mode) for b in opener.opened] == [("tensorrt", "throughput")]
    named = BackendOptions(mode="throughput", provider="cpu")
    got = selector(tmp_path, opener, probe).select(artifact, named)
    assert got.backend.options.mode == "throughput" and probe.calls == 0
    opener = Opener()
    got = selector(tmp_path, opener, probe).select(artifact, busy)
    assert probe.calls == 1 and got.backend.name == "openvino"
    assert {b.options.mode for b in opener.opened} == {"latency"}  # the caller switches it


def test_a_gpu_that_really_executes_wins_and_a_fallback_goes_to_the_cpu_rule(
        tmp_path: Path, artifact: Path) -> None:
    class GpuOpener(Opener):
        def __call__(self, path: Path, name: str, options: BackendOptions) -> FakeBackend:
            backend = super().__call__(path, name, options)
            if name == "onnxruntime" and options.provider == "auto" and self.gpu_runs:
                backend.__class__ = type("Gpu", (FakeBackend,), {
                    "active": property(lambda s: "TensorrtExecutionProvider")})
            return backend

    opener = GpuOpener()
    opener.gpu_runs = True  # type: ignore[attr-defined]
    probe = Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    got = selector(tmp_path, opener, probe, gpu=["TensorrtExecutionProvider"]).select(
        artifact, BackendOptions())
    assert got.reason == "onnxruntime Tensorrt: a GPU executes it" and probe.calls == 0
    opener = GpuOpener()
    opener.gpu_runs = False  # type: ignore[attr-defined]
    got = selector(tmp_path, opener, probe, gpu=["CUDAExecutionProvider"]).select(
        artifact, BackendOptions())
    assert got.backend.name == "openvino" and probe.calls == 1
    assert opener.opened[0].closed  # the CPU-fallback GPU session was closed


@pytest.mark.parametrize(("case", "reason"), [
    ("no openvino", "onnxruntime CPU: the openvino package is not installed"),
    ("cannot open", "onnxruntime CPU: openvino cannot run it (m.onnx: expected a segedge "
                    "artifact)"),
    ("probe fails", "onnxruntime CPU: the probe failed (RuntimeError: compile)"),
    ("instance", "onnxruntime CPU: openvino is verified on semantic artifacts only, this one "
                 "is 'instance'"),
])
def test_onnxruntime_when_openvino_cannot_compete(tmp_path: Path, artifact: Path, case: str,
                                                  reason: str) -> None:
    meta = META.with_changes(task="instance") if case == "instance" else META
    opener = Opener(meta, {"openvino": ArtifactError("m.onnx: expected a segedge artifact")}
                    if case == "cannot open" else None)
    probe = Probe(RuntimeError("RuntimeError: compile") if case == "probe fails" else
                  {"onnxruntime": ORT_MS, "openvino": OV_MS})
    openvino = (False, "the openvino package is not installed") if case == "no openvino" \
        else (True, "ok")
    got = selector(tmp_path, opener, probe, openvino=openvino).select(artifact,
                                                                      BackendOptions())
    assert got.backend.name == "onnxruntime" and not got.backend.closed
    assert got.reason == reason
    assert all(b.closed for b in opener.opened if b is not got.backend)
    assert not (tmp_path / "c.json").exists()  # nothing measured, nothing cached


def test_the_pin_answers_without_measuring(tmp_path: Path, artifact: Path) -> None:
    probe = Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    got = selector(tmp_path, Opener(), probe, pin="openvino").select(artifact,
                                                                     BackendOptions())
    assert got.backend.name == "openvino" and probe.calls == 0
    assert got.reason == "openvino CPU (f32): pinned by SEGEDGE_AUTO_BACKEND"
    with pytest.raises(InputError) as err:
        selector(tmp_path, Opener(), probe, pin="tflite").select(artifact, BackendOptions())
    assert str(err.value) == ("SEGEDGE_AUTO_BACKEND: expected one of onnxruntime, openvino, "
                              "got 'tflite'")


def test_the_pin_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auto.PIN_ENV, " OpenVINO ")
    assert AutoSelector().pin == "openvino"
    monkeypatch.setenv(auto_cache.CACHE_ENV, "/somewhere/auto.json")
    assert auto_cache.default_cache_path() == Path("/somewhere/auto.json")
    monkeypatch.delenv(auto_cache.CACHE_ENV)
    assert auto_cache.default_cache_path() == (Path.home() / ".cache" / "segedge" /
                                               "auto_backend.json")


# -- a run that contradicts the verdict, every verified precision, the typed report --

def test_a_run_that_contradicts_the_verdict_is_re_measured_next_time(
        tmp_path: Path, artifact: Path) -> None:
    probe = Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    first = selector(tmp_path, Opener(), probe).select(artifact, BackendOptions(threads=2))
    assert auto.after_run(first.backend, 50.0, (64, 64)) is None  # another size: no verdict
    assert auto.after_run(first.backend, 1.25 * ORT_MS) is None  # within 25 %: agrees
    why = auto.after_run(first.backend, 1.25 * ORT_MS + 0.1)
    assert why == ("a run took 54.0 ms per frame on openvino CPU (f32), onnxruntime CPU "
                   "probed 43.1 ms")
    slower = Probe({"onnxruntime": ORT_MS, "openvino": 60.0})
    again = selector(tmp_path, Opener(), slower).select(artifact, BackendOptions(threads=2))
    assert slower.calls == 1 and again.backend.name == "onnxruntime"
    assert again.reason == (f"onnxruntime CPU: 43.1 ms vs openvino CPU (f32) 60.0 ms at 32x48, "
                            f"2 threads, re-measured ({why}); bf16 not verified by the export "
                            "report, so f32")
    third = selector(tmp_path, Opener(), slower).select(artifact, BackendOptions(threads=2))
    assert slower.calls == 1 and "measured earlier (cached)" in third.reason  # corrected


def test_the_verdict_follows_the_backend_reopened_in_another_mode(
        tmp_path: Path, artifact: Path) -> None:
    """A file runs in throughput mode: the Segmenter reopens the chosen backend (probed in
    latency mode); the verdict must follow it, or the run-end check finds nothing."""
    probe = Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    first = selector(tmp_path, Opener(), probe).select(artifact, BackendOptions(threads=2))
    reopened = FakeBackend("openvino", BackendOptions(threads=2, mode="throughput"), META)
    assert auto.after_run(reopened, 1.25 * ORT_MS + 0.1) is None  # not the chosen one (yet)
    auto.rebind(first.backend, reopened)
    assert auto.after_run(first.backend, 1.25 * ORT_MS + 0.1) is None  # closed: forgotten
    assert auto.after_run(reopened, 1.25 * ORT_MS + 0.1) == (
        "a run took 54.0 ms per frame on openvino CPU (f32), onnxruntime CPU probed 43.1 ms")


def test_every_precision_the_report_verified_is_a_candidate(tmp_path: Path,
                                                            artifact: Path) -> None:
    report = {"sha256": file_sha256(artifact), "openvino": {
        "bf16": {"checked": True, "argmax_agreement": 99.9, "gate": {"passed": True}},
        "f16": {"checked": True, "argmax_agreement": 99.8, "gate": {"passed": True}}}}
    artifact.with_suffix(".report.json").write_text(json.dumps(report))
    seen: list[dict[str, str]] = []

    def probe(backends: Mapping[str, Any], tensor: np.ndarray) -> dict[str, float]:
        seen.append({k: getattr(b, "precision", "") for k, b in backends.items()})
        return {"onnxruntime": 40.0, "openvino": 20.0, "openvino:f16": 15.0}

    opener = Opener()
    got = AutoSelector(opener=opener, probe=probe, cache=DecisionCache(tmp_path / "c.json"),
                       cpu="Test CPU", gpu_providers=lambda: [],
                       available=lambda name: (True, "ok"), versions=lambda: (), pin="",
                       ).select(artifact, BackendOptions(threads=2))
    assert seen == [{"onnxruntime": "f32", "openvino": "bf16", "openvino:f16": "f16"}]
    assert got.backend.precision == "f16" and not got.backend.closed
    assert got.reason == ("openvino CPU (f16): 15.0 ms vs onnxruntime CPU 40.0 ms, openvino "
                          "CPU (bf16) 20.0 ms at 32x48, 2 threads, measured; bf16+f16 verified "
                          "by the export report")
    assert [b.closed for b in opener.opened] == [True, True, False]
    assert pick({"onnxruntime": 15.0, "openvino": 15.0, "openvino:f16": 15.0}) == "onnxruntime"


def test_the_typed_report_reads_status_checks_and_the_plan(tmp_path: Path,
                                                           artifact: Path) -> None:
    from segedge.runtime.report import read_report, report_path

    assert read_report(artifact) is None and report_path(artifact).name == "m.report.json"
    report_path(artifact).write_text(json.dumps({
        "status": "ok", "sha256": "ab", "precision": "int8", "task": "semantic",
        "precision_report": {"argmax_agreement": 99.1}, "engine": {"plan": "m.plan"},
        "openvino": {"bf16": {"checked": True, "argmax_agreement": 98.0,
                              "gate": {"min_argmax_agreement": 99.5, "passed": False}},
                     "f16": {"checked": False, "reason": "this CPU has no native f16"}}}))
    got = read_report(artifact)
    assert got is not None and got.ok and got.describes("ab") and not got.describes("cd")
    assert got.agreement_vs_fp32 == 99.1 and got.plan == Path("m.plan")
    assert got.verified("openvino") == () and got.verified("onnxruntime") == ()
    assert got.checks["openvino"]["bf16"].agreement == 98.0
    assert got.checks["openvino"]["f16"].reason == "this CPU has no native f16"
    report_path(artifact).write_text("[1, 2]")
    assert read_report(artifact) is None  # not a report: verifies nothing


def test_a_dynamic_artifact_is_judged_only_at_the_probes_size(tmp_path: Path,
                                                              artifact: Path) -> None:
    from dataclasses import replace as dc_replace

    dynamic = META.with_changes(input=dc_replace(META.input, size=None))
    probe = Probe({"onnxruntime": ORT_MS, "openvino": OV_MS})
    got = selector(tmp_path, Opener(dynamic), probe).select(artifact, BackendOptions())
    hw = got.verdict.probe_hw if got.verdict is not None else None
    assert hw is not None and probe.shapes == [(1, *hw, 3)]
    assert auto.after_run(got, 1000.0) is None  # the run's size is unknown: no verdict
    assert auto.after_run(got, 1000.0, (hw[0] + 8, hw[1])) is None  # another size
    assert auto.after_run(got, 1000.0, hw) is not None
