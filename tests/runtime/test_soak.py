"""10,000 synthetic frames through the whole pipeline: memory must not grow."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from segedge.runtime.config import RunConfig
from segedge.runtime.draw import DrawConfig
from segedge.runtime.pipeline import run

FRAMES = 10_000


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_soak_no_memory_growth(models: dict[str, Path], tmp_path: Path) -> None:
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            samples.append(rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    stats = run(RunConfig(model=models["labels"], display=False,
                          source=f"synthetic://?frames={FRAMES}&size=32x24",
                          output=tmp_path / "soak.avi", draw=DrawConfig(legend=False)))
    done.set()
    sampler.join()
    assert stats.frames_processed == FRAMES and stats.frames_corrupt == 0
    assert len(samples) >= 20, "run too short to judge memory"
    n = len(samples)
    early = max(samples[n // 5 : n // 5 + max(1, n // 10)])  # after warm-up
    late = max(samples[-max(1, n // 10):])
    assert late - early < 4.0, f"RSS grew from {early:.1f} MB to {late:.1f} MB"
    print(f"soak: {FRAMES} frames in {time.monotonic() - start:.1f} s, "
          f"RSS {early:.1f} -> {late:.1f} MB")
