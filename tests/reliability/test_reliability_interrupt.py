"""A comparison killed while its second model trains resumes from the cache and ends with the same scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from multilivi.eval.results import read_scores

pytestmark = pytest.mark.slow

COMMAND = [
    sys.executable,
    "-m",
    "benchmarks.compare",
    "--preset",
    "ci",
    "--dataset",
    "sim-ci",
    "--models",
    "livi",
    "mslivi-50",
    "--no-umap",
    "-q",
    "--probe-seeds",
    "2",
]
LIMIT_S = 600
# one thread per run: the uninterrupted reference run trains beside the interrupted one on 2 cores, and
# every run uses the same thread count (bitwise-equal training needs it)
ENV = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _start(cwd: Path, cache: Path, out: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [*COMMAND, "--cache", str(cache), "--out", str(out)], cwd=cwd, env=ENV, text=True, **kwargs
    )


def _run(cwd: Path, cache: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    """Start a run in the background, its log in ``out``.log (a file: a full pipe would block it)."""
    log = out.with_suffix(".log")
    with open(log, "w") as f:
        return _start(cwd, cache, out, stdout=f, stderr=subprocess.STDOUT), log


def _finish(run: tuple[subprocess.Popen, Path]) -> None:
    proc, log = run
    assert proc.wait(timeout=LIMIT_S) == 0, log.read_text()[-3000:]


def _kill_when_second_model_trains(cwd: Path, cache: Path, out: Path) -> list[str]:
    """Start the comparison, SIGKILL it as soon as it logs that mslivi-50 starts training; its log lines."""
    proc = _start(cwd, cache, out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watchdog = threading.Timer(LIMIT_S, proc.kill)
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "mslivi-50: training on" in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-20:])
    return lines


def _without_timings(scores: pd.DataFrame) -> pd.DataFrame:
    return scores[scores["task"] != "training"].reset_index(drop=True)


def test_killed_run_resumes_from_the_cache_with_the_same_scores(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "a"
    reference = _run(tmp_path, tmp_path / "fresh-cache", tmp_path / "b")  # uninterrupted, beside the other
    _kill_when_second_model_trains(tmp_path, cache, out)

    entries = [p for p in cache.iterdir()]
    assert [p.name.split("-")[0] for p in entries] == ["livi"], "only the finished model is in the cache"
    assert {"model.pt", "outputs.npz", "history.csv"} <= {p.name for p in entries[0].iterdir()}
    assert not [p for p in cache.rglob(".*")], "a half-written cache entry was left behind"
    assert not [p for p in out.rglob(".*")], "a half-written file was left in the run folder"
    for name in ("results.json", "scores.csv", "report.md", "report.html"):
        assert not (out / name).exists(), f"{name} of an unfinished run"
    partial = read_scores(out / "scores.partial.csv")
    assert set(partial["model"]) == {"livi"}, "the first model's scores survive the kill"

    _finish(_run(tmp_path, cache, out))  # the same command again, same cache
    models = json.loads((out / "results.json").read_text())["models"]
    assert (models["livi"]["cached"], models["mslivi-50"]["cached"]) == (True, False)
    assert not (out / "scores.partial.csv").exists()

    _finish(reference)
    pd.testing.assert_frame_equal(
        _without_timings(read_scores(out / "scores.csv")),
        _without_timings(read_scores(tmp_path / "b" / "scores.csv")),
    )
