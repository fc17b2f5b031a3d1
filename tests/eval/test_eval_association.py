"""Association scan: engines against glimix-core (LRT), direct GLS, the exact t-test and calibration."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from glimix_core.lmm import LMM
from numpy_sugar.linalg import economic_qs
from scipy import special, stats

from multilivi.data.genetics import standardised_genotypes
from multilivi.eval.association import fit_null, lmm_scan, permuted_null_scan, rank_inverse_normal
from multilivi.eval.lmm import GLIMIX_MIN_DELTA, scan_rotated


def gower_grm(genotypes: np.ndarray) -> np.ndarray:
    """Standardised GRM, centred (K 1 = 0) and Gower-normalised (trace = n - 1), as limix does."""
    genotypes = genotypes[:, genotypes.std(0) > 0]
    g = (genotypes - genotypes.mean(0)) / genotypes.std(0)
    k = g @ g.T / g.shape[1]
    centre = np.eye(len(k)) - 1.0 / len(k)
    k = centre @ k @ centre
    return k * (len(k) - 1) / np.trace(k)


def cohort(n=120, n_factors=6, n_variants=300, seed=0, h2=0.4, structure=0.0):
    """Three populations, ten related pairs, covariates, polygenic phenotypes, 2 % missing calls."""
    rng = np.random.default_rng(seed)
    n_grm = 2000
    pops = rng.integers(0, 3, n)
    base = rng.beta(2, 5, n_grm + n_variants)
    freqs = np.clip(base + rng.normal(0, 0.08, (3, base.size)), 0.02, 0.98)
    g = rng.binomial(2, freqs[pops]).astype(float)
    for i in range(0, 20, 2):
        g[i + 1] = np.where(rng.random(g.shape[1]) < 0.5, g[i], g[i + 1])
    kinship = gower_grm(g[:, :n_grm])
    donors = [f"donor{i}" for i in range(n)]
    covariates = pd.DataFrame(rng.normal(size=(n, 2)), index=donors, columns=["age", "sex"])
    genetic = np.linalg.cholesky(kinship + 1e-6 * np.eye(n)) @ rng.normal(size=(n, n_factors))
    y = np.sqrt(h2) * genetic + np.sqrt(1 - h2) * rng.normal(size=(n, n_factors))
    y += covariates.to_numpy() @ rng.normal(size=(2, n_factors))
    y += structure * rng.normal(size=(3, n_factors))[pops]
    dosage = g[:, n_grm:]
    dosage[rng.random(dosage.shape) < 0.02] = np.nan
    phenotypes = pd.DataFrame(y, index=donors, columns=[f"D{i}" for i in range(n_factors)])
    variants = [f"rs{i}" for i in range(n_variants)]
    return phenotypes, dosage, donors, variants, kinship, covariates


@pytest.fixture(scope="module")
def data():
    return cohort()


@pytest.fixture(scope="module")
def glimix(data):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    return lmm_scan(
        phenotypes,
        dosage,
        donors=donors,
        variant_ids=variants,
        kinship=kinship,
        covariates=covariates,
        engine="glimix",
        test="lrt",
    )


def design(data):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    return np.column_stack([np.ones(len(donors)), covariates.to_numpy()])


def test_null_fit_reml_is_at_least_glimix(data, glimix):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    x = design(data)
    ours = fit_null(phenotypes.to_numpy(), x, kinship)
    assert np.all(ours.lml >= glimix.null_lml - 1e-10 * np.abs(glimix.null_lml))
    # glimix-core stops within ~1e-6 of the optimum (and is bounded at 1e-6 where its fit fails)
    np.testing.assert_allclose(ours.delta, glimix.delta, atol=2e-6)
    # same likelihood, same constants: our REML at glimix's delta reproduces glimix's value
    at_theirs = fit_null(phenotypes.to_numpy(), x, kinship, delta=glimix.delta)
    np.testing.assert_allclose(at_theirs.lml, glimix.null_lml, rtol=1e-11)


def test_null_fit_is_a_maximum(data):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    x = design(data)
    ours = fit_null(phenotypes.to_numpy(), x, kinship)
    interior = (ours.delta > 1e-3) & (ours.delta < 1 - 1e-3)
    assert interior.sum() >= 3
    for step in (1e-4, -1e-4):
        moved = fit_null(phenotypes.to_numpy(), x, kinship, delta=ours.delta + step)
        assert np.all(moved.lml[interior] <= ours.lml[interior])


def test_scan_matches_glimix_given_the_same_delta(data, glimix):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    null = fit_null(phenotypes.to_numpy(), design(data), kinship, delta=glimix.delta)
    g_std, keep, sd = standardised_genotypes(dosage, return_sd=True)
    pvalues, alpha, se = scan_rotated(null, null.rotation @ g_std, test="lrt")
    ours, theirs = np.log10(pvalues), np.log10(glimix.pvalues[:, keep])
    assert np.all(np.abs(ours - theirs) <= 1e-6 * np.maximum(1.0, np.abs(theirs)))
    np.testing.assert_allclose(alpha / sd, glimix.beta[:, keep], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(se / sd, glimix.se[:, keep], rtol=1e-7)


def direct_gls(y, x, g, kinship, delta, test="wald"):
    """p-value, effect and SE of ``g`` by explicit solves with Sigma = s ((1 - delta) K + delta I).

    The SE is on the conventional scale r1 / (n - p - 1); the p-value is the t-test's (``wald``) or
    the likelihood ratio's against chi-square(1) (``lrt``).
    """
    n = len(y)
    sigma = (1 - delta) * kinship + delta * np.eye(n)
    sigma_inv = np.linalg.inv(sigma)

    def fit(e):
        gram = e.T @ sigma_inv @ e
        coef = np.linalg.solve(gram, e.T @ sigma_inv @ y)
        resid = y - e @ coef
        return coef, resid @ sigma_inv @ resid, gram

    _, r0, _ = fit(x)
    coef, r1, gram = fit(np.column_stack([x, g]))
    df = n - gram.shape[0]
    se = np.sqrt(r1 / df * np.linalg.inv(gram)[-1, -1])
    if test == "lrt":
        return stats.chi2.sf(n * np.log(r0 / r1), 1), coef[-1], se
    return 2 * stats.t.sf(abs(coef[-1] / se), df), coef[-1], se


@pytest.mark.parametrize("engine", ["batched", "glimix"])
def test_effect_sizes_and_standard_errors_match_direct_gls(data, glimix, engine):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    result = (
        glimix
        if engine == "glimix"
        else lmm_scan(
            phenotypes, dosage, donors=donors, variant_ids=variants, kinship=kinship, covariates=covariates
        )
    )
    imputed = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    for f in (0, 3):
        for j in (0, 7, 50, 299):
            p, beta, se = direct_gls(
                phenotypes.iloc[:, f].to_numpy(),
                design(data),
                imputed[:, j],
                kinship,
                result.delta[f],
                result.test,
            )
            np.testing.assert_allclose([result.beta[f, j], result.se[f, j]], [beta, se], rtol=1e-8)
            np.testing.assert_allclose(np.log10(result.pvalues[f, j]), np.log10(p), rtol=1e-8, atol=1e-8)


def t_test(y, x, g):
    """Least-squares slope of ``g``, its SE, t-test p-value and residual sum of squares."""
    e = np.column_stack([x, g])
    coef, rss = np.linalg.lstsq(e, y, rcond=None)[:2]
    df = len(y) - np.linalg.matrix_rank(e)
    se = np.sqrt(rss[0] / df * np.linalg.inv(e.T @ e)[-1, -1])
    return coef[-1], se, 2 * stats.t.sf(abs(coef[-1] / se), df), rss[0]


def test_ols_engine_is_the_exact_t_test(data):
    """statsmodels OLS's numbers (not installed here): numpy least squares and scipy.stats.t."""
    phenotypes, dosage, donors, variants, kinship, covariates = data
    rng = np.random.default_rng(4)
    wide = covariates.assign(**{f"c{i}": rng.normal(size=len(donors)) for i in range(8)})
    args = dict(donors=donors, variant_ids=variants, covariates=wide, engine="ols")
    result = lmm_scan(phenotypes, dosage, **args)
    lrt = lmm_scan(phenotypes, dosage, test="lrt", **args)
    x, n = np.column_stack([np.ones(len(donors)), wide.to_numpy()]), len(donors)
    imputed = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    for f in (0, 2, 5):
        y = phenotypes.iloc[:, f].to_numpy()
        r0 = np.linalg.lstsq(x, y, rcond=None)[1][0]
        for j in (1, 100, 250, 299):
            beta, se, p, r1 = t_test(y, x, imputed[:, j])
            ours = [result.pvalues[f, j], result.beta[f, j], result.se[f, j]]
            np.testing.assert_allclose(ours, [p, beta, se], rtol=1e-10)
            assert lrt.pvalues[f, j] == pytest.approx(stats.chi2.sf(n * np.log(r0 / r1), 1), rel=1e-9)
    np.testing.assert_array_equal(lrt.beta, result.beta)  # effects and SEs do not depend on the test
    np.testing.assert_array_equal(lrt.se, result.se)
    assert np.all(result.delta == 1.0) and result.test == "wald" and lrt.test == "lrt"


