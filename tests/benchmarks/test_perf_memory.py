"""The benchmarks' memory probes against allocations of a known size."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from benchmarks.perf.memory import measured_run, peak_rss_mib, reset_peak

ALLOCATE = "import numpy as np; np.ones({n}).sum()"  # n float64 values, touched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")
def test_peak_rss_sees_an_allocation_and_restarts_after_reset() -> None:
    reset_peak()
    before = peak_rss_mib()
    block = np.ones(40 * 2**20 // 8)  # 40 MiB, written
    assert peak_rss_mib() - before >= 35
    del block
    reset_peak()
    assert peak_rss_mib() < before + 35  # the 40 MiB are gone from the restarted peak


def test_measured_run_reports_the_command_not_the_caller() -> None:
    run = measured_run([sys.executable, "-c", ALLOCATE.format(n=200 * 2**20 // 8)])  # 200 MiB
    assert run.returncode == 0 and run.wall_s > 0 and run.cpu_s > 0
    assert 200 <= run.peak_rss_mib < 200 + 150  # the array plus an interpreter with numpy
    held = np.ones(300 * 2**20 // 8)  # the caller holds 300 MiB: a forked child would count them
    small = measured_run([sys.executable, "-c", "pass"])
    assert held.sum() > 0 and small.peak_rss_mib < 100
    assert measured_run([sys.executable, "-c", "raise SystemExit(3)"]).returncode == 3
