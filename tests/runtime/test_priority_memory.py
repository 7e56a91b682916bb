"""runtime.priority.reuse_freed_memory: freed frame-sized buffers are reused, not faulted in
again (glibc); counted in minor page faults, not timed."""

from __future__ import annotations

import platform
import resource
import sys

import numpy as np
import pytest

from segedge.runtime.priority import MMAP_THRESHOLD, reuse_freed_memory

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's mallopt only")


def test_a_buffer_above_glibcs_largest_default_threshold_is_reused_after_free() -> None:
    assert reuse_freed_memory() is True and reuse_freed_memory() is True  # once, idempotent
    size = 40 << 20  # above glibc's largest dynamic mmap threshold (32 MiB): mmap by default
    assert size < MMAP_THRESHOLD
    pages = size // resource.getpagesize()
    np.ones(size, np.uint8)  # the first one faults its pages in
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        buffer = np.ones(size, np.uint8)  # written: every page touched
        del buffer
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # untuned glibc maps and unmaps it each time: thousands of faults (5 x 20 even where
    # numpy gets 2 MiB pages); reused, none
    assert faults < min(50, pages // 10)
