"""A comparison's (model, replicate) units give the same scores in one process or in a pool."""

from __future__ import annotations

import pandas as pd

from benchmarks.compare import main
from multilivi.eval.results import read_scores

TIMINGS = ("fit_seconds", "seconds_per_epoch")


def _scores(out) -> pd.DataFrame:
    scores = read_scores(out / "scores.csv")
    return scores.loc[~scores["metric"].isin(TIMINGS)].reset_index(drop=True)


def test_pooled_units_score_as_in_one_process(tmp_path):
    argv = ["--preset", "ci", "--models", "livi:epochs=6,warmup_epochs=3", "--replicates", "2"]
    argv += ["--no-umap", "--no-cache", "-q"]
    assert main([*argv, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*argv, "--jobs", "2", "--out", str(tmp_path / "pool")]) == 0
    one, pool = _scores(tmp_path / "one"), _scores(tmp_path / "pool")
    assert set(one["replicate"]) == {0, 1} and len(one) > 100
    pd.testing.assert_frame_equal(one, pool, check_exact=True)
    assert any(p.name.startswith("livi") for p in (tmp_path / "pool" / "outputs").iterdir())
