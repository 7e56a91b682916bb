"""TensorRT weak-typing flags come from the precision-mode registry, not a second table."""

from __future__ import annotations

import pytest

from segedge.export.precision import modes
from segedge.export.precision.modes.int8 import INT8
from segedge.export.tensorrt.build import TypingPlan, plan_typing

TRT10 = {"strongly_typed_available": True, "weak_flags_available": True}


@pytest.mark.parametrize(("precision", "dla", "flags"), [
    ("fp16", False, ("FP16",)), ("int8", False, ("INT8",)), ("int8", True, ("INT8", "FP16")),
    ("fp16", True, ("FP16",))])
def test_builder_flags_are_the_modes_flags(precision: str, dla: bool,
                                           flags: tuple[str, ...]) -> None:
    assert modes.get(precision).tensorrt_flags(dla) == flags
    got = plan_typing("fp32" if precision == "fp16" else precision, precision,  # type: ignore[arg-type]
                      dla=dla, prefer_strong=False, **TRT10)
    assert got == TypingPlan(False, flags, precision)  # type: ignore[arg-type]


def test_a_mode_changing_its_flags_changes_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(INT8, "tensorrt_flags", lambda self, dla=False: ("INT8", "SPARSE"))
    got = plan_typing("int8", "int8", dla=False, prefer_strong=False, **TRT10)
    assert got.flags == ("INT8", "SPARSE")