def test_ols_intercept_only_equals_linregress(data):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    imputed = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    result = lmm_scan(phenotypes, dosage, donors=donors, variant_ids=variants, engine="ols")
    lrt = lmm_scan(phenotypes, dosage, donors=donors, variant_ids=variants, engine="ols", test="lrt")
    n = len(donors)
    for j in (3, 30):
        fit = stats.linregress(imputed[:, j], phenotypes.iloc[:, 1].to_numpy())
        assert result.beta[1, j] == pytest.approx(fit.slope, rel=1e-10)
        assert result.se[1, j] == pytest.approx(fit.stderr, rel=1e-10)
        assert result.pvalues[1, j] == pytest.approx(fit.pvalue, rel=1e-10)
        # the LRT is a monotone function of the t statistic: n log(1 + t^2 / (n - 2))
        stat = n * np.log1p((fit.slope / fit.stderr) ** 2 / (n - 2))
        assert lrt.pvalues[1, j] == pytest.approx(stats.chi2.sf(stat, 1), rel=1e-9)


def test_wald_test_without_kinship_variance_equals_the_t_test(data):
    """Kinship = identity makes the covariance delta-free: the LMM Wald test is then the OLS t-test."""
    phenotypes, dosage, donors, variants, kinship, covariates = data
    args = dict(donors=donors, variant_ids=variants, covariates=covariates)
    ols = lmm_scan(phenotypes, dosage, engine="ols", **args)
    for engine in ("batched", "glimix"):
        lmm = lmm_scan(phenotypes.iloc[:, :2], dosage, kinship=np.eye(len(donors)), engine=engine, **args)
        np.testing.assert_allclose(lmm.pvalues, ols.pvalues[:2], rtol=1e-10 if engine == "batched" else 1e-6)
        np.testing.assert_allclose(lmm.se, ols.se[:2], rtol=1e-10 if engine == "batched" else 1e-6)
    null = fit_null(phenotypes.to_numpy(), design(data), kinship, delta=np.ones(phenotypes.shape[1]))
    g_std, keep, _ = standardised_genotypes(dosage, return_sd=True)
    pvalues = scan_rotated(null, null.rotation @ g_std)[0]  # the kinship at delta = 1
    np.testing.assert_allclose(pvalues, ols.pvalues[:, keep], rtol=1e-10)
    with pytest.raises(ValueError, match="unknown test"):
        lmm_scan(phenotypes, dosage, engine="ols", test="score", **args)


