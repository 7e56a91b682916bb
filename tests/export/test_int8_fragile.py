"""Ops that commonly collapse in INT8 start in float where measurement says so (issue 21).

The fragile units (points.FRAGILE_OPS, the layers before the head) are measured kept in
float *together* before the keep-k search; where that wins back a disproportionate share
of the loss (sensitivity.seed_fragile) every later set keeps them, else they are
quantized like the others.  The stub graphs below are named by the units they keep in
float; a collapse is an interaction (two fragile units quantized together lose 5 points,
either alone 0.1), which the one-at-a-time ranking cannot see.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import onnx
import pytest

from segedge.export.precision import int8 as q8
from segedge.export.precision import modes, points
from segedge.export.precision.sensitivity import (
    FRAGILE_LEVERAGE,
    FRAGILE_MIN_SHARE,
    Budget,
    Measure,
    search,
    seed_fragile,
)

FRAGILE = ("ln", "softmax")
OTHERS = tuple(f"conv{i}" for i in range(10))
BUDGET = Budget(min_agreement=99.0)


class Stub:
    """Candidates as the set of units kept in float; measure() from a loss model."""

    def __init__(self, harm: dict[str, float], collapse: float) -> None:
        self.harm, self.collapse = harm, collapse
        self.kept: dict[Path, frozenset[str]] = {}
        self.measured: list[frozenset[str]] = []

    def excluding(self, kept: tuple[str, ...]) -> Path:
        path = Path("/k/" + "+".join(sorted(kept)))
        self.kept[path] = frozenset(kept)
        return path

    def only(self, unit: str) -> Path:
        return self.excluding(tuple(u for u in self.harm if u != unit))

    def lost(self, path: Path) -> float:
        quantized = [u for u in self.harm if u not in self.kept[path]]
        both = all(f in quantized for f in FRAGILE if f in self.harm)
        return sum(self.harm[u] for u in quantized) + (self.collapse if both else 0.0)

    def measure(self, path: Path) -> Measure:
        self.measured.append(self.kept[path])
        return Measure(round(100.0 - self.lost(path), 6))

    def agreement_of(self, path: Path) -> float:
        return round(100.0 - self.lost(path), 6)

    def run(self, fragile: tuple[str, ...] = FRAGILE) -> Any:
        layers = [*FRAGILE, *OTHERS]
        full = self.excluding(())
        return search(full, self.measure(full), BUDGET, layers, self.only, self.excluding,
                      self.measure, self.agreement_of, fragile=fragile)


def test_fragile_units_that_collapse_start_in_float() -> None:
    stub = Stub({"ln": 0.1, "softmax": 0.1, **{u: 0.2 for u in OTHERS}}, collapse=5.0)
    found = stub.run()
    # all INT8: 100 - 5.2 - 2.0 = 92.8; the two in float: 98.0 (5.2 of 7.2 points back)
    assert stub.measured[1] == frozenset(FRAGILE)  # measured together, right after full
    seed = found.fragile
    assert seed is not None and seed["seeded"] is True
    assert seed["units"] == list(FRAGILE)
    assert seed["full"]["agreement"] == 92.8 and seed["fragile_in_float"]["agreement"] == 98.0
    assert seed["recovered_share"] == round(5.2 / 7.2, 4)
    assert seed["unit_share"] == round(2 / 12, 4)
    # every later set keeps them; k counts beyond them: 5 convs bring the loss to 1.0
    assert found.met and found.kept_fp32[:2] == FRAGILE and len(found.kept_fp32) == 7
    assert all(set(FRAGILE) <= set(t["kept_fp32"]) for t in found.trials[1:])
    assert [len(t["kept_fp32"]) for t in found.trials] == [0, 2, 3, 4, 5, 6, 7]
    # only the other units are ranked (one run each)
    assert {name for name, _ in found.ranking} == set(OTHERS)
    # without the seed the ranking (0.1 each alone) puts them last: 11 units kept
    plain = Stub(stub.harm, collapse=5.0).run(fragile=())
    assert plain.fragile is None and len(plain.kept_fp32) == 11


def test_fragile_units_that_do_not_collapse_are_quantized_like_the_others() -> None:
    stub = Stub({"ln": 0.1, "softmax": 0.1, **{u: 0.3 for u in OTHERS}}, collapse=0.0)
    found = stub.run()
    seed = found.fragile
    # 96.8 all INT8, 97.0 with the two in float: 0.2 of 3.2 points back (6 %)
    assert seed is not None and seed["seeded"] is False
    assert seed["recovered_share"] == round(0.2 / 3.2, 4) < FRAGILE_MIN_SHARE
    assert found.met and set(found.kept_fp32) <= set(OTHERS) and len(found.kept_fp32) == 8
    assert {name for name, _ in found.ranking} == {*FRAGILE, *OTHERS}  # ranked with the rest


def test_a_fragile_set_that_is_most_of_the_network_is_not_seeded() -> None:
    """Winning back the loss in proportion to its size is not a collapse (the leverage)."""
    full, kept = Measure(90.0), Measure(96.0)  # 60 % of the loss back
    assert seed_fragile(full, kept, 6, 10)["seeded"] is False  # 60 % of the units
    assert seed_fragile(full, kept, 6 // 2, 10)["seeded"] is True  # 30 %: twice its share
    assert FRAGILE_LEVERAGE * 0.3 == pytest.approx(0.6)
    # with labels the loss is mIoU points
    assert seed_fragile(Measure(97.0, 50.0, 52.0), Measure(97.5, 51.5, 52.0), 1, 10)[
        "recovered_share"] == 0.75


def test_the_report_says_what_the_fragile_measurement_decided() -> None:
    stub = Stub({"ln": 0.1, "softmax": 0.1, **{u: 0.2 for u in OTHERS}}, collapse=5.0)
    section = {"frames": 8, "argmax_agreement": 99.1,
               "cpu_latency_ms": {"fp32": 2.0, "int8": 1.0},
               "fragile_seed": stub.run().fragile}
    lines = modes.get("int8").report_lines(section)
    assert ("started in float (they collapse in INT8): ln, softmax (agreement 92.80% all "
            "INT8, 98.00% with them in float, 72% of the loss won back)") in lines
    quiet = Stub({"ln": 0.1, "softmax": 0.1, **{u: 0.3 for u in OTHERS}}, collapse=0.0)
    section["fragile_seed"] = quiet.run().fragile
    assert ("fragile units quantized like the others (measured: agreement 96.80% all INT8, "
            "97.00% with them in float, 6% of the loss won back; needed 33%)"
            ) in modes.get("int8").report_lines(section)


@pytest.fixture(scope="module")
def tiny_q(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[points.Unit]]:
    """The tiny user model, pre-processed and fully quantized (noise ranges), its units."""
    from segedge.export.config import ExportConfig
    from segedge.export.pipeline import export
    from segedge.export.precision.graph import compute_nodes
    from tests.export.precision_helpers import noise_ranges
    from tests.export.test_int8_bounds import FIXTURE  # the tiny user model

    work = tmp_path_factory.mktemp("fragile")
    fp32 = work / "tiny.onnx"
    export(ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96),
                        output=fp32, emit="both", quiet=True))
    pre, ranges = noise_ranges(fp32, work)
    full = q8.Quantizer.open(pre, ranges, "tensorrt", "minmax").quantize(work / "q.onnx")
    qmodel = onnx.load(str(full))
    grouped = points.units(points.find(qmodel, onnx.load(str(pre))), compute_nodes(qmodel))
    return pre, full, grouped


def _quantized(path: Path) -> set[str]:
    """The activations `path` still rounds (Q/DQ pairs on a float tensor)."""
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    return {n.input[0] for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


class FakeRun:
    """What fallback_step reads of an Int8Run; `lost` maps the quantized activations of a
    candidate to the agreement points it loses; `keep_bound` stops the keep-k search."""

    def __init__(self, pre: Path, work: Path, lost: Any, keep_bound: float = 1e9,
                 rank: Any = None) -> None:
        self.pre, self.lost, self.keep_bound, self.rank = pre, lost, keep_bound, rank
        self.req = SimpleNamespace(workdir=work)
        self.steps: list[dict[str, Any]] = []
        self.seen: list[set[str]] = []

    def step(self, name: str, total: int | None, unit: str) -> Any:
        from segedge.export.precision.steps import Step

        bound = self.keep_bound if name == "keep-in-float search" else 1e9
        return Step(name, total, unit, limit_s=bound, quiet=True)

    def measure(self, path: Path) -> Measure:
        q = _quantized(path)
        self.seen.append(q)
        return Measure(round(100.0 - self.lost(q), 6))

    def agreement_of(self, path: Path) -> float:
        return 100.0 - (self.rank or self.lost)(_quantized(path))


def test_the_fallback_step_measures_the_graph_with_the_fragile_points_in_float(
        tiny_q: tuple[Path, Path, list[points.Unit]], tmp_path: Path) -> None:
    """On a real Q/DQ graph: the fragile unit (the layer before the head) is handed to the
    search, and the candidate it measures has exactly that unit's points unquantized."""
    from segedge.export.precision.modes import int8_steps

    pre, full, grouped = tiny_q
    fragile = [u for u in grouped if u.fragile]
    assert fragile and len(fragile) < len(grouped)
    fragile_acts = {p for u in fragile for p in u.points} & _quantized(full)
    assert fragile_acts
    # the collapse: any fragile activation rounded costs 6.5 points
    run = FakeRun(pre, tmp_path, lambda q: 6.5 if q & fragile_acts else 0.5)
    result, _ = int8_steps.fallback_step(run, full, BUDGET)  # type: ignore[arg-type]
    assert not (run.seen[1] & fragile_acts) and run.seen[1]  # fragile in float, rest INT8
    assert result.fragile is not None and result.fragile["seeded"]
    assert result.met and set(result.kept_fp32) == {u.name for u in fragile}


