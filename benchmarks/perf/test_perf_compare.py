"""Wall time and peak memory of the default comparison end to end (opt-in: ``--perf-e2e``).

Runs ``python -m benchmarks.compare --no-cache --out <tmp> --quiet`` (the default dataset, models and
quick preset) as a child process once. Peak memory is the child's maximum resident set size
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the largest of the children waited for, here only this one);
the run's own wall time and each model's fit time come from its ``results.json``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import pytest


def test_compare_end_to_end(benchmark, perf_e2e, tmp_path):
    if not perf_e2e:
        pytest.skip("opt-in: pass --perf-e2e (takes several minutes)")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "benchmarks.compare", "--no-cache", "--out", str(out), "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)

    def run():
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        return done, time.perf_counter() - start

    done, wall = benchmark.pedantic(run, rounds=1, iterations=1)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, f"compare failed ({done.returncode}):\n{done.stderr[-4000:]}"
    results = json.loads((out / "results.json").read_text())
    benchmark.extra_info.update(
        kind="end_to_end",
        command=" ".join(command[1:]),
        wall_s=wall,
        peak_rss_mib=after.ru_maxrss / 1024,  # Linux reports KiB
        cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        run_wall_s=results.get("wall_seconds"),
        fit_seconds={name: info.get("fit_seconds") for name, info in results.get("models", {}).items()},
    )
