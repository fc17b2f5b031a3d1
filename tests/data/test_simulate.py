"""Tests of the ground-truth cohort simulator (tiny CI config)."""

from __future__ import annotations

import warnings

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split

from benchmarks.compare import main
from multilivi.data import Cohort, kinship_from_genotypes
from multilivi.data.simulate import MAX_BLOCK_ENTRIES, SimulationConfig, simulate, simulate_genotypes
from multilivi.eval.results import read_scores

CI = SimulationConfig.ci()


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return simulate(CI, seed=0)


def _log_normalised(counts: sp.csr_matrix) -> np.ndarray:
    library = np.asarray(counts.sum(axis=1)).ravel()
    return np.log1p(counts.multiply(1e4 / library[:, None]).toarray())


def _probe(x: np.ndarray, labels: np.ndarray, n_components: int = 10) -> float:
    """Held-out balanced accuracy of a logistic probe on the PCs of standardised features."""
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    z = PCA(n_components=min(n_components, x.shape[1] - 1), random_state=0).fit_transform(x)
    z_train, z_test, y_train, y_test = train_test_split(
        z, labels, test_size=0.3, random_state=0, stratify=labels
    )
    model = LogisticRegression(max_iter=2000).fit(z_train, y_train)
    return balanced_accuracy_score(y_test, model.predict(z_test))


def _imputed_dosage(cohort: Cohort) -> pd.DataFrame:
    g = cohort.genotypes
    dosage = pd.DataFrame(g.dosage, index=g.donors, columns=g.variant_ids)
    return dosage.fillna(dosage.mean())


# ------------------------------------------------------------------------------ shapes and labels
def test_ci_cohort_has_configured_shapes_and_labels(cohort):
    assert cohort.name == "sim"
    assert cohort.modalities == ("rna", "prot")
    assert cohort.n_donors == CI.n_donors
    assert 1000 <= cohort.n_cells <= 2500
    assert cohort.n_features("rna") == CI.n_genes and cohort.n_features("prot") == CI.n_proteins
    assert list(cohort.feature_names("rna")[:2]) == ["g0000", "g0001"]
    assert list(cohort.feature_names("prot")[:2]) == ["p00", "p01"]
    assert cohort.donor_names[0] == "d000" and cohort.cell_names.is_unique
    assert cohort.obs["cell_type"].nunique() == CI.n_cell_types
    assert cohort.obs["cell_subtype"].nunique() == CI.n_cell_types * CI.n_subtypes
    assert cohort.obs["batch"].nunique() == CI.n_batches
    assert (cohort.obs.groupby("donor", observed=True)["batch"].nunique() == 1).all(), (
        "donors nest in batches"
    )
    assert cohort.obs.groupby("donor", observed=True).size().min() >= CI.min_cells_per_donor
    for modality in cohort.modalities:
        x = cohort.mdata[modality].X
        assert sp.issparse(x) and x.dtype == np.float32
        assert np.all(x.data == np.round(x.data)) and x.data.min() > 0
    assert cohort.genotypes.n_variants == CI.n_variants
    assert np.isnan(cohort.genotypes.dosage).any(), "a few missing calls"


def test_truth_is_complete_and_consistent(cohort):
    truth = cohort.truth
    assert truth.cell_state.shape == (cohort.n_cells, CI.n_states)
    assert truth.cell_state.min() >= 0 and np.allclose(truth.cell_state.sum(axis=1), 1.0)
    assert list(truth.donor_factors.columns) == [f"dxc_{k}" for k in range(CI.n_dxc)]
    assert list(truth.persistent_factors.columns) == [f"v_{j}" for j in range(CI.n_persistent)]
    assert truth.donor_factors.index.equals(cohort.donor_names)
    assert truth.program_states.shape == (CI.n_dxc,)
    assert len(truth.causal) == CI.n_causal and truth.causal["variant"].is_unique
    assert set(truth.causal["factor"]) == {*truth.donor_factors.columns, "v_0"}
    variants = cohort.genotypes.variant_ids
    assert truth.null_variants.union(truth.causal_variants).sort_values().equals(variants.sort_values())
    assert truth.null_variants.intersection(truth.causal_variants).empty
    maf = cohort.genotypes.subset_donors(cohort.donor_names).allele_frequencies()
    maf = pd.Series(np.minimum(maf, 1 - maf), index=variants)
    assert maf[truth.causal_variants].min() >= CI.causal_maf_min - 0.02  # missing calls move MAF slightly
    w_dxc = cohort.mdata["rna"].varm["true_W_DxC"]
    assert (
        w_dxc.shape == (CI.n_genes, CI.n_dxc) and ((w_dxc != 0).sum(axis=0) == CI.dxc_genes_per_program).all()
    )


