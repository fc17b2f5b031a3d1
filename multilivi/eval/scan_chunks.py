"""The chunked driver of :func:`multilivi.eval.association.lmm_scan`: genotype sources, one chunk's
scan, and the collection of chunk outputs on threads or on a Dask cluster.

A chunk of variants is read from the source, standardised, and scanned against every factor. A
dense scan keeps every test; a bounded scan computes the cheap statistic ``u`` of every test
(float32 products allowed), bins it, and recomputes in float64, by the dense formula, only the
columns that hold a candidate hit (``u`` within :data:`~multilivi.eval.scan_summary.FLOAT32_MARGIN`
of the threshold) or a requested variant. Chunks are independent, so they run on a thread pool (one
BLAS thread each) or as Dask tasks; their outputs are merged in any order with the same result.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from multilivi.atomic import atomic_path
from multilivi.eval.blas import one_blas_thread
from multilivi.eval.lmm import Engine
from multilivi.eval.scan_summary import FLOAT32_MARGIN, N_BINS, BoundedScan, StatisticScale, bin_scaled
from multilivi.eval.scratch import buffer

logger = logging.getLogger(__name__)

MONOMORPHIC_TOL = 1e-12  # a variant with sd <= 1e-12 max(1, |mean dosage|) is not tested
SCHEDULER_ENV = "MULTILIVI_DASK_SCHEDULER"


class ChunkSource(Protocol):
    """Dosages read in chunks of variants, rows in the order of the scan's donors (e.g.
    :class:`multilivi.data.genetics.Genotypes`, whatever its files' format).
    """

    n_variants: int

    def read(self, start: int, stop: int, *, dtype: type = np.float64) -> NDArray[np.floating]:
        """(donors, stop - start) dosages in [0, 2], NaN = missing, freshly allocated."""
        ...


@dataclass(frozen=True)
class ArraySource:
    """A (donors, variants) dosage array as a :class:`ChunkSource`."""

    dosage: NDArray[np.floating]

    @property
    def n_variants(self) -> int:
        return self.dosage.shape[1]

    def read(self, start: int, stop: int, *, dtype: type = np.float64) -> NDArray[np.floating]:
        """(donors, stop - start) dosages: a view when ``dosage`` has ``dtype`` (never written to)."""
        return self.dosage[:, start:stop].astype(dtype, copy=False)


@dataclass(frozen=True)
class PermutedSource:
    """``source`` with its donor rows permuted by ``order`` in every chunk read."""

    source: ChunkSource
    order: NDArray[np.intp]

    @property
    def n_variants(self) -> int:
        return self.source.n_variants

    def read(self, start: int, stop: int, *, dtype: type = np.float64) -> NDArray[np.floating]:
        return self.source.read(start, stop, dtype=dtype)[self.order]


@dataclass(frozen=True)
class ScanPlan:
    """What every chunk computes.

    Attributes
    ----------
    chunk_size
        Variants per chunk.
    tested
        (factors,) indices of the tested factors (rows of the engine's outputs).
    dense
        Keep every test (dense outputs) instead of the bounded summary.
    threshold, u_threshold
        Hits are tests with ``p < threshold``; ``u_threshold`` is its ``u``.
    dtype
        Precision of the products of the bounded statistic (float32 or float64).
    keep
        Sorted variant indices whose full columns are kept.
    full
        Also return every chunk's dense outputs (written to parquet by the collector).
    variant_minima
        Keep every variant's largest ``u`` over factors (its minimum p; 4 B per variant with float32
        products) for Manhattan plots; without it a bounded scan's memory does not grow with variants.
    """

    chunk_size: int
    tested: NDArray[np.intp]
    dense: bool
    threshold: float
    u_threshold: float
    dtype: type
    keep: NDArray[np.intp]
    full: bool = False
    variant_minima: bool = True

    @property
    def u_candidate(self) -> float:
        """Tests with ``u`` at or above this are recomputed exactly (the threshold less a margin)."""
        margin = FLOAT32_MARGIN if np.dtype(self.dtype) == np.float32 else 1e-9
        return max(self.u_threshold - margin, 0.0)


@dataclass
class ChunkOutput:
    """The scan of variants ``start:stop``: dense outputs or the chunk's bounded summary."""

    start: int
    stop: int
    columns: NDArray[np.intp]  # global indices of the tested (polymorphic) variants
    n_skipped: int
    dense: tuple[NDArray, NDArray, NDArray] | None = None  # (tested factors, columns) p, beta, se
    counts: NDArray[np.int64] | None = None
    hits: tuple[NDArray, ...] | None = None  # rows (tested-factor positions), cols, p, beta, se
    factor_max_u: NDArray[np.float64] | None = None  # (tested factors,)
    factor_argmax: NDArray[np.intp] | None = None  # global variant index
    variant_max_u: NDArray[np.float64] | None = None  # (columns,) largest u over factors
    exact_min_p: tuple[NDArray, NDArray] | None = None  # variant indices recomputed exactly, their min p
    kept: dict[int, tuple[NDArray, NDArray, NDArray]] = field(default_factory=dict)


