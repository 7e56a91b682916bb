"""`segexport --list`: the zoo as a table, parameters counted without allocating anything."""

from __future__ import annotations

import torch

from segedge.export.models import registry
from segedge.export.models.registry import BuildRequest, ModelSpec
from segedge.export.models.weights import availability

HEADER = ("name", "family", "params", "size", "stride", "classes", "pretrained")


def param_count(spec: ModelSpec) -> str:
    """Parameters of a random build on the meta device; '?' when the entry cannot build."""
    try:
        with torch.device("meta"):
            model = spec.build(BuildRequest(spec.num_classes, "random"))
        count = sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - listing must never fail on one entry
        return "?"
    return f"{count / 1e6:.1f}M" if count >= 100_000 else f"{count / 1e3:.0f}K"


def rows() -> list[tuple[str, ...]]:
    """One row per entry; `pretrained` is no / shipped / cached / download (never downloads)."""
    out: list[tuple[str, ...]] = [HEADER]
    for spec in registry.all_specs():
        out.append((spec.name, spec.family, param_count(spec),
                    f"{spec.default_size[0]}x{spec.default_size[1]}", str(spec.stride),
                    str(spec.num_classes), availability(spec.weights)))
    return out


def list_models() -> str:
    """The zoo as left-aligned columns."""
    table = rows()
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in table)
