"""Scores against a simulated cohort's ground truth: association power and FDR, factor and state recovery."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

from multilivi.eval.association import AssociationResult
from multilivi.eval.fdr import genomic_control_lambda
from multilivi.eval.records import MetricResult, skipped


def association_truth(
    result: AssociationResult,
    causal_variants: Sequence[str],
    null_variants: Sequence[str],
    *,
    fdr: float = 0.05,
) -> list[MetricResult]:
    """Power, empirical FDR and null calibration of a scan at BH level ``fdr``.

    A variant is significant when any of its factor tests has a BH q-value (over all tests)
    ``<= fdr``.

    Parameters
    ----------
    result
        The scan.
    causal_variants
        Ids of variants with a planted effect on some donor factor.
    null_variants
        Ids of variants with no effect.

    Returns
    -------
    ``power`` (fraction of causal variants significant), ``empirical_fdr`` (fraction of the
    significant causal-or-null variants that are null; 0 when none is significant) and
    ``lambda_gc_null`` (genomic-control lambda over the null variants' tests).
    """
    index = {v: j for j, v in enumerate(result.variants)}
    absent = [v for v in (*causal_variants, *null_variants) if v not in index]
    if absent:
        raise ValueError(f"{len(absent)} truth variants are not in the scan, e.g. {absent[:5]}; scan all")
    significant = set(result.hits(fdr)["variant"])
    causal, null = set(causal_variants), set(null_variants)
    details = {"fdr": fdr, "n_causal": len(causal), "n_null": len(null)}
    found = len(significant & causal)
    false = len(significant & null)
    power = (
        MetricResult("power", found / len(causal), {**details, "n_found": found})
        if causal
        else skipped("power", "no causal variants in the truth")
    )
    empirical = MetricResult(
        "empirical_fdr",
        false / max(found + false, 1),
        {**details, "n_false": false, "n_significant": found + false},
    )
    columns = [index[v] for v in null_variants]
    if columns:
        null_lambda = genomic_control_lambda(np.asarray(result.pvalues)[:, columns])
        lam = MetricResult("lambda_gc_null", null_lambda, details)
    else:
        lam = skipped("lambda_gc_null", "no null variants in the truth")
    return [power, empirical, lam]


def factor_recovery(true_factors: pd.DataFrame, learned_factors: pd.DataFrame) -> list[MetricResult]:
    """For each true donor program, the best absolute Pearson correlation with any learned factor.

    Parameters
    ----------
    true_factors
        (donors, programs) indexed by donor name.
    learned_factors
        (donors, factors) indexed by donor name; rows are matched by name.

    Returns
    -------
    ``factor_recovery``: mean over programs; per-program values and the matching factor in details.
    """
    common = true_factors.index.astype(str).intersection(learned_factors.index.astype(str))
    missing = true_factors.index.astype(str).difference(common)
    if len(missing):
        raise ValueError(
            f"{len(missing)} donors of true_factors have no learned factors, e.g. {list(missing[:5])}; "
            "index both tables by donor name"
        )
    if true_factors.shape[1] == 0:
        return [
            skipped("factor_recovery", "the truth has no donor programs (a null cohort): nothing to recover")
        ]
    if len(common) < 3 or learned_factors.shape[1] == 0:
        return [
            skipped(
                "factor_recovery",
                f"{len(common)} donors and {learned_factors.shape[1]} learned "
                "factors; need at least 3 donors and one factor",
            )
        ]
    truth = true_factors.set_axis(true_factors.index.astype(str)).loc[common].to_numpy(dtype=float)
    learned = learned_factors.set_axis(learned_factors.index.astype(str)).loc[common].to_numpy(dtype=float)
    corr = np.abs(_correlation(truth, learned))  # (programs, factors), NaN for constant columns
    best = np.nanmax(np.where(np.isnan(corr), -np.inf, corr), axis=1)
    best = np.where(np.isinf(best), np.nan, best)
    match = np.argmax(np.nan_to_num(corr, nan=-1.0), axis=1)
    details = {
        "per_program": {str(p): float(b) for p, b in zip(true_factors.columns, best)},
        "best_factor": {str(p): str(learned_factors.columns[m]) for p, m in zip(true_factors.columns, match)},
        "n_donors": len(common),
    }
    return [MetricResult("factor_recovery", float(np.nanmean(best)), details)]


def factor_recovery_chance(
    true_factors: pd.DataFrame, n_factors: int, *, n_draws: int = 200, quantile: float = 0.99, seed: int = 0
) -> float:
    """The ``quantile`` of ``factor_recovery`` that ``n_factors`` random Gaussian factors reach by chance.

    Parameters
    ----------
    true_factors
        (donors, programs) indexed by donor name.
    n_factors
        Number of learned factors the chance level is for (the best of more factors is higher).
    """
    rng = np.random.default_rng(seed)
    draws = [
        factor_recovery(
            true_factors,
            pd.DataFrame(rng.standard_normal((len(true_factors), n_factors)), index=true_factors.index),
        )[0].value
        for _ in range(n_draws)
    ]
    return float(np.quantile(draws, quantile))


def cell_state_recovery(
    true_state: NDArray[np.floating], view: NDArray[np.floating], *, test_size: float = 0.2, seed: int = 0
) -> list[MetricResult]:
    """How linearly the true cell state can be read off a view.

    The choice: for each true state dimension, the held-out R^2 of a linear regression (with
    intercept) from the whole view, on one fixed-seed train/test split. It is invariant to
    rotations and rescaling of the view, which a VAE latent is free to apply. The best absolute
    Pearson correlation with a single view dimension is reported in details as well.

    Parameters
    ----------
    true_state
        (cells, k) simulated cell states.
    view
        (cells, d) embedding of the same cells.

    Returns
    -------
    ``cell_state_r2``: mean held-out R^2 over state dimensions (can be negative).
    """
    true_state = np.asarray(true_state, dtype=np.float64)
    view = np.asarray(view, dtype=np.float64)
    if true_state.ndim == 1:
        true_state = true_state[:, None]
    if view.ndim != 2 or true_state.shape[0] != view.shape[0]:
        raise ValueError(
            f"true_state has {true_state.shape[0]} rows but view has shape {view.shape}; pass the same cells"
        )
    if view.shape[0] < 10:
        return [skipped("cell_state_r2", f"{view.shape[0]} cells; need at least 10")]
    x_train, x_test, y_train, y_test = train_test_split(
        view, true_state, test_size=test_size, random_state=seed
    )
    predicted = LinearRegression().fit(x_train, y_train).predict(x_test)
    residual = ((y_test - predicted) ** 2).sum(axis=0)
    total = ((y_test - y_test.mean(axis=0)) ** 2).sum(axis=0)
    r2 = 1.0 - residual / total
    best_corr = np.nanmax(np.abs(_correlation(true_state, view)), axis=1)
    details = {
        "per_dimension_r2": r2.tolist(),
        "per_dimension_best_abs_corr": best_corr.tolist(),
        "seed": seed,
    }
    return [MetricResult("cell_state_r2", float(r2.mean()), details)]


def _correlation(a: NDArray, b: NDArray) -> NDArray:
    """(a columns, b columns) Pearson correlations; NaN where a column is constant."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a.T @ b) / np.outer(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0))