# -------------------------------------------------------------------------- determinism, overrides
def test_same_seed_same_cohort_and_different_seed_differs(cohort):
    again = simulate(SimulationConfig.ci(), seed=0)
    assert again.data_hash == cohort.data_hash
    assert (again.counts("prot") != cohort.counts("prot")).nnz == 0
    np.testing.assert_array_equal(again.genotypes.dosage, cohort.genotypes.dosage)
    np.testing.assert_array_equal(again.truth.cell_state, cohort.truth.cell_state)
    pd.testing.assert_frame_equal(again.truth.donor_factors, cohort.truth.donor_factors)
    pd.testing.assert_frame_equal(again.truth.causal, cohort.truth.causal)
    other = simulate(CI, seed=1)
    assert other.data_hash != cohort.data_hash
    assert not np.allclose(other.truth.donor_factors.to_numpy(), cohort.truth.donor_factors.to_numpy())


def test_counts_drawn_in_blocks_keep_everything_but_the_draws(cohort, caplog):
    # 150 genes x 40 cells per block: the CI cohort (~1,500 cells) in ~38 blocks
    with caplog.at_level("INFO", logger="multilivi.data.simulate"):
        blocked = simulate(SimulationConfig.ci(), seed=0, max_block_entries=150 * 40)
    assert "blocks of cells" in caplog.text and f"({-(-cohort.n_cells // 40)} blocks" in caplog.text
    assert blocked.data_hash != cohort.data_hash  # other draws ...
    np.testing.assert_array_equal(blocked.truth.cell_state, cohort.truth.cell_state)  # ... of the same cells
    pd.testing.assert_frame_equal(blocked.obs, cohort.obs)
    pd.testing.assert_frame_equal(blocked.truth.donor_factors, cohort.truth.donor_factors)
    np.testing.assert_array_equal(blocked.genotypes.dosage, cohort.genotypes.dosage)
    again = simulate(SimulationConfig.ci(), seed=0, max_block_entries=150 * 40)
    assert again.data_hash == blocked.data_hash  # deterministic for a seed and a block size
    for modality in ("rna", "prot"):  # the same distribution: per-feature totals agree within NB noise
        one, many = (np.asarray(c.counts(modality).sum(axis=0)).ravel() for c in (cohort, blocked))
        assert blocked.counts(modality).dtype == np.float32 and sp.isspmatrix_csr(blocked.counts(modality))
        assert np.corrcoef(np.log1p(one), np.log1p(many))[0, 1] > 0.98
        assert abs(many.sum() / one.sum() - 1) < 0.02


def test_joined_blocks_equal_scipy_vstack():
    from multilivi.data.simulate import _RowBlocks

    sizes = [5, 0, 17, 3]  # an empty block too
    blocks = [
        sp.random(n, 30, density=0.2, format="csr", random_state=i, dtype=np.float32)
        for i, n in enumerate(sizes)
    ]
    expected = sp.vstack(blocks, format="csr")
    rows = _RowBlocks(n_blocks=2)  # a low size hint: the buffers must grow
    for block in blocks:
        rows.append(block)
    joined = rows.matrix()
    for part in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(joined, part), getattr(expected, part))
    assert joined.shape == expected.shape and joined.dtype == np.float32


def test_default_and_ci_cohorts_are_drawn_in_one_block():
    # one block = the draws of all cells at once, so the committed runs' cohorts do not depend on blocking
    for cfg in (SimulationConfig(), SimulationConfig.ci()):
        assert 1.5 * cfg.n_donors * cfg.mean_cells_per_donor * cfg.n_genes < MAX_BLOCK_ENTRIES


def test_overrides_replace_fields_and_unknown_keys_suggest_a_name():
    small = simulate(CI, seed=0, n_genes=60, n_proteins=12, n_dxc=2)
    assert small.n_features("rna") == 60 and small.n_features("prot") == 12
    assert small.truth.donor_factors.shape[1] == 2
    with pytest.raises(ValueError, match="did you mean 'n_genes'"):
        simulate(CI, n_gene=60)
    with pytest.raises(ValueError, match="raise n_states"):
        simulate(CI, n_states=6)


