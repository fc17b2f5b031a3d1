"""Replicated runs: t intervals, paired differences and their verdicts, against scipy and planted cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multilivi.eval.metrics import lookup
from multilivi.eval.replicates import (
    BETTER,
    SAME,
    WORSE,
    paired_difference,
    summarise,
    t_interval,
)
from multilivi.eval.report import build_blocks, render_markdown
from multilivi.eval.report.verdict import learning_rates
from multilivi.eval.results import ScoreRow, scores_frame


def test_t_interval_matches_scipy():
    values = np.array([0.61, 0.70, 0.55, 0.66])
    mean, low, high = t_interval(values)
    expected = stats.t.interval(0.95, 3, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean()) and (low, high) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(t_interval(np.array([0.5]))[1])


@pytest.mark.parametrize(
    ("metric", "model", "baseline", "expected"),
    [
        (("probe_cell_subtype", "accuracy"), [0.80, 0.82, 0.81], [0.70, 0.71, 0.69], BETTER),
        (("probe_cell_subtype", "accuracy"), [0.60, 0.62, 0.61], [0.70, 0.71, 0.69], WORSE),
        (("probe_cell_subtype", "accuracy"), [0.71, 0.68, 0.72], [0.70, 0.71, 0.69], SAME),
        (("probe_donor", "accuracy"), [0.05, 0.06, 0.05], [0.20, 0.21, 0.19], BETTER),  # lower is better
        (("association", "lambda_gc"), [1.01, 0.99, 1.00], [1.20, 1.22, 1.18], BETTER),  # closer to 1
        (("association", "lambda_gc"), [0.80, 0.78, 0.81], [1.02, 0.99, 1.01], WORSE),
    ],
)
def test_paired_verdicts(metric, model, baseline, expected):
    declared = lookup(*metric)
    result = paired_difference(dict(enumerate(model)), dict(enumerate(baseline)), declared, True)
    assert result["verdict"] == expected
    assert result["n_pairs"] == 3
    assert result["diff"] == pytest.approx(np.mean(model) - np.mean(baseline))


def test_pairing_removes_the_shared_seed_effect():
    """Seed effects shared by both models cancel: unpaired intervals overlap, the paired one excludes 0."""
    shared = np.array([0.0, 0.08, -0.06])  # replicate-to-replicate swing common to both models
    model, baseline = 0.72 + shared + [0.01, 0.0, 0.01], 0.70 + shared
    result = paired_difference(
        dict(enumerate(model)), dict(enumerate(baseline)), lookup("truth", "power"), True
    )
    _, low_m, _ = t_interval(model)
    _, _, high_b = t_interval(baseline)
    assert low_m < high_b and result["verdict"] == BETTER


def _replicated(values: dict[str, list[float]], leak: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for model in values:
        for r, (acc, donor) in enumerate(zip(values[model], leak[model])):
            rows += [
                ScoreRow(model, "c", "probe_cell_subtype", "accuracy", acc, 0.01, replicate=r),
                ScoreRow(model, "c", "probe_donor", "accuracy", donor, 0.01, False, chance=0.02, replicate=r),
            ]
    return scores_frame(rows)


def test_summarise_gives_means_and_intervals():
    scores = _replicated({"livi": [0.7, 0.72, 0.68]}, {"livi": [0.2, 0.22, 0.18]})
    summary = summarise(scores).set_index(["model", "view", "task", "metric"])
    row = summary.loc[("livi", "c", "probe_cell_subtype", "accuracy")]
    assert row["value"] == pytest.approx(0.7) and row["n_replicates"] == 3
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(t_interval(np.array([0.7, 0.72, 0.68]))[1:])


def test_verdict_block_says_better_worse_and_no_difference():
    scores = _replicated(
        {"livi": [0.70, 0.71, 0.69], "good": [0.80, 0.82, 0.81], "bad": [0.60, 0.62, 0.61]},
        {"livi": [0.20, 0.21, 0.19], "good": [0.21, 0.19, 0.20], "bad": [0.30, 0.31, 0.29]},
    )
    meta = {
        "models": {m: {"family": f} for m, f in (("livi", "livi"), ("good", "mslivi"), ("bad", "dmlivi"))}
    }
    text = render_markdown(build_blocks(scores, meta | {"preset": "quick", "replicate_seeds": [0, 1, 2]})[0])
    verdict = text.split("## Verdict", 1)[1].split("\n## ", 1)[0]
    good, bad = verdict.split("### good vs livi", 1)[1].split("### bad vs livi", 1)
    assert "subtype accuracy (`c`)" in good and "**better**" in good.splitlines()[2]
    assert "no detectable difference" in good.split("Donor leakage", 1)[1].splitlines()[0]
    assert "**worse**" in bad.split("Cell state", 1)[1].splitlines()[0]
    assert "**worse**" in bad.split("Donor leakage", 1)[1].splitlines()[0]  # more leakage is worse
    assert "3 paired replicates" in verdict and "Preset `quick`" in verdict
    assert "≈" in text and "Chance level: donor acc. 0.02" in text


def test_single_replicate_verdict_says_not_tested():
    scores = _replicated({"livi": [0.7], "other": [0.8]}, {"livi": [0.2], "other": [0.1]})
    text = render_markdown(build_blocks(scores, {})[0])
    assert "not tested (one replicate)" in text and "pass `--replicates 3`" in text


def test_paired_interval_stays_inside_the_attainable_differences():
    """Power against a baseline at 1 cannot differ by less than -1: the t interval is clipped there."""
    model, baseline = [0.0, 0.1, 0.0], [1.0, 1.0, 1.0]
    result = paired_difference(
        dict(enumerate(model)), dict(enumerate(baseline)), lookup("truth", "power"), True
    )
    _, low, high = t_interval(np.array(model) - np.array(baseline))
    assert low < -1.0 and result["diff_low"] == -1.0
    assert result["diff_high"] == pytest.approx(high) and result["verdict"] == "worse"


def test_caveats_name_each_learning_rate_and_how_it_was_chosen():
    models = {"livi": {"config": {"lr": 0.01}}, "mslivi-50": {"config": {"lr": 0.003}}, "pca": {"n": 8}}
    tuned = learning_rates({"models": models, "lr_tuning": "reports/tuning-quick"})
    assert tuned.startswith("Learning rates: livi 0.01, mslivi-50 0.003; chosen per family by held-out ELBO")
    assert "`reports/tuning-quick`" in tuned
    assert "not tuned for this preset" in learning_rates({"models": models, "lr_tuning": None})
