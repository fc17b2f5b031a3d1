"""Linear-mixed-model association scan of donor factors against variants.

Each donor factor is a phenotype ``y`` (donors,). Under the null,

    y ~ N(X b, s ((1 - delta) K + delta I)),

with ``X`` = [intercept, donor covariates], kinship ``K`` and noise share ``delta`` (glimix-core's
parameterisation; ``delta = 1`` is ordinary least squares). ``delta`` is fitted once per factor
(REML by default), then every variant ``g`` is tested with ``delta`` fixed: the scale and all
fixed effects are refitted and the likelihood-ratio statistic of the profiled-scale ML
likelihoods, ``n log(r0 / r1)`` with GLS residual quadratic forms ``r0``, ``r1``, is referred to
chi-square with one degree of freedom. This is what glimix-core's ``FastScanner.fast_scan`` does.

The ``batched`` engine works in the space of error contrasts: with ``C`` (donors, donors - p) an
orthonormal basis of the complement of ``X`` and ``C^T K C = U diag(lam) U^T``, the rotation
``R = U^T C^T`` turns every GLS quantity into a weighted sum with weights
``1 / ((1 - delta) lam + delta)``, shared by all factors apart from ``delta``. So one
eigendecomposition serves every factor, and a chunk of variants is scanned against all factors
with two matrix products. Variants are standardised before the scan (the statistic is invariant)
and effect sizes and standard errors are converted back to the dosage scale.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import special, stats
from threadpoolctl import threadpool_limits

from multilivi.eval import fdr as fdr_mod
from multilivi.eval.records import MetricResult

logger = logging.getLogger(__name__)

ENGINES = ("batched", "glimix", "ols")
EIGEN_TOL = float(np.sqrt(np.finfo(float).eps))  # kinship eigenvalues below this are zero (as economic_qs)
DELTA_GRID = np.concatenate([special.expit(np.linspace(-25.0, 25.0, 101)), [1.0]])
GLIMIX_MIN_DELTA = 1e-6  # lower bound for glimix-core's optimiser when its unbounded fit fails
BISECTION_STEPS = 80  # halves a bracket of width <= 1 below one ulp


@dataclass(frozen=True)
class NullModel:
    """The shared rotation and the per-factor null fits.

    Attributes
    ----------
    rotation
        (donors - p, donors) ``R = U^T C^T``; maps donor vectors to decorrelated error contrasts.
    lam
        (donors - p,) eigenvalues of ``C^T K C`` (zeros without kinship).
    y_rot
        (donors - p, factors) rotated phenotypes.
    delta
        (factors,) fitted noise share per factor.
    lml
        (factors,) REML (or ML) log-likelihood at ``delta``, glimix-core's constants.
    r0
        (factors,) null GLS residual quadratic form ``y^T P y`` at ``delta``.
    """

    rotation: NDArray[np.float64]
    lam: NDArray[np.float64]
    y_rot: NDArray[np.float64]
    delta: NDArray[np.float64]
    lml: NDArray[np.float64]
    r0: NDArray[np.float64]

    @property
    def n_donors(self) -> int:
        return self.rotation.shape[1]

    @property
    def weights(self) -> NDArray[np.float64]:
        """(factors, donors - p) GLS weights ``1 / ((1 - delta) lam + delta)``."""
        return 1.0 / _diag(self.lam, self.delta)


@dataclass
class AssociationResult:
    """Output of :func:`lmm_scan`.

    Attributes
    ----------
    factors, variants
        Row and column names of the result matrices.
    pvalues, beta, se
        (factors, variants) LRT p-values, effect sizes and standard errors on the dosage scale;
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
            "reml": self.reml,
            "untested_factors": list(self.untested_factors),
        }
        return [
            MetricResult("n_significant_pairs", float(len(hits)), True, details),
            MetricResult("n_significant_variants", float(hits["variant"].nunique()), True, details),
            MetricResult("lambda_gc", self.lambda_gc(), False, details),
        ]


def rank_inverse_normal(frame: pd.DataFrame) -> pd.DataFrame:
    """Rank-based inverse normal transform of every column: ``Phi^-1((rank - 0.5) / n)``, ties averaged."""
    ranks = frame.rank(axis=0, method="average").to_numpy(dtype=float)
    return pd.DataFrame(stats.norm.ppf((ranks - 0.5) / len(frame)), index=frame.index, columns=frame.columns)


