"""Linear-mixed-model association scan of donor factors against variants.

Every donor factor is tested against every variant with the null noise share fitted once per
factor (REML by default) and a GLS Wald t-test per variant with ``n - rank(X) - 1`` degrees of
freedom (``test="wald"``, exact for OLS) or glimix-core's likelihood-ratio test (``test="lrt"``);
the model and the engines are in :mod:`multilivi.eval.lmm`. Variants are standardised before the
scan (the statistics are invariant) and effect sizes and standard errors are converted back to the
dosage scale. :func:`permuted_null_scan` is the same scan against genotypes of permuted donors,
the in-run false-positive estimate.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats
from threadpoolctl import threadpool_limits

from multilivi.data.genetics import standardised_genotypes
from multilivi.eval import fdr as fdr_mod
from multilivi.eval.lmm import ENGINES, TESTS, Engine, fit_null
from multilivi.eval.records import MetricResult

__all__ = [
    "AssociationResult",
    "fit_null",
    "lmm_scan",
    "permuted_null_scan",
    "permuted_null_summary",
    "rank_inverse_normal",
]

logger = logging.getLogger(__name__)

MONOMORPHIC_TOL = 1e-12  # a variant with sd <= 1e-12 max(1, |mean dosage|) is not tested


@dataclass
class AssociationResult:
    """Output of :func:`lmm_scan`.

    Attributes
    ----------
    factors, variants
        Row and column names of the result matrices.
    pvalues, beta, se
        (factors, variants) p-values of ``test``, effect sizes and standard errors on the dosage
        scale (conventional residual scale ``r1 / (n - rank(X) - 1)``, as statsmodels reports);
        NaN for skipped (monomorphic) variants. Memory-mapped ``.npy`` files when the scan was
        given ``pvalues_path``.
    delta
        (factors,) null noise share ``v_noise / (v_kinship + v_noise)`` (1 for ``ols``).
    null_lml
        (factors,) null log-likelihood (REML unless ``reml=False``).
    n_monomorphic_skipped
        Variants not tested because they do not vary across donors after imputation.
    engine, reml
        How the scan was run.
    untested_factors
        Factors not tested (NaN rows) because they are constant given the covariates.
    test
        ``"wald"`` (t-test) or ``"lrt"`` (chi-square(1) likelihood ratio).
    """

    factors: tuple[str, ...]
    variants: tuple[str, ...]
    pvalues: NDArray[np.float64]
    beta: NDArray[np.float64]
    se: NDArray[np.float64]
    delta: NDArray[np.float64]
    null_lml: NDArray[np.float64]
    n_monomorphic_skipped: int
    engine: str
    reml: bool
    untested_factors: tuple[str, ...] = ()
    test: str = "wald"

    @property
    def n_tests(self) -> int:
        """Number of factor x variant tests with a p-value."""
        return int(sum(np.isfinite(row).sum() for row in self.pvalues))

    def hits(self, fdr: float = 0.05) -> pd.DataFrame:
        """Significant factor-variant pairs at a Benjamini-Hochberg FDR over all tests.

        Returns
        -------
        DataFrame with columns ``factor, variant, beta, se, pvalue, qvalue``, sorted by p-value;
        a pair is significant when its BH q-value is ``<= fdr``.
        """
        rows, cols, q = fdr_mod.bh_hits(self.pvalues, fdr)
        table = pd.DataFrame(
            {
                "factor": np.asarray(self.factors, dtype=object)[rows],
                "variant": np.asarray(self.variants, dtype=object)[cols],
                "beta": np.asarray(self.beta[rows, cols], dtype=float),
                "se": np.asarray(self.se[rows, cols], dtype=float),
                "pvalue": np.asarray(self.pvalues[rows, cols], dtype=float),
                "qvalue": q,
            }
        )
        return table.sort_values("pvalue", kind="stable").reset_index(drop=True)

    def lambda_gc(self) -> float:
        """Genomic-control inflation over all tests (reads the whole p-value matrix once)."""
        return fdr_mod.genomic_control_lambda(np.asarray(self.pvalues))

    def summary(self, fdr: float = 0.05) -> list[MetricResult]:
        """Numbers of significant pairs and variants at ``fdr``, and genomic-control lambda."""
        hits = self.hits(fdr)
        details = {
            "fdr": fdr,
            "n_tests": self.n_tests,
            "engine": self.engine,
            "test": self.test,
            "reml": self.reml,
            "untested_factors": list(self.untested_factors),
        }
        return [
            MetricResult("n_significant_pairs", float(len(hits)), details),
            MetricResult("n_significant_variants", float(hits["variant"].nunique()), details),
            MetricResult("lambda_gc", self.lambda_gc(), details),
        ]


def rank_inverse_normal(frame: pd.DataFrame) -> pd.DataFrame:
    """Rank-based inverse normal transform of every column: ``Phi^-1((rank - 0.5) / n)``, ties averaged."""
    ranks = frame.rank(axis=0, method="average").to_numpy(dtype=float)
    return pd.DataFrame(stats.norm.ppf((ranks - 0.5) / len(frame)), index=frame.index, columns=frame.columns)


def lmm_scan(
    phenotypes: pd.DataFrame,
    dosage: NDArray[np.floating],
    *,
    donors: Sequence[str],
    variant_ids: Sequence[str],
    kinship: NDArray[np.floating] | None = None,
    covariates: pd.DataFrame | None = None,
    engine: str = "batched",
    reml: bool = True,
    chunk_size: int = 2048,
    quantile_normalise: bool = False,
    pvalues_path: str | Path | None = None,
    n_threads: int | None = None,
    test: str = "wald",
) -> AssociationResult:
    """Test every donor factor against every variant.

    Parameters
    ----------
    phenotypes
        (donors, factors) donor factors indexed by donor name (aligned to ``donors``; extra rows ignored).
    dosage
        (donors, variants) dosages 0/1/2, NaN = missing (mean-imputed per variant).
    donors, variant_ids
        Names of the rows (also of ``kinship``) and columns of ``dosage``.
    kinship
        (donors, donors) kinship in the order of ``donors``; required unless ``engine="ols"``.
    covariates
        (donors, covariates) numeric donor covariates indexed by donor name; an intercept is always added.
    engine
        ``"batched"`` (all factors at once), ``"glimix"`` (glimix-core per factor; reference) or ``"ols"``.
    reml
        Fit the null noise share by REML (default) or ML.
    chunk_size, n_threads
        Variants scanned at once (about ``(factors + donors) * chunk_size`` floats per thread), and threads
        scanning chunks at once (``batched``, ``ols``; one BLAS thread each; default all cores).
    quantile_normalise
        Rank-based inverse-normal transform each factor before testing.
    pvalues_path
        Write p-values, effects and SEs as memory-mapped ``<path>``, ``<stem>.beta.npy``, ``<stem>.se.npy``.
    test
        ``"wald"`` (default): GLS Wald t-test with ``n - rank(X) - 1`` degrees of freedom, the exact
        t-test for ``ols``; ``"lrt"``: likelihood ratio against chi-square(1), as glimix-core.
    """
    _check_options(engine, kinship, chunk_size, n_threads, test)
    donors, dosage = _check_dosage(dosage, donors, variant_ids)
    y_frame = _phenotype_frame(phenotypes, donors, quantile_normalise)
    x = _design(covariates, donors)
    kinship = _check_kinship(kinship, len(donors))
    y, tested = _tested_factors(y_frame, x)
    outputs = _Outputs(dosage, tested, chunk_size, *_allocate((tested.size, dosage.shape[1]), pvalues_path))
    fitted, n_skipped = _scan(ENGINES[engine], (y, x, kinship, reml, test), outputs, n_threads)
    return _result(y_frame, variant_ids, outputs, fitted, n_skipped, engine=engine, reml=reml, test=test)


def _result(
    y_frame: pd.DataFrame,
    variant_ids: Sequence[str],
    outputs: _Outputs,
    fitted: Engine,
    n_skipped: int,
    **how: str | bool,
) -> AssociationResult:
    """The :class:`AssociationResult` of a finished scan; ``how`` holds ``engine``, ``reml`` and ``test``."""
    tested = outputs.tested
    return AssociationResult(
        factors=tuple(str(c) for c in y_frame.columns),
        variants=tuple(map(str, variant_ids)),
        **outputs.flushed(),
        delta=_rows(tested, fitted.delta[:, None])[0][:, 0],
        null_lml=_rows(tested, fitted.lml[:, None])[0][:, 0],
        n_monomorphic_skipped=n_skipped,
        untested_factors=tuple(str(c) for c in y_frame.columns[~tested]),
        **how,
    )


def permuted_null_scan(
    phenotypes: pd.DataFrame,
    dosage: NDArray[np.floating],
    *,
    donors: Sequence[str],
    variant_ids: Sequence[str],
    seed: int,
    kinship: NDArray[np.floating] | None = None,
    **options: object,
) -> AssociationResult:
    """:func:`lmm_scan` against the genotypes of randomly permuted donors: a null with the same structure.

    The (donors, variants) dosage rows and the (donors, donors) kinship rows and columns are
    permuted together, so the kinship still describes the genotypes it is scanned with, while the
    phenotypes and covariates stay with their donors. Every association found is a false positive.
    ``options`` are passed to :func:`lmm_scan`.
    """
    order = np.random.default_rng(seed).permutation(len(donors))
    permuted_kinship = None if kinship is None else np.asarray(kinship)[np.ix_(order, order)]
    return lmm_scan(
        phenotypes,
        np.asarray(dosage)[order],
        donors=donors,
        variant_ids=variant_ids,
        kinship=permuted_kinship,
        **options,
    )


def permuted_null_summary(result: AssociationResult, fdr: float = 0.05) -> list[MetricResult]:
    """``n_significant_pairs_permuted`` (false hits at BH ``fdr``) and ``lambda_gc_permuted`` of a null."""
    hits = result.hits(fdr)
    details = {
        "fdr": fdr,
        "n_tests": result.n_tests,
        "n_significant_variants": int(hits["variant"].nunique()),
        "test": result.test,
    }
    return [
        MetricResult("n_significant_pairs_permuted", float(len(hits)), details),
        MetricResult("lambda_gc_permuted", result.lambda_gc(), details),
    ]


def _check_options(engine: str, kinship: object, chunk_size: int, n_threads: int | None, test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "ols" and kinship is not None:
        raise ValueError("engine='ols' ignores kinship; pass kinship=None or use engine='batched'")
    if engine != "ols" and kinship is None:
        raise ValueError(f"engine={engine!r} needs a kinship matrix; pass kinship= or use engine='ols'")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"n_threads must be positive (or None for all cores), got {n_threads}")


def _check_dosage(
    dosage: NDArray[np.floating], donors: Sequence[str], variant_ids: Sequence[str]
) -> tuple[list[str], NDArray[np.floating]]:
    """Donor names as strings, and ``dosage`` as a (donors, variants) array."""
    donors = list(map(str, donors))
    dosage = np.asarray(dosage)
    n = len(donors)
    if dosage.ndim != 2 or dosage.shape[0] != n:
        raise ValueError(f"dosage must be (donors, variants) with {n} rows (len(donors)), got {dosage.shape}")
    if dosage.shape[1] != len(variant_ids):
        raise ValueError(f"dosage has {dosage.shape[1]} variants but variant_ids has {len(variant_ids)}")
    if len(set(donors)) != n:
        raise ValueError("donors contains duplicated names; donor names must be unique")
    return donors, dosage


def _phenotype_frame(phenotypes: pd.DataFrame, donors: list[str], quantile_normalise: bool) -> pd.DataFrame:
    """(donors, factors) finite phenotypes in the order of ``donors``."""
    y_frame = _align(phenotypes, donors, "phenotypes")
    if y_frame.shape[1] == 0:
        raise ValueError("phenotypes has no columns; pass at least one donor factor")
    if quantile_normalise:
        y_frame = rank_inverse_normal(y_frame)
    if not np.isfinite(y_frame.to_numpy(dtype=np.float64)).all():
        raise ValueError("phenotypes contain NaN or inf for some donors; impute them or drop those donors")
    return y_frame


def _design(covariates: pd.DataFrame | None, donors: list[str]) -> NDArray[np.float64]:
    """(donors, p) fixed-effect design: intercept, then the covariates."""
    n = len(donors)
    x = np.ones((n, 1))
    if covariates is not None and covariates.shape[1] > 0:
        x = np.hstack([x, _align(covariates, donors, "covariates").to_numpy(dtype=np.float64)])
        if not np.isfinite(x).all():
            raise ValueError("covariates contain NaN or inf; impute them or drop those donors")
    if n - x.shape[1] < 2:
        raise ValueError(f"{n} donors are too few for {x.shape[1]} fixed effects plus a variant")
    return x


def _check_kinship(kinship: NDArray[np.floating] | None, n: int) -> NDArray[np.float64] | None:
    """(n, n) symmetrised kinship, or None."""
    if kinship is None:
        return None
    kinship = np.asarray(kinship, dtype=np.float64)
    if kinship.shape != (n, n):
        raise ValueError(f"kinship must be ({n}, {n}) in the order of donors, got {kinship.shape}")
    if not np.isfinite(kinship).all() or not np.allclose(kinship, kinship.T, atol=1e-8):
        raise ValueError("kinship must be finite and symmetric")
    return (kinship + kinship.T) / 2


def _tested_factors(
    y_frame: pd.DataFrame, x: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """(donors, tested factors) phenotypes and (factors,) mask of the factors not constant given ``x``."""
    y = y_frame.to_numpy(dtype=np.float64)
    residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    tested = (residual**2).sum(axis=0) > 1e-20 * (y**2).sum(axis=0)
    if not tested.all():
        untested = [str(c) for c in y_frame.columns[~tested]]
        logger.warning(
            "not testing %d factors that are constant given the covariates: %s",
            len(untested),
            ", ".join(untested[:5]),
        )
    return y[:, tested], tested


def _scan(
    engine_type: type[Engine],
    fit_args: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None, bool, str],
    outputs: _Outputs,
    n_threads: int | None,
) -> tuple[Engine, int]:
    """Fit ``engine_type(*fit_args)`` and scan every chunk into ``outputs``.

    ``fit_args`` are ``y`` (donors, tested factors), ``x`` (donors, p), the kinship, ``reml`` and the test.

    Returns the fitted engine and the number of variants skipped as monomorphic (logged).
    """
    starts = range(0, outputs.n_variants, outputs.chunk_size)
    if not engine_type.threaded:
        engine = engine_type(*fit_args)
        n_skipped = sum(outputs.scan_chunk(engine, start) for start in starts)
    else:
        # One BLAS thread per chunk and chunks on a thread pool: multi-threaded BLAS on these small
        # matrices (eigh of the kinship, (donors x chunk) products) collapses when the cores are
        # shared, and the element-wise p-value work is single-threaded in numpy.
        workers = max(1, min(n_threads or os.cpu_count() or 1, len(starts)))
        with threadpool_limits(limits=1, user_api="blas"):
            engine = engine_type(*fit_args)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                n_skipped = sum(pool.map(functools.partial(outputs.scan_chunk, engine), starts))
    if n_skipped:
        logger.info("skipped %d monomorphic variants of %d", n_skipped, outputs.n_variants)
    return engine, n_skipped


@dataclass(frozen=True)
class _Outputs:
    """The (factors, variants) result arrays, filled chunk by chunk (chunks may run on threads)."""

    dosage: NDArray[np.floating]  # (donors, variants)
    tested: NDArray[np.bool_]  # (factors,)
    chunk_size: int
    pvalues: NDArray[np.float64]
    beta: NDArray[np.float64]
    se: NDArray[np.float64]

    @property
    def n_variants(self) -> int:
        return self.dosage.shape[1]

    def scan_chunk(self, engine: Engine, start: int) -> int:
        """Scan variants ``start:start + chunk_size`` into the outputs; returns the number skipped."""
        stop = min(start + self.chunk_size, self.n_variants)
        g_std, keep, sd = standardised_genotypes(
            self.dosage[:, start:stop], atol=MONOMORPHIC_TOL, rtol=MONOMORPHIC_TOL, return_sd=True
        )
        columns = slice(start, stop) if keep.all() else start + np.flatnonzero(keep)
        if not keep.all():
            self.pvalues[:, start:stop], self.beta[:, start:stop], self.se[:, start:stop] = (
                np.nan,
                np.nan,
                np.nan,
            )
        if keep.any():
            pvalues, alpha, alpha_se = _rows(self.tested, *engine.scan_chunk(g_std))
            self.pvalues[:, columns] = pvalues
            self.beta[:, columns] = alpha / sd  # back to the dosage scale
            self.se[:, columns] = alpha_se / sd
        logger.debug("scanned variants %d-%d of %d", start, stop, self.n_variants)
        return int((~keep).sum())

    def flushed(self) -> dict[str, NDArray[np.float64]]:
        """``pvalues``, ``beta`` and ``se``, memory maps flushed to disk."""
        arrays = {"pvalues": self.pvalues, "beta": self.beta, "se": self.se}
        for array in arrays.values():
            if isinstance(array, np.memmap):
                array.flush()
        return arrays


def _rows(tested: NDArray[np.bool_], *arrays: NDArray) -> tuple[NDArray, ...]:
    """Expand (tested factors, ...) arrays to all factors, NaN in the rows of untested factors."""
    if tested.all():
        return arrays
    full = []
    for array in arrays:
        out = np.full((tested.size, *array.shape[1:]), np.nan)
        out[tested] = array
        full.append(out)
    return tuple(full)


def _align(frame: pd.DataFrame, donors: list[str], what: str) -> pd.DataFrame:
    """Rows of ``frame`` in the order of ``donors``, matched by name."""
    index = frame.index.astype(str)
    if index.has_duplicates:
        duplicated = index[index.duplicated()][:3].tolist()
        raise ValueError(f"{what} has duplicated donor names in its index, e.g. {duplicated}")
    present = set(index)
    missing = [d for d in donors if d not in present]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(donors)} donors are missing from the {what} index, e.g. {missing[:5]}; "
            f"index {what} by donor name (the genotype row names)"
        )
    aligned = frame.set_axis(index, axis=0).loc[donors]
    non_numeric = [c for c in aligned.columns if not pd.api.types.is_numeric_dtype(aligned[c])]
    if non_numeric:
        raise ValueError(f"{what} columns must be numeric; encode {non_numeric[:5]} (e.g. one-hot) first")
    return aligned


def _allocate(shape: tuple[int, int], path: str | Path | None) -> tuple[NDArray, NDArray, NDArray]:
    if path is None:
        return np.empty(shape), np.empty(shape), np.empty(shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")
    paths = (path, stem.with_name(stem.name + ".beta.npy"), stem.with_name(stem.name + ".se.npy"))
    return tuple(np.lib.format.open_memmap(p, mode="w+", dtype=np.float64, shape=shape) for p in paths)
