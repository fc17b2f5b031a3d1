"""Scores against a simulated cohort's ground truth: association power and FDR, factor and state recovery.

A metric with a data-dependent chance level puts it in ``MetricResult.details["chance"]``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

from multilivi.eval.association import AssociationResult, string_index
from multilivi.eval.fdr import clopper_pearson
from multilivi.eval.records import MetricResult, skipped


def association_truth(
    result: AssociationResult,
    causal: pd.DataFrame,
    null_variants: Sequence[str],
    *,
    targets: Sequence[str] | None = None,
    fdr: float = 0.05,
) -> list[MetricResult]:
    """Power, empirical FDR and null calibration of a scan at BH level ``fdr`` (q-values over all tests).

    Parameters
    ----------
    result
        The scan.
    causal
        One row per causal (variant, true factor) pair: columns ``variant, factor`` (``Truth.causal``).
    null_variants
        Ids of variants with no effect on any true factor.
    targets
        The true factors whose causal variants the scanned factors should find (D x C programs for
        ``D``, persistent factors for ``V``); None: every causal variant.

    Returns
    -------
    ``power``: fraction of the targets' causal variants with a significant pair, with
    ``per_program`` fractions and ``found_by`` (program -> scanned factors with a significant pair
    on its variants) in details; ``empirical_fdr_pairs`` and ``empirical_fdr``: the fraction of
    significant pairs, and of significant variants, whose variant is null (a significant variant
    causal for a non-target factor is not false). Each carries its Clopper-Pearson 95 % interval
    (``ci_low``, ``ci_high``) and is skipped when there is no causal variant or no discovery.
    ``lambda_gc_null``: genomic-control lambda over the null variants' tests.
    """
    causal = causal.astype({"variant": str, "factor": str})
    null = string_index(null_variants)
    index = string_index(result.variants)
    wanted = pd.Index([*causal["variant"].unique(), *null])
    absent = list(wanted[~wanted.isin(index)])
    if absent:
        raise ValueError(f"{len(absent)} truth variants are not in the scan, e.g. {absent[:5]}; scan all")
    hits = result.hits(fdr)
    hits = hits[hits["variant"].isin(null) | hits["variant"].isin(causal["variant"])]
    target = causal if targets is None else causal[causal["factor"].isin(list(map(str, targets)))]
    details = {"fdr": fdr, "n_causal": int(target["variant"].nunique()), "n_null": len(null)}
    is_null = hits["variant"].isin(null).to_numpy()
    variants_null = hits.drop_duplicates("variant")["variant"].isin(null).to_numpy()
    return [
        _power(hits, target, details),
        _false_share("empirical_fdr_pairs", int(is_null.sum()), is_null.size, details),
        _false_share("empirical_fdr", int(variants_null.sum()), variants_null.size, details),
        _null_lambda(result, index.get_indexer(null), details),
    ]


def _power(hits: pd.DataFrame, target: pd.DataFrame, details: dict) -> MetricResult:
    """``power`` of significant ``hits`` (factor, variant) over the causal variants of ``target``."""
    variants = target["variant"].unique()
    if variants.size == 0:
        return skipped("power", "no causal variants for the true factors this view should recover")
    significant = set(hits["variant"])
    found = sum(v in significant for v in variants)
    per_program, found_by = {}, {}
    for program, rows in target.groupby("factor", sort=True):
        own = rows["variant"].unique()
        per_program[program] = float(np.mean([v in significant for v in own]))
        found_by[program] = sorted(set(hits.loc[hits["variant"].isin(own), "factor"]))
    low, high = clopper_pearson(found, variants.size)
    extra = {
        "n_found": found,
        "ci_low": low,
        "ci_high": high,
        "per_program": per_program,
        "found_by": found_by,
    }
    return MetricResult("power", found / variants.size, {**details, **extra})


def _false_share(name: str, n_false: int, n_significant: int, details: dict) -> MetricResult:
    """The false-discovery proportion ``n_false / n_significant`` with its Clopper-Pearson interval."""
    extra = {"n_false": n_false, "n_significant": n_significant}
    if n_significant == 0:
        return MetricResult(name, float("nan"), {**details, **extra}, "skipped", "no discoveries")
    low, high = clopper_pearson(n_false, n_significant)
    return MetricResult(name, n_false / n_significant, {**details, **extra, "ci_low": low, "ci_high": high})


def _null_lambda(result: AssociationResult, columns: NDArray[np.intp], details: dict) -> MetricResult:
    """``lambda_gc_null``: genomic control over the tests of the null variants ``columns``."""
    if columns.size == 0:
        return skipped("lambda_gc_null", "no null variants in the truth")
    return MetricResult("lambda_gc_null", result.lambda_gc_of(columns), details)


def power_any_view(
    associations: Mapping[str, AssociationResult], causal_variants: Sequence[str], *, fdr: float = 0.05
) -> MetricResult:
    """``power_any_view``: fraction of the causal variants significant (BH ``fdr``) in some view's scan."""
    causal = set(map(str, causal_variants))
    if not causal or not associations:
        return skipped("power_any_view", "no causal variants in the truth or no scans")
    significant = set().union(*(set(r.hits(fdr)["variant"]) for r in associations.values()))
    found = len(causal & significant)
    low, high = clopper_pearson(found, len(causal))
    details = {"fdr": fdr, "n_causal": len(causal), "n_found": found, "ci_low": low, "ci_high": high}
    return MetricResult("power_any_view", found / len(causal), details)


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
    aligned = _aligned(true_factors, learned_factors)
    if isinstance(aligned, str):
        return [skipped("factor_recovery", aligned)]
    truth, learned = aligned
    corr = np.abs(_correlation(truth, learned))  # (programs, factors), NaN for constant columns
    best = np.nanmax(np.where(np.isnan(corr), -np.inf, corr), axis=1)
    best = np.where(np.isinf(best), np.nan, best)
    match = np.argmax(np.nan_to_num(corr, nan=-1.0), axis=1)
    details = {
        "per_program": {str(p): float(b) for p, b in zip(true_factors.columns, best)},
        "best_factor": {str(p): str(learned_factors.columns[m]) for p, m in zip(true_factors.columns, match)},
        "n_donors": truth.shape[0],
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


MATCHED_CHANCE_DRAWS = 200  # random factor sets behind the chance level of matched_recovery


def matched_recovery(true_factors: pd.DataFrame, learned_factors: pd.DataFrame) -> list[MetricResult]:
    """One-to-one recovery of the true donor programs: Hungarian matching on absolute Pearson r.

    Each true program is matched to a different learned factor so that the sum of ``|r|`` is
    largest (``scipy.optimize.linear_sum_assignment``); with fewer learned factors than programs,
    the unmatched programs score 0. The chance level is the mean score of random Gaussian
    factors on as many donors, programs and factors (:func:`matched_recovery_chance`).

    Parameters
    ----------
    true_factors
        (donors, programs) indexed by donor name.
    learned_factors
        (donors, factors) indexed by donor name; rows are matched by name.

    Returns
    -------
    ``matched_recovery`` (mean matched ``|r|``; ``per_program``, ``matched_factor``, ``chance`` and
    its 95 % interval ``chance_low``/``chance_high`` in details), ``matched_recovery_chance`` and
    ``matched_recovery_corrected`` = ``(score - chance) / (1 - chance)``.
    """
    names = ("matched_recovery", "matched_recovery_chance", "matched_recovery_corrected")
    aligned = _aligned(true_factors, learned_factors)
    if isinstance(aligned, str):
        return [skipped(name, aligned) for name in names]
    truth, learned = aligned
    matched, abs_r = match_factors(true_factors, learned_factors)
    per_program = np.array([abs_r.at[p, matched[p]] if p in matched.index else 0.0 for p in abs_r.index])
    score = float(per_program.mean())
    chance, low, high = matched_recovery_chance(truth.shape[0], learned.shape[1], truth.shape[1])
    programs = [str(c) for c in true_factors.columns]
    details = {
        "per_program": dict(zip(programs, per_program.tolist())),
        "matched_factor": {str(p): str(f) for p, f in matched.items()},
        "n_donors": truth.shape[0],
        "chance": chance,
        "chance_low": low,
        "chance_high": high,
    }
    chance_details = {"n_donors": truth.shape[0], "chance_low": low, "chance_high": high}
    return [
        MetricResult(names[0], score, details),
        MetricResult(names[1], chance, chance_details),
        MetricResult(names[2], (score - chance) / (1.0 - chance), {"chance": chance}),
    ]


def match_factors(
    true_factors: pd.DataFrame, learned_factors: pd.DataFrame
) -> tuple[pd.Series, pd.DataFrame]:
    """One-to-one matching of true programs to learned factors maximising the total ``|r|`` (Hungarian).

    ``true_factors`` (donors, programs) and ``learned_factors`` (donors, factors) are matched on
    their common donor names. Returns the matched factor per program (programs beyond the number
    of factors are left out) and the (programs, factors) ``|r|`` table (0 where a column is constant).
    """
    donors = true_factors.index.astype(str).intersection(learned_factors.index.astype(str))
    truth = true_factors.set_axis(true_factors.index.astype(str)).loc[donors].to_numpy(dtype=float)
    learned = learned_factors.set_axis(learned_factors.index.astype(str)).loc[donors].to_numpy(dtype=float)
    corr = np.nan_to_num(np.abs(_correlation(truth, learned)), nan=0.0)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    abs_r = pd.DataFrame(corr, index=true_factors.columns, columns=learned_factors.columns)
    return pd.Series(learned_factors.columns[cols], index=true_factors.columns[rows]), abs_r


@functools.lru_cache(maxsize=256)
def matched_recovery_chance(n_donors: int, n_factors: int, n_programs: int) -> tuple[float, float, float]:
    """Mean, 2.5 % and 97.5 % quantiles of ``matched_recovery`` between random Gaussian tables.

    ``MATCHED_CHANCE_DRAWS`` draws of (n_donors, n_programs) true and (n_donors, n_factors)
    learned factors, fixed seed; cached per shape.
    """
    rng = np.random.default_rng(0)
    draws = np.empty(MATCHED_CHANCE_DRAWS)
    for i in range(MATCHED_CHANCE_DRAWS):
        corr = np.abs(
            _correlation(
                rng.standard_normal((n_donors, n_programs)), rng.standard_normal((n_donors, n_factors))
            )
        )
        rows, cols = linear_sum_assignment(corr, maximize=True)
        draws[i] = corr[rows, cols].sum() / n_programs
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(draws.mean()), float(low), float(high)


def _aligned(true_factors: pd.DataFrame, learned_factors: pd.DataFrame) -> tuple[NDArray, NDArray] | str:
    """(donors, programs) and (donors, factors) arrays on the common donors, or why they cannot be scored."""
    common = true_factors.index.astype(str).intersection(learned_factors.index.astype(str))
    missing = true_factors.index.astype(str).difference(common)
    if len(missing):
        raise ValueError(
            f"{len(missing)} donors of true_factors have no learned factors, e.g. {list(missing[:5])}; "
            "index both tables by donor name"
        )
    if true_factors.shape[1] == 0:
        return "the truth has no donor programs (a null cohort): nothing to recover"
    if len(common) < 3 or learned_factors.shape[1] == 0:
        return (
            f"{len(common)} donors and {learned_factors.shape[1]} learned "
            "factors; need at least 3 donors and one factor"
        )
    truth = true_factors.set_axis(true_factors.index.astype(str)).loc[common].to_numpy(dtype=float)
    learned = learned_factors.set_axis(learned_factors.index.astype(str)).loc[common].to_numpy(dtype=float)
    return truth, learned


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
