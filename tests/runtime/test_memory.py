"""runtime.memory: the resident set and its peak, as segbench and the INT8 report read them."""

from __future__ import annotations

import mmap
import resource
import sys
from pathlib import Path

import numpy as np
import pytest

from segedge.runtime import memory

BLOCK = 64 * memory.MIB


@pytest.mark.skipif(not memory.STATM.exists(), reason="no /proc/self (not Linux)")
def test_touched_memory_is_resident_and_stays_in_the_peak() -> None:
    before = memory.rss_bytes()
    assert before is not None and before > 10 * memory.MIB
    # an anonymous mapping of our own, not malloc: whether the allocator hands a freed
    # array back depends on the process's history (the run engine raises glibc's mmap and
    # trim thresholds, runtime/priority.reuse_freed_memory); in the full suite a numpy
    # array's 64 MiB stayed resident after `del`
    mapping = mmap.mmap(-1, BLOCK)
    block = np.frombuffer(mapping, np.uint8)
    block[:] = 1  # 64 MiB, every page touched
    held = memory.rss_bytes()
    assert held is not None and held >= before + BLOCK - 4 * memory.MIB
    # the kernel's counters are approximate (per-thread caches) and read a moment apart:
    # 1 MiB of slack, far below the 64 MiB block
    assert memory.peak_rss_bytes() >= held - memory.MIB
    del block
    mapping.close()  # munmap: the pages go back to the kernel
    after = memory.rss_bytes()
    assert after is not None and after <= held - BLOCK + 4 * memory.MIB  # given back
    assert memory.peak_rss_bytes() >= held - memory.MIB  # the peak still holds the block
    assert abs(memory.rss_mib() - memory.rss_bytes() / memory.MIB) < 2  # type: ignore[operator]
    assert abs(memory.peak_rss_mib() - memory.peak_rss_bytes() / memory.MIB) <= 0.05


def test_without_proc_the_library_and_the_kernel_answer(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    monkeypatch.setattr(memory, "STATM", tmp_path / "statm")  # absent
    monkeypatch.setattr(memory, "STATUS", tmp_path / "status")
    rss = memory.rss_bytes()
    assert rss is not None
    assert abs(rss - psutil.Process().memory_info().rss) < 8 * memory.MIB
    kernel = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert memory.peak_rss_bytes() == (kernel if sys.platform == "darwin" else kernel * 1024)
    monkeypatch.setitem(sys.modules, "psutil", None)  # not installed either: unknown
    assert memory.rss_bytes() is None and memory.rss_mib() == 0.0


def test_a_status_file_without_the_peak_line_falls_back_to_the_kernel(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  2048 kB\n")
    monkeypatch.setattr(memory, "STATUS", status)
    assert memory.peak_rss_bytes() == 2048 * 1024 and memory.peak_rss_mib() == 2.0
    status.write_text("Name:\tpython\n")
    kernel = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert memory.peak_rss_bytes() >= kernel * (1 if sys.platform == "darwin" else 1024)