def test_the_closest_set_is_the_file_that_was_measured(
        tiny_q: tuple[Path, Path, list[points.Unit]], tmp_path: Path) -> None:
    """A fragile set measured (not seeded) and a keep-k set of the same size are two files:
    stopped after k = 1, the closest set (the fragile one) is returned with its own graph."""
    from segedge.export.precision.modes import int8_steps

    pre, full, grouped = tiny_q
    head = next(u for u in grouped if u.fragile)
    others = [u for u in grouped if u is not head and u.kind == "layer"]
    assert others
    acts = {u.name: set(u.points) & _quantized(full) for u in grouped}
    harm = {u.name: 0.5 if u in others[:1] else 2.0 if u is head else 3.0 for u in grouped}

    def lost(q: set[str]) -> float:
        return 0.5 + sum(h for name, h in harm.items() if acts[name] & q)

    # ranked alone, the first other layer looks the most sensitive (an interaction)
    def rank(q: set[str]) -> float:
        return 9.0 if acts[others[0].name] & q else 1.0

    run = FakeRun(pre, tmp_path, lost, keep_bound=0.0, rank=rank)
    result, _ = int8_steps.fallback_step(run, full, BUDGET)  # type: ignore[arg-type]
    assert result.fragile is not None and not result.fragile["seeded"]
    assert not result.met and result.kept_fp32 == (head.name,)
    assert [len(t.get("kept_fp32", [])) for t in result.trials][:3] == [0, 1, 1]
    on_disk = _quantized(result.path)
    assert not (on_disk & acts[head.name]) and on_disk >= acts[others[0].name]
