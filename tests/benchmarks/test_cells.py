"""The matrix expansion and the baseline ratios."""

from __future__ import annotations

import pytest

from segedge.benchmarks.cells import Record, attach_ratios, expand


def test_expand_is_the_full_cross_product_in_a_stable_order() -> None:
    cells = expand(["a", "b"], ["ort-cpu", "pytorch-cpu"], ["fp32", "int8"],
                   [(64, 96), (128, 192)], [1, 4])
    assert len(cells) == 2 * 2 * 2 * 2 * 2
    assert cells[0].model == "a" and cells[0].imgsz == (64, 96) and cells[0].batch == 1
    assert [c.precision for c in cells[:2]] == ["fp32", "int8"]
    assert len({(c.model, c.backend, c.precision, c.imgsz, c.batch) for c in cells}) == 32


def _rec(backend: str, p50: float, precision: str = "fp32", batch: int = 1) -> Record:
    return Record(model="m", backend=backend, precision=precision, imgsz=[64, 96], batch=batch,
                  p50_ms=p50)


def test_ratios_are_baseline_p50_over_row_p50_within_a_group() -> None:
    recs = [_rec("pytorch-cpu", 40.0), _rec("plain-ort", 20.0), _rec("ort-cpu", 10.0),
            _rec("ort-cpu", 8.0, "int8"), _rec("ort-cpu", 30.0, batch=4),
            Record(model="m", backend="ort-cuda", precision="fp32", imgsz=[64, 96], batch=1,
                   status="skipped", reason="no GPU")]
    attach_ratios(recs)
    assert recs[2].vs_pytorch == pytest.approx(4.0)
    assert recs[2].vs_plain == pytest.approx(2.0)
    assert recs[3].vs_plain == pytest.approx(2.5)
    assert recs[0].vs_pytorch == pytest.approx(1.0)
    # batch 4 has no baseline of its own: no ratio rather than a wrong one
    assert recs[4].vs_pytorch is None and recs[4].vs_plain is None
    assert recs[5].vs_plain is None
