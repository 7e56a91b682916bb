"""What one benchmark cell is, and the record it leaves (measured, skipped or failed).

A cell is one point of the matrix models x backends x precisions x sizes x
batch.  Every cell leaves a record, so a table says *why* a combination is
missing on this machine instead of silently leaving it out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from segedge.runtime import precisions

Status = Literal["ok", "skipped", "failed"]
# Every registered precision (runtime.precisions), bf16 included: a runtime precision
# (OpenVINO's hint on the FP32 artifact), not an export mode.
PRECISIONS = tuple(spec.name for spec in precisions.precisions())
# Reference rows: the same network in PyTorch eager (segedge's thread count), and a plain
# ONNX Runtime loop with ONNX Runtime's default threads.
PYTORCH_BASELINE = "pytorch-cpu"
PLAIN_BASELINE = "plain-ort"
# OpenVINO used directly: the peer of segedge's OpenVINO rows, at the same precision.
PEER_TOLERANCE = 0.05  # segedge's OpenVINO backend within 5 % of OpenVINO used directly


@dataclass(frozen=True)
class Cell:
    model: str  # zoo name or path to an .onnx / .plan
    backend: str
    precision: str
    imgsz: tuple[int, int] | None  # None: what the artifact or zoo entry fixes
    batch: int = 1

    @property
    def group(self) -> tuple[str, tuple[int, int] | None, int]:
        """Cells that share a baseline: same network, input size and batch."""
        return (self.model, self.imgsz, self.batch)

    def label(self) -> str:
        size = f"{self.imgsz[0]}x{self.imgsz[1]}" if self.imgsz else "native"
        return f"{self.model} {self.backend} {self.precision} {size} b{self.batch}"


@dataclass
class Record:
    """One row of the JSON/CSV; timing fields stay None unless status is ok."""

    model: str
    backend: str
    precision: str
    imgsz: list[int] | None
    batch: int
    status: Status = "ok"
    reason: str = ""
    kind: str = "model"  # model (model-only latency) | e2e
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    min_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    fps: float | None = None
    iters: int | None = None
    warmup: int | None = None
    threads: int | None = None
    provider: str | None = None
    artifact: str | None = None
    model_size_bytes: int | None = None
    export_s: float | None = None
    export_cached: bool | None = None
    load_s: float | None = None  # session creation / engine deserialisation (+ EP build)
    peak_rss_mib: float | None = None
    rss_before_load_mib: float | None = None
    gpu_mem_mib: float | None = None
    isolated: bool | None = None  # measured in its own process (clean peak memory)
    load1: float | None = None  # 1-minute load average when the cell started
    idle_before: float | None = None  # share of the CPUs idle just before timing (--settle)
    cpu_ms_per_iter: float | None = None  # CPU time (all threads) per timed iteration
    weights: str | None = None
    agreement_vs_fp32: float | None = None  # argmax agreement, from the export's check
    miou: float | None = None
    pixel_accuracy: float | None = None
    accuracy_note: str = ""
    vs_pytorch: float | None = None  # PyTorch eager p50 / this p50 (same model, size, batch)
    vs_plain: float | None = None  # plain ORT loop p50 / this p50
    vs_peer: float | None = None  # openvino-direct p50 / this p50 (openvino-cpu rows)
    # threads of the baseline row each ratio divides by (every ratio states both sides)
    pytorch_threads: int | None = None
    plain_threads: int | None = None
    peer_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_cell(cls, cell: Cell, **values: Any) -> Record:
        return cls(model=cell.model, backend=cell.backend, precision=cell.precision,
                   imgsz=list(cell.imgsz) if cell.imgsz else None, batch=cell.batch, **values)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expand(models: Iterable[str], backends: Iterable[str], precisions: Iterable[str],
           sizes: Iterable[tuple[int, int] | None], batches: Iterable[int]) -> list[Cell]:
    """The full cross product, in a stable order (model, size, batch, backend, precision)."""
    return [Cell(m, b, p, s, n) for m, s, n, b, p in
            itertools.product(models, sizes, batches, backends, precisions)]


def attach_ratios(records: list[Record]) -> None:
    """Fill vs_pytorch / vs_plain from the fp32 baseline rows of each group, and vs_peer of
    each row that has a peer (openvino-cpu: openvino-direct, benchmarks.backends.peers) from
    the peer's row of the same precision (in place)."""
    from segedge.benchmarks.backends import peers

    peer_of = peers()
    ref = precisions.reference().name  # the baselines' precision
    base: dict[tuple[str, str, str, Any, int], Record] = {}
    for r in records:
        if r.ok and r.kind == "model" and r.p50_ms and (
                r.backend in (PYTORCH_BASELINE, PLAIN_BASELINE) and r.precision == ref
                or r.backend in peer_of.values()):
            base[(r.backend, r.precision, r.model, _key(r.imgsz), r.batch)] = r
    for r in records:
        if not r.ok or r.kind != "model" or not r.p50_ms:
            continue
        group = (r.model, _key(r.imgsz), r.batch)
        torch_row = base.get((PYTORCH_BASELINE, ref, *group))
        plain_row = base.get((PLAIN_BASELINE, ref, *group))
        peer = base.get((peer_of[r.backend], r.precision, *group)) \
            if r.backend in peer_of else None
        r.vs_pytorch, r.pytorch_threads = _ratio(torch_row, r)
        r.vs_plain, r.plain_threads = _ratio(plain_row, r)
        r.vs_peer, r.peer_threads = (_peer_ratio(r) if r.backend in peer_of else None) \
            or _ratio(peer, r)


def _peer_ratio(row: Record) -> tuple[float, int | None] | None:
    """The peer timed interleaved in the row's own process wins over the separate row: a
    5 % bound needs both sides measured under the same load."""
    pair = row.extra.get("peer")
    if not pair or not pair.get("segedge_p50_ms") or not pair.get("peer_p50_ms"):
        return None
    return round(pair["peer_p50_ms"] / pair["segedge_p50_ms"], 3), pair.get("threads")


def _ratio(baseline: Record | None, row: Record) -> tuple[float | None, int | None]:
    if baseline is None or not baseline.p50_ms or not row.p50_ms:
        return None, None
    return round(baseline.p50_ms / row.p50_ms, 3), baseline.threads


def _key(imgsz: list[int] | None) -> tuple[int, ...] | None:
    return tuple(imgsz) if imgsz else None