def test_permuted_null_scan_moves_genotypes_with_their_kinship(data):
    """Permuting genotype rows and kinship together equals giving the phenotypes to permuted donors."""
    phenotypes, dosage, donors, variants, kinship, covariates = data
    args = dict(donors=donors, variant_ids=variants, kinship=kinship)
    null = permuted_null_scan(phenotypes, dosage, seed=7, covariates=covariates, **args)
    order = np.random.default_rng(7).permutation(len(donors))
    relabelled = np.asarray(donors)[order]
    by_hand = lmm_scan(
        phenotypes.set_axis(relabelled), dosage, covariates=covariates.set_axis(relabelled), **args
    )
    np.testing.assert_allclose(null.pvalues, by_hand.pvalues, rtol=1e-8)
    assert 0.8 < null.lambda_gc() < 1.25
    assert not np.allclose(null.pvalues, lmm_scan(phenotypes, dosage, covariates=covariates, **args).pvalues)


def test_null_calibration_with_population_structure():
    phenotypes, dosage, donors, variants, kinship, covariates = cohort(
        n=200, n_factors=20, n_variants=2000, seed=3, h2=0.5, structure=1.0
    )
    args = dict(donors=donors, variant_ids=variants, covariates=covariates)
    lmm = lmm_scan(phenotypes, dosage, kinship=kinship, **args)
    assert 0.9 <= lmm.lambda_gc() <= 1.1
    ols = lmm_scan(phenotypes, dosage, engine="ols", **args)
    assert ols.lambda_gc() > lmm.lambda_gc()  # structure inflates the scan that ignores kinship