def standardise_variants(
    dosage: NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Mean-impute missing calls and standardise each variant over donors.

    Parameters
    ----------
    dosage
        (donors, variants) dosages, NaN = missing.

    Returns
    -------
    standardised
        (donors, polymorphic variants) zero-mean, unit-variance (ddof 0) columns.
    sd
        (polymorphic variants,) standard deviation of the imputed dosages.
    polymorphic
        (variants,) mask of the variants kept; the rest are constant or entirely missing.
    """
    g = np.array(dosage, dtype=np.float64)
    missing = np.isnan(g)
    if missing.any():
        g[missing] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = g.sum(axis=0) / (~missing).sum(axis=0)  # NaN for variants with no calls
        g[missing] = np.take(mean, np.nonzero(missing)[1])
    else:
        mean = g.mean(axis=0)
    g -= mean
    sd = np.sqrt(np.einsum("ij,ij->j", g, g) / g.shape[0])
    polymorphic = np.isfinite(sd) & (sd > 1e-12 * np.maximum(1.0, np.abs(np.nan_to_num(mean))))
    if not polymorphic.all():
        g, sd = g[:, polymorphic], sd[polymorphic]
    g /= sd
    return g, sd, polymorphic


def fit_null(
    y: NDArray[np.float64],
    covariates: NDArray[np.float64],
    kinship: NDArray[np.float64] | None,
    *,
    reml: bool = True,
    delta: NDArray[np.float64] | None = None,
) -> NullModel:
    """Fit the null noise share of every factor at once.

    The profiled (REML or ML) log-likelihood is evaluated on a logistic grid of ``delta`` for all
    factors, and the best grid cell is polished by bisection on the sign of the analytic score
    until the bracket is below one ulp, so ``delta`` is found to machine precision. Boundary
    optima (``delta = 1``, no kinship variance) are reached exactly.

    Parameters
    ----------
    y
        (donors, factors) phenotypes.
    covariates
        (donors, p) fixed-effect design including the intercept; full column rank.
    kinship
        (donors, donors) kinship, or None for ordinary least squares (``delta = 1``).
    reml
        Restricted (default) or full maximum likelihood.
    delta
        (factors,) noise shares to use instead of fitting them (e.g. another engine's).
    """
    n, p = covariates.shape
    if np.linalg.matrix_rank(covariates) < p:
        raise ValueError(
            f"the fixed effects (intercept + {p - 1} covariates) are collinear; "
            "drop constant or duplicated covariate columns"
        )
    contrasts = np.linalg.qr(covariates, mode="complete")[0][:, p:]  # (n, n - p)
    if kinship is None:
        rotation, lam, s_full = contrasts.T, np.zeros(n - p), np.ones(n)
    else:
        s_full, q_full = np.linalg.eigh(kinship)
        s_full = np.where(s_full >= EIGEN_TOL, s_full, 0.0)
        projected = contrasts.T @ (q_full * s_full) @ (q_full.T @ contrasts)
        lam, u = np.linalg.eigh((projected + projected.T) / 2)
        lam = np.clip(lam, 0.0, None)
        rotation = u.T @ contrasts.T
    y_rot = rotation @ y
    problem = _Likelihood(y_rot, lam, s_full, reml)
    if kinship is None:
        delta = np.ones(y.shape[1])
    elif delta is not None:
        delta = np.asarray(delta, dtype=np.float64)
    else:
        lowest = 0.0 if reml and lam.min() >= EIGEN_TOL else DELTA_GRID[0]
        delta = problem.maximise(lowest)
        if not reml and np.any(delta <= lowest):
            logger.warning(
                "ML null fit reached the lower bound delta=%.1e for %d factors; the ML likelihood is "
                "unbounded there with a centred kinship, prefer reml=True",
                lowest,
                int(np.sum(delta <= lowest)),
            )
    return NullModel(rotation, lam, y_rot, delta, problem.lml(delta), problem.residual(delta))


class _Likelihood:
    """Profiled log-likelihood of ``delta`` for many factors, in the rotated contrast space."""

    def __init__(self, y_rot: NDArray, lam: NDArray, s_full: NDArray, reml: bool) -> None:
        self.y2 = y_rot.T**2  # (factors, n - p)
        self.lam = lam
        self.df = len(lam) if reml else len(s_full)
        self.logdet_eig = lam if reml else s_full

    def residual(self, delta: NDArray) -> NDArray:
        return np.einsum("fi,fi->f", self.y2, 1.0 / _diag(self.lam, delta))

    def lml(self, delta: NDArray) -> NDArray:
        logdet = np.log(_diag(self.logdet_eig, delta)).sum(axis=1)
        df = self.df
        return -0.5 * (df * (np.log(2 * np.pi) + 1.0 + np.log(self.residual(delta) / df)) + logdet)

    def score(self, delta: NDArray) -> NDArray:
        """Derivative of :meth:`lml` in ``delta``: ``df/2 (y^T P D' P y) / (y^T P y) - tr(D' D^-1) / 2``."""
        inv = 1.0 / _diag(self.lam, delta)
        weighted = self.y2 * inv
        num = (weighted * inv) @ (1.0 - self.lam)
        residual = weighted.sum(axis=1)
        logdet_inv = inv if self.logdet_eig is self.lam else 1.0 / _diag(self.logdet_eig, delta)
        trace = logdet_inv @ (1.0 - self.logdet_eig)
        return 0.5 * (self.df * num / residual - trace)

    def maximise(self, lowest: float) -> NDArray:
        """``delta`` in ``[lowest, 1]`` maximising the likelihood, per factor."""
        n_factors = self.y2.shape[0]
        deltas = np.concatenate([[lowest], DELTA_GRID[lowest < DELTA_GRID]])
        grid = np.array([self.lml(np.full(n_factors, d)) for d in deltas])  # (grid, factors)
        best = np.nanargmax(grid, axis=0)
        lo = deltas[np.maximum(best - 1, 0)]
        hi = deltas[np.minimum(best + 1, len(deltas) - 1)]
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            if np.all((mid == lo) | (mid == hi)):  # every bracket is down to adjacent floats
                break
            rising = self.score(mid) > 0
            lo, hi = np.where(rising, mid, lo), np.where(rising, hi, mid)
        candidates = np.stack([lo, hi, deltas[best]])
        values = np.stack([self.lml(c) for c in candidates])
        return candidates[np.nanargmax(values, axis=0), np.arange(n_factors)]


def _diag(eigenvalues: NDArray, delta: NDArray) -> NDArray:
    """(factors, k) diagonal ``(1 - delta) eigenvalues + delta`` of the scaled covariance."""
    delta = np.asarray(delta, dtype=float)[:, None]
    return (1.0 - delta) * eigenvalues[None, :] + delta


def scan_rotated(
    null: NullModel, g_rot: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Scan rotated, standardised variants against every factor at its null ``delta``.

    Parameters
    ----------
    null
        Output of :func:`fit_null`.
    g_rot
        (donors - p, variants) ``R @ standardised genotypes``.

    Returns
    -------
    pvalues, alpha, se
        (factors, variants) LRT p-values, effect sizes and standard errors per standard deviation
        of the variant. ``se`` is ``sqrt(s1 / g^T P g)`` with ``s1`` the alternative's ML scale,
        i.e. ``sqrt(diag((E^T Sigma^-1 E)^-1))`` for ``E = [X, g]`` and
        ``Sigma = s1 ((1 - delta) K + delta I)``.
    """
    w = null.weights  # (F, k)
    gpy = (w * null.y_rot.T) @ g_rot  # (F, m)  g^T P y
    gpg = w @ np.square(g_rot)  # (F, m)  g^T P g
    n = null.n_donors
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = gpy / gpg
        explained = np.multiply(gpy, alpha, out=gpy)  # r0 - r1, then 1 - r1 / r0
        explained /= null.r0[:, None]
        np.minimum(explained, 1.0 - np.finfo(float).eps, out=explained)
        se = np.subtract(1.0, explained)  # r1 / r0
        se *= (null.r0 / n)[:, None]  # alternative's ML scale s1
        se /= gpg
        np.sqrt(se, out=se)
        half_stat = np.log1p(np.negative(explained, out=explained), out=explained)
        half_stat *= -0.5 * n  # LRT / 2 = -(n / 2) log(r1 / r0)
        pvalues = special.erfc(np.sqrt(half_stat, out=half_stat), out=half_stat)  # chi-square(1) sf
    return pvalues, alpha, se


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
) -> AssociationResult:
    """Test every donor factor against every variant.

    Parameters
    ----------
    phenotypes
        (donors, factors) donor factors indexed by donor name; rows are aligned to ``donors``
        by name, extra rows are ignored.
    dosage
        (donors, variants) dosages 0/1/2, NaN = missing (mean-imputed per variant).
    donors
        Names of the rows of ``dosage`` (and of ``kinship``).
    variant_ids
        Names of the columns of ``dosage``.
    kinship
        (donors, donors) kinship in the order of ``donors``; required unless ``engine="ols"``.
    covariates
        (donors, covariates) numeric donor covariates indexed by donor name; an intercept is
        always added.
    engine
        ``"batched"`` (all factors at once, numpy), ``"glimix"`` (glimix-core, one factor at a
        time; the reference) or ``"ols"`` (no kinship).
    reml
        Fit the null noise share by REML (default) or ML.
    chunk_size
        Variants scanned at once; bounds memory at about ``(factors + donors) * chunk_size`` floats
        per thread.
    quantile_normalise
        Rank-based inverse-normal transform each factor before testing.
    pvalues_path
        If given, p-values, effect sizes and standard errors are written as memory-mapped
        ``.npy`` files (``<path>``, ``<stem>.beta.npy``, ``<stem>.se.npy``) instead of RAM.
    n_threads
        Threads scanning chunks at once (``batched`` and ``ols``; each uses one BLAS thread);
        default all cores.

    Returns
    -------
    AssociationResult
    """
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
    donors = list(map(str, donors))
    dosage = np.asarray(dosage)
    n = len(donors)
    if dosage.ndim != 2 or dosage.shape[0] != n:
        raise ValueError(f"dosage must be (donors, variants) with {n} rows (len(donors)), got {dosage.shape}")
    if dosage.shape[1] != len(variant_ids):
        raise ValueError(f"dosage has {dosage.shape[1]} variants but variant_ids has {len(variant_ids)}")
    if len(set(donors)) != n:
        raise ValueError("donors contains duplicated names; donor names must be unique")
    y_frame = _align(phenotypes, donors, "phenotypes")
    if y_frame.shape[1] == 0:
        raise ValueError("phenotypes has no columns; pass at least one donor factor")
    if quantile_normalise:
        y_frame = rank_inverse_normal(y_frame)
    y = y_frame.to_numpy(dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError("phenotypes contain NaN or inf for some donors; impute them or drop those donors")
    x = np.ones((n, 1))
    if covariates is not None and covariates.shape[1] > 0:
        x = np.hstack([x, _align(covariates, donors, "covariates").to_numpy(dtype=np.float64)])
        if not np.isfinite(x).all():
            raise ValueError("covariates contain NaN or inf; impute them or drop those donors")
    if n - x.shape[1] < 2:
        raise ValueError(f"{n} donors are too few for {x.shape[1]} fixed effects plus a variant")
    if kinship is not None:
        kinship = np.asarray(kinship, dtype=np.float64)
        if kinship.shape != (n, n):
            raise ValueError(f"kinship must be ({n}, {n}) in the order of donors, got {kinship.shape}")
        if not np.isfinite(kinship).all() or not np.allclose(kinship, kinship.T, atol=1e-8):
            raise ValueError("kinship must be finite and symmetric")
        kinship = (kinship + kinship.T) / 2

    n_factors, n_variants = y.shape[1], dosage.shape[1]
    residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    tested = (residual**2).sum(axis=0) > 1e-20 * (y**2).sum(axis=0)
    untested = tuple(str(c) for c in y_frame.columns[~tested])
    if untested:
        logger.warning(
            "not testing %d factors that are constant given the covariates: %s",
            len(untested),
            ", ".join(untested[:5]),
        )
    pvalues, beta, se = _allocate((n_factors, n_variants), pvalues_path)

    def scan_chunk(start: int) -> int:
        """Scan variants ``start:start + chunk_size`` into the outputs; returns the number skipped."""
        stop = min(start + chunk_size, n_variants)
        g_std, sd, keep = standardise_variants(dosage[:, start:stop])
        columns = start + np.nonzero(keep)[0]
        if not keep.all():
            pvalues[:, start:stop], beta[:, start:stop], se[:, start:stop] = np.nan, np.nan, np.nan
        if keep.all():
            p, alpha, alpha_se = _rows(tested, *scanner.scan(g_std))
            pvalues[:, start:stop] = p
            np.divide(alpha, sd, out=beta[:, start:stop])  # back to the dosage scale
            np.divide(alpha_se, sd, out=se[:, start:stop])
        elif columns.size:
            p, alpha, alpha_se = _rows(tested, *scanner.scan(g_std))
            pvalues[:, columns], beta[:, columns], se[:, columns] = p, alpha / sd, alpha_se / sd
        logger.debug("scanned variants %d-%d of %d", start, stop, n_variants)
        return int((~keep).sum())

    starts = range(0, n_variants, chunk_size)
    if engine == "glimix":  # glimix-core's scanners are not shared across threads
        scanner = _GlimixEngine(y[:, tested], x, kinship, reml)
        n_skipped = sum(map(scan_chunk, starts))
    else:
        # One BLAS thread per chunk and chunks on a thread pool: multi-threaded BLAS on these small
        # matrices (eigh of the kinship, (donors x chunk) products) collapses when the cores are
        # shared, and the element-wise p-value work is single-threaded in numpy.
        workers = max(1, min(n_threads or os.cpu_count() or 1, len(starts)))
        with threadpool_limits(limits=1, user_api="blas"):
            scanner = _BatchedEngine(fit_null(y[:, tested], x, kinship, reml=reml))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                n_skipped = sum(pool.map(scan_chunk, starts))
    if n_skipped:
        logger.info("skipped %d monomorphic variants of %d", n_skipped, n_variants)
    for array in (pvalues, beta, se):
        if isinstance(array, np.memmap):
            array.flush()
    return AssociationResult(
        factors=tuple(str(c) for c in y_frame.columns),
        variants=tuple(map(str, variant_ids)),
        pvalues=pvalues,
        beta=beta,
        se=se,
        delta=_rows(tested, scanner.delta[:, None])[0][:, 0],
        null_lml=_rows(tested, scanner.lml[:, None])[0][:, 0],
        n_monomorphic_skipped=n_skipped,
        engine=engine,
        reml=reml,
        untested_factors=untested,
    )


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


class _BatchedEngine:
    """All factors x a chunk of variants per call (see module docstring)."""

    def __init__(self, null: NullModel) -> None:
        self.null, self.delta, self.lml = null, null.delta, null.lml

    def scan(self, g_std: NDArray) -> tuple[NDArray, NDArray, NDArray]:
        return scan_rotated(self.null, self.null.rotation @ g_std)


class _GlimixEngine:
    """glimix-core, one factor at a time: ``LMM(...).fit()`` then ``get_fast_scanner().fast_scan``."""

    def __init__(self, y: NDArray, x: NDArray, kinship: NDArray, reml: bool) -> None:
        from glimix_core.lmm import LMM
        from numpy_sugar.linalg import economic_qs

        qs = economic_qs(kinship)
        self.scanners, delta, lml = [], [], []
        for f, column in enumerate(y.T):
            lmm = LMM(column, x, qs, restricted=reml)
            try:
                lmm.fit(verbose=False)
            except ValueError as error:
                # Below delta = 1.5e-8 glimix-core drops the noise term, so with a kinship null
                # space (K 1 = 0) its REML determinant turns non-positive; keep it above that.
                logger.warning(
                    "glimix-core fit of factor %d failed (%s); refitting with delta >= %g",
                    f,
                    error,
                    GLIMIX_MIN_DELTA,
                )
                lmm = LMM(column, x, qs, restricted=reml)
                lmm._logistic.bounds = (float(special.logit(GLIMIX_MIN_DELTA)), lmm._logistic.bounds[1])
                lmm.fit(verbose=False)
            delta.append(lmm.delta)
            lml.append(lmm.lml())
            self.scanners.append(lmm.get_fast_scanner())
        self.delta, self.lml, self.multi_covariate = np.array(delta), np.array(lml), x.shape[1] > 1

    def scan(self, g_std: NDArray) -> tuple[NDArray, NDArray, NDArray]:
        shape = (len(self.scanners), g_std.shape[1])
        pvalues, alpha, se = np.empty(shape), np.empty(shape), np.empty(shape)
        for f, scanner in enumerate(self.scanners):
            out = scanner.fast_scan(g_std, verbose=False)
            stat = np.clip(2.0 * (out["lml"] - scanner.null_lml()), 0.0, None)
            pvalues[f] = special.erfc(np.sqrt(0.5 * stat))
            alpha[f] = out["effsizes1"]
            # glimix-core's multi-covariate branch returns sqrt(diag((E^T B E)^-1)) without the scale.
            se[f] = out["effsizes1_se"] * (np.sqrt(out["scale"]) if self.multi_covariate else 1.0)
        return pvalues, alpha, se


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
