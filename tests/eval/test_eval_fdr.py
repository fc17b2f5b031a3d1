"""Multiple testing: BH against scipy, streaming hits, Storey, genomic control, QQ figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from scipy import stats

from multilivi.eval.fdr import (
    benjamini_hochberg,
    bh_hits,
    clopper_pearson,
    genomic_control_lambda,
    qq_plot,
    storey_qvalues,
)


@pytest.fixture(scope="module")
def pvalues():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=(8, 500))
    p[:2, :20] = rng.uniform(0, 1e-4, size=(2, 20))
    return p


def test_bh_equals_scipy(pvalues):
    expected = stats.false_discovery_control(pvalues, axis=None).reshape(pvalues.shape)
    np.testing.assert_allclose(benjamini_hochberg(pvalues), expected, rtol=1e-12)


def test_bh_ignores_untested_entries(pvalues):
    p = pvalues.copy()
    p[3, 10:60] = np.nan
    q = benjamini_hochberg(p)
    assert np.isnan(q[3, 10:60]).all()
    finite = np.isfinite(p)
    np.testing.assert_allclose(q[finite], stats.false_discovery_control(p[finite]), rtol=1e-12)


@pytest.mark.parametrize("level", [0.01, 0.05, 0.2])
def test_streaming_hits_equal_dense_bh(pvalues, level):
    rows, cols, q = bh_hits(pvalues, level)
    dense = benjamini_hochberg(pvalues)
    expected = np.argwhere(dense <= level)
    np.testing.assert_array_equal(np.column_stack([rows, cols]), expected)
    np.testing.assert_allclose(q, dense[rows, cols], rtol=1e-12)
    assert rows.size >= 30


def test_storey_is_at_most_bh_and_equal_when_pi0_is_one(pvalues):
    q = storey_qvalues(pvalues)
    assert np.all(q <= benjamini_hochberg(pvalues) + 1e-15)
    all_null = np.linspace(0.001, 1, 1000)
    np.testing.assert_allclose(storey_qvalues(all_null, lambda_=0.5), benjamini_hochberg(all_null))


def test_genomic_control_lambda():
    rng = np.random.default_rng(0)
    assert genomic_control_lambda(rng.uniform(size=200_001)) == pytest.approx(1.0, abs=0.02)
    stat = stats.chi2.rvs(1, size=20_001, random_state=1) * 1.5
    assert genomic_control_lambda(stats.chi2.sf(stat, 1)) == pytest.approx(1.5, rel=0.05)
    assert genomic_control_lambda(np.array([0.5])) == pytest.approx(1.0)


def test_qq_plot_draws_one_series_per_model(pvalues):
    fig = qq_plot({"livi": pvalues, "pca": np.random.default_rng(0).uniform(size=300)}, max_points=100)
    ax = fig.axes[0]
    assert len(ax.collections) == 2
    assert [t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()] == ["livi", "pca"]


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (7, 1000)])
def test_clopper_pearson_equals_scipy_exact_interval(k, n):
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    np.testing.assert_allclose(clopper_pearson(k, n), [expected.low, expected.high], rtol=1e-10, atol=1e-15)
    with pytest.raises(ValueError):
        clopper_pearson(1, 0)
