"""FP16: the ONNX transform of precision/fp16.py, gated on argmax agreement with FP32."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from segedge.export.precision.modes.base import LowerRequest, PrecisionMode

if TYPE_CHECKING:
    from segedge.export.config import PrecisionOptions
    from segedge.export.precision.ladder import Lowered


class FP16(PrecisionMode):
    name = "fp16"
    suffix = "_fp16"
    flag_help = ("Write an FP16 ONNX, verified against FP32 (>= 99.5% argmax agreement); also "
                 "an engine where TensorRT and a GPU exist.")
    implies_engine: ClassVar[bool] = True
    builder_flags = ("FP16",)

    def ungated(self, opts: PrecisionOptions) -> PrecisionOptions:
        return self._open(opts, fp16_min_agreement=0.0)

    def lower(self, req: LowerRequest) -> Lowered:
        from segedge.export.precision.ladder import lower_fp16

        return lower_fp16(req)
