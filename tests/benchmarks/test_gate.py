"""The regression gate: one-sided prediction bounds from seeds the check never uses, calibrated on
synthetic seed distributions where the right answer is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import gate
from multilivi.eval.metrics import lookup
from multilivi.eval.results import ScoreRow, scores_frame

MODELS = ["livi", "mslivi-50"]
SEEDS = range(100, 120)


def _scores(
    seed: int, *, accuracy_shift: float = 0.0, lambda_gc: float = 1.02, hits: int | None = None
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for model, base in (("livi", 0.9), ("mslivi-50", 0.85)):
        rows += [
            ScoreRow(
                model,
                "c",
                "probe_cell_type",
                "accuracy",
                base + 0.01 * rng.standard_normal() + accuracy_shift,
            ),
            ScoreRow(
                model,
                "c",
                "probe_donor",
                "accuracy",
                0.1 + 0.005 * rng.standard_normal(),
                higher_is_better=False,
            ),
            ScoreRow(
                model,
                "-",
                "reconstruction",
                "nll_per_cell_rna",
                500 + rng.standard_normal(),
                higher_is_better=False,
            ),
            ScoreRow(
                model,
                "D",
                "association",
                "lambda_gc",
                lambda_gc + 0.01 * rng.standard_normal(),
                higher_is_better=False,
            ),
            ScoreRow(
                model,
                "D",
                "association",
                "n_significant_pairs",
                float(rng.integers(0, 2) if hits is None else hits),
            ),
            ScoreRow(model, "D", "truth", "empirical_fdr", float(rng.integers(0, 2)), higher_is_better=False),
            ScoreRow(model, "D", "truth", "power", 0.0),
            ScoreRow(
                model, "-", "training", "fit_seconds", 30 + 5 * rng.standard_normal(), higher_is_better=False
            ),
        ]
    return scores_frame(rows)


@pytest.fixture
def baseline():
    return gate.make_baseline({seed: _scores(seed) for seed in SEEDS}, models=MODELS, meta={"preset": "ci"})


def _entries(baseline):
    return {(e["model"], e["task"], e["metric"]): e for e in baseline["entries"]}


# ------------------------------------------------------------------------------ the band's maths
def test_bound_is_calibrated_for_one_new_run_from_a_normal_spread():
    """P(a fresh seed falls beyond the bound) <= alpha, and not far below it (the gate is not slack)."""
    rng = np.random.default_rng(0)
    alpha, n_trials = 0.05, 4000
    metric = lookup("probe_cell_type", "accuracy")
    alarms = 0
    for _ in range(n_trials):
        values = 0.5 + 0.05 * rng.standard_normal(21)  # 20 baseline seeds and the check seed
        low, _ = gate.acceptable_range(values[:20], metric, alpha=alpha)
        alarms += values[20] < low
    rate, se = alarms / n_trials, np.sqrt(alpha * (1 - alpha) / n_trials)
    assert alpha / 2 < rate <= alpha + 3 * se, rate


def test_family_wise_false_alarms_are_controlled_and_a_real_shift_is_caught():
    """40 metrics, 20 baseline seeds: an unchanged model fails < 1 % of checks, a 6-sd drop nearly all."""
    rng = np.random.default_rng(1)
    n_metrics, n_trials, alpha = 40, 300, 0.01
    metric = lookup("reconstruction", "nll_per_cell_rna")  # lower is better
    false_alarms = caught = 0
    for _ in range(n_trials):
        values = 1000 + 50 * rng.standard_normal((n_metrics, 21))
        bounds = np.array([gate.acceptable_range(v[:20], metric, alpha=alpha / n_metrics)[1] for v in values])
        false_alarms += bool((values[:, 20] > bounds).any())
        caught += bool(values[0, 20] + 6 * 50 > bounds[0])
    assert false_alarms / n_trials <= 0.03, false_alarms  # expected <= 1 %; 3 % is 3.5 SE above it
    assert caught / n_trials > 0.9, caught


def test_bound_never_falls_inside_the_values_the_baseline_reached():
    values = np.array([0.83] * 19 + [0.60])  # one collapsed seed among 20
    low, high = gate.acceptable_range(values, lookup("probe_cell_type", "accuracy"), alpha=0.05)
    assert low < 0.60 - 0.0099 and high is None


def test_lambda_has_two_bounds_that_always_admit_the_target():
    rng = np.random.default_rng(2)
    metric = lookup("association", "lambda_gc")
    low, high = gate.acceptable_range(1.05 + 0.02 * rng.standard_normal(20), metric, alpha=0.01)
    assert 0.9 < low < 1.0 and 1.05 < high < 1.2
    # an inflated baseline
    low, high = gate.acceptable_range(1.3 + 0.01 * rng.standard_normal(20), metric, alpha=0.01)
    assert low == 1.0 and high > 1.3


# ------------------------------------------------------------------------------------ baseline
def test_baseline_records_seeds_machine_and_bounds(baseline):
    assert baseline["seeds"] == list(SEEDS) and baseline["family_alpha"] == gate.FAMILY_ALPHA
    assert {"cpu", "torch", "torch_threads", "numpy", "blas"} <= set(baseline["machine"])
    accuracy = _entries(baseline)[("livi", "probe_cell_type", "accuracy")]
    assert accuracy["gated"] and len(accuracy["values"]) == 20
    assert accuracy["mean"] == pytest.approx(np.mean(accuracy["values"]))
    assert accuracy["low"] < min(accuracy["values"]) and accuracy["high"] is None
    # Bonferroni over the 6 declared metrics with values x 2 models (those unable to fail included)
    assert baseline["alpha_per_metric"] == pytest.approx(gate.FAMILY_ALPHA / 12)


def test_degenerate_metrics_are_not_gated_and_say_why(baseline):
    entries = _entries(baseline)
    assert ("livi", "training", "fit_seconds") not in entries, "timings are never gated"
    assert ("livi", "truth", "empirical_fdr") not in entries, (
        "an FDR of 0 or 1 from 0 or 1 discoveries is never gated"
    )
    for metric in ("n_significant_pairs", "power"):  # 0-1 hits: a bound below 0 can never fail
        entry = entries[("livi", "association" if metric.startswith("n_") else "truth", metric)]
        assert not entry["gated"] and entry["reason"].startswith("cannot fail"), entry


def test_lambda_of_the_persistent_factors_is_recorded_but_not_gated():
    rng = np.random.default_rng(3)

    def lambdas() -> pd.DataFrame:
        return scores_frame(
            [
                ScoreRow("livi", view, "association", "lambda_gc", 1 + 0.05 * rng.standard_normal())
                for view in ("D", "V")
            ]
        )

    runs = {seed: lambdas() for seed in SEEDS}
    entries = {e["view"]: e for e in gate.make_baseline(runs, models=["livi"], meta={})["entries"]}
    assert (
        entries["D"]["gated"]
        and not entries["V"]["gated"]
        and "two or three traits" in entries["V"]["reason"]
    )


def test_counts_with_enough_discoveries_are_gated_as_counts():
    runs = {seed: _scores(seed, hits=40 + seed % 3) for seed in SEEDS}
    baseline = gate.make_baseline(runs, models=MODELS, meta={})
    entry = _entries(baseline)[("livi", "association", "n_significant_pairs")]
    assert entry["gated"] and 30 < entry["low"] <= 39  # at least a count of 1 below the worst seed
    assert gate.check_against(_scores(0, hits=41), baseline, models=MODELS) == []
    failed = gate.check_against(_scores(0, hits=20), baseline, models=MODELS)
    assert {f"{v.model}/{v.metric}" for v in failed} == {
        "livi/n_significant_pairs",
        "mslivi-50/n_significant_pairs",
    }


def test_a_baseline_needs_ten_seeds():
    with pytest.raises(ValueError, match="at 10 or more seeds"):
        gate.make_baseline({seed: _scores(seed) for seed in range(5)}, models=MODELS, meta={})


# --------------------------------------------------------------------------------------- check
def test_fresh_seeds_pass(baseline):
    for seed in range(5):
        assert gate.check_against(_scores(seed), baseline, models=MODELS) == []


def test_gate_names_each_worsened_metric(tmp_path, baseline):
    gate.write_baseline(baseline, tmp_path / "ci.json")
    baseline = gate.read_baseline(tmp_path / "ci.json")
    violations = gate.check_against(_scores(0, accuracy_shift=-0.2, lambda_gc=1.5), baseline, models=MODELS)
    names = sorted(f"{v.model}/{v.task}/{v.metric}" for v in violations)
    assert names == [
        "livi/association/lambda_gc",
        "livi/probe_cell_type/accuracy",
        "mslivi-50/association/lambda_gc",
        "mslivi-50/probe_cell_type/accuracy",
    ]
    message = {str(v).split(":")[0]: str(v) for v in violations}
    assert "is below the gate's bound" in message["livi/c/probe_cell_type/accuracy"]
    assert (
        "1.5" in message["livi/D/association/lambda_gc"]
        and "is above the gate's bound" in message["livi/D/association/lambda_gc"]
    )


def test_lambda_is_gated_toward_one_on_both_sides(baseline):
    for lam, expected in ((1.0, 0), (0.6, 2), (1.4, 2)):
        assert len(gate.check_against(_scores(0, lambda_gc=lam), baseline, models=MODELS)) == expected, lam


def test_improvements_pass_and_missing_metrics_fail(baseline):
    better = _scores(0, accuracy_shift=+0.09, lambda_gc=1.0)
    assert gate.check_against(better, baseline, models=MODELS) == []
    missing = _scores(0)
    missing = missing[~((missing["model"] == "livi") & (missing["task"] == "reconstruction"))]
    violations = gate.check_against(missing, baseline, models=MODELS)
    assert [str(v).split(":")[0] for v in violations] == ["livi/-/reconstruction/nll_per_cell_rna"]
    assert "missing from this run" in str(violations[0])


def test_a_subset_of_the_models_is_checked_alone(baseline):
    livi_only = _scores(0, accuracy_shift=-0.2)
    livi_only = livi_only[livi_only["model"] == "livi"]
    assert [v.model for v in gate.check_against(livi_only, baseline, models=["livi"])] == ["livi"]


def test_models_and_seeds_outside_the_baseline_are_refused(baseline):
    with pytest.raises(ValueError, match=r"covers models \['livi', 'mslivi-50'\], not \['dmlivi-50'\]"):
        gate.check_models(baseline, ["livi", "dmlivi-50"])
    with pytest.raises(
        ValueError, match=r"seed 105 is one of the baseline's seeds \(100\.\.119\).*another --seed"
    ):
        gate.check_models(baseline, ["livi"], seed=105)
    gate.check_models(baseline, ["livi"], seed=0)


def test_unreadable_baselines_name_the_fix(tmp_path, baseline):
    (tmp_path / "bad.json").write_text('{"something": 1}')
    with pytest.raises(ValueError, match="not a multilivi baseline"):
        gate.read_baseline(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not JSON"):
        gate.read_baseline(tmp_path / "broken.json")
    (tmp_path / "old.json").write_text(json.dumps(baseline | {"schema_version": 1}))
    with pytest.raises(
        ValueError, match="schema 1, this gate reads schema 2; regenerate it with --update-baseline"
    ):
        gate.read_baseline(tmp_path / "old.json")
    with pytest.raises(FileNotFoundError, match="--update-baseline"):
        gate.read_baseline(tmp_path / "absent.json")


def test_replicated_runs_are_checked_as_a_mean_with_the_bound_of_a_mean(baseline):
    entry = _entries(baseline)[("livi", "probe_cell_type", "accuracy")]
    three = gate.for_replicates(entry, baseline, 3)
    assert entry["low"] < three["low"] < entry["mean"], "the mean of 3 runs varies less than one run"
    replicated = pd.concat([_scores(seed).assign(replicate=r) for r, seed in enumerate((0, 1, 2))])
    assert gate.check_against(replicated, baseline, models=MODELS) == []
    livi_accuracy = replicated.query("model == 'livi' and task == 'probe_cell_type'")["value"]
    drop = (
        three["low"] + entry["low"]
    ) / 2 - livi_accuracy.mean()  # inside one run's band, beyond the mean's
    shifted = pd.concat(
        [_scores(s, accuracy_shift=drop).assign(replicate=r) for r, s in enumerate((0, 1, 2))]
    )
    names = {f"{v.model}/{v.metric}" for v in gate.check_against(shifted, baseline, models=MODELS)}
    assert "livi/accuracy" in names
    single = _scores(0, accuracy_shift=(three["low"] + entry["low"]) / 2 - livi_accuracy.iloc[0])
    assert "livi/accuracy" not in {
        f"{v.model}/{v.metric}" for v in gate.check_against(single, baseline, models=MODELS)
    }
