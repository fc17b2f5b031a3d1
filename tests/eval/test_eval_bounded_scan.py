"""The chunked, bounded-memory scan: streamed sources, hits-only BH, histogram lambda, Dask, fast OLS."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multilivi.eval import fdr as fdr_mod
from multilivi.eval import locus_plots
from multilivi.eval.association import lmm_scan, permuted_null_scan
from multilivi.eval.scan_chunks import ArraySource
from multilivi.eval.scan_summary import N_BINS

N_DONORS, N_FACTORS, N_VARIANTS = 80, 5, 1500


def small_cohort(seed: int = 0, n: int = N_DONORS, n_factors: int = N_FACTORS, n_variants: int = N_VARIANTS):
    """Dosages with 2 % missing calls and monomorphic variants, a GRM, covariates, planted effects."""
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(0.05, 0.5, 500 + n_variants)
    g = rng.binomial(2, freqs, size=(n, freqs.size)).astype(float)
    grm = g[:, :500] - g[:, :500].mean(0)
    grm = grm[:, grm.std(0) > 0] / grm[:, grm.std(0) > 0].std(0)
    kinship = grm @ grm.T / grm.shape[1]
    dosage = g[:, 500:]
    dosage[:, 7] = 1.0  # monomorphic
    donors = [f"d{i}" for i in range(n)]
    covariates = pd.DataFrame(rng.normal(size=(n, 2)), index=donors, columns=["age", "sex"])
    y = rng.normal(size=(n, n_factors)) + covariates.to_numpy() @ rng.normal(size=(2, n_factors))
    y += np.linalg.cholesky(kinship + 1e-6 * np.eye(n)) @ rng.normal(size=(n, n_factors))  # polygenic
    for f, j in enumerate(range(10, 10 + 3 * n_factors, 3)):  # three causal variants per factor
        y[:, f] += 0.9 * (dosage[:, j] - dosage[:, j].mean()) + 0.7 * (
            dosage[:, j + 1] - dosage[:, j + 1].mean()
        )
    dosage[rng.random(dosage.shape) < 0.02] = np.nan
    phenotypes = pd.DataFrame(y, index=donors, columns=[f"D{i}" for i in range(n_factors)])
    variants = [f"rs{i}" for i in range(n_variants)]
    return phenotypes, dosage, donors, variants, kinship, covariates


@pytest.fixture(scope="module")
def data():
    return small_cohort()


def scan(data, *, engine="batched", **options):
    phenotypes, dosage, donors, variants, kinship, covariates = data
    return lmm_scan(
        phenotypes,
        options.pop("genotypes", dosage),
        donors=donors,
        variant_ids=variants,
        kinship=None if engine == "ols" else kinship,
        covariates=covariates,
        engine=engine,
        chunk_size=options.pop("chunk_size", 256),
        **options,
    )


class ListSource:
    """A minimal genotype source (not an ndarray): chunks copied out of a dosage matrix."""

    def __init__(self, dosage: np.ndarray) -> None:
        self.dosage, self.n_variants, self.reads = dosage, dosage.shape[1], 0

    def read(self, start: int, stop: int, *, dtype=np.float64) -> np.ndarray:
        self.reads += 1
        return np.array(self.dosage[:, start:stop], dtype=dtype)


def assert_log10_close(ours, reference, tol=1e-12):
    ours, reference = np.log10(np.asarray(ours)), np.log10(np.asarray(reference))
    assert np.all(np.abs(ours - reference) <= tol * np.maximum(1.0, np.abs(reference)))


@pytest.mark.parametrize("engine", ["batched", "ols"])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_streamed_scan_gives_the_dense_scans_hits_and_pvalues(data, engine, precision):
    dense = scan(data, engine=engine)
    source = ListSource(data[1])
    bounded = scan(
        data, engine=engine, genotypes=source, keep_all=False, hit_threshold=1e-3, precision=precision
    )
    assert dense.bounded is None and bounded.pvalues is None and source.reads == -(-N_VARIANTS // 256)
    b = bounded.bounded
    rows, cols = np.nonzero(dense.pvalues < 1e-3)  # factor-major, as the bounded hits
    np.testing.assert_array_equal(b.hit_rows, rows)
    np.testing.assert_array_equal(b.hit_cols, cols)
    assert_log10_close(b.hit_p, dense.pvalues[rows, cols])
    np.testing.assert_allclose(b.hit_beta, dense.beta[rows, cols], rtol=1e-12)
    np.testing.assert_allclose(b.hit_se, dense.se[rows, cols], rtol=1e-12)
    assert bounded.n_tests == dense.n_tests == N_FACTORS * (N_VARIANTS - 1)
    assert bounded.n_monomorphic_skipped == dense.n_monomorphic_skipped == 1
    rtol = 1e-12 if precision == "float64" else 1e-4  # float32 statistics for non-hits
    np.testing.assert_allclose(bounded.min_pvalues(), dense.min_pvalues(), rtol=rtol)
    ours, theirs = bounded.factor_min_pvalues(), dense.factor_min_pvalues()
    np.testing.assert_allclose(ours["min_p"], theirs["min_p"], rtol=1e-12)
    assert list(ours["variant"]) == list(theirs["variant"])


@pytest.mark.parametrize("test", ["wald", "lrt"])
def test_bh_from_the_hits_equals_dense_bh_exactly(data, test):
    dense = scan(data, test=test)
    bounded = scan(data, test=test, keep_all=False, precision="float64")
    assert bounded.bounded.bh_exact(0.05)
    expected, ours = dense.hits(0.05), bounded.hits(0.05)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(ours[["factor", "variant"]], expected[["factor", "variant"]])
    np.testing.assert_allclose(ours["qvalue"], expected["qvalue"], rtol=1e-12)
    summary = {m.name: m.value for m in bounded.summary(0.05)}
    dense_summary = {m.name: m.value for m in dense.summary(0.05)}
    assert summary["n_significant_pairs"] == dense_summary["n_significant_pairs"]
    assert summary["lambda_gc"] == pytest.approx(dense_summary["lambda_gc"], rel=1e-3)


def test_a_threshold_below_the_bh_cut_is_detected_and_rescanned(data):
    dense = scan(data)
    expected = dense.hits(0.05)
    cut = expected["pvalue"].max()  # the largest BH-significant p
    low = cut / 10.0
    first = scan(data, keep_all=False, hit_threshold=low, fdr=1e-9)  # exact at this fdr: no rescan
    assert first.bounded.threshold == low and not first.bounded.bh_exact(0.05)
    with pytest.warns(UserWarning, match="hit_threshold"):
        first.hits(0.05)
    rescanned = scan(data, keep_all=False, hit_threshold=low)
    assert rescanned.bounded.threshold == pytest.approx(low * 100) and rescanned.bounded.bh_exact(0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.testing.assert_frame_equal(
            rescanned.hits(0.05)[["factor", "variant"]], expected[["factor", "variant"]]
        )


def test_histogram_lambda_is_within_its_stated_accuracy(data):
    phenotypes = data[0].copy()
    rng = np.random.default_rng(1)
    null = pd.DataFrame(rng.normal(size=phenotypes.shape), index=phenotypes.index, columns=phenotypes.columns)
    for test in ("wald", "lrt"):
        dense = scan((null, *data[1:]), test=test)
        bounded = scan((null, *data[1:]), test=test, keep_all=False, precision="float32")
        b = bounded.bounded
        exact = dense.lambda_gc()
        u_median = np.median(b.u_of_p(dense.pvalues[np.isfinite(dense.pvalues)]))
        bound = 2 * (b.u_threshold / N_BINS) / u_median  # stated relative accuracy
        assert bound < 5e-4
        assert abs(bounded.lambda_gc() / exact - 1) <= bound


def test_null_lambda_subtracts_the_kept_columns(data):
    variants = data[3]
    causal = [variants[j] for j in range(10, 25)]
    null = np.array([j for j, v in enumerate(variants) if v not in causal])
    dense = scan(data)
    bounded = scan(data, keep_all=False, keep_variants=causal)
    assert sorted(bounded.bounded.kept) == list(range(10, 25))
    np.testing.assert_allclose(
        bounded.bounded.columns(np.arange(10, 25)), dense.pvalues[:, 10:25], rtol=1e-12
    )
    assert bounded.lambda_gc_of(null) == pytest.approx(dense.lambda_gc_of(null), rel=1e-3)
    with pytest.raises(ValueError, match="keep_variants"):
        scan(data, keep_all=False).lambda_gc_of(null)


def test_bounded_result_does_not_grow_with_tests():
    """Only the per-variant minimum (one float per variant) grows; nothing is factors x variants."""
    sizes = {}
    for n_variants in (1000, 4000):
        data = small_cohort(n_factors=8, n_variants=n_variants)
        b = scan(data, engine="ols", keep_all=False).bounded
        assert b.variant_max_u.shape == (n_variants,)
        arrays = [b.counts, b.factor_min_p, b.factor_min_variant, b.hit_rows, b.hit_p]
        sizes[n_variants] = [a.size for a in arrays]
    assert sizes[1000][:3] == sizes[4000][:3] == [N_BINS + 1, 8, 8]
    assert sizes[4000][3] < 200  # the hits: the planted pairs and a few chance ones


def test_a_scan_without_per_variant_minima_keeps_everything_else(data):
    full = scan(data, keep_all=False)
    lean = scan(data, keep_all=False, variant_minima=False)
    assert lean.bounded.variant_max_u is None
    for name in ("hit_rows", "hit_cols", "hit_p", "counts", "factor_min_p", "factor_min_variant"):
        np.testing.assert_array_equal(getattr(lean.bounded, name), getattr(full.bounded, name))
    pd.testing.assert_frame_equal(lean.hits(0.05), full.hits(0.05))
    with pytest.raises(ValueError, match="variant_minima=True"):
        lean.min_pvalues()


def test_ols_fast_path_matches_least_squares_and_stored_pvalues(data):
    """Against numpy least squares + scipy's t (statsmodels' numbers) and p-values of the pre-chunked scan."""
    phenotypes, dosage, donors, variants, kinship, covariates = data
    dense = scan(data, engine="ols")
    bounded = scan(data, engine="ols", keep_all=False, keep_variants=[variants[j] for j in (3, 11, 900)])
    x = np.column_stack([np.ones(len(donors)), covariates.to_numpy()])
    imputed = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    for f in range(N_FACTORS):
        y = phenotypes.iloc[:, f].to_numpy()
        for j in (3, 11, 900):
            e = np.column_stack([x, imputed[:, j]])
            coef, rss = np.linalg.lstsq(e, y, rcond=None)[:2]
            df = len(y) - e.shape[1]
            se = np.sqrt(rss[0] / df * np.linalg.inv(e.T @ e)[-1, -1])
            p = 2 * stats.t.sf(abs(coef[-1] / se), df)
            np.testing.assert_allclose(
                [dense.pvalues[f, j], dense.beta[f, j], dense.se[f, j]], [p, coef[-1], se], rtol=1e-10
            )
            kept = bounded.bounded.kept[j]
            np.testing.assert_allclose([kept[0][f], kept[1][f], kept[2][f]], [p, coef[-1], se], rtol=1e-10)
    # lmm_scan before the chunked driver (main at c0982e5), same cohort: ols and batched p-values
    stored = {
        "ols": {(0, 10): STORED_OLS_0_10, (2, 900): STORED_OLS_2_900},
        "batched": {(0, 10): STORED_LMM_0_10, (2, 900): STORED_LMM_2_900},
    }
    lmm = scan(data)
    for engine, result in (("ols", dense), ("batched", lmm)):
        for (f, j), value in stored[engine].items():
            assert_log10_close([result.pvalues[f, j]], [value])


def test_dask_local_cluster_gives_the_local_result(data):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    local = scan(data, keep_all=False, keep_variants=["rs12"])
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = scan(data, keep_all=False, keep_variants=["rs12"], scheduler=client)
        address = scan(data, scheduler=cluster.scheduler_address)  # a dense scan on the cluster, by address
    lb, rb = local.bounded, remote.bounded
    for name in (
        "hit_rows",
        "hit_cols",
        "hit_p",
        "hit_beta",
        "hit_se",
        "counts",
        "variant_max_u",
        "factor_min_p",
    ):
        np.testing.assert_array_equal(getattr(rb, name), getattr(lb, name))
    np.testing.assert_array_equal(rb.kept[12][0], lb.kept[12][0])
    np.testing.assert_array_equal(address.pvalues, scan(data).pvalues)


def test_permuted_null_permutes_chunks_of_a_source(data):
    ndarray = permuted_null_scan(data[0], data[1], donors=data[2], variant_ids=data[3], seed=3, engine="ols")
    source = permuted_null_scan(
        data[0], ListSource(data[1]), donors=data[2], variant_ids=data[3], seed=3, engine="ols"
    )
    np.testing.assert_array_equal(source.pvalues, ndarray.pvalues)
    order = np.random.default_rng(3).permutation(len(data[2]))
    direct = lmm_scan(data[0], data[1][order], donors=data[2], variant_ids=data[3], engine="ols")
    np.testing.assert_array_equal(direct.pvalues, ndarray.pvalues)


def test_full_results_parquet_and_figures_of_a_bounded_scan(data, tmp_path):
    dense = scan(data)
    path = tmp_path / "all.parquet"
    bounded = scan(data, keep_all=False, full_results_path=path)
    table = pd.read_parquet(path)
    assert len(table) == dense.n_tests
    wide = table.pivot(index="factor", columns="variant", values="pvalue").loc[
        list(dense.factors), list(dense.variants[:7]) + list(dense.variants[8:])
    ]
    np.testing.assert_allclose(wide.to_numpy(), np.delete(dense.pvalues, 7, axis=1), rtol=1e-12)
    qq = bounded.pvalue_distribution()
    assert isinstance(qq, fdr_mod.QQData) and qq.ranks[-1] <= qq.n_tests
    assert np.all(np.diff(qq.pvalues) >= 0) and np.all(np.diff(qq.ranks) > 0)
    for figure in (
        fdr_mod.qq_plot({"bounded": qq, "dense": dense.pvalues}),
        locus_plots.qq_banded({"bounded": qq, "dense": dense.pvalues}),
        locus_plots.pvalue_histograms({"bounded": qq, "dense": dense.pvalues}),
    ):
        assert figure is not None


def test_bad_options_are_refused_before_the_scan(data):
    with pytest.raises(ValueError, match="glimix"):
        scan(data, engine="glimix", keep_all=False)
    with pytest.raises(ValueError, match="keep_variants"):
        scan(data, keep_all=False, keep_variants=["nope"])
    with pytest.raises(ValueError, match="precision"):
        scan(data, keep_all=False, precision="float16")
    with pytest.raises(ValueError, match="variants"):
        scan(data, genotypes=ArraySource(data[1][:, :10]))


# p-values of lmm_scan on main at c0982e5 (before the chunked driver) for small_cohort(seed=0)
STORED_OLS_0_10 = 0.001209718158203292
STORED_OLS_2_900 = 0.17840113745034214
STORED_LMM_0_10 = 0.0008332584066928865
STORED_LMM_2_900 = 0.16991925555171383


def test_chunk_centring_is_the_standardisation_of_the_genotypes_module(data):
    from multilivi.data.genetics import standardised_genotypes
    from multilivi.eval.scan_chunks import MONOMORPHIC_TOL, centre

    for dosage in (data[1][:, :300], np.nan_to_num(data[1][:, :300], nan=1.0)):  # with and without missing
        expected, kept, sd = standardised_genotypes(
            dosage, atol=MONOMORPHIC_TOL, rtol=MONOMORPHIC_TOL, return_sd=True
        )
        g, ours_kept, ours_sd = centre(dosage.copy())
        np.testing.assert_array_equal(ours_kept, kept)
        np.testing.assert_array_equal(ours_sd, sd)
        np.testing.assert_array_equal(g / ours_sd, expected)


@pytest.mark.parametrize("engine", ["batched", "ols"])
def test_torch_backend_on_the_cpu_equals_the_numpy_backend(data, engine):
    numpy_scan = scan(data, engine=engine, keep_all=False, precision="float64")
    torch_scan = scan(data, engine=engine, keep_all=False, precision="float64", backend="torch")
    a, b = numpy_scan.bounded, torch_scan.bounded
    np.testing.assert_array_equal(b.hit_rows, a.hit_rows)
    np.testing.assert_array_equal(b.hit_cols, a.hit_cols)
    np.testing.assert_allclose(b.hit_p, a.hit_p, rtol=1e-12)
    np.testing.assert_allclose(b.variant_max_u, a.variant_max_u, rtol=1e-10)
    assert np.abs(b.counts - a.counts).sum() <= 2  # u on a bin edge may round either way
    with pytest.raises(ValueError, match="backend"):
        scan(data, engine=engine, backend="torch")  # a dense scan has no products to move


@pytest.mark.gpu
def test_torch_backend_on_cuda_gives_the_hits_of_the_cpu_scan(data):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the torch backend's GPU path needs one")
    numpy_scan = scan(data, keep_all=False)
    cuda_scan = scan(data, keep_all=False, backend="torch")
    assert cuda_scan.bounded is not None
    np.testing.assert_array_equal(cuda_scan.bounded.hit_cols, numpy_scan.bounded.hit_cols)
    np.testing.assert_allclose(cuda_scan.bounded.hit_p, numpy_scan.bounded.hit_p, rtol=1e-12)
    assert cuda_scan.lambda_gc() == pytest.approx(numpy_scan.lambda_gc(), rel=1e-3)


@pytest.mark.parametrize("engine", ["batched", "ols"])
def test_the_cheap_statistic_ignores_the_variants_scale_and_is_the_residual_correlation(data, engine):
    """``u`` of centred float32 variants at any scale = ``u`` of standardised float64 ones; for OLS it
    is |Pearson r| (scipy) between the covariate residuals of the phenotype and of the variant."""
    from multilivi.eval.association import ENGINES, _design, _phenotype_frame, _tested_factors
    from multilivi.eval.scan_chunks import centre

    phenotypes, dosage, donors, variants, kinship, covariates = data
    x = _design(covariates, donors)
    y, _ = _tested_factors(_phenotype_frame(phenotypes, donors, False), x)
    fitted = ENGINES[engine](y, x, None if engine == "ols" else kinship, True, "wald")
    g, _, sd = centre(np.nan_to_num(dosage[:, :200], nan=1.0))
    g = g.copy()
    standardised = fitted.scan_u(g / sd)
    scaled = fitted.scan_u((g * np.linspace(0.1, 30.0, g.shape[1])).astype(np.float32), np.float32)
    np.testing.assert_allclose(scaled, standardised, atol=1e-5)
    if engine == "ols":
        residual = lambda a: a - x @ np.linalg.lstsq(x, a, rcond=None)[0]  # noqa: E731
        for f, j in ((0, 3), (2, 150)):
            r = stats.pearsonr(residual(y[:, f]), residual(g[:, j])).statistic
            assert standardised[f, j] == pytest.approx(abs(r), rel=1e-10)


def test_default_chunks_hold_about_two_million_dosages():
    from multilivi.eval.association import default_chunk_size

    assert [default_chunk_size(n) for n in (30, 100, 512, 513, 1000, 2049, 10**5)] == [
        4096,
        4096,
        4096,
        2048,
        2048,
        1024,
        1024,
    ]


def test_the_histogram_counts_every_statistic_in_its_bin():
    from multilivi.eval.scan_summary import bin_scaled

    u = np.random.default_rng(0).uniform(0, 1.3 * N_BINS, size=(7, 5000)).astype(np.float32)
    expected = np.histogram(np.minimum(u, N_BINS), bins=np.arange(N_BINS + 2))[0]
    np.testing.assert_array_equal(bin_scaled(u.copy()), expected)
