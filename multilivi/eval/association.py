"""Linear-mixed-model association scan of donor factors against variants.

Every donor factor is tested against every variant with the null noise share fitted once per
factor (REML by default) and a GLS Wald t-test per variant with ``n - rank(X) - 1`` degrees of
freedom (``test="wald"``, exact for OLS) or glimix-core's likelihood-ratio test (``test="lrt"``);
the model and the engines are in :mod:`multilivi.eval.lmm`. Variants are standardised before the
scan (the statistics are invariant) and effect sizes and standard errors are converted back to the
dosage scale. :func:`permuted_null_scan` is the same scan against genotypes of permuted donors,
the in-run false-positive estimate.

Genotypes are a (donors, variants) array or any :class:`~multilivi.eval.scan_chunks.ChunkSource`
(read in chunks of variants). Scans of at most :data:`DENSE_MAX_TESTS` tests keep every test (dense
``pvalues``, ``beta``, ``se``); larger ones keep a bounded summary (:mod:`multilivi.eval.scan_summary`):
hits below ``hit_threshold``, counts, minima and a histogram of the statistic, so memory does not
grow with factors x variants. Chunks run on a thread pool, or on a ``dask.distributed`` cluster
given as ``scheduler=`` or by the ``MULTILIVI_DASK_SCHEDULER`` environment variable.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from multilivi.eval import fdr as fdr_mod
from multilivi.eval.blas import one_blas_thread
from multilivi.eval.lmm import ENGINES, TESTS, Engine, fit_null
from multilivi.eval.records import MetricResult
from multilivi.eval.scan_chunks import (
    ArraySource,
    ChunkSource,
    Collector,
    PermutedSource,
    ScanPlan,
    parquet_chunks,
    run_chunks,
)
from multilivi.eval.scan_summary import BoundedScan, StatisticScale

__all__ = [
    "AssociationResult",
    "fit_null",
    "lmm_scan",
    "permuted_null_scan",
    "permuted_null_summary",
    "rank_inverse_normal",
]

logger = logging.getLogger(__name__)

DENSE_MAX_TESTS = 2_000_000  # scans up to this many factors x variants keep every test (48 MB)
HIT_THRESHOLD = 1e-5  # a bounded scan keeps the tests with p below this
RESCANS = 3  # times a bounded scan is rerun with a 100x larger threshold when BH is not exact
CHUNK_DOSAGES = 2**21  # default chunk: about this many dosages (16 MiB of float64), 1,024-4,096 variants


@dataclass
class AssociationResult:
    """Output of :func:`lmm_scan`.

    Attributes
    ----------
    factors, variants
        Row and column names of the result matrices (the caller's ``variant_ids`` sequence as
        given, without copying it: one index of 10⁶ ids can serve every view and model).
    pvalues, beta, se
        (factors, variants) p-values of ``test``, effect sizes and standard errors on the dosage
        scale (conventional residual scale ``r1 / (n - rank(X) - 1)``, as statsmodels reports);
        NaN for skipped (monomorphic) variants. Memory-mapped ``.npy`` files when the scan was
        given ``pvalues_path``; None for a bounded scan (see ``bounded``).
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
    bounded
        The hits, counts, minima and statistic histogram of a scan that did not keep every test.
    """

    factors: tuple[str, ...]
    variants: Sequence[str]
    pvalues: NDArray[np.float64] | None
    beta: NDArray[np.float64] | None
    se: NDArray[np.float64] | None
    delta: NDArray[np.float64]
    null_lml: NDArray[np.float64]
    n_monomorphic_skipped: int
    engine: str
    reml: bool
    untested_factors: tuple[str, ...] = ()
    test: str = "wald"
    bounded: BoundedScan | None = None

    @property
    def n_tests(self) -> int:
        """Number of factor x variant tests with a p-value."""
        if self.bounded is not None:
            return self.bounded.n_tests
        return int(sum(np.isfinite(row).sum() for row in self.pvalues))

    def hits(self, fdr: float = 0.05) -> pd.DataFrame:
        """Significant factor-variant pairs at a Benjamini-Hochberg FDR over all tests.

        Returns
        -------
        DataFrame with columns ``factor, variant, beta, se, pvalue, qvalue``, sorted by p-value;
        a pair is significant when its BH q-value is ``<= fdr``. A bounded scan warns when its
        hits cannot give BH at ``fdr`` exactly (:meth:`BoundedScan.bh_exact`).
        """
        if self.bounded is not None:
            return self._bounded_hits(fdr)
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

    def _bounded_hits(self, fdr: float) -> pd.DataFrame:
        if not 0 < fdr < 1:
            raise ValueError(f"fdr must lie in (0, 1), got {fdr}")
        if not self.bounded.bh_exact(fdr):
            warnings.warn(
                f"BH at fdr={fdr:g} may call pairs with p >= the scan's hit threshold "
                f"{self.bounded.threshold:g}; rescan with a larger hit_threshold",
                stacklevel=3,
            )
        index, q = self.bounded.bh(fdr)
        table = self.bounded.hit_frame(self.factors, self.variants).iloc[index].assign(qvalue=q)
        return table.sort_values("pvalue", kind="stable").reset_index(drop=True)

    def lambda_gc(self) -> float:
        """Genomic-control inflation over all tests (dense: reads the p-value matrix once)."""
        if self.bounded is not None:
            return self.bounded.lambda_gc()
        return fdr_mod.genomic_control_lambda(np.asarray(self.pvalues))

    def lambda_gc_of(self, variants: NDArray[np.intp]) -> float:
        """Genomic-control lambda over the tests of the variant columns ``variants``.

        A bounded scan computes it from its histogram less the kept columns of every other
        variant, which must have been requested with ``keep_variants``.
        """
        if self.bounded is None:
            return fdr_mod.genomic_control_lambda(np.asarray(self.pvalues)[:, variants])
        others = np.setdiff1d(np.arange(len(self.variants)), variants)
        return self.bounded.lambda_gc(exclude=others)

    def min_pvalues(self) -> NDArray[np.float64]:
        """(variants,) minimum p over factors; NaN for untested variants."""
        if self.bounded is not None:
            return self.bounded.variant_min_p
        p = np.asarray(self.pvalues, dtype=np.float64)
        low = np.where(np.isnan(p), np.inf, p).min(axis=0)
        return np.where(np.isinf(low), np.nan, low)

    def factor_min_pvalues(self) -> pd.DataFrame:
        """Per factor the minimum p and its variant (NaN / None for untested factors)."""
        if self.bounded is not None:
            low, where = self.bounded.factor_min_p, self.bounded.factor_min_variant
        else:
            p = np.where(np.isnan(self.pvalues), np.inf, np.asarray(self.pvalues, dtype=np.float64))
            where = p.argmin(axis=1)
            low = p[np.arange(p.shape[0]), where]
            where = np.where(np.isinf(low), -1, where)
            low = np.where(np.isinf(low), np.nan, low)
        variants = [self.variants[v] if v >= 0 else None for v in where]
        return pd.DataFrame({"factor": list(self.factors), "min_p": low, "variant": variants})

    def pvalue_distribution(self) -> NDArray[np.float64] | fdr_mod.QQData:
        """What the QQ plots and p-value histograms draw: the dense p-values, or a bounded scan's summary."""
        return self.bounded.qq_data() if self.bounded is not None else self.pvalues

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
    genotypes: NDArray[np.floating] | ChunkSource,
    *,
    donors: Sequence[str],
    variant_ids: Sequence[str],
    kinship: NDArray[np.floating] | None = None,
    covariates: pd.DataFrame | None = None,
    engine: str = "batched",
    reml: bool = True,
    chunk_size: int | None = None,
    quantile_normalise: bool = False,
    pvalues_path: str | Path | None = None,
    n_threads: int | None = None,
    test: str = "wald",
    keep_all: bool | None = None,
    hit_threshold: float = HIT_THRESHOLD,
    keep_variants: Sequence[str] = (),
    precision: str | None = None,
    full_results_path: str | Path | None = None,
    scheduler: object | None = None,
    fdr: float = 0.05,
    backend: str = "numpy",
    variant_minima: bool = True,
) -> AssociationResult:
    """Test every donor factor against every variant.

    Parameters
    ----------
    phenotypes
        (donors, factors) donor factors indexed by donor name (aligned to ``donors``; extra rows ignored).
    genotypes
        (donors, variants) dosages in [0, 2], NaN = missing (mean-imputed per variant), or a
        :class:`~multilivi.eval.scan_chunks.ChunkSource` read chunk by chunk.
    donors, variant_ids
        Names of the rows (also of ``kinship``) and columns of the genotypes.
    kinship
        (donors, donors) kinship in the order of ``donors``; required unless ``engine="ols"``.
    covariates
        (donors, covariates) numeric donor covariates indexed by donor name; an intercept is always added.
    engine
        ``"batched"`` (all factors at once), ``"glimix"`` (glimix-core per factor; reference) or ``"ols"``.
    reml
        Fit the null noise share by REML (default) or ML.
    chunk_size, n_threads
        Variants scanned at once (about ``(factors + donors) * chunk_size`` floats per thread; default
        :func:`default_chunk_size`: larger chunks pay the per-chunk overhead less often), and threads
        scanning chunks at once (``batched``, ``ols``; one BLAS thread each; default all cores).
    quantile_normalise
        Rank-based inverse-normal transform each factor before testing.
    pvalues_path
        Write p-values, effects and SEs as memory-mapped ``<path>``, ``<stem>.beta.npy``, ``<stem>.se.npy``
        (a dense scan).
    test
        ``"wald"`` (default): GLS Wald t-test with ``n - rank(X) - 1`` degrees of freedom, the exact
        t-test for ``ols``; ``"lrt"``: likelihood ratio against chi-square(1), as glimix-core.
    keep_all
        Keep every test (dense outputs); default: when factors x variants <= ``DENSE_MAX_TESTS``,
        or ``pvalues_path`` is given, or ``engine="glimix"``.
    hit_threshold
        A bounded scan keeps the tests with ``p < hit_threshold``.
    keep_variants
        Variant ids whose full columns a bounded scan keeps (e.g. the causal variants of a truth).
    precision
        Products of a bounded scan's statistic: ``"float32"`` (default) or ``"float64"``; every
        reported p-value, effect and SE is computed in float64 either way.
    full_results_path
        Also write every test (``factor, variant, beta, se, pvalue``) to this parquet file, chunk by chunk.
    scheduler
        A ``dask.distributed`` scheduler address or ``Client`` to run the chunks on (default: the
        ``MULTILIVI_DASK_SCHEDULER`` environment variable, else a local thread pool).
    fdr
        A bounded scan is rerun with a 100x larger ``hit_threshold`` (up to ``RESCANS`` times)
        until BH at ``fdr`` is exact from its hits.
    backend
        ``"numpy"``, or ``"torch"``: a bounded scan's products in torch, on CUDA when present
        (:mod:`multilivi.eval.torch_scan`; ``batched`` and ``ols``).
    variant_minima
        A bounded scan keeps every variant's minimum p over factors (4 B per variant, what
        :meth:`AssociationResult.min_pvalues` and Manhattan plots need); False keeps the scan's
        memory independent of the number of variants.
    """
    _check_options(engine, kinship, chunk_size, n_threads, test)
    donors, source = _check_genotypes(genotypes, donors, variant_ids)
    chunk_size = chunk_size or default_chunk_size(len(donors))
    y_frame = _phenotype_frame(phenotypes, donors, quantile_normalise)
    n_tests = y_frame.shape[1] * source.n_variants
    dense = _dense(keep_all, n_tests, pvalues_path, engine)
    dtype = _precision(precision, dense)
    if not 0 < hit_threshold <= 1:
        raise ValueError(f"hit_threshold must lie in (0, 1], got {hit_threshold}")
    if backend not in ("numpy", "torch") or (backend == "torch" and (dense or engine == "glimix")):
        raise ValueError(
            f"backend must be 'numpy' or 'torch' (torch: a bounded scan, keep_all=False, with engine "
            f"'batched' or 'ols'), got backend={backend!r}, engine={engine!r}, keep_all={dense}"
        )
    x = _design(covariates, donors)
    kinship = _check_kinship(kinship, len(donors))
    y, tested = _tested_factors(y_frame, x)
    # one BLAS thread for the threaded engines' fits too: multi-threaded eigh of the kinship collapses
    # when the cores are shared (as the chunks' products, see scan_chunks.run_chunks)
    limit = one_blas_thread() if ENGINES[engine].threaded else nullcontext()
    with limit:
        fitted = ENGINES[engine](y, x, kinship, reml, test)
    if backend == "torch":
        from multilivi.eval.torch_scan import TorchEngine

        fitted = TorchEngine(fitted)
    keep = _variant_indices(keep_variants, variant_ids)
    how = {"engine": engine, "reml": reml, "test": test}
    for attempt in range(RESCANS + 1):
        plan = ScanPlan(
            chunk_size=chunk_size,
            tested=np.flatnonzero(tested),
            dense=dense,
            threshold=hit_threshold,
            u_threshold=StatisticScale(test, fitted.df, fitted.n).u_of(hit_threshold),
            dtype=dtype,
            keep=keep,
            full=full_results_path is not None,
            variant_minima=variant_minima,
        )
        arrays = _allocate((tested.size, source.n_variants), pvalues_path) if dense else None
        factor_names = list(map(str, y_frame.columns))
        with parquet_chunks(full_results_path, factor_names, variant_ids, plan.tested) as parquet:
            collector = Collector(plan, tested.size, source.n_variants, arrays, parquet)
            run_chunks(fitted, source, plan, collector.add, n_threads=n_threads, scheduler=scheduler)
        result = _result(y_frame, variant_ids, collector, fitted, tested, **how)
        if dense or attempt == RESCANS or hit_threshold >= fdr or result.bounded.bh_exact(fdr):
            break
        hit_threshold = min(1.0, hit_threshold * 100)
        logger.warning("BH at fdr=%g is not exact from the hits; rescanning with p < %g", fdr, hit_threshold)
    return result


