"""runtime/precisions.py: the precision descriptors, the one table of their facts.

The runtime, segbench, segdoctor, segdeploy, the TensorRT builder and the export modes ask
these descriptors instead of comparing precision names or restating them: the export modes
(export/precision/modes) own the lowering and read ``calibrated``, the TensorRT flags and
the INT8 targets from here, and the artifact metadata validates its ``precision`` here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace

import pytest

from segedge.runtime import precisions
from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.precisions import PrecisionSpec

META = ArtifactMetadata(model="m", family="f", classes=("a",), palette=((0, 0, 0),))


def test_every_export_mode_reads_its_facts_from_its_spec() -> None:
    from segedge.export.precision import modes

    assert precisions.artifact_precisions() == modes.names()
    for name in modes.names():
        mode = modes.get(name)
        # no mode restates a fact of its spec (one table, not two)
        assert not {"calibrated", "builder_flags", "tensorrt_flags"} & set(vars(type(mode))), name
        assert mode.spec is precisions.precision(name)
    assert [s.name for s in precisions.precisions() if not s.artifact] == ["bf16"]


@pytest.fixture
def int8_spec() -> Iterator[PrecisionSpec]:
    """The int8 spec, restored after a test replaces it."""
    spec = precisions.precision("int8")
    yield spec
    precisions.register_precision(spec)


def test_a_spec_change_reaches_the_mode(int8_spec: PrecisionSpec) -> None:
    from segedge.export.precision import modes

    mode = modes.get("int8")
    assert mode.calibrated and mode.tensorrt_flags() == ("INT8",)
    assert mode.tensorrt_flags(dla=True) == ("INT8", "FP16")
    precisions.register_precision(replace(int8_spec, tensorrt_flags=("INT8", "SPARSE"),
                                          dla_flags=(), calibrated=False))
    assert not mode.calibrated
    assert mode.tensorrt_flags() == mode.tensorrt_flags(dla=True) == ("INT8", "SPARSE")


def test_the_int8_targets_come_from_here() -> None:
    from segedge.export.precision.int8 import FLAVOURS
    from segedge.export.precision.modes.int8 import CPU_TARGETS, INT8_TARGETS

    assert tuple(t.name for t in precisions.INT8_TARGETS) == INT8_TARGETS == ("tensorrt", "cpu")
    assert CPU_TARGETS == ("cpu",)  # the ones TensorRT cannot build
    for target in precisions.INT8_TARGETS:
        assert target.symmetric == FLAVOURS[target.name].symmetric_activations, target.name
    assert precisions.symmetric_int8_targets() == ("tensorrt",)


def test_the_metadata_accepts_every_registered_onnx_precision_and_nothing_else() -> None:
    assert [META.with_changes(precision=p).precision for p in ("fp32", "fp16", "int8")] == [
        "fp32", "fp16", "int8"]
    for bad in ("int4", "bf16"):  # unknown; a runtime hint, not an ONNX
        with pytest.raises(InputError) as err:
            META.with_changes(precision=bad)
        assert str(err.value) == f"precision: expected fp32 or fp16 or int8, got {bad!r}"
    raw = {**json.loads(META.to_json()), "precision": "int4"}
    with pytest.raises(ArtifactError) as read_err:
        ArtifactMetadata.from_dict(raw, "m.onnx")
    assert str(read_err.value) == ("m.onnx: segedge metadata precision: expected fp32 or fp16 "
                                   "or int8, got 'int4'")
    precisions.register_precision(PrecisionSpec("int4", "f32", 8, "float32", quantized=True))
    try:
        assert ArtifactMetadata.from_dict(raw, "m.onnx").precision == "int4"
    finally:
        precisions.unregister_precision("int4")
    with pytest.raises(InputError):
        META.with_changes(precision="int4")


def test_unregister_forgets_a_precision_but_never_the_reference() -> None:
    precisions.register_precision(PrecisionSpec("int4", "f32", 8, "float32", quantized=True))
    assert precisions.find("int4") is not None
    precisions.unregister_precision("int4")
    assert precisions.find("int4") is None and "int4" not in precisions.precision_names()
    with pytest.raises(InputError) as err:
        precisions.unregister_precision("int4")
    assert str(err.value) == ("precision to unregister: expected fp32 or fp16 or bf16 or int8, "
                              "got 'int4'")
    with pytest.raises(InputError, match="^precision to unregister: expected one that is not "
                                         "the reference, got fp32$"):
        precisions.unregister_precision("fp32")
    assert precisions.reference().name == "fp32"


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
