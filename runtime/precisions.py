"""What each precision *is*, so code asks a descriptor instead of comparing its name.

One ``PrecisionSpec`` per precision a user can name (``segexport``'s modes fp32 / fp16 /
int8, and ``segbench``'s bf16, a runtime hint over the FP32 artifact), in registration
order (the reference first).  The backends' inference precision hints (``f32``, ``f16``,
``bf16``: ``BackendOptions.precision_hint``) are each spec's ``hint``.  Torch-free and
import-light: the runtime, ``segbench``, ``segdoctor``, ``segdeploy`` and the TensorRT
builder read it; ``export/precision/modes`` own the lowering of each mode and read these
facts (``calibrated``, the TensorRT flags, the INT8 targets) instead of restating them.

A new precision is one ``register_precision(PrecisionSpec(...))`` line (here, or in a
plugin before it registers its mode) plus, if it is an ONNX of its own, its mode file and
``register_mode`` line (``export/precision/modes``, which refuses a name missing here).
The artifact metadata accepts every ONNX precision registered here (no second list).
Nothing outside this module and the mode's file compares a precision name
(``tests/architecture/test_name_comparisons.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from segedge.runtime.errors import InputError

_FLOAT_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class PrecisionSpec:
    """One precision's facts (each field says why someone asks it)."""

    name: str  # the name users give: segexport --precision, segbench --precisions
    hint: str  # the inference precision a backend is asked for (BackendOptions.precision_hint)
    bits: int  # width of its arithmetic: an engine never widens a narrower ONNX
    float_dtype: str  # numpy/torch name of its float tensors ('float32', 'float16', 'bfloat16')
    reference: bool = False  # the precision every other one is measured against (FP32)
    quantized: bool = False  # an INT8 Q/DQ graph (a float engine cannot be built from it)
    calibrated: bool = False  # needs calibration frames (--calib) and an accuracy budget
    # (the export mode's ``calibrated`` reads it)
    artifact: bool = True  # an ONNX of its own; False: a runtime hint over the reference ONNX
    # TensorRT weak-typing builder flags (BuilderFlag names); on a DLA also ``dla_flags``
    # (the DLA has no FP32 fallback kernels).  The export mode's ``tensorrt_flags`` read them.
    tensorrt_flags: tuple[str, ...] = ()
    dla_flags: tuple[str, ...] = ()
    dla: bool = False  # TensorRT's DLA has kernels for it
    # Least share of equal pixels (percent) when the same graph runs on another device
    # (GPU kernels vs ONNX Runtime's CPU; segdoctor's mask check).
    device_agreement: float = 99.5
    cpu_features: str = ""  # what a CPU needs to run the hint natively (messages)
    # Gated (or said why not) in every export report, even where the CPU cannot run it: the
    # auto chooser's reason names it ("bf16 not verified by the export report, so f32").
    always_reported: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.hint:
            raise InputError("precision spec", "a name and a hint", repr(self))
        if self.float_dtype not in _FLOAT_DTYPES:
            raise InputError(f"precision {self.name} float_dtype", " | ".join(_FLOAT_DTYPES),
                             repr(self.float_dtype))
        if self.bits not in (8, 16, 32):
            raise InputError(f"precision {self.name} bits", "8, 16 or 32", self.bits)
        if self.calibrated and not self.quantized:
            raise InputError(f"precision {self.name}", "calibration only for a quantized one",
                             "calibrated float")

    def builder_flags(self, dla: bool = False) -> tuple[str, ...]:
        """TensorRT builder flags for a weakly typed network at this precision."""
        return (*self.tensorrt_flags, *self.dla_flags) if dla else self.tensorrt_flags

    @property
    def reduced_float(self) -> bool:
        """A float narrower than the reference (FP16, BF16): TensorRT and OpenVINO can pick
        such kernels themselves from the reference graph."""
        return not self.reference and not self.quantized


_SPECS: dict[str, PrecisionSpec] = {}