def test_default_config_is_the_documented_size():
    cfg = SimulationConfig()
    assert cfg.n_donors == 100 and cfg.n_variants == 1000 and 500 <= cfg.n_genes <= 1000
    assert 30 <= cfg.n_proteins <= 40 and 8 <= cfg.n_dxc <= 12
    assert 8000 <= cfg.n_donors * cfg.mean_cells_per_donor <= 10_000


def test_configurations_that_could_give_silent_features_are_refused():
    with pytest.raises(ValueError, match="could be all zero"):
        simulate(CI, n_donors=2, n_related_pairs=0, gene_baseline_sd=6.0, gene_baseline_floor=-30.0)


# --------------------------------------------------------------------------------- planted signal
def test_true_donor_factors_follow_their_causal_variants(cohort):
    dosage = _imputed_dosage(cohort)
    factors = pd.concat([cohort.truth.donor_factors, cohort.truth.persistent_factors], axis=1)
    signed_r = [
        np.sign(row.effect) * stats.pearsonr(dosage[row.variant], factors.loc[dosage.index, row.factor])[0]
        for row in cohort.truth.causal.itertuples()
    ]
    assert min(signed_r) > 0 and np.mean(signed_r) > 0.45, signed_r


def test_programs_are_visible_in_expression_of_their_cell_state(cohort):
    """Donor means of each program's top genes, within cells of its state, track the donor factor and,
    pooled over programs, the causal dosage (30 donors: a single program's dosage correlation is noisy)."""
    truth = cohort.truth
    log_expr = _log_normalised(cohort.counts("rna"))
    loadings = cohort.mdata["rna"].varm["true_W_DxC"]
    dosage = _imputed_dosage(cohort)
    donors = cohort.obs["donor"].to_numpy()
    with_factor, with_dosage = [], []
    for k, state in enumerate(truth.program_states):
        top = np.argsort(-np.abs(loadings[:, k]))[:10]
        in_state = truth.cell_state[:, state] > 0.5
        score = log_expr[np.ix_(in_state, top)] @ np.sign(loadings[top, k])
        donor_mean = pd.Series(score).groupby(donors[in_state]).mean()
        with_factor.append(
            stats.pearsonr(donor_mean, truth.donor_factors.loc[donor_mean.index].iloc[:, k])[0]
        )
        causal = truth.causal[truth.causal["factor"] == truth.donor_factors.columns[k]].iloc[0]
        signed = dosage.loc[donor_mean.index, causal["variant"]] * np.sign(causal["effect"])
        with_dosage.append(stats.pearsonr(donor_mean, signed)[0])
    assert min(with_factor) > 0.6, with_factor
    assert np.mean(with_dosage) > 0.4, with_dosage


def test_cell_types_are_separable_from_rna(cohort):
    accuracy = _probe(_log_normalised(cohort.counts("rna")), cohort.labels("cell_type"))
    assert accuracy > 0.9


def test_protein_only_subtypes_are_separated_by_protein_not_rna(cohort):
    subtypes = cohort.labels("cell_subtype")
    rna, prot = _log_normalised(cohort.counts("rna")), _log_normalised(cohort.counts("prot"))
    for t in range(CI.n_protein_only_subtypes):
        cells = np.isin(subtypes, [f"ct{t}_s0", f"ct{t}_s{CI.n_subtypes - 1}"])
        by_rna = _probe(rna[cells], subtypes[cells])
        by_prot = _probe(prot[cells], subtypes[cells])
        assert by_prot > 0.7 and by_prot > by_rna + 0.15, (t, by_rna, by_prot)
    w_rna = cohort.mdata["rna"].varm["true_W_C"]
    twin = CI.n_cell_types  # first twin state; RNA cannot tell it from cell type 0's dominant state
    np.testing.assert_array_equal(w_rna[:, twin], w_rna[:, 0])


def test_null_variants_are_not_associated_beyond_chance(cohort):
    dosage = _imputed_dosage(cohort)[cohort.truth.null_variants].to_numpy()
    factors = pd.concat([cohort.truth.donor_factors, cohort.truth.persistent_factors], axis=1)
    factors = factors.loc[cohort.genotypes.donors].to_numpy()
    n = dosage.shape[0]
    z_g = (dosage - dosage.mean(0)) / dosage.std(0)
    z_f = (factors - factors.mean(0)) / factors.std(0)
    r = z_g.T @ z_f / n
    p = 2 * stats.t.sf(np.abs(r) * np.sqrt((n - 2) / (1 - r**2)), n - 2)
    assert (p < 0.01).mean() < 0.025 and (p < 0.05).mean() < 0.08


