"""An INT8 run computes each thing once: the cache key's hashes (pre.onnx once per run, a
frame set once), the compile probe of the fully quantized graph (the search's runtime
pick, then the speed probe reads it), and ranges for (graph, frames, method) whether a
bounded step or a strict search candidate asked first."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime
import pytest

from segedge.export.evaluation.evaluate import LabelledFrames
from segedge.export.precision import calibration, runtimes
from segedge.export.precision import int8 as q8
from segedge.export.precision.modes import int8_speed
from segedge.export.precision.modes.int8_steps import Int8Run, _subset
from segedge.runtime.timing import Timing


def _run(tmp_path: Path, frames: LabelledFrames) -> Int8Run:
    pre = tmp_path / "pre.onnx"
    pre.write_bytes(b"graph bytes")
    opts = SimpleNamespace(int8_target="tensorrt", calib_cache=None)
    req = SimpleNamespace(cfg=SimpleNamespace(precision=opts, quiet=True),
                          meta=SimpleNamespace(input=SimpleNamespace(name="x")),
                          workdir=tmp_path, out=tmp_path / "m_int8.onnx")
    return Int8Run(req, pre, frames, None, [], None, 1e18)  # type: ignore[arg-type]


def _key(graph: bytes, tensors: list[np.ndarray], **settings: Any) -> str:
    """The key of a graph's bytes and frames, every hash computed afresh (no run's memo)."""
    return calibration.key_of(calibration.digest(graph), calibration.frame_digests(tensors),
                              **settings)


def _frames(n: int) -> LabelledFrames:
    rng = np.random.default_rng(0)
    return LabelledFrames([rng.integers(0, 256, (1, 3, 4, 4), np.uint8) for _ in range(n)],
                          [None] * n, None, "noise")  # type: ignore[list-item]


def test_the_cache_key_hashes_the_graph_once_a_run_and_a_frame_set_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _frames(6)
    run = _run(tmp_path, frames)
    half = _subset(frames, 3)
    want = {(id(frames), m): _key(b"graph bytes", frames.tensors, method=m, target="tensorrt",
                                  ort=onnxruntime.__version__) for m in ("minmax", "entropy")}
    hashed: list[int] = []
    real = calibration.digest

    def counted(data: bytes) -> bytes:
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(calibration, "digest", counted)
    for method in ("minmax", "entropy", "minmax"):  # the search's candidates
        assert run.key(frames, method) == want[(id(frames), method)]  # the same key as ever
        run.key(half, method)
    # pre.onnx once, the pool's 6 frames once, the subset's 3 frames once
    assert hashed.count(len(b"graph bytes")) == 1
    assert len(hashed) == 1 + 6 + 3
    monkeypatch.setattr(calibration, "digest", real)
    assert run.key(half, "minmax") == _key(b"graph bytes", half.tensors, method="minmax",
                                           target="tensorrt", ort=onnxruntime.__version__)


def test_a_strict_candidate_and_the_bounded_step_share_the_ranges(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One Int8Run.ranges for both: a search candidate's strict pass fills the memo and the
    cache the bounded step reads (and vice versa), with one calibration pass."""
    passes: list[Any] = []

    def fake(pre: Path, tensors: list[np.ndarray], name: str, method: str, work: Path,
             tick: Any) -> Any:
        passes.append(tick)
        for _ in tensors:
            tick()
        return SimpleNamespace(data={"t": [0.0, 1.0]}, frames=len(tensors), chunk=2,
                               activation_mb=0.1)

    monkeypatch.setattr(q8, "calibrate_bounded", fake)
    monkeypatch.setattr(q8, "write_ranges", lambda data, out: Path(out).write_text("{}"))
    frames = _frames(4)
    run = _run(tmp_path, frames)
    ticks: list[int] = []
    path, info = run.ranges(frames, "minmax", tick=lambda: ticks.append(1))
    assert ticks == [1, 1, 1, 1] and passes[0] is not None
    assert not run.steps  # a candidate's pass is not a step of its own
    assert "chunk_frames" not in info and not info["cache_hit"]
    again, info2 = run.ranges(frames, "minmax")  # the bounded step: memo, no second pass
    assert again == path and info2["reused_in_run"] and len(passes) == 1
    fresh = _run(tmp_path, frames)  # a new run: the candidate's complete pass was cached
    _, info3 = fresh.ranges(frames, "minmax")
    assert info3["cache_hit"] and len(passes) == 1