def register_precision(spec: PrecisionSpec) -> None:
    """One line per precision (registration order is the order users see)."""
    if spec.reference and any(s.reference for s in _SPECS.values() if s.name != spec.name):
        raise InputError("precision spec", "one reference precision", spec.name)
    _SPECS[spec.name] = spec


def unregister_precision(name: str) -> None:
    """Forget ``name`` (a plugin or a test undoing its registration); the reference stays."""
    spec = _SPECS.get(name)
    if spec is None:
        raise InputError("precision to unregister", " or ".join(_SPECS), repr(name))
    if spec.reference:
        raise InputError("precision to unregister", "one that is not the reference", name)
    del _SPECS[name]


def precisions() -> list[PrecisionSpec]:
    return list(_SPECS.values())


def precision_names() -> list[str]:
    """Every precision name and every hint name (what the name checker looks for)."""
    return list(dict.fromkeys([*_SPECS, *hint_names()]))


def artifact_precisions() -> tuple[str, ...]:
    """The precisions that are an ONNX of their own (fp32, fp16, int8)."""
    return tuple(s.name for s in _SPECS.values() if s.artifact)


def artifact_precision(name: str) -> PrecisionSpec:
    """The registered precision ``name`` that is an ONNX of its own (what an artifact's
    metadata may say); anything else is InputError naming those."""
    spec = find(name)
    if spec is None or not spec.artifact:
        raise InputError("precision", " or ".join(artifact_precisions()), repr(name))
    return spec


def hint_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.hint for s in _SPECS.values()))


def find(name: str) -> PrecisionSpec | None:
    return _SPECS.get(name) if isinstance(name, str) else None


def precision(name: str) -> PrecisionSpec:
    """The registered precision ``name``; an unknown one is InputError naming the known ones."""
    spec = find(name)
    if spec is None:
        raise InputError("precision", " or ".join(_SPECS), repr(name))
    return spec


def for_hint(hint: str) -> PrecisionSpec | None:
    """The float precision whose inference hint is ``hint`` (f16 -> fp16), None if none."""
    return next((s for s in _SPECS.values() if s.hint == hint and not s.quantized), None)


def reference() -> PrecisionSpec:
    return next(s for s in _SPECS.values() if s.reference)


def is_reference(name: str) -> bool:
    """Is ``name`` the reference precision (False for an unknown name)."""
    spec = find(name)
    return spec is not None and spec.reference


register_precision(PrecisionSpec("fp32", "f32", 32, "float32", reference=True,
                                 device_agreement=99.5))
register_precision(PrecisionSpec("fp16", "f16", 16, "float16", tensorrt_flags=("FP16",),
                                 dla=True, device_agreement=99.0, cpu_features="AMX-FP16"))
# bf16 is no ONNX: the FP32 artifact run with OpenVINO's bf16 inference precision hint.
register_precision(PrecisionSpec("bf16", "bf16", 16, "bfloat16", artifact=False,
                                 device_agreement=99.0, cpu_features="AVX-512 BF16 / AMX",
                                 always_reported=True))
register_precision(PrecisionSpec("int8", "f32", 8, "float32", quantized=True, calibrated=True,
                                 tensorrt_flags=("INT8",), dla_flags=("FP16",), dla=True,
                                 device_agreement=97.0))

GRAPH_HINT = reference().hint  # precision_hint None: the graph's own precision


@dataclass(frozen=True)
class Int8Target:
    """A Q/DQ flavour (``segexport --int8-target``) and what a consumer asks of it."""

    name: str
    symmetric: bool  # S8S8 with zero points 0: the only Q/DQ TensorRT builds


# The int8 mode's targets (export/precision/modes/int8.py derives its INT8_TARGETS and its
# CPU targets, the non-symmetric ones, from this tuple).
INT8_TARGETS = (Int8Target("tensorrt", symmetric=True), Int8Target("cpu", symmetric=False))


def symmetric_int8_targets() -> tuple[str, ...]:
    """The --int8-target values whose Q/DQ a TensorRT engine can be built from."""
    return tuple(t.name for t in INT8_TARGETS if t.symmetric)