# --------------------------------------------------------------------------------------- genotypes
def _elevated_pairs(kinship: pd.DataFrame, threshold: float) -> list[tuple[int, int]]:
    k = kinship.to_numpy()
    rows, cols = np.triu_indices_from(k, 1)
    high = k[rows, cols] > threshold
    return list(zip(rows[high], cols[high], strict=True))


@pytest.mark.parametrize("n_pairs", [0, 4])
def test_related_pairs_stand_out_in_kinship(n_pairs):
    donors = [f"d{i:03d}" for i in range(60)]
    genotypes = simulate_genotypes(donors, n_variants=2000, seed=3, n_related_pairs=n_pairs)
    pairs = _elevated_pairs(
        kinship_from_genotypes(genotypes), threshold=0.3
    )  # related ~0.5, unrelated ~0 +- 0.05
    assert len(pairs) == n_pairs
    assert len({d for pair in pairs for d in pair}) == 2 * n_pairs, "related pairs are disjoint"


def test_cohort_kinship_shows_the_related_pairs(cohort):
    # with only 300 variants the estimates are noisy: related ~0.5 +- 0.08, unrelated up to ~0.2
    assert len(_elevated_pairs(cohort.kinship, threshold=0.25)) == CI.n_related_pairs


def test_simulated_genotypes_have_structure_missing_calls_and_a_variant_table():
    donors = [f"d{i:03d}" for i in range(80)]
    rng = np.random.default_rng(7)
    genotypes = simulate_genotypes(
        donors, n_variants=400, seed=rng, fst=0.1, missing_rate=0.01, n_related_pairs=0
    )
    assert genotypes.dosage.shape == (80, 400)
    assert 0.003 < np.isnan(genotypes.dosage).mean() < 0.02
    observed = genotypes.dosage[~np.isnan(genotypes.dosage)]
    assert set(np.unique(observed)) == {0.0, 1.0, 2.0}
    frequency = genotypes.allele_frequencies()
    assert np.minimum(frequency, 1 - frequency).min() >= 0.05 - 0.01, (
        "cohort MAF filter (before missing calls)"
    )
    table = genotypes.variants
    assert table["id"].is_unique and (table["a1"] != table["a2"]).all()
    assert table.groupby("chrom")["pos"].apply(lambda pos: pos.is_monotonic_increasing).all()
    # population structure: the leading GRM eigenvalue is ~2x its mean without structure (fst -> 0), ~7x here
    k = kinship_from_genotypes(genotypes).to_numpy()
    eigenvalues = np.linalg.eigvalsh(k)[::-1]
    assert eigenvalues[0] / eigenvalues.mean() > 4.0


# -------------------------------------------------------------------------------------- on disk
@pytest.mark.slow
@pytest.mark.parametrize("name", ["ci", "default"])
def test_simulated_cohort_round_trips_through_disk_and_the_cli(name, tmp_path):
    """The harness's cohorts (`--dataset sim-ci`, `sim`) written, read back, and run as `--dataset PATH`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cohort = simulate(CI if name == "ci" else SimulationConfig(), seed=0)
    folder = cohort.write(tmp_path / name)
    back = Cohort.read(folder)
    assert back.name == cohort.name
    np.testing.assert_array_equal(back.genotypes.read(), cohort.genotypes.dosage)
    assert back.data_hash == Cohort.read(folder).data_hash  # on disk: the genotype files' hash, stable
    pd.testing.assert_frame_equal(back.obs, cohort.obs)
    for modality in cohort.modalities:
        assert back.feature_names(modality).equals(cohort.feature_names(modality))
    np.testing.assert_array_equal(back.truth.cell_state, cohort.truth.cell_state)
    assert back.truth.causal.equals(cohort.truth.causal)
    for pull in (True, False):  # any mudata reads the file, under either update behaviour
        with md.set_options(pull_on_update=pull), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            assert md.read_h5mu(folder / "cohort.h5mu").n_obs == cohort.n_cells
    argv = [
        "--dataset",
        str(folder),
        "--models",
        "pca",
        "--preset",
        "ci",
        "--no-umap",
        "-q",
        "--probe-seeds",
        "1",
        "--no-cache",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0
    scores = read_scores(tmp_path / "run" / "scores.csv")
    assert {"association", "truth", "probe_cell_type"} <= set(scores.loc[scores["status"] == "ok", "task"])
