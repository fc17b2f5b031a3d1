"""The regression gate: bands from the seed spread, failures named, direction-aware."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks import gate
from multilivi.eval.results import ScoreRow, scores_frame


def _scores(seed: int, *, accuracy_shift: float = 0.0, lambda_gc: float = 1.02) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for model, base in (("livi", 0.9), ("mslivi-50", 0.85)):
        rows += [
            ScoreRow(model, "c", "probe_cell_type", "accuracy", base + 0.01 * rng.standard_normal() + accuracy_shift, 0.01),
            ScoreRow(model, "c", "probe_donor", "accuracy", 0.1 + 0.005 * rng.standard_normal(), higher_is_better=False),
            ScoreRow(model, "-", "reconstruction", "nll_per_cell_rna", 500 + rng.standard_normal(), higher_is_better=False),
            ScoreRow(model, "D", "association", "lambda_gc", lambda_gc + 0.01 * rng.standard_normal(), higher_is_better=False),
            ScoreRow(model, "D", "association", "n_significant_pairs", float(10 + rng.integers(0, 2))),
            ScoreRow(model, "-", "training", "fit_seconds", 30 + 5 * rng.standard_normal(), higher_is_better=False),
        ]
    return scores_frame(rows)


@pytest.fixture
def baseline():
    runs = [_scores(seed) for seed in range(5)]
    return gate.make_baseline(runs, models=["livi", "mslivi-50"], meta={"preset": "ci"})


def test_baseline_bands_come_from_seed_spread(baseline):
    entries = {(e["model"], e["task"], e["metric"]): e for e in baseline["entries"]}
    accuracy = entries[("livi", "probe_cell_type", "accuracy")]
    assert accuracy["n_seeds"] == 5
    assert accuracy["sd"] == pytest.approx(np.std(accuracy["values"], ddof=1))
    assert accuracy["band"] == pytest.approx(max(3 * accuracy["sd"], 0.02 * accuracy["value"], 0.01))
    assert ("livi", "training", "fit_seconds") not in entries, "timings are never gated"


def test_gate_passes_on_a_run_of_the_baseline_seeds(baseline):
    for seed in range(5):
        assert gate.check_against(_scores(seed), baseline, models=["livi", "mslivi-50"]) == []


def test_gate_names_each_worsened_metric(tmp_path, baseline):
    gate.write_baseline(baseline, tmp_path / "ci.json")
    baseline = gate.read_baseline(tmp_path / "ci.json")
    violations = gate.check_against(_scores(0, accuracy_shift=-0.2, lambda_gc=1.5), baseline, models=["livi", "mslivi-50"])
    names = sorted(f"{v.model}/{v.task}/{v.metric}" for v in violations)
    assert names == [
        "livi/association/lambda_gc",
        "livi/probe_cell_type/accuracy",
        "mslivi-50/association/lambda_gc",
        "mslivi-50/probe_cell_type/accuracy",
    ]
    assert "outside baseline" in str(violations[0])


def test_improvements_and_missing_metrics(baseline):
    better = _scores(0, accuracy_shift=+0.5, lambda_gc=1.0)
    assert gate.check_against(better, baseline, models=["livi", "mslivi-50"]) == []
    missing = _scores(0)
    missing = missing[~((missing["model"] == "livi") & (missing["task"] == "reconstruction"))]
    violations = gate.check_against(missing, baseline, models=["livi", "mslivi-50"])
    assert len(violations) == 1
    assert str(violations[0]).startswith("livi/-/reconstruction/nll_per_cell_rna: missing from this run (baseline 50")


def test_baseline_for_other_models_is_refused(baseline, tmp_path):
    with pytest.raises(ValueError, match=r"baseline is for models \['livi', 'mslivi-50'\].*--update-baseline"):
        gate.check_models(baseline, ["livi", "dmlivi-50"])
    (tmp_path / "bad.json").write_text('{"something": 1}')
    with pytest.raises(ValueError, match="not a multilivi baseline"):
        gate.read_baseline(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not JSON"):
        gate.read_baseline(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="--update-baseline"):
        gate.read_baseline(tmp_path / "absent.json")