def _dense(keep_all: bool | None, n_tests: int, pvalues_path: object, engine: str) -> bool:
    """Whether the scan keeps every test."""
    if keep_all is False and (pvalues_path is not None or engine == "glimix"):
        raise ValueError(
            "keep_all=False (a bounded scan) cannot write pvalues_path or run engine='glimix' (the "
            "per-factor reference keeps every test); drop pvalues_path or use engine='batched'"
        )
    if keep_all is None:
        return n_tests <= DENSE_MAX_TESTS or pvalues_path is not None or engine == "glimix"
    return keep_all


def _precision(precision: str | None, dense: bool) -> type:
    if precision not in (None, "float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    return np.float64 if dense or precision == "float64" else np.float32


def string_index(ids: Sequence[str]) -> pd.Index:
    """``ids`` as an Index of Python str, hashed once (arrow-backed ids are slow to look up one by one)."""
    if isinstance(ids, pd.Index):
        return pd.Index(ids.astype(str).to_numpy(dtype=object))
    return pd.Index(list(map(str, ids)))


def _variant_indices(keep_variants: Sequence[str], variant_ids: Sequence[str]) -> NDArray[np.intp]:
    """Sorted column indices of ``keep_variants`` (an error names the unknown ones)."""
    if len(keep_variants) == 0:
        return np.empty(0, dtype=np.intp)
    index = string_index(variant_ids)
    where = index.get_indexer(list(map(str, keep_variants)))
    if (where < 0).any():
        unknown = [v for v, w in zip(keep_variants, where) if w < 0]
        raise ValueError(f"keep_variants has {len(unknown)} ids not in variant_ids, e.g. {unknown[:5]}")
    return np.unique(where)


def _result(
    y_frame: pd.DataFrame,
    variant_ids: Sequence[str],
    collector: Collector,
    fitted: Engine,
    tested: NDArray[np.bool_],
    **how: str | bool,
) -> AssociationResult:
    """The :class:`AssociationResult` of a finished scan; ``how`` holds ``engine``, ``reml`` and ``test``."""
    if collector.n_skipped:
        logger.info("skipped %d monomorphic variants of %d", collector.n_skipped, collector.n_variants)
    if collector.plan.dense:
        arrays = dict(zip(("pvalues", "beta", "se"), collector.dense_arrays))
        for array in arrays.values():
            if isinstance(array, np.memmap):
                array.flush()
        bounded = None
    else:
        arrays = {"pvalues": None, "beta": None, "se": None}
        bounded = collector.bounded(StatisticScale(fitted.test, fitted.df, fitted.n))
    return AssociationResult(
        factors=tuple(str(c) for c in y_frame.columns),
        variants=variant_ids,
        **arrays,
        delta=_rows(tested, fitted.delta[:, None])[0][:, 0],
        null_lml=_rows(tested, fitted.lml[:, None])[0][:, 0],
        n_monomorphic_skipped=collector.n_skipped,
        untested_factors=tuple(str(c) for c in y_frame.columns[~tested]),
        bounded=bounded,
        **how,
    )


def permuted_null_scan(
    phenotypes: pd.DataFrame,
    genotypes: NDArray[np.floating] | ChunkSource,
    *,
    donors: Sequence[str],
    variant_ids: Sequence[str],
    seed: int,
    kinship: NDArray[np.floating] | None = None,
    **options: object,
) -> AssociationResult:
    """:func:`lmm_scan` against the genotypes of randomly permuted donors: a null with the same structure.

    The dosage rows of every chunk read and the (donors, donors) kinship rows and columns are
    permuted together, so the kinship still describes the genotypes it is scanned with, while the
    phenotypes and covariates stay with their donors. Every association found is a false positive.
    ``options`` are passed to :func:`lmm_scan`.
    """
    order = np.random.default_rng(seed).permutation(len(donors))
    permuted_kinship = None if kinship is None else np.asarray(kinship)[np.ix_(order, order)]
    source = ArraySource(np.asarray(genotypes)) if isinstance(genotypes, np.ndarray) else genotypes
    return lmm_scan(
        phenotypes,
        PermutedSource(source, order),
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


def default_chunk_size(n_donors: int) -> int:
    """Variants per chunk: about :data:`CHUNK_DOSAGES` dosages, a power of two in [1,024, 4,096].

    At 100 and 300 donors 4,096 variants scan 10-40 % faster than 2,048; at 1,000 the size does
    not matter (benchmarks/perf/README.md).
    """
    return int(np.clip(2 ** int(np.log2(max(CHUNK_DOSAGES // max(n_donors, 1), 1))), 1024, 4096))


def _check_options(
    engine: str, kinship: object, chunk_size: int | None, n_threads: int | None, test: str
) -> None:
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "ols" and kinship is not None:
        raise ValueError("engine='ols' ignores kinship; pass kinship=None or use engine='batched'")
    if engine != "ols" and kinship is None:
        raise ValueError(f"engine={engine!r} needs a kinship matrix; pass kinship= or use engine='ols'")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"n_threads must be positive (or None for all cores), got {n_threads}")


def _check_genotypes(
    genotypes: NDArray[np.floating] | ChunkSource, donors: Sequence[str], variant_ids: Sequence[str]
) -> tuple[list[str], ChunkSource]:
    """Donor names as strings, and the genotypes as a source of (donors, variants) chunks."""
    donors = list(map(str, donors))
    n = len(donors)
    if hasattr(genotypes, "read") and hasattr(genotypes, "n_variants"):
        source = genotypes
    else:
        dosage = np.asarray(genotypes)
        if dosage.ndim != 2 or dosage.shape[0] != n:
            raise ValueError(
                f"dosage must be (donors, variants) with {n} rows (len(donors)), got {dosage.shape}"
            )
        source = ArraySource(dosage)
    if source.n_variants != len(variant_ids):
        raise ValueError(
            f"genotypes have {source.n_variants} variants but variant_ids has {len(variant_ids)}"
        )
    if len(set(donors)) != n:
        raise ValueError("donors contains duplicated names; donor names must be unique")
    return donors, source


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
    non_numeric = [c for c, dtype in aligned.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]
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
