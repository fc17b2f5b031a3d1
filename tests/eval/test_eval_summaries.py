"""Reconstruction summaries, donor phenotypes, ground-truth scores and UMAP figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multilivi.eval.association import lmm_scan, permuted_null_scan, permuted_null_summary
from multilivi.eval.embedding_plots import plot_umap_grid, umap_coordinates
from multilivi.eval.metrics import lookup
from multilivi.eval.phenotypes import donor_means
from multilivi.eval.reconstruction import reconstruction_summary
from multilivi.eval.records import MetricResult, skipped
from multilivi.eval.truth import (
    association_truth,
    cell_state_recovery,
    factor_recovery,
    factor_recovery_chance,
    matched_recovery,
    matched_recovery_chance,
    power_any_view,
)


def test_metric_result_is_frozen_and_typed():
    result = MetricResult("x", np.float32(0.5))
    assert type(result.value) is float
    with pytest.raises(AttributeError):
        result.value = 1.0
    assert skipped("x", "no labels").status == "skipped"
    with pytest.raises(ValueError, match="reason"):
        MetricResult("x", 1.0, status="skipped")


def test_reconstruction_summary_means_and_breakdown():
    nll = {"rna": np.array([10.0, 20.0, 30.0, 40.0]), "prot": np.array([1.0, 3.0, 5.0, 7.0])}
    cell_type = np.array(["B", "B", "T", "T"])
    results = {r.name: r for r in reconstruction_summary(nll, {"rna": 100, "prot": 10}, cell_type)}
    assert results["nll_per_cell_rna"].value == 25.0
    assert results["nll_per_feature_rna"].value == 0.25
    assert results["nll_per_cell_prot"].details["per_cell_type"] == {"B": 2.0, "T": 6.0}
    assert results["nll_per_feature_prot"].details["per_cell_type"] == {"B": 0.2, "T": 0.6}
    assert all(lookup("reconstruction", name).direction == "min" for name in results)
    bad = reconstruction_summary({"rna": np.array([np.nan, 1.0])}, {"rna": 5})
    assert all(r.status == "skipped" for r in bad)


def test_donor_means_with_and_without_cell_types():
    view = np.arange(12, dtype=float).reshape(6, 2)
    donors = np.array(["b", "a", "a", "b", "c", "b"])
    plain = donor_means(view, donors, min_cells=1)
    np.testing.assert_allclose(plain.loc["a"], view[[1, 2]].mean(0))
    assert list(plain.index) == ["a", "b", "c"]
    assert list(donor_means(view, donors, min_cells=2).index) == ["a", "b"]
    cell_type = np.array(["x", "x", "y", "y", "x", "y"])
    wide = donor_means(view, donors, cell_type=cell_type, min_cells=1)
    assert list(wide.columns) == ["x:dim0", "x:dim1", "y:dim0", "y:dim1"]
    np.testing.assert_allclose(wide.loc["b", ["y:dim0", "y:dim1"]], view[[3, 5]].mean(0))
    # donor c has no 'y' cells: filled with the mean over the donors that have them
    np.testing.assert_allclose(wide.loc["c", "y:dim0"], np.mean([view[2, 0], view[[3, 5], 0].mean()]))


def test_factor_and_cell_state_recovery():
    rng = np.random.default_rng(0)
    donors = [f"d{i}" for i in range(50)]
    truth = pd.DataFrame(rng.normal(size=(50, 2)), index=donors, columns=["p0", "p1"])
    learned = pd.DataFrame(
        {
            "f0": rng.normal(size=50),
            "f1": -2 * truth["p1"].to_numpy(),
            "f2": truth["p0"].to_numpy() + 0.1 * rng.normal(size=50),
        },
        index=donors,
    )
    result = factor_recovery(truth, learned.iloc[::-1])  # rows matched by name, not position
    assert result[0].details["per_program"]["p1"] == pytest.approx(1.0)
    assert result[0].details["best_factor"] == {"p0": "f2", "p1": "f1"}
    assert 0.98 < result[0].value <= 1.0
    with pytest.raises(ValueError, match="d0"):
        factor_recovery(truth, learned.drop(index="d0"))
    state = rng.normal(size=(400, 3))
    rotated = state @ rng.normal(size=(3, 5))
    assert cell_state_recovery(state, rotated)[0].value == pytest.approx(1.0)
    assert cell_state_recovery(state, rng.normal(size=(400, 5)))[0].value < 0.1


def test_factor_recovery_on_a_null_truth_is_skipped_with_a_reason():
    learned = pd.DataFrame(np.ones((5, 2)), index=[f"d{i}" for i in range(5)])
    (result,) = factor_recovery(pd.DataFrame(index=learned.index), learned)
    assert result.status == "skipped" and "no donor programs" in result.reason


def planted_scan(n=150, n_variants=400, seed=2):
    """OLS scan of 3 factors; v0, v1 act on D0, v2 on D1 (D programs p0, p1), v3 on D2 (persistent q0)."""
    rng = np.random.default_rng(seed)
    dosage = rng.binomial(2, rng.uniform(0.1, 0.5, n_variants), size=(n, n_variants)).astype(float)
    donors = [f"d{i}" for i in range(n)]
    variants = [f"v{i}" for i in range(n_variants)]
    y = rng.normal(size=(n, 3))
    for j, f in zip(range(4), (0, 0, 1, 2)):
        y[:, f] += 0.7 * (dosage[:, j] - dosage[:, j].mean()) / dosage[:, j].std()
    phenotypes = pd.DataFrame(y, index=donors, columns=["D0", "D1", "D2"])
    causal = pd.DataFrame({"variant": ["v0", "v1", "v2", "v3"], "factor": ["p0", "p0", "p1", "q0"]})
    return (
        lmm_scan(phenotypes, dosage, donors=donors, variant_ids=variants, engine="ols"),
        causal,
        variants[4:],
    )


def test_association_truth_power_per_target_and_program_fdr_with_intervals():
    result, causal, null = planted_scan()
    scores = {m.name: m for m in association_truth(result, causal, null)}
    assert scores["power"].value == 1.0 and scores["power"].details["n_causal"] == 4
    assert scores["power"].details["found_by"] == {"p0": ["D0"], "p1": ["D1"], "q0": ["D2"]}
    hits = result.hits()
    null_pairs = hits["variant"].isin(null).sum()
    assert scores["empirical_fdr_pairs"].value == pytest.approx(null_pairs / len(hits))
    variants = set(hits["variant"])
    assert scores["empirical_fdr"].value == pytest.approx(
        len(variants - set(causal["variant"])) / len(variants)
    )
    for name in ("power", "empirical_fdr", "empirical_fdr_pairs"):
        details = scores[name].details
        assert 0.0 <= details["ci_low"] <= scores[name].value <= details["ci_high"] <= 1.0
    assert 0.8 < scores["lambda_gc_null"].value < 1.2
    # D's targets are the D x C programs: the persistent factor's variant v3 is neither power nor a false hit
    d_scores = {m.name: m for m in association_truth(result, causal, null, targets=["p0", "p1"])}
    assert d_scores["power"].details["n_causal"] == 3
    assert d_scores["power"].details["per_program"] == {"p0": 1.0, "p1": 1.0}
    assert d_scores["empirical_fdr"].value == scores["empirical_fdr"].value
    assert lookup("truth", "power/p0").name == "power"


def test_association_truth_without_discoveries_is_not_a_perfect_fdr():
    result, causal, null = planted_scan(n=20, n_variants=30, seed=0)
    result.pvalues[:] = 0.5  # nothing significant
    scores = {m.name: m for m in association_truth(result, causal, null, targets=["q0"])}
    for name in ("empirical_fdr", "empirical_fdr_pairs"):
        assert scores[name].status == "skipped" and scores[name].reason == "no discoveries"
    assert scores["power"].value == 0.0 and scores["power"].details["per_program"] == {"q0": 0.0}
    (skipped_power, *_) = association_truth(result, causal, null, targets=["absent"])
    assert skipped_power.status == "skipped"


def test_power_any_view_is_the_union_of_the_views():
    result, causal, null = planted_scan()
    both = power_any_view({"D": result, "V": result}, causal["variant"])
    assert both.value == 1.0 and both.details["ci_high"] == 1.0
    assert lookup("truth", "power_any_view").level == "model"


def test_matched_recovery_is_one_to_one_and_beside_its_chance_level():
    rng = np.random.default_rng(0)
    donors = [f"d{i}" for i in range(40)]
    truth = pd.DataFrame(rng.normal(size=(40, 3)), index=donors, columns=["p0", "p1", "p2"])
    exact = {m.name: m for m in matched_recovery(truth, truth.set_axis(["a", "b", "c"], axis=1).iloc[::-1])}
    assert exact["matched_recovery"].value == pytest.approx(1.0)
    assert exact["matched_recovery_corrected"].value == pytest.approx(1.0)
    assert exact["matched_recovery"].details["matched_factor"] == {"p0": "a", "p1": "b", "p2": "c"}
    # one learned factor copying p0 twice: best |r| counts it twice, the one-to-one matching once
    twice = pd.DataFrame({"f0": truth["p0"], "f1": truth["p0"], "f2": rng.normal(size=40)}, index=donors)
    assert factor_recovery(truth, twice)[0].details["per_program"]["p0"] == pytest.approx(1.0)
    matched = {m.name: m for m in matched_recovery(truth, twice)}
    assert sorted(matched["matched_recovery"].details["per_program"].values())[-1] == pytest.approx(1.0)
    assert matched["matched_recovery"].value < 0.8
    random = {
        m.name: m for m in matched_recovery(truth, pd.DataFrame(rng.normal(size=(40, 8)), index=donors))
    }
    chance = random["matched_recovery"].details
    assert chance["chance_low"] <= random["matched_recovery"].value <= chance["chance_high"]
    assert chance["chance"] == random["matched_recovery_chance"].value == matched_recovery_chance(40, 8, 3)[0]
    assert abs(random["matched_recovery_corrected"].value) < 0.5
    assert matched_recovery_chance(40, 8, 3) is matched_recovery_chance(40, 8, 3)  # cached
    assert matched_recovery_chance(40, 24, 3)[0] > matched_recovery_chance(40, 2, 3)[0]
    few = {m.name: m for m in matched_recovery(truth, truth[["p1"]])}  # unmatched programs score 0
    assert few["matched_recovery"].value == pytest.approx(1.0 / 3)


def test_umap_grid_has_one_panel_per_view():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(90, 2))
    labels = np.repeat(["B", "T", "NK"], 30)
    fig = plot_umap_grid(
        {"livi / c": coords, "pca": coords[:, ::-1], "dmlivi / shared": -coords}, labels, n_cols=2
    )
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["livi / c", "pca", "dmlivi / shared"]
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == ["B", "NK", "T"]
    with pytest.raises(ValueError, match="labels"):
        plot_umap_grid({"a": coords}, labels[:10])


@pytest.mark.slow  # numba compiles umap-learn on first use (~20 s)
def test_umap_coordinates_are_reproducible_subsamples():
    rng = np.random.default_rng(0)
    view = rng.normal(size=(120, 4)) + 4 * np.repeat(np.eye(3, 4), 40, axis=0)
    coords, idx = umap_coordinates(view, max_cells=90, seed=0)
    again, idx_again = umap_coordinates(view, max_cells=90, seed=0)
    assert coords.shape == (90, 2) and np.array_equal(idx, idx_again)
    np.testing.assert_allclose(coords, again)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_simulator_true_donor_factors_are_found():
    from multilivi.data.simulate import simulate

    cohort = simulate(seed=0, mean_cells_per_donor=20.0, n_genes=200)
    truth, genotypes = cohort.truth, cohort.genotypes
    donors = [str(d) for d in genotypes.donors]
    phenotypes = pd.concat([truth.donor_factors, truth.persistent_factors], axis=1)
    result = lmm_scan(
        phenotypes,
        genotypes.dosage,
        donors=donors,
        variant_ids=list(genotypes.variants["id"]),
        kinship=cohort.kinship.loc[donors, donors].to_numpy(),
    )
    scores = {m.name: m.value for m in association_truth(result, truth.causal, truth.null_variants)}
    assert scores["power"] >= 0.9
    # the acceptance of issue 14 on the default cohort: recovery beside chance, and the in-run null
    true_recovery = matched_recovery(phenotypes, phenotypes)
    assert true_recovery[0].value == pytest.approx(1.0)
    random = pd.DataFrame(np.random.default_rng(1).normal(size=phenotypes.shape), index=phenotypes.index)
    (recovery, *_) = matched_recovery(phenotypes, random)
    assert recovery.details["chance_low"] <= recovery.value <= recovery.details["chance_high"]
    null = permuted_null_scan(
        phenotypes,
        genotypes.dosage,
        donors=donors,
        variant_ids=list(genotypes.variants["id"]),
        kinship=cohort.kinship.loc[donors, donors].to_numpy(),
        seed=0,
    )
    hits, null_lambda = permuted_null_summary(null)
    assert hits.value <= 1  # a complete null: BH at 5 % makes any discovery a 5 % event
    assert 0.85 <= null_lambda.value <= 1.15
    assert 0.85 <= scores["lambda_gc_null"] <= 1.15


def test_factor_recovery_chance_matches_the_null_distribution_of_r():
    """One program, one random factor: |r| on n donors has t = r √(n-2) / √(1 - r²) ~ t_{n-2}."""
    n = 30
    truth = pd.DataFrame(np.random.default_rng(5).normal(size=(n, 1)), index=[f"d{i}" for i in range(n)])
    t = stats.t.ppf(0.995, n - 2)
    expected = t / np.sqrt(n - 2 + t**2)  # the 99th percentile of |r|
    assert factor_recovery_chance(truth, 1, n_draws=4000) == pytest.approx(expected, abs=0.02)
    assert factor_recovery_chance(truth, 8) > factor_recovery_chance(truth, 1)  # the best of more factors