def test_the_speed_probe_reads_the_search_runtimes_probe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """speed_first compiles nothing in a child: calibrate_step's runtime pick did, and a
    runtime it left out is not timed."""
    probed: list[tuple[str, str]] = []
    timed: list[str | None] = []
    monkeypatch.setattr(runtimes, "available", lambda: ("ref", "fused", "other"))
    monkeypatch.setattr(runtimes, "reference", lambda: "ref")
    monkeypatch.setattr(runtimes, "probe", lambda path, rt: probed.append((str(path), rt)))
    monkeypatch.setattr(runtimes, "native_hint", lambda rt, hint: False)

    def latencies(graphs: Any, tensor: Any, meta: Any, rt: str | None = None,
                  budget_s: float = 2.0) -> dict[str, Timing]:
        timed.append(rt)
        return {label: Timing((10.0,)) for label in graphs}

    monkeypatch.setattr(runtimes, "latencies", latencies)
    run = SimpleNamespace(opts=SimpleNamespace(int8_target="tensorrt", int8_stop_if_slower=None),
                          req=SimpleNamespace(fp32=Path("fp32.onnx"), meta=None,
                                              cfg=SimpleNamespace(quiet=True)),
                          calib=SimpleNamespace(tensors=[np.zeros(1, np.uint8)]),
                          search_on=("ref", "other"),
                          left_out={"fused": "openvino compile probe: child died (SIGSEGV)"})
    assert int8_speed.speed_first(run, Path("int8_full.onnx")) is None  # type: ignore[arg-type]
    assert probed == [] and timed == ["ref", "other"]
    # without a pick (the run has not chosen yet) every runtime is probed as before
    run.search_on = None
    timed.clear()
    int8_speed.speed_first(run, Path("int8_full.onnx"))  # type: ignore[arg-type]
    assert probed == [("int8_full.onnx", "ref"), ("int8_full.onnx", "fused"),
                      ("int8_full.onnx", "other")]


def test_a_graph_measured_once_is_not_run_again_until_it_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full graph is measured by the calibration search and by the fallback: the second
    asks the run's record; a file written again (another candidate) is measured again."""
    from segedge.export.precision import int8_search

    calls: list[tuple[str, str | None]] = []

    def run_labels(path: Path, frames: Any, meta: Any, rt: str | None = None) -> Any:
        calls.append((Path(path).name, rt))
        return [np.zeros((4, 4), np.int64) for _ in frames.tensors]

    monkeypatch.setattr(runtimes, "available", lambda: ("ref", "fused"))
    monkeypatch.setattr(runtimes, "reference", lambda: "ref")
    monkeypatch.setattr(runtimes, "probe", lambda path, rt: None)
    monkeypatch.setattr(runtimes, "run_labels", run_labels)
    frames = _frames(2)
    run = _run(tmp_path, frames)
    run.parts = int8_search.split_held(frames)
    run.req.meta = SimpleNamespace(classes=("a", "b"))
    run.req.cfg.precision.ignore_index = None
    run.req.fp32 = tmp_path / "fp32.onnx"
    run.ref = [np.zeros((4, 4), np.int64)] * 2
    full = tmp_path / "int8_full.onnx"
    full.write_bytes(b"q")
    first = run.measure(full)
    assert run.measure(full) == first
    assert sorted(c for c in calls if c[0] == "int8_full.onnx") == [
        ("int8_full.onnx", "fused"), ("int8_full.onnx", "ref")]
    full.write_bytes(b"qr")  # written again: another graph
    run.measure(full)
    assert sum(c[0] == "int8_full.onnx" for c in calls) == 4