def scan_chunk(engine: Engine, source: ChunkSource, plan: ScanPlan, start: int) -> ChunkOutput:
    """Read, standardise and scan variants ``start:start + plan.chunk_size`` of ``source``."""
    stop = min(start + plan.chunk_size, source.n_variants)
    g, keep, sd = centre(source.read(start, stop))
    columns = start + np.flatnonzero(keep)
    out = ChunkOutput(start, stop, columns, int((~keep).sum()))
    logger.debug("scanned variants %d-%d of %d", start, stop, source.n_variants)
    if plan.dense or plan.full or np.dtype(plan.dtype) == np.float64:
        g /= sd  # standardised in place
        g_scan, g_centred = g, None
    else:  # float32 products of the centred variants (``u`` does not depend on their scale)
        g_scan = buffer("centred32", g.shape, np.float32)
        np.copyto(g_scan, g, casting="same_kind")
        g_centred = g
    if plan.dense or plan.full:
        pvalues, alpha, se = engine.scan_chunk(g_scan) if columns.size else _empty(plan, 0)
        out.dense = (pvalues, alpha / sd, se / sd)
        if plan.dense:
            return out
    return _bounded(engine, g_scan, g_centred, sd, plan, out)


def centre(
    dosage: NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
    """Mean-impute and centre (donors, variants) dosages; drop monomorphic variants.

    :func:`multilivi.data.genetics.standardised_genotypes` (same operations, so the same bits)
    without its final division by ``sd``; ``dosage`` is not modified, the centred array is this
    thread's scratch :func:`buffer` (valid until the next call).

    Returns
    -------
    centred (donors, kept variants), kept (variants,) mask, sd (kept variants,) standard deviations.
    """
    g = np.asarray(dosage, dtype=np.float64)
    total = g.sum(axis=0)
    if np.isnan(total).any():  # missing calls (the sums find them without a pass over the chunk)
        missing = np.isnan(g)
        g = g.copy()
        g[missing] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = g.sum(axis=0) / (~missing).sum(axis=0)  # NaN for variants with no calls
        g[missing] = np.take(mean, np.nonzero(missing)[1])
        sd = g.std(axis=0)
        g -= mean
    else:
        mean = total / g.shape[0]  # g.mean(axis=0), the same bits
        g = np.subtract(g, mean, out=buffer("centred", g.shape, np.float64))
        sd = np.sqrt(np.square(g, out=buffer("square", g.shape, np.float64)).sum(axis=0) / g.shape[0])
    kept = np.isfinite(sd) & (sd > np.maximum(MONOMORPHIC_TOL, MONOMORPHIC_TOL * np.abs(mean)))
    if not kept.all():
        g, sd = g[:, kept], sd[kept]
    return g, kept, sd


def _bounded(
    engine: Engine,
    g_scan: NDArray[np.floating],
    g_centred: NDArray[np.float64] | None,
    sd: NDArray[np.float64],
    plan: ScanPlan,
    out: ChunkOutput,
) -> ChunkOutput:
    """Fill ``out`` with the bounded summary of a chunk.

    ``g_scan`` (donors, columns) are the variants in the products' precision: standardised float64,
    or centred float32 with ``g_centred`` their float64 values (None when ``g_scan`` is float64).
    """
    n_factors = plan.tested.size
    if out.columns.size == 0:
        out.counts = np.zeros(N_BINS + 1, dtype=np.int64)
        out.hits = _no_hits()
        out.factor_max_u, out.factor_argmax = np.full(n_factors, -1.0), np.full(n_factors, -1, np.intp)
        out.variant_max_u, out.exact_min_p = np.empty(0), (np.empty(0, np.intp), np.empty(0))
        return out
    to_bins = N_BINS / plan.u_threshold
    u = engine.scan_u(g_scan, plan.dtype, to_bins, out=buffer("u", (n_factors, g_scan.shape[1]), plan.dtype))
    best = u.argmax(axis=1)
    out.factor_max_u = u[np.arange(n_factors), best].astype(np.float64) / to_bins
    out.factor_argmax = out.columns[best]
    out.variant_max_u = u.max(axis=0).astype(np.float64) / to_bins
    out.counts = bin_scaled(u, buffer("bins", u.shape, np.intp))  # overwrites u
    candidate = np.flatnonzero(out.variant_max_u >= plan.u_candidate)
    requested = np.flatnonzero(np.isin(out.columns, plan.keep))
    exact = np.union1d(candidate, requested)
    rows, cols, p_hit, b_hit, s_hit = _no_hits()
    out.exact_min_p = (np.empty(0, np.intp), np.empty(0))
    if exact.size:
        if out.dense is not None:
            pvalues, beta, se = (a[:, exact] for a in out.dense)
        else:
            exact_std = g_scan[:, exact] if g_centred is None else g_centred[:, exact] / sd[exact]
            pvalues, alpha, se = engine.scan_chunk(exact_std)
            beta, se = alpha / sd[exact], se / sd[exact]
        out.exact_min_p = (out.columns[exact], pvalues.min(axis=0))
        r, c = np.nonzero(pvalues < plan.threshold)
        rows, cols = r, out.columns[exact[c]]
        p_hit, b_hit, s_hit = pvalues[r, c], beta[r, c], se[r, c]
        for j in np.flatnonzero(np.isin(exact, requested)):
            out.kept[int(out.columns[exact[j]])] = (pvalues[:, j], beta[:, j], se[:, j])
    out.hits = (rows, cols, p_hit, b_hit, s_hit)
    return out


def _no_hits() -> tuple[NDArray, ...]:
    """Empty hit arrays: rows, cols, p, beta, se."""
    return tuple(np.empty(0, dtype=d) for d in (np.intp, np.intp, float, float, float))


def _empty(plan: ScanPlan, m: int) -> tuple[NDArray, NDArray, NDArray]:
    return tuple(np.empty((plan.tested.size, m)) for _ in range(3))


class Collector:
    """Merges :class:`ChunkOutput` s (in any order) into dense arrays or a :class:`BoundedScan`."""

    def __init__(
        self,
        plan: ScanPlan,
        n_factors: int,
        n_variants: int,
        dense_arrays: tuple[NDArray, NDArray, NDArray] | None,
        parquet: _ParquetChunks | None = None,
    ) -> None:
        self.plan, self.n_factors, self.n_variants = plan, n_factors, n_variants
        self.dense_arrays = dense_arrays
        self.parquet = parquet
        self.n_skipped = 0
        self.n_columns = 0
        if not plan.dense:
            self.counts = np.zeros(N_BINS + 1, dtype=np.int64)
            self.hits: list[tuple[NDArray, ...]] = [_no_hits()]
            self.factor_max_u = np.full(plan.tested.size, -1.0)
            self.factor_argmax = np.full(plan.tested.size, -1, dtype=np.intp)
            # 4 B per variant with float32 products
            self.variant_max_u = (
                np.full(n_variants, np.nan, dtype=plan.dtype) if plan.variant_minima else None
            )
            self.exact_min_p: list[tuple[NDArray, NDArray]] = []
            self.kept: dict[int, tuple[NDArray, NDArray, NDArray]] = {}

    def add(self, out: ChunkOutput) -> None:
        """Merge one chunk."""
        self.n_skipped += out.n_skipped
        self.n_columns += out.columns.size
        if self.parquet is not None and out.dense is not None:
            self.parquet.write(out)
        if self.plan.dense:
            self._add_dense(out)
            return
        self.counts += out.counts
        self.hits.append(out.hits)
        # larger u wins; on ties the smaller variant index, so the merge order does not matter
        better = (out.factor_max_u > self.factor_max_u) | (
            (out.factor_max_u == self.factor_max_u) & (out.factor_argmax < self.factor_argmax)
        )
        self.factor_max_u = np.where(better, out.factor_max_u, self.factor_max_u)
        self.factor_argmax = np.where(better, out.factor_argmax, self.factor_argmax)
        if self.variant_max_u is not None:
            self.variant_max_u[out.columns] = out.variant_max_u
        self.exact_min_p.append(out.exact_min_p)
        self.kept.update(out.kept)

    def _add_dense(self, out: ChunkOutput) -> None:
        rows = self.plan.tested
        for target, values in zip(self.dense_arrays, out.dense):
            target[:, out.start : out.stop] = np.nan
            if out.columns.size:
                target[np.ix_(rows, out.columns)] = values

    def bounded(self, scale: StatisticScale) -> BoundedScan:
        """The merged :class:`BoundedScan` (factor indices over all factors, untested ones NaN)."""
        rows, cols, p, beta, se = (np.concatenate(parts) for parts in zip(*self.hits))
        rows = self.plan.tested[rows]
        order = np.lexsort((cols, rows))
        factor_min_p = np.full(self.n_factors, np.nan)
        factor_min_variant = np.full(self.n_factors, -1, dtype=np.intp)
        found = self.factor_argmax >= 0
        factor_min_p[self.plan.tested[found]] = scale.pvalues(self.factor_max_u[found])
        factor_min_variant[self.plan.tested[found]] = self.factor_argmax[found]
        best_hit = np.lexsort((cols, p, rows))  # per factor: smallest exact p, then smallest variant
        first = best_hit[np.r_[True, np.diff(rows[best_hit]) != 0]] if rows.size else best_hit
        factor_min_p[rows[first]] = p[first]  # a factor with hits: their exact minimum
        factor_min_variant[rows[first]] = cols[first]
        kept = {
            v: tuple(_all_rows(self.plan.tested, self.n_factors, a) for a in arrays)
            for v, arrays in self.kept.items()
        }
        return BoundedScan(
            threshold=self.plan.threshold,
            scale=scale,
            n_tests=self.n_columns * self.plan.tested.size,
            hit_rows=rows[order],
            hit_cols=cols[order],
            hit_p=p[order],
            hit_beta=beta[order],
            hit_se=se[order],
            factor_min_p=factor_min_p,
            factor_min_variant=factor_min_variant,
            variant_max_u=self.variant_max_u,
            exact_min_p=tuple(np.concatenate(parts) for parts in zip(*self.exact_min_p, strict=True))
            if self.exact_min_p
            else (np.empty(0, np.intp), np.empty(0)),
            counts=self.counts,
            u_threshold=self.plan.u_threshold,
            kept=kept,
        )


def _all_rows(tested: NDArray[np.intp], n_factors: int, column: NDArray) -> NDArray[np.float64]:
    full = np.full(n_factors, np.nan)
    full[tested] = column
    return full


class _ParquetChunks:
    """Full results ``factor, variant, beta, se, pvalue`` appended chunk by chunk to one parquet file."""

    def __init__(
        self, tmp: Path, factors: list[str], variants: Sequence[str], tested: NDArray[np.intp]
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.factors, self.variants, self.tested = pa, factors, variants, tested
        schema = pa.schema(
            [("factor", pa.string()), ("variant", pa.string())]
            + [(name, pa.float64()) for name in ("beta", "se", "pvalue")]
        )
        self.writer = pq.ParquetWriter(tmp, schema)

    def write(self, out: ChunkOutput) -> None:
        pvalues, beta, se = out.dense
        factors = np.repeat(np.asarray(self.factors, dtype=object)[self.tested], out.columns.size)
        names = np.array([str(self.variants[c]) for c in out.columns], dtype=object)
        variants = np.tile(names, self.tested.size)
        table = self.pa.table(
            {
                "factor": factors,
                "variant": variants,
                "beta": beta.ravel(),
                "se": se.ravel(),
                "pvalue": pvalues.ravel(),
            }
        )
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


def parquet_chunks(
    path: str | Path | None, factors: list[str], variants: Sequence[str], tested: NDArray[np.intp]
):
    """Context manager of the parquet writer of ``path`` (atomic: renamed on success), or None."""
    import contextlib

    @contextlib.contextmanager
    def writer() -> Iterator[_ParquetChunks | None]:
        if path is None:
            yield None
            return
        with atomic_path(path) as tmp:
            chunks = _ParquetChunks(tmp, factors, variants, tested)
            try:
                yield chunks
            finally:
                chunks.close()

    return writer()


def run_chunks(
    engine: Engine,
    source: ChunkSource,
    plan: ScanPlan,
    collect: Callable[[ChunkOutput], None],
    *,
    n_threads: int | None,
    scheduler: object | None,
) -> None:
    """Scan every chunk of ``source`` and pass each output to ``collect`` (order not guaranteed)."""
    starts = list(range(0, source.n_variants, plan.chunk_size))
    address = scheduler if scheduler is not None else os.environ.get(SCHEDULER_ENV) or None
    if address is not None:
        for out in _dask_chunks(engine, source, plan, starts, address):
            collect(out)
        return
    if not engine.threaded:
        for start in starts:
            collect(scan_chunk(engine, source, plan, start))
        return
    # One BLAS thread per chunk and chunks on a thread pool: multi-threaded BLAS on these small
    # matrices collapses when the cores are shared, and the element-wise work is single-threaded.
    workers = max(1, min(n_threads or os.cpu_count() or 1, len(starts)))
    with one_blas_thread():
        task = functools.partial(scan_chunk, engine, source, plan)
        for out in _windowed(_thread_pool(workers).submit, task, starts, 2 * workers):
            collect(out)


@functools.cache
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """A pool kept for the process, so its threads' scratch buffers stay allocated from scan to scan
    (a fresh thread's first chunk costs 3-4 chunks' time in page faults).
    """
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="multilivi-scan")


def _windowed(submit: Callable, task: Callable, items: Iterable, window: int) -> Iterator[Any]:
    """Results of ``task(item)`` as they finish, at most ``window`` in flight (bounded memory);
    on an error the tasks not yet started are cancelled.
    """
    pending: set = set()
    try:
        for item in items:
            pending.add(submit(task, item))
            if len(pending) >= window:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
    finally:
        for future in pending:
            future.cancel()


def _dask_chunks(
    engine: Engine, source: ChunkSource, plan: ScanPlan, starts: list[int], scheduler: object
) -> Iterator[ChunkOutput]:
    """Chunks as tasks of a ``dask.distributed`` cluster (an address or a ``Client``), as they finish."""
    try:
        from distributed import Client, as_completed
    except ImportError as error:
        raise ImportError(
            "a Dask scheduler was given but dask.distributed is not installed; pip install 'multilivi[dask]'"
        ) from error
    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        shared = client.scatter([engine, source, plan], broadcast=True)
        window = 2 * max(1, sum(client.nthreads().values()))
        futures = as_completed()
        queue = iter(starts)
        for start in queue:
            futures.add(client.submit(_dask_task, *shared, start, pure=False))
            if futures.count() >= window:
                break
        for future in futures:
            yield future.result()
            future.release()
            start = next(queue, None)
            if start is not None:
                futures.add(client.submit(_dask_task, *shared, start, pure=False))
    finally:
        if own:
            client.close()


def _dask_task(engine: Engine, source: ChunkSource, plan: ScanPlan, start: int) -> ChunkOutput:
    """:func:`scan_chunk` on a Dask worker, with one BLAS thread."""
    with one_blas_thread():
        return scan_chunk(engine, source, plan, start)
