"""The calibration suite's small-n cell: the default Wald t-test meets the λ bound, the LRT does not."""

from __future__ import annotations

import pytest

from benchmarks.calibration import LAMBDA_BOUND, calibration_row, grid_cells, run_cell


@pytest.mark.parametrize("with_kinship", [False, True])
def test_small_cohort_wald_is_calibrated_and_the_lrt_is_not(with_kinship):
    """30 donors and 3 covariates, 400 null phenotypes x 500 variants (2e5 tests per test)."""
    rows = {r["test"]: r for r in run_cell(30, 3, with_kinship, n_phenotypes=400, n_variants=500, seed=0)}
    low, high = LAMBDA_BOUND
    assert low <= rows["wald"]["lambda_gc"] <= high
    assert rows["wald"]["ratio_1e-03"] < 1.5
    assert rows["lrt"]["lambda_gc"] > high + 0.1  # about 1.2: the chi-square(1) LRT ignores the lost df
    assert rows["lrt"]["ratio_1e-03_low"] > 2.0
    if not with_kinship:  # the OLS t-test is exact: 1 lies in the interval of its tail ratio
        assert rows["wald"]["ratio_1e-03_low"] <= 1.0 <= rows["wald"]["ratio_1e-03_high"]


def test_calibration_row_and_grid():
    row = calibration_row([1e-6, 5e-4, 0.5, 0.5, float("nan")])
    assert row["n_tests"] == 4
    assert row["ratio_1e-03"] == pytest.approx(0.5 / 1e-3)
    assert row["ratio_1e-05_low"] <= row["ratio_1e-05"] <= row["ratio_1e-05_high"]
    cells = grid_cells()
    assert (30, 20) in cells and (30, 50) not in cells and (43, 50) not in cells and (85, 50) in cells


def test_replicates_pool_independent_cohorts():
    """Replicate 0 is the single-cohort cell; pooling adds the other cohorts' tests and their λ range."""
    kwargs = {"n_phenotypes": 50, "n_variants": 100, "seed": 3}
    single = {r["test"]: r for r in run_cell(30, 3, True, **kwargs)}
    pooled = {r["test"]: r for r in run_cell(30, 3, True, replicates=3, **kwargs)}
    for test, row in pooled.items():
        assert row["n_tests"] == 3 * single[test]["n_tests"]
        assert row["lambda_gc_min"] <= single[test]["lambda_gc"] <= row["lambda_gc_max"]
        assert row["lambda_gc_min"] < row["lambda_gc_max"]  # the cohorts differ
        assert row["lambda_gc_min"] <= row["lambda_gc"] <= row["lambda_gc_max"]
