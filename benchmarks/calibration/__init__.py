"""Calibration of the association tests on null phenotypes at the donor counts of this field.

Null phenotypes are scanned against simulated genotypes with population structure and related
pairs (:func:`multilivi.data.simulate.simulate_genotypes`), for every cell of a grid of donor
counts x covariate counts, with kinship (LMM, phenotypes with a polygenic component drawn from the
kinship, ``HERITABILITY``) and without (OLS, independent phenotypes: the model is exact). Per cell
and test (the default Wald t-test and the LRT) it reports the genomic-control λ and the ratios
``P(p < t) / t`` for ``t`` in ``THRESHOLDS``, each with a Clopper-Pearson 95 % interval.

A cell is ``REPLICATES`` independent cohorts (genotype panel, covariates, phenotypes): at 30 donors
one panel's own structure moves λ by about ±0.01, so a single panel says little about the test.
The p-values of the replicates are pooled; the range of the replicates' own λ is reported beside.

Run ``python -m benchmarks.calibration --out reports/calibration``: a ``calibration.csv`` and a
``README.md`` table. Nothing here is a timing.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from multilivi.data.genetics import gower_normalise, standardised_genotypes
from multilivi.data.simulate import simulate_genotypes
from multilivi.eval.association import lmm_scan
from multilivi.eval.fdr import clopper_pearson, genomic_control_lambda
from multilivi.eval.lmm import TESTS

__all__ = [
    "GRID_COVARIATES",
    "GRID_DONORS",
    "REPLICATES",
    "NullCohort",
    "calibration_row",
    "cell_pvalues",
    "null_cohort",
    "run_cell",
    "run_grid",
]

logger = logging.getLogger(__name__)

GRID_DONORS = (30, 43, 85, 100, 400)
GRID_COVARIATES = (0, 3, 20, 50)
MIN_RESIDUAL_DONORS = 5  # a cell needs n_donors - n_covariates > 5
# Many phenotypes: the t-test is exact over phenotypes drawn anew, not for one fixed phenotype
# against many discrete variants, so few phenotypes x many variants mis-states the calibration.
N_PHENOTYPES = 1_000  # null phenotypes per cell
N_VARIANTS = 2_000  # tested variants per cell: 1,000 x 2,000 = 2e6 tests per cell and test
N_KINSHIP_VARIANTS = 2_000  # further variants behind the kinship
HERITABILITY = 0.5  # kinship share of the null phenotypes' variance (cells with kinship)
THRESHOLDS = (1e-3, 1e-5)
LAMBDA_BOUND = (0.97, 1.03)  # the bound the default test must meet
REPLICATES = 5  # independent cohorts per cell, p-values pooled


@dataclass(frozen=True)
class NullCohort:
    """Simulated donors: (donors, variants) dosages to test and a (donors, donors) Gower-normalised GRM."""

    donors: list[str]
    dosage: NDArray[np.float64]
    kinship: NDArray[np.float64]


def null_cohort(n_donors: int, *, n_variants: int = N_VARIANTS, seed: int = 0) -> NullCohort:
    """Genotypes with 3 populations and ``n_donors // 12`` related pairs; kinship from separate variants."""
    donors = [f"donor{i}" for i in range(n_donors)]
    genotypes = simulate_genotypes(
        donors, n_variants=n_variants + N_KINSHIP_VARIANTS, seed=seed, n_related_pairs=max(1, n_donors // 12)
    )
    g_std, _ = standardised_genotypes(genotypes.dosage[:, :N_KINSHIP_VARIANTS])
    kinship = gower_normalise(g_std @ g_std.T / g_std.shape[1])
    return NullCohort(donors, np.asarray(genotypes.dosage[:, N_KINSHIP_VARIANTS:]), kinship)


def null_phenotypes(
    cohort: NullCohort, covariates: pd.DataFrame, n_phenotypes: int, with_kinship: bool, seed: int
) -> pd.DataFrame:
    """(donors, phenotypes) covariate effects + noise (+ a kinship-distributed part ``with_kinship``)."""
    rng = np.random.default_rng(seed)
    n = len(cohort.donors)
    y = rng.standard_normal((n, n_phenotypes))
    if with_kinship:
        s, q = np.linalg.eigh(cohort.kinship)
        genetic = (q * np.sqrt(np.clip(s, 0.0, None))) @ rng.standard_normal((n, n_phenotypes))
        y = np.sqrt(HERITABILITY) * genetic + np.sqrt(1.0 - HERITABILITY) * y
    y += covariates.to_numpy() @ rng.standard_normal((covariates.shape[1], n_phenotypes))
    return pd.DataFrame(y, index=cohort.donors, columns=[f"null{i}" for i in range(n_phenotypes)])


def calibration_row(pvalues: NDArray[np.floating]) -> dict[str, float]:
    """λ_GC and ``P(p < t) / t`` with Clopper-Pearson 95 % bounds for each ``t`` in ``THRESHOLDS``."""
    p = np.asarray(pvalues, dtype=float)
    p = p[np.isfinite(p)]
    row = {"n_tests": p.size, "lambda_gc": genomic_control_lambda(p)}
    for t in THRESHOLDS:
        k = int((p < t).sum())
        low, high = clopper_pearson(k, p.size)
        row |= {
            f"ratio_{t:.0e}": k / p.size / t,
            f"ratio_{t:.0e}_low": low / t,
            f"ratio_{t:.0e}_high": high / t,
        }
    return row


def run_cell(
    n_donors: int,
    n_covariates: int,
    with_kinship: bool,
    *,
    n_phenotypes: int = N_PHENOTYPES,
    n_variants: int = N_VARIANTS,
    seed: int = 0,
    replicates: int = 1,
    cohorts: dict[int, NullCohort] | None = None,
) -> list[dict[str, object]]:
    """One calibration row per test for one grid cell (LMM with kinship, else OLS).

    Replicate ``r`` draws its cohort from ``seed + r`` (``cohorts[r]`` when given: its genotype
    panel, shared across the covariate counts of one donor count); the rows pool their p-values and
    give the range of the replicates' own λ (``lambda_gc_min``, ``lambda_gc_max``).
    """
    pooled: dict[str, list[NDArray[np.float64]]] = {test: [] for test in TESTS}
    for r in range(replicates):
        given = (cohorts or {}).get(r)
        cohort = (
            given
            if given is not None
            else null_cohort(n_donors, n_variants=n_variants, seed=seed + r + n_donors)
        )
        for test, p in cell_pvalues(cohort, n_covariates, with_kinship, n_phenotypes, seed + r).items():
            pooled[test].append(p)
    cell = {
        "n_donors": n_donors,
        "n_covariates": n_covariates,
        "kinship": with_kinship,
        "replicates": replicates,
    }
    rows = []
    for test, parts in pooled.items():
        own = [genomic_control_lambda(p[np.isfinite(p)]) for p in parts]
        row = calibration_row(np.concatenate(parts))
        rows.append({**cell, "test": test, **row, "lambda_gc_min": min(own), "lambda_gc_max": max(own)})
    return rows


def cell_pvalues(
    cohort: NullCohort, n_covariates: int, with_kinship: bool, n_phenotypes: int, seed: int
) -> dict[str, NDArray[np.float64]]:
    """(phenotypes x variants,) p-values of every test on one cohort's null phenotypes."""
    n_donors = len(cohort.donors)
    rng = np.random.default_rng([seed, n_donors, n_covariates])
    covariates = pd.DataFrame(rng.standard_normal((n_donors, n_covariates)), index=cohort.donors)
    phenotypes = null_phenotypes(
        cohort, covariates, n_phenotypes, with_kinship, seed=int(rng.integers(2**31))
    )
    scan = {
        "donors": cohort.donors,
        "variant_ids": [f"v{j}" for j in range(cohort.dosage.shape[1])],
        "kinship": cohort.kinship if with_kinship else None,
        "covariates": covariates,
        "engine": "batched" if with_kinship else "ols",
        "keep_all": True,  # calibration_row reads every p-value
    }
    return {
        test: np.asarray(lmm_scan(phenotypes, cohort.dosage, test=test, **scan).pvalues, dtype=float).ravel()
        for test in TESTS
    }


def grid_cells(
    donors: Iterable[int] = GRID_DONORS, covariates: Iterable[int] = GRID_COVARIATES
) -> list[tuple[int, int]]:
    """(n_donors, n_covariates) cells of the grid, without those where covariates >= n_donors - 5."""
    return [(n, c) for n, c in itertools.product(donors, covariates) if c < n - MIN_RESIDUAL_DONORS]


def run_grid(
    donors: Iterable[int] = GRID_DONORS,
    covariates: Iterable[int] = GRID_COVARIATES,
    *,
    n_phenotypes: int = N_PHENOTYPES,
    n_variants: int = N_VARIANTS,
    seed: int = 0,
    replicates: int = REPLICATES,
) -> pd.DataFrame:
    """Calibration rows of every grid cell, with and without kinship, for every test."""
    rows = []
    panels: dict[int, dict[int, NullCohort]] = {}  # per donor count, one genotype panel per replicate
    for n, c in grid_cells(donors, covariates):
        if n not in panels:
            panels[n] = {
                r: null_cohort(n, n_variants=n_variants, seed=seed + r + n) for r in range(replicates)
            }
        for with_kinship in (False, True):
            logger.info("calibration cell: %d donors, %d covariates, kinship=%s", n, c, with_kinship)
            rows += run_cell(
                n,
                c,
                with_kinship,
                n_phenotypes=n_phenotypes,
                seed=seed,
                replicates=replicates,
                cohorts=panels[n],
            )
    return pd.DataFrame(rows)
