"""Donor genotypes and the kinship matrix computed from them."""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd

from multilivi.data.genotype_sources import GenotypeSource, MemorySource, few_names, hash_files

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 26  # float64 bytes of one chunk of dosages read by the streamed passes (64 MiB)


class Genotypes:
    """Allele dosages of donors at variants: a view on a :class:`GenotypeSource` (memory or files).

    ``Genotypes(dosage, donors, variants)`` wraps a matrix in memory; :func:`multilivi.data.io.read_genotypes`
    opens .bed, .pgen, .bgen or .vcf/.bcf files. Dosages are read in chunks of variants by :meth:`read`;
    the whole matrix, :attr:`dosage`, is for small cohorts. A view pickles without open file handles.

    Parameters
    ----------
    dosage
        Array of shape (n_donors, n_variants): counts of allele ``a1`` in [0, 2], NaN = missing call.
    donors
        Donor names, length n_donors (strings).
    variants
        Table of n_variants rows with columns ``id, chrom, pos, a1, a2``.
    """

    def __init__(self, dosage: np.ndarray, donors: pd.Index | list[str], variants: pd.DataFrame) -> None:
        self._source: GenotypeSource = MemorySource(dosage, donors, variants)
        self._rows: np.ndarray | None = None

    @classmethod
    def from_source(cls, source: GenotypeSource, rows: np.ndarray | None = None) -> Genotypes:
        """The donors at positions ``rows`` of ``source`` (None: all, in order); reads nothing."""
        view = cls.__new__(cls)
        view._source = source
        view._rows = None if rows is None or np.array_equal(rows, np.arange(len(source.donors))) else rows
        return view

    @property
    def source(self) -> GenotypeSource:
        return self._source

    @property
    def donors(self) -> pd.Index:
        """Donor names in the row order of :meth:`read`, length n_donors."""
        return self._source.donors if self._rows is None else self._source.donors[self._rows]

    @property
    def variants(self) -> pd.DataFrame:
        """Table of n_variants rows with columns ``id, chrom, pos, a1, a2``."""
        return self._source.variants

    @property
    def n_donors(self) -> int:
        return len(self._source.donors) if self._rows is None else len(self._rows)

    @property
    def n_variants(self) -> int:
        return self._source.n_variants

    @property
    def variant_ids(self) -> pd.Index:
        return pd.Index(self.variants["id"], name="variant")

    @property
    def dosage(self) -> np.ndarray:
        """The whole (n_donors, n_variants) float64 matrix: the array itself in memory, else read."""
        if isinstance(self._source, MemorySource) and self._rows is None:
            return self._source.dosage
        logger.info(
            "reading all %d x %d genotypes into memory (%.1f MB float64)",
            self.n_donors,
            self.n_variants,
            self.n_donors * self.n_variants * 8 / 1e6,
        )
        return self.read()

    def read(self, start: int = 0, stop: int | None = None, *, dtype: type = np.float64) -> np.ndarray:
        """Dosages of variants ``start:stop``, shape (n_donors, stop - start), NaN = missing; fresh."""
        stop = self.n_variants if stop is None else stop
        if not 0 <= start <= stop <= self.n_variants:
            raise IndexError(f"variant range {start}:{stop} is outside 0:{self.n_variants}")
        return self._source.read(self._rows, slice(start, stop), dtype)

    def read_columns(self, columns: np.ndarray, *, dtype: type = np.float64) -> np.ndarray:
        """Dosages of the variants at positions ``columns`` (any order, repeats allowed), shape
        (n_donors, len(columns)); a fresh array.
        """
        columns = np.asarray(columns, dtype=np.int64).ravel()
        if columns.size and (columns.min() < 0 or columns.max() >= self.n_variants):
            raise IndexError(f"variant positions must lie in 0:{self.n_variants}")
        unique, inverse = np.unique(columns, return_inverse=True)
        block = self._source.read(self._rows, unique, dtype)
        return block if np.array_equal(unique, columns) else np.array(block[:, inverse], dtype=dtype)

    def chunks(self, size: int | None = None) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` variant ranges of ``size`` variants (default: 64 MiB of float64 per chunk)."""
        size = size or max(1, CHUNK_BYTES // (8 * max(self.n_donors, 1)))
        for start in range(0, self.n_variants, size):
            yield start, min(start + size, self.n_variants)

    def subset_donors(self, donors: pd.Index | list[str]) -> Genotypes:
        """Genotypes of ``donors`` (by name), in that order; on-disk sources read nothing."""
        rows = self.donors.get_indexer(pd.Index(donors).astype(str))
        if (rows < 0).any():
            raise KeyError(f"donors not genotyped: {few_names(pd.Index(donors)[rows < 0])}")
        if np.array_equal(rows, np.arange(self.n_donors)):
            return self
        if isinstance(self._source, MemorySource):
            return Genotypes(self._source.dosage[rows], self.donors[rows], self.variants)
        return Genotypes.from_source(self._source, rows if self._rows is None else self._rows[rows])

    def allele_frequencies(self) -> np.ndarray:
        """Frequency of allele ``a1`` per variant, shape (n_variants,), ignoring missing calls."""
        frequencies = np.empty(self.n_variants)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing variants: NaN
            for start, stop in self.chunks():
                frequencies[start:stop] = np.nanmean(self.read(start, stop), axis=0) / 2.0
        return frequencies

    def update_hash(self, h: hashlib._Hash) -> None:
        """Feed the genotypes into ``h``: the matrix's bytes (C order, by blocks of donors) in memory, else
        the source files (name, size, content) and the donors of this view.
        """
        if isinstance(self._source, MemorySource):
            dosage = self.dosage
            step = max(1, CHUNK_BYTES // (8 * max(self.n_variants, 1)))
            for start in range(0, self.n_donors, step):
                h.update(np.ascontiguousarray(dosage[start : start + step]).tobytes())
        else:
            hash_files(self._source.files, h)
            h.update("\n".join(self.donors).encode())

    def content_hash(self) -> str:
        """sha256 hex digest of :meth:`update_hash` and the variant ids."""
        h = hashlib.sha256()
        self.update_hash(h)
        h.update("\n".join(self.variant_ids).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"Genotypes({self.n_donors} donors x {self.n_variants} variants, {type(self._source).__name__})"
        )


def standardised_genotypes(
    dosage: np.ndarray, *, atol: float = 1e-12, rtol: float = 0.0, return_sd: bool = False
) -> tuple[np.ndarray, ...]:
    """Mean-impute missing calls and scale each variant to mean 0, variance 1 (ddof 0).

    Parameters
    ----------
    dosage
        (donors, variants) dosages, NaN = missing.
    atol, rtol
        A variant is monomorphic, and dropped, when its standard deviation is at most
        ``max(atol, rtol * |mean|)`` or not finite (no calls).
    return_sd
        Also return the standard deviations of the kept variants (to undo the scaling).

    Returns
    -------
    standardised
        (donors, kept variants) the polymorphic variants.
    kept
        (variants,) mask of the variants that are not monomorphic.
    sd
        (kept variants,) standard deviations of the imputed dosages; only with ``return_sd``.
    """
    g = np.array(dosage, dtype=np.float64)
    missing = np.isnan(g)
    if missing.any():
        g[missing] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = g.sum(axis=0) / (~missing).sum(axis=0)  # np.nanmean; NaN for variants with no calls
        g[missing] = np.take(mean, np.nonzero(missing)[1])
        sd = g.std(axis=0)
        g -= mean
    else:  # g.std(axis=0) centres on this same mean: reuse the centred copy
        mean = g.mean(axis=0)
        g -= mean
        sd = np.sqrt(np.square(g).sum(axis=0) / g.shape[0])
    kept = np.isfinite(sd) & (sd > np.maximum(atol, rtol * np.abs(mean)))
    if not kept.all():
        g, sd = g[:, kept], sd[kept]
    g /= sd
    return (g, kept, sd) if return_sd else (g, kept)


def gower_normalise(kinship: np.ndarray) -> np.ndarray:
    """Scale a covariance so that its Gower variance, trace(P K P) / (n - 1), is 1 (as limix does)."""
    kinship = np.asarray(kinship, dtype=np.float64)
    n = kinship.shape[0]
    gower_trace = np.trace(kinship) - kinship.mean(axis=0).sum()
    return kinship * (n - 1) / gower_trace


def kinship_from_genotypes(genotypes: Genotypes, *, chunk_size: int | None = None) -> pd.DataFrame:
    """Standardised genetic relationship matrix, Gower-normalised, accumulated over chunks of variants.

    Missing calls are mean-imputed per variant; monomorphic variants are dropped (logged). Memory: the
    (n_donors, n_donors) float64 sum and one chunk of ``chunk_size`` variants (default 64 MiB of float64).

    Returns
    -------
    DataFrame of shape (n_donors, n_donors), indexed and labelled by donor name.
    """
    n = genotypes.n_donors
    grm = np.zeros((n, n))
    n_kept = 0
    for start, stop in genotypes.chunks(chunk_size):
        standardised, kept = standardised_genotypes(genotypes.read(start, stop))
        grm += standardised @ standardised.T
        n_kept += standardised.shape[1]
    n_dropped = genotypes.n_variants - n_kept
    if n_dropped:
        logger.info("kinship: dropped %d monomorphic variants of %d", n_dropped, genotypes.n_variants)
    if n_kept == 0:
        raise ValueError(
            "cannot compute kinship: every variant is monomorphic; pass a kinship matrix instead"
        )
    return pd.DataFrame(gower_normalise(grm / n_kept), index=genotypes.donors, columns=genotypes.donors)
