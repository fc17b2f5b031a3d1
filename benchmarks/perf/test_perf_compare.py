"""Wall time and peak memory of the default comparison end to end (opt-in: ``--perf-e2e``).

Runs ``python -m benchmarks.compare --no-cache --out <tmp> --quiet`` (the default dataset, models and
quick preset) once under :func:`benchmarks.perf.memory.measured_run`: peak memory is the largest
resident set of the run and its worker processes (not of this pytest process, which a child forked
from it would count); the run's own wall time and each model's fit time come from its ``results.json``.
"""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks.perf.memory import measured_run


def test_compare_end_to_end(benchmark, perf_e2e, tmp_path):
    if not perf_e2e:
        pytest.skip("opt-in: pass --perf-e2e (takes several minutes)")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "benchmarks.compare", "--no-cache", "--out", str(out), "--quiet"]
    run = benchmark.pedantic(measured_run, args=(command,), rounds=1, iterations=1)
    assert run.returncode == 0, f"compare failed ({run.returncode}):\n{run.stderr[-4000:]}"
    results = json.loads((out / "results.json").read_text())
    benchmark.extra_info.update(
        kind="end_to_end",
        command=" ".join(command[1:]),
        wall_s=run.wall_s,
        peak_rss_mib=run.peak_rss_mib,
        cpu_s=run.cpu_s,
        run_wall_s=results.get("wall_seconds"),
        fit_seconds={name: info.get("fit_seconds") for name, info in results.get("models", {}).items()},
    )