def test_planted_effects_are_found(data):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    imputed = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    planted = phenotypes.copy()
    causal = {("D1", 10), ("D1", 20), ("D4", 30)}
    for factor, j in causal:
        planted[factor] += 0.8 * (imputed[:, j] - imputed[:, j].mean()) / imputed[:, j].std()
    result = lmm_scan(
        planted, dosage, donors=donors, variant_ids=variants, kinship=kinship, covariates=covariates
    )
    hits = result.hits(0.05)
    found = {(f, int(v[2:])) for f, v in zip(hits["factor"], hits["variant"])}
    assert causal <= found
    assert len(found - causal) <= 2
    assert hits["qvalue"].max() <= 0.05
    summary = {m.name: m.value for m in result.summary(0.05)}
    assert summary["n_significant_pairs"] == len(hits)
    assert summary["n_significant_variants"] == hits["variant"].nunique()


def test_monomorphic_variants_are_skipped_and_missing_calls_imputed(data):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    dosage = dosage[:, :20].copy()
    dosage[:, 5] = 1.0
    dosage[:, 6] = np.nan
    dosage[0, 6] = 1.0
    dosage[:3, 7], dosage[3:, 7] = np.nan, 2.0
    result = lmm_scan(
        phenotypes, dosage, donors=donors, variant_ids=variants[:20], kinship=kinship, covariates=covariates
    )
    assert result.n_monomorphic_skipped == 3
    assert np.all(np.isnan(result.pvalues[:, 5:8]))
    assert np.isfinite(np.delete(result.pvalues, [5, 6, 7], axis=1)).all()
    imputed = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    again = lmm_scan(
        phenotypes, imputed, donors=donors, variant_ids=variants[:20], kinship=kinship, covariates=covariates
    )
    np.testing.assert_array_equal(np.isnan(again.pvalues), np.isnan(result.pvalues))
    np.testing.assert_allclose(again.pvalues, result.pvalues, rtol=1e-12)


def test_rows_are_aligned_by_donor_name_and_chunks_do_not_matter(data, tmp_path):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    args = dict(donors=donors, variant_ids=variants, kinship=kinship)
    reference = lmm_scan(phenotypes, dosage, covariates=covariates, **args)
    shuffled = lmm_scan(
        phenotypes.sample(frac=1, random_state=0),
        dosage,
        covariates=covariates.sample(frac=1, random_state=1),
        chunk_size=37,
        pvalues_path=tmp_path / "p.npy",
        **args,
    )
    assert isinstance(shuffled.pvalues, np.memmap)
    np.testing.assert_allclose(shuffled.pvalues, reference.pvalues, rtol=1e-10)
    np.testing.assert_allclose(np.load(tmp_path / "p.beta.npy"), reference.beta, rtol=1e-10)
    with pytest.raises(ValueError, match="donor3"):
        lmm_scan(phenotypes.drop(index="donor3"), dosage, **args)
    with pytest.raises(ValueError, match="engine='ols'"):
        lmm_scan(phenotypes, dosage, donors=donors, variant_ids=variants)


def test_ml_null_and_quantile_normalisation(data):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    args = dict(donors=donors, variant_ids=variants, kinship=kinship, covariates=covariates)
    ml = lmm_scan(phenotypes, dosage, reml=False, **args)
    assert not ml.reml and np.isfinite(ml.pvalues).all()
    reference = LMM(phenotypes["D0"].to_numpy(), design(data), economic_qs(kinship), restricted=False)
    reference.delta = 0.3
    reference.fix("delta")
    reference.fit(verbose=False)
    ours = fit_null(phenotypes[["D0"]].to_numpy(), design(data), kinship, reml=False, delta=np.array([0.3]))
    assert ours.lml[0] == pytest.approx(reference.lml(), rel=1e-12)
    normalised = lmm_scan(phenotypes, dosage, quantile_normalise=True, **args)
    by_hand = lmm_scan(rank_inverse_normal(phenotypes), dosage, **args)
    np.testing.assert_allclose(normalised.pvalues, by_hand.pvalues)
    column = rank_inverse_normal(phenotypes)["D0"].to_numpy()
    np.testing.assert_allclose(np.sort(column), special.ndtri((np.arange(1, 121) - 0.5) / 120))
    assert stats.spearmanr(column, phenotypes["D0"]).statistic == pytest.approx(1.0)


