"""The environment snapshot and the quiet-gap wait."""

from __future__ import annotations

import time

from segedge.benchmarks import env


def test_environment_names_the_machine() -> None:
    snap = env.environment(threads=2)
    assert snap["threads"] == 2
    assert snap["cpu"]["logical_cores"] >= 1 and snap["cpu"]["model"]
    assert snap["libraries"]["onnxruntime"] not in ("", "absent")
    assert "CPUExecutionProvider" in snap["onnxruntime_providers"]
    assert isinstance(snap["gpus"], list)
    done = env.finish(snap, 12.34)
    assert done["wall_s"] == 12.3 and "load_average_end" in done


def test_idle_share_is_a_fraction() -> None:
    idle = env.cpu_idle_fraction(0.2)
    assert idle is None or 0.0 <= idle <= 1.0


def test_wait_for_idle_is_bounded() -> None:
    start = time.monotonic()
    idle, waited = env.wait_for_idle(min_idle=0.0, max_wait_s=10.0)  # always quiet enough
    assert waited < 1.0 and time.monotonic() - start < 1.5
    idle, waited = env.wait_for_idle(min_idle=1.01, max_wait_s=2.5)  # never quiet enough
    assert 2.0 <= waited <= 3.2
    assert idle is None or 0.0 <= idle <= 1.0
