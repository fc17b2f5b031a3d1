"""Donor genotypes and the kinship matrix computed from them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

VARIANT_COLUMNS = ("id", "chrom", "pos", "a1", "a2")


@dataclass(eq=False)
class Genotypes:
    """Allele dosages of donors at variants.

    Attributes
    ----------
    dosage
        Array of shape (n_donors, n_variants): counts of allele ``a1`` in {0, 1, 2}, NaN = missing call.
    donors
        Donor names, length n_donors (strings).
    variants
        Table of n_variants rows with columns ``id, chrom, pos, a1, a2``.
    """

    dosage: np.ndarray
    donors: pd.Index
    variants: pd.DataFrame

    def __post_init__(self) -> None:
        self.dosage = np.asarray(self.dosage, dtype=np.float64)
        self.donors = pd.Index(np.asarray(self.donors).astype(str), name="donor")
        missing = [c for c in VARIANT_COLUMNS if c not in self.variants.columns]
        if missing:
            raise ValueError(
                f"variant table lacks columns {missing}; it needs {list(VARIANT_COLUMNS)} "
                "(as in a PLINK .bim file)"
            )
        self.variants = self.variants.loc[:, list(VARIANT_COLUMNS)].reset_index(drop=True)
        self.variants["id"] = self.variants["id"].astype(str)
        self.variants["chrom"] = self.variants["chrom"].astype(str)
        self.variants["pos"] = self.variants["pos"].astype(np.int64)
        self.variants["a1"] = self.variants["a1"].astype(str)
        self.variants["a2"] = self.variants["a2"].astype(str)
        if self.dosage.ndim != 2:
            raise ValueError(f"dosage must be 2-d (donors x variants), got shape {self.dosage.shape}")
        n_donors, n_variants = self.dosage.shape
        if n_donors != len(self.donors):
            raise ValueError(
                f"dosage has {n_donors} rows but {len(self.donors)} donor names were given; "
                "pass one name per genotype row (the .fam file)"
            )
        if n_variants != len(self.variants):
            raise ValueError(
                f"dosage has {n_variants} columns but the variant table has {len(self.variants)} rows; "
                "pass one row per genotype column (the .bim file)"
            )
        if self.donors.has_duplicates:
            raise ValueError(
                f"duplicated donor names in genotypes: {few_names(self.donors[self.donors.duplicated()])}"
            )
        if self.variants["id"].duplicated().any():
            dup = self.variants["id"][self.variants["id"].duplicated()]
            raise ValueError(f"duplicated variant ids: {few_names(dup)}; make variant ids unique")
        observed = self.dosage[~np.isnan(self.dosage)]
        if observed.size and (observed.min() < 0 or observed.max() > 2):
            raise ValueError(
                f"dosages must lie in [0, 2] (NaN for a missing call); found values in "
                f"[{observed.min()}, {observed.max()}]"
            )

    @property
    def n_donors(self) -> int:
        return self.dosage.shape[0]

    @property
    def n_variants(self) -> int:
        return self.dosage.shape[1]

    @property
    def variant_ids(self) -> pd.Index:
        return pd.Index(self.variants["id"], name="variant")

    def subset_donors(self, donors: pd.Index | list[str]) -> Genotypes:
        """Genotypes of ``donors`` (by name), in that order."""
        rows = self.donors.get_indexer(pd.Index(donors).astype(str))
        if (rows < 0).any():
            raise KeyError(f"donors not genotyped: {few_names(pd.Index(donors)[rows < 0])}")
        return Genotypes(self.dosage[rows], self.donors[rows], self.variants)

    def allele_frequencies(self) -> np.ndarray:
        """Frequency of allele ``a1`` per variant, shape (n_variants,), ignoring missing calls."""
        with np.errstate(invalid="ignore"):
            return np.nanmean(self.dosage, axis=0) / 2.0


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


def kinship_from_genotypes(genotypes: Genotypes) -> pd.DataFrame:
    """Standardised genetic relationship matrix, Gower-normalised.

    Missing calls are mean-imputed per variant; monomorphic variants are dropped (logged).

    Returns
    -------
    DataFrame of shape (n_donors, n_donors), indexed and labelled by donor name.
    """
    standardised, kept = standardised_genotypes(genotypes.dosage)
    n_dropped = int((~kept).sum())
    if n_dropped:
        logger.info("kinship: dropped %d monomorphic variants of %d", n_dropped, kept.size)
    if standardised.shape[1] == 0:
        raise ValueError(
            "cannot compute kinship: every variant is monomorphic; pass a kinship matrix instead"
        )
    grm = standardised @ standardised.T / standardised.shape[1]
    return pd.DataFrame(gower_normalise(grm), index=genotypes.donors, columns=genotypes.donors)


def few_names(names, k: int = 5) -> str:
    """The first ``k`` names, quoted, for error messages ("'a', 'b' and 3 more")."""
    names = list(map(str, names))
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(repr(n) for n in names[:k]) + more