def test_constant_factors_are_reported_not_tested(data):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    with_dead = phenotypes.assign(dead=0.0, age_copy=2 * covariates["age"] + 1)
    args = dict(donors=donors, variant_ids=variants, kinship=kinship, covariates=covariates)
    result = lmm_scan(with_dead, dosage, **args)
    assert result.untested_factors == ("dead", "age_copy")
    assert np.isnan(result.pvalues[-2:]).all() and np.isnan(result.delta[-2:]).all()
    np.testing.assert_allclose(result.pvalues[:-2], lmm_scan(phenotypes, dosage, **args).pvalues)


def test_glimix_engine_standard_errors_without_covariates(data):
    """glimix-core's single-covariate branch scales its SE itself; the engine must not scale it twice."""
    phenotypes, dosage, donors, variants, kinship, covariates = data
    result = lmm_scan(
        phenotypes.iloc[:, :2],
        dosage[:, :30],
        donors=donors,
        variant_ids=variants[:30],
        kinship=kinship,
        engine="glimix",
    )
    imputed = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    for j in (0, 29):
        p, beta, se = direct_gls(
            phenotypes.iloc[:, 1].to_numpy(),
            np.ones((len(donors), 1)),
            imputed[:, j],
            kinship,
            result.delta[1],
        )
        np.testing.assert_allclose([result.beta[1, j], result.se[1, j]], [beta, se], rtol=1e-8)


def test_glimix_fallback_is_bounded_through_the_public_api(monkeypatch, caplog):
    """A fully genetic factor makes glimix-core's unbounded fit fail; the refit keeps delta >= 1e-6
    without changing glimix-core's own bounds on its parameters."""
    from optimix import Scalar

    logmax = float(np.log(np.finfo(float).max))
    bounds_set, bounds = [], Scalar.bounds

    def record(scalar, value):
        bounds_set.append(tuple(value))
        bounds.fset(scalar, value)

    monkeypatch.setattr(Scalar, "bounds", property(bounds.fget, record))
    phenotypes, dosage, donors, variants, kinship, covariates = cohort(
        n=60, n_factors=3, n_variants=40, h2=1.0
    )
    with caplog.at_level(logging.WARNING, logger="multilivi.eval.lmm"):
        result = lmm_scan(
            phenotypes,
            dosage,
            donors=donors,
            variant_ids=variants,
            kinship=kinship,
            covariates=covariates,
            engine="glimix",
        )
    assert "refitting with delta >= 1e-06" in caplog.text
    assert set(bounds_set) == {(-logmax, logmax)}  # only glimix-core's defaults, set by LMM itself
    bounded = np.flatnonzero(result.delta < 1e-5)
    assert bounded.size and np.all(result.delta[bounded] >= GLIMIX_MIN_DELTA)
    x = np.column_stack([np.ones(len(donors)), covariates.to_numpy()])
    ours = fit_null(phenotypes.to_numpy(), x, kinship, delta=result.delta)
    # at delta = 1e-6, K + delta I is conditioned ~1e6: two eigendecompositions agree to ~1e-10 relative
    # (a CI run measured 1.003e-10), so 1e-8 leaves a margin across BLAS builds and thread counts
    np.testing.assert_allclose(ours.lml, result.null_lml, rtol=1e-8)
    imputed = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    f = bounded[0]
    for j in (0, 39):
        p, beta, se = direct_gls(phenotypes.iloc[:, f].to_numpy(), x, imputed[:, j], kinship, result.delta[f])
        np.testing.assert_allclose([result.beta[f, j], result.se[f, j]], [beta, se], rtol=1e-6)
        np.testing.assert_allclose(np.log10(result.pvalues[f, j]), np.log10(p), rtol=1e-6)
