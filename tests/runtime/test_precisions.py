"""runtime/precisions.py: the precision descriptors, and their agreement with the export side.

The runtime, segbench, segdoctor, segdeploy and the TensorRT builder ask these descriptors
instead of comparing precision names; the export modes (export/precision/modes) own the
lowering.  Two places state some of the same facts (which precisions are an ONNX, which are
calibrated, TensorRT's builder flags, the INT8 targets), so this test holds them equal.
"""

from __future__ import annotations

import re
import typing

import pytest

from segedge.runtime import precisions
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import Precision
from segedge.runtime.precisions import PrecisionSpec


def test_every_export_mode_is_an_artifact_precision_with_the_same_facts() -> None:
    from segedge.export.precision import modes

    assert precisions.artifact_precisions() == modes.names() == typing.get_args(Precision)
    for name in modes.names():
        mode, spec = modes.get(name), precisions.precision(name)
        assert spec.calibrated == mode.calibrated, name
        for dla in (False, True):
            assert spec.builder_flags(dla) == mode.tensorrt_flags(dla), (name, dla)
    assert [s.name for s in precisions.precisions() if not s.artifact] == ["bf16"]


def test_the_int8_targets_agree_with_the_mode_and_its_quantizer() -> None:
    from segedge.export.precision.int8 import FLAVOURS
    from segedge.export.precision.modes.int8 import INT8_TARGETS

    assert tuple(t.name for t in precisions.INT8_TARGETS) == INT8_TARGETS
    for target in precisions.INT8_TARGETS:
        assert target.symmetric == FLAVOURS[target.name].symmetric_activations, target.name
    assert precisions.symmetric_int8_targets() == ("tensorrt",)


def test_every_backend_hint_is_a_precision_hint() -> None:
    from segedge.runtime.backends.openvino import PRECISION_HINTS

    assert set(PRECISION_HINTS) == set(precisions.hint_names()) == {"f32", "f16", "bf16"}
    assert {h: precisions.for_hint(h).name for h in PRECISION_HINTS} == {  # type: ignore[union-attr]
        "f32": "fp32", "f16": "fp16", "bf16": "bf16"}
    assert precisions.for_hint("f8") is None
    assert precisions.GRAPH_HINT == "f32" == precisions.reference().hint


def test_the_facts_the_callers_ask() -> None:
    p = precisions.precision
    assert precisions.reference().name == "fp32" and precisions.is_reference("fp32")
    assert not precisions.is_reference("fp16") and not precisions.is_reference("int4")
    assert [s.name for s in precisions.precisions() if s.reduced_float] == ["fp16", "bf16"]
    assert p("int8").quantized and p("int8").calibrated and not p("fp16").quantized
    assert [s.name for s in precisions.precisions() if s.dla] == ["fp16", "int8"]
    assert (p("fp32").bits, p("fp16").bits, p("int8").bits) == (32, 16, 8)
    assert (p("fp32").device_agreement, p("fp16").device_agreement,
            p("int8").device_agreement) == (99.5, 99.0, 97.0)
    assert p("int8").builder_flags(dla=True) == ("INT8", "FP16")
    assert precisions.precision_names() == ["fp32", "fp16", "bf16", "int8", "f32", "f16"]


def test_an_unknown_name_and_a_bad_spec_are_refused_in_one_line() -> None:
    with pytest.raises(InputError) as err:
        precisions.precision("int4")
    assert str(err.value) == "precision: expected fp32 or fp16 or bf16 or int8, got 'int4'"
    assert precisions.find("int4") is None and precisions.find(None) is None  # type: ignore[arg-type]
    with pytest.raises(InputError, match=re.escape("expected float32 | float16 | bfloat16")):
        PrecisionSpec("x", "x", 16, "half")
    with pytest.raises(InputError, match="bits: expected 8, 16 or 32"):
        PrecisionSpec("x", "x", 4, "float32")
    with pytest.raises(InputError, match="calibration only for a quantized one"):
        PrecisionSpec("x", "x", 8, "float32", calibrated=True)
    with pytest.raises(InputError, match="one reference precision"):
        precisions.register_precision(PrecisionSpec("x", "x", 32, "float32", reference=True))
    assert precisions.find("x") is None
