"""The auto chooser's measurement: which CPU candidates race, the probe frame, the timing and
the rule that reads it (``runtime.backends.auto`` decides and caches; this module measures).

Kept apart so the measuring can be read, tuned and tested without the decision logic: the
probe is a deterministic frame at the artifact's own input size (a dynamic one at
``PROBE_HW``), timed through ``runtime.timing`` in interleaved rounds so that load from other
processes hits every candidate alike.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from segedge.runtime.backends.auto_cache import base_name, cpu_candidates
from segedge.runtime.backends.base import Backend, BackendOptions, descriptor
from segedge.runtime.errors import InputError
from segedge.runtime.timing import Rounds, settled

log = logging.getLogger("segedge.runtime")

PROBE_HW = (352, 480)  # probe size of a dynamic-size artifact (rounded to its stride)
PROBE_ROUNDS = Rounds(warmup=2, min_rounds=3, max_rounds=9, budget_s=4.0)
PROBE_MAX_SPREAD = 0.15  # rounds spread wider than this (IQR / median) are measured again
PROBE_RETRIES = 2


def pick(timings_ms: Mapping[str, float]) -> str:
    """The rule itself: the smallest median wins; an exact tie keeps the earlier candidate
    (ONNX Runtime, the reference)."""
    names = cpu_candidates()
    usable = {k: v for k, v in timings_ms.items() if base_name(k) in names and v > 0}
    if not usable:
        raise InputError("probe timings", f"a positive median for one of {names}",
                         dict(timings_ms))
    return min(usable, key=lambda k: (usable[k], names.index(base_name(k)), k))


def challengers() -> tuple[str, ...]:
    """The CPU candidates timed against the reference (the first one)."""
    return cpu_candidates()[1:]


def probe_hw(backend: Backend) -> tuple[int, int]:
    """The artifact's input size; a dynamic one is probed at PROBE_HW rounded to its stride."""
    from segedge.runtime.preprocess import network_size

    return network_size(backend.metadata.input, PROBE_HW)


def probe_tensor(backend: Backend, hw: tuple[int, int]) -> np.ndarray:
    """A deterministic frame at ``hw``, through the runtime's own prepare."""
    from segedge.runtime.preprocess import prepare

    yy, xx = np.mgrid[0 : hw[0], 0 : hw[1]]
    frame = np.stack([(xx * 255 // max(1, hw[1] - 1)), (yy * 255 // max(1, hw[0] - 1)),
                      ((xx + yy) % 256)], axis=-1).astype(np.uint8)
    spec = backend.metadata.input
    tensor, _ = prepare([frame] * max(1, spec.batch or 1), spec)
    return tensor


def interleaved_probe(backends: Mapping[str, Backend], tensor: np.ndarray) -> dict[str, float]:
    """Median ms of one ``infer`` per backend: rounds interleaved so that load from other
    processes hits all alike, measured again while the rounds spread too wide."""
    found = settled({name: (lambda b=b: b.infer(tensor)) for name, b in backends.items()},
                    PROBE_ROUNDS, max_spread=PROBE_MAX_SPREAD, retries=PROBE_RETRIES)
    spreads = {name: round(t.spread, 3) for name, t in found.items()}
    if any(v > PROBE_MAX_SPREAD for v in spreads.values()):
        log.debug("auto backend: probe still noisy after %d retries (IQR/median %s)",
                 PROBE_RETRIES, spreads)
    return {name: round(t.median_ms, 2) for name, t in found.items()}


def library_versions() -> tuple[tuple[str, str], ...]:
    return tuple((name, descriptor(name).version()) for name in cpu_candidates())


def compile_in_child(path: Path, options: BackendOptions, backend: str | None = None
                     ) -> str | None:
    """None when ``backend`` (default: the first challenger, OpenVINO) compiles ``path`` in a
    child process, else why not (one line): a compiler crash must cost the probe, not the
    segrun process."""
    return descriptor(backend or challengers()[0]).compile_probe(path, options)
