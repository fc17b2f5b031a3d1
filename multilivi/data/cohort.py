"""The data contract every model and metric consumes: cells with counts, donors with genotypes."""

from __future__ import annotations

import difflib
import hashlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from multilivi.data.genetics import Genotypes, few_names, kinship_from_genotypes
from multilivi.data.ondisk import DiskCounts, is_disk_counts
from multilivi.data.truth import Truth

logger = logging.getLogger(__name__)

RNA, PROT = "rna", "prot"
MODALITY_ALIASES = {
    "rna": RNA,
    "gex": RNA,
    "gene expression": RNA,
    "gene_expression": RNA,
    "expression": RNA,
    "prot": PROT,
    "protein": PROT,
    "proteins": PROT,
    "adt": PROT,
    "antibody capture": PROT,
    "antibody_capture": PROT,
    "cite": PROT,
}
LABELS = ("cell_type", "cell_subtype", "batch")
NEAR_INTEGER = 1e-4  # float counts at most this far from integers are offered rounding
CHECK_CHUNK = 2**24  # count values validated at once (the checks' temporaries are a few times this)
GeneticsOrigin = Literal["measured", "simulated", "semi-synthetic", "none"]
"""Where a cohort's genotypes come from (:attr:`Cohort.genetics`)."""


@dataclass(frozen=True)
class ObsKeys:
    """Names of the obs columns that hold each annotation in the input MuData."""

    donor: str = "donor"
    cell_type: str | None = "cell_type"
    cell_subtype: str | None = "cell_subtype"
    batch: str | None = "batch"


class Cohort:
    """Single-cell counts of a donor cohort, with donor genotypes, kinship and (if simulated) truth.

    Validated once, at construction: every problem raises a ``ValueError`` naming it and its fix.
    After construction the cells' annotations live in ``obs`` under the canonical names
    ``donor``, ``cell_type``, ``cell_subtype`` and ``batch`` (whichever are present).

    Parameters
    ----------
    mdata
        MuData with modality ``rna`` (required) and ``prot`` (optional) of raw integer counts over one
        shared set of cells. Common aliases (``adt``, ``gex``, ``protein``...) are renamed. An AnnData
        is the ``rna`` modality, split by ``var['feature_types']`` when it holds antibodies too, with
        ``obsm['protein_expression']`` as ``prot`` (:func:`multilivi.data.scverse.cohort_mudata`).
    genotypes
        Donor genotypes, in memory or a lazy view on files (:func:`multilivi.data.io.read_genotypes`);
        kept lazy (subset to the cohort's donors without reading dosages); optional (association tasks
        are then skipped).
    kinship
        Donors x donors DataFrame indexed by donor name; computed from ``genotypes`` when absent, in one
        streamed pass over chunks of variants.
    donor_covariates
        Donors x covariates numeric DataFrame indexed by donor name.
    truth
        Simulation ground truth.
    keys
        Where to find donor and label columns in ``mdata.obs`` (or the ``rna`` modality's obs).
    min_cells_per_donor
        A donor with fewer cells is an error.
    donors
        ``"strict"``: cell donors and genotyped donors must be the same set. ``"intersect"``: keep only
        donors that have both cells and genotypes (dropped donors are logged).
    name
        Short name used in reports.
    genetics
        Where the genotypes come from: ``"measured"`` (genotyped donors), ``"simulated"`` (a simulated
        cohort), ``"semi-synthetic"`` (simulated genotypes for real donors, set by the dataset loader) or
        ``"none"`` (no genotypes). Default: ``"none"`` without genotypes, else ``"simulated"`` when a
        ground truth is given (only simulations have one) and ``"measured"`` otherwise.
    counts_layer
        Layer holding the raw counts (``"counts"``: every modality that has it; or ``{modality:
        layer}``); None: ``X`` holds them.
    round_counts
        Round float counts within 1e-4 of integers (e.g. after a CSV or R round trip; logged).

    Counts may stay on disk: a MuData whose modalities hold anndata's backed CSR datasets in ``X``
    (:func:`multilivi.data.io.read_cohort` with ``on_disk=True``). They are validated in one streamed
    pass, never loaded; :meth:`counts` then refuses and :meth:`disk_counts` reads them by row ranges.
    Conversions that would copy them (layers, rounding, splitting by feature type, dropping cells of
    ungenotyped donors, reordering a modality's cells) are refused with the fix.
    """

    def __init__(
        self,
        mdata: md.MuData | ad.AnnData,
        *,
        genotypes: Genotypes | None = None,
        kinship: pd.DataFrame | None = None,
        donor_covariates: pd.DataFrame | None = None,
        truth: Truth | None = None,
        keys: ObsKeys = ObsKeys(),
        min_cells_per_donor: int = 2,
        donors: Literal["strict", "intersect"] = "strict",
        name: str = "cohort",
        genetics: GeneticsOrigin | None = None,
        counts_layer: str | Mapping[str, str] | None = None,
        round_counts: bool = False,
    ) -> None:
        from multilivi.data.scverse import cohort_mudata  # it builds on this module's names

        on_disk = _holds_disk_counts(mdata)
        if on_disk and (round_counts or counts_layer is not None):
            raise ValueError(_ON_DISK_COPY.format(what="rounding them or reading them from a layer"))
        given = mdata
        mdata = cohort_mudata(mdata, counts_layer=counts_layer, round_counts=round_counts)
        if on_disk and mdata is not given:
            raise ValueError(_ON_DISK_COPY.format(what="converting the cells' layout (feature-type splits)"))
        if donors not in ("strict", "intersect"):
            raise ValueError(f"donors must be 'strict' or 'intersect', got {donors!r}")
        modalities = _canonical_modalities(mdata)
        modalities = _aligned_modalities(modalities, on_disk=on_disk)
        obs = _canonical_obs(mdata, modalities[RNA], keys)
        if genotypes is not None:
            keep = _match_donors(obs["donor"], genotypes.donors, donors)
            if keep is not None:
                if on_disk:
                    raise ValueError(_ON_DISK_COPY.format(what="dropping the cells of ungenotyped donors"))
                obs = obs.loc[keep].apply(lambda column: column.cat.remove_unused_categories())
                modalities = {m: a[keep].copy() for m, a in modalities.items()}
        for modality, adata in modalities.items():
            _check_counts(modality, adata)
        _check_cells_per_donor(obs["donor"], min_cells_per_donor)

        self.name = name
        self.mdata = new_mudata(modalities)
        self.mdata.obs = obs.loc[self.mdata.obs_names].rename_axis(index=None)
        self.donor_names = pd.Index(sorted(obs["donor"].unique()), name="donor")
        self.genotypes = None if genotypes is None else genotypes.subset_donors(self.donor_names)
        self._kinship = None if kinship is None else _check_donor_matrix(kinship, self.donor_names)
        self.kinship_given = kinship is not None
        self.donor_covariates = (
            None if donor_covariates is None else _check_covariates(donor_covariates, self.donor_names)
        )
        self.truth = truth
        self.genetics: GeneticsOrigin = _genetics_origin(genetics, self.genotypes, truth)

    # ----------------------------------------------------------------------------------- cells
    @property
    def obs(self) -> pd.DataFrame:
        """Cell annotations with canonical column names, indexed by cell name."""
        return self.mdata.obs

    @property
    def cell_names(self) -> pd.Index:
        return self.mdata.obs_names

    @property
    def n_cells(self) -> int:
        return self.mdata.n_obs

    @property
    def n_donors(self) -> int:
        return len(self.donor_names)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in (RNA, PROT) if m in self.mdata.mod)

    @property
    def has_protein(self) -> bool:
        return PROT in self.mdata.mod

    @cached_property
    def donor_index(self) -> np.ndarray:
        """Array of shape (n_cells,): position of each cell's donor in ``donor_names``."""
        return self.donor_names.get_indexer(self.obs["donor"]).astype(np.int64)

    @property
    def on_disk(self) -> bool:
        """Whether the counts stay on disk (read by row ranges, :meth:`disk_counts`) rather than in memory."""
        return any(is_disk_counts(self.mdata[m].X) for m in self.modalities)

    def counts(self, modality: str = RNA) -> sp.csr_matrix:
        """Raw counts of a modality as a float32 CSR matrix of shape (n_cells, n_features).

        Raises a ``ValueError`` for a cohort whose counts stay on disk (:attr:`on_disk`).
        """
        self._check_modality(modality)
        if self.on_disk:
            raise ValueError(
                f"the counts of cohort {self.name!r} stay on disk (read with on_disk=True or --on-disk, or "
                "automatically for large counts), and this step needs them in memory: read the cohort with "
                "on_disk=False (drop --on-disk), or use a step that streams them (the model families do)"
            )
        return sp.csr_matrix(self.mdata[modality].X, dtype=np.float32)

    def disk_counts(self, modality: str = RNA) -> DiskCounts:
        """The on-disk counts of a modality, read by row ranges (a cohort with :attr:`on_disk`)."""
        self._check_modality(modality)
        if not self.on_disk:
            raise ValueError(f"the counts of cohort {self.name!r} are in memory: use counts({modality!r})")
        return self._disk[modality]

    def library_sizes(self, modality: str = RNA) -> np.ndarray:
        """Array (n_cells,) float32 of total counts per cell (streamed from disk when :attr:`on_disk`)."""
        if self.on_disk:
            return self.disk_counts(modality).sums()[0]
        return np.asarray(self.counts(modality).sum(axis=1), dtype=np.float32).ravel()

    @cached_property
    def _disk(self) -> dict[str, DiskCounts]:
        return {m: DiskCounts(self.mdata[m].X) for m in self.modalities}

    def _check_modality(self, modality: str) -> None:
        if modality not in self.mdata.mod:
            raise KeyError(
                f"cohort {self.name!r} has no modality {modality!r}; it has {list(self.modalities)}"
            )

    def feature_names(self, modality: str = RNA) -> pd.Index:
        return self.mdata[modality].var_names

    def n_features(self, modality: str = RNA) -> int:
        return self.mdata[modality].n_vars

    def labels(self, column: str) -> np.ndarray | None:
        """Cell labels of shape (n_cells,) as strings, or None when the cohort has no such column."""
        if column not in self.obs.columns:
            return None
        return self.obs[column].astype(str).to_numpy()

    # ---------------------------------------------------------------------------------- donors
    @property
    def kinship(self) -> pd.DataFrame | None:
        """Donors x donors kinship in ``donor_names`` order (computed from genotypes when not given)."""
        if self._kinship is None and self.genotypes is not None:
            self._kinship = kinship_from_genotypes(self.genotypes)
        return self._kinship

    # ---------------------------------------------------------------------------------- other
    @cached_property
    def data_hash(self) -> str:
        """Short content hash of counts, cell and donor names, features and genotypes (cache key)."""
        h = hashlib.sha256()
        for modality in self.modalities:
            if self.on_disk:
                self.disk_counts(modality).update_hash(h)  # the same bytes, streamed
            else:
                x = self.counts(modality)
                for part in (x.indptr, x.indices, x.data):
                    h.update(np.ascontiguousarray(part).tobytes())
            h.update("\n".join(self.feature_names(modality)).encode())
        h.update("\n".join(self.cell_names).encode())
        h.update("\n".join(self.obs["donor"].astype(str)).encode())
        if self.genotypes is not None:
            self.genotypes.update_hash(h)  # streamed: files on disk, the matrix by blocks in memory
            h.update("\n".join(self.genotypes.variant_ids).encode())
        return h.hexdigest()[:16]

    def write(self, directory: str | Path) -> Path:
        """Write to ``directory``: cohort.h5mu, genotypes (PLINK 1, or the source's files), kinship,
        covariates, truth.npz.
        """
        from multilivi.data.io import write_cohort

        return write_cohort(self, directory)

    @classmethod
    def read(cls, directory: str | Path, **kwargs) -> Cohort:
        """Read a folder written by :meth:`write`; ``kwargs`` go to the constructor."""
        from multilivi.data.io import read_cohort

        return read_cohort(directory, **kwargs)

    def summary(self) -> str:
        """Human-readable multi-line description."""
        lines = [f"Cohort {self.name!r}: {self.n_cells:,} cells from {self.n_donors} donors"]
        for modality in self.modalities:
            lines.append(
                f"  {modality}: {self.n_features(modality):,} features, "
                f"median {np.median(self.library_sizes(modality)):,.0f} counts/cell"
                + (" (on disk)" if self.on_disk else "")
            )
        for column in LABELS:
            if column in self.obs.columns:
                lines.append(f"  {column}: {self.obs[column].nunique()} levels")
        if self.genotypes is None:
            lines.append("  genotypes: none (association tasks will be skipped)")
        else:
            files = self.genotypes.source.files
            where = f"read from {files[0].name}" if files else "in memory"
            lines.append(f"  genotypes: {self.genotypes.n_variants:,} variants ({self.genetics}; {where})")
        if self.donor_covariates is not None:
            lines.append(f"  donor covariates: {list(self.donor_covariates.columns)}")
        if self.truth is not None:
            lines.append(
                f"  truth: {self.truth.donor_factors.shape[1]} D x C programs, "
                f"{len(self.truth.causal_variants)} causal / {len(self.truth.null_variants)} null variants"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def new_mudata(modalities: dict[str, ad.AnnData]) -> md.MuData:
    """A MuData of ``modalities``, built without mudata's warnings about legitimate CITE-seq layouts.

    A gene and an antibody may share a name (CD14); the Cohort sets obs itself, so mudata's notice
    about pulling modality columns does not apply.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        warnings.filterwarnings("ignore", message="From 0.4 .update", category=FutureWarning)
        return md.MuData(modalities)


# ------------------------------------------------------------------------------------ validation
def _canonical_modalities(mdata: md.MuData) -> dict[str, ad.AnnData]:
    modalities: dict[str, ad.AnnData] = {}
    for key, adata in mdata.mod.items():
        canonical = MODALITY_ALIASES.get(key.lower())
        if canonical is None:
            raise ValueError(
                f"unknown modality {key!r}; multilivi models 'rna' (gene counts) and 'prot' (surface-protein "
                f"counts; aliases {sorted(k for k, v in MODALITY_ALIASES.items() if v == PROT)}). "
                "Drop or rename it"
            )
        if canonical in modalities:
            raise ValueError(f"two modalities map to {canonical!r}: rename or drop one of them")
        if canonical != key:
            logger.info("modality %r is read as %r", key, canonical)
        modalities[canonical] = adata
    if RNA not in modalities:
        raise ValueError(f"the cohort needs an 'rna' modality of gene counts; found {list(mdata.mod)}")
    for modality, adata in modalities.items():
        for what, names in (("cell", adata.obs_names), ("feature", adata.var_names)):
            if names.has_duplicates:
                raise ValueError(
                    f"duplicated {what} names in modality {modality!r}: "
                    f"{few_names(names[names.duplicated()])}; "
                    f"make them unique (e.g. adata.{'obs' if what == 'cell' else 'var'}_names_make_unique())"
                )
    return modalities


def _canonical_obs(mdata: md.MuData, rna: ad.AnnData, keys: ObsKeys) -> pd.DataFrame:
    """Collect donor and label columns under canonical names, indexed by the rna cell names."""
    sources = [mdata.obs.reindex(rna.obs_names), rna.obs]
    obs = pd.DataFrame(index=rna.obs_names.copy())
    wanted = {"donor": keys.donor, **{label: getattr(keys, label) for label in LABELS}}
    for canonical, key in wanted.items():
        if key is None:
            continue
        for frame in sources:
            for candidate in (key, f"rna:{key}"):
                if candidate in frame.columns and canonical not in obs.columns:
                    obs[canonical] = frame[candidate].to_numpy()
        if canonical not in obs.columns and (canonical == "donor" or key != getattr(ObsKeys(), canonical)):
            raise ValueError(_missing_key_message(canonical, key, mdata.obs.columns, rna.obs.columns))
    for column in obs.columns:
        values = obs[column]
        if values.isna().any():
            raise ValueError(
                f"{values.isna().sum()} cells have no {column!r} ({wanted[column]!r}); "
                "fill or drop them, e.g. "
                f"{'remove those cells' if column == 'donor' else 'label them unknown'}"
            )
        if column == "donor":
            values = _integral_floats_as_ints(values)
        obs[column] = pd.Categorical(values.astype(str))
    return obs


def _missing_key_message(canonical: str, key: str, global_columns: pd.Index, rna_columns: pd.Index) -> str:
    """No column ``key`` for the ``canonical`` annotation: the columns there are, close names, the fix."""
    columns = list(dict.fromkeys(map(str, [*global_columns, *rna_columns])))
    close = difflib.get_close_matches(key, columns, n=3, cutoff=0.5)
    option = canonical.replace("cell_subtype", "subtype").replace("_", "-")
    return (
        f"no {canonical} column {key!r} in the cell annotations (MuData obs columns: {list(global_columns)}; "
        f"rna obs columns: {list(rna_columns)}){f'; did you mean {close}?' if close else ''}; "
        f"pass --{option}-key COLUMN (Python: keys=ObsKeys({canonical}='COLUMN'))"
    )


def _integral_floats_as_ints(values: pd.Series) -> pd.Series:
    """Donor ids read as floats (1.0, 2.0: a spreadsheet, a column that once held NaN) as integers.

    So that they match the same ids written as ``1``, ``2`` in a PLINK .fam file.
    """
    if pd.api.types.is_float_dtype(values) and np.all(np.mod(values.to_numpy(), 1) == 0):
        return values.astype(np.int64)
    return values


def _holds_disk_counts(data: md.MuData | ad.AnnData) -> bool:
    """Whether any modality's X is an on-disk sparse dataset (False for what is not AnnData/MuData)."""
    parts = data.mod.values() if isinstance(data, md.MuData) else [data]
    return any(isinstance(a, ad.AnnData) and is_disk_counts(a.X) for a in parts)


_ON_DISK_COPY = (
    "the counts stay on disk, and {what} would copy them into memory; prepare the cells in memory once "
    "and write them (Cohort(...).write(folder)), then read that folder on disk, or read into memory "
    "(on_disk=False, no --on-disk)"
)


def _aligned_modalities(modalities: dict[str, ad.AnnData], *, on_disk: bool) -> dict[str, ad.AnnData]:
    rna = modalities[RNA]
    aligned = {RNA: rna}
    for modality, adata in modalities.items():
        if modality == RNA:
            continue
        if not adata.obs_names.equals(rna.obs_names):
            only_rna = rna.obs_names.difference(adata.obs_names)
            only_other = adata.obs_names.difference(rna.obs_names)
            if len(only_rna) or len(only_other):
                raise ValueError(
                    f"modalities 'rna' and {modality!r} hold different cells: {len(only_rna)} only in rna "
                    f"({few_names(only_rna)}), {len(only_other)} only in {modality} "
                    f"({few_names(only_other)}); "
                    "subset both to their common cells (mudata.MuData.intersect_obs())"
                )
            if on_disk:
                raise ValueError(
                    _ON_DISK_COPY.format(what=f"putting the {modality!r} cells in the rna order")
                )
            adata = adata[rna.obs_names]
        aligned[modality] = adata
    return aligned


def _check_counts(modality: str, adata: ad.AnnData) -> None:
    x = adata.X
    if x is None:
        raise ValueError(f"modality {modality!r} has no count matrix in .X; put the raw counts layer in .X")
    disk = DiskCounts(x) if is_disk_counts(x) else None
    if disk is None:
        values = (x.data if sp.issparse(x) else np.asarray(x)).reshape(-1)
        dtype, parts = values.dtype, _chunks(values)
    else:
        dtype, parts = disk.dtype, disk.value_chunks(CHECK_CHUNK)  # streamed from the file
    if not np.issubdtype(dtype, np.number):
        raise ValueError(f"counts of {modality!r} are not numeric (dtype {dtype})")
    summary = _ValueSummary.of(parts)
    if summary.n_not_finite:
        raise ValueError(
            f"counts of {modality!r} contain {summary.n_not_finite} NaN or infinite values; "
            "multilivi needs raw integer counts"
        )
    if summary.lowest < 0:
        raise ValueError(
            f"counts of {modality!r} contain negative values (min {summary.lowest}); pass raw counts, "
            f"not scaled or log-normalised data{_layer_hint(adata)}"
        )
    deviation = summary.deviation
    if deviation > 0:
        if deviation <= NEAR_INTEGER:
            raise ValueError(
                f"counts of {modality!r} are floats within {deviation:.2g} of integers (max deviation; e.g. "
                "a CSV or R round trip): round them with --round-counts (Python: round_counts=True)"
            )
        raise ValueError(
            f"counts of {modality!r} are not integers (e.g. {summary.example}); "
            f"pass raw counts (often adata.layers['counts']), not normalised data (max deviation from an "
            f"integer {deviation:.2g}){_layer_hint(adata)}"
        )
    if disk is None:
        per_cell, per_feature = np.asarray(x.sum(axis=1)).ravel(), np.asarray(x.sum(axis=0)).ravel()
    else:
        per_cell, per_feature = disk.sums()
    empty = np.flatnonzero(per_cell == 0)
    if empty.size:
        raise ValueError(
            f"{empty.size} cells have zero {modality} counts ({few_names(adata.obs_names[empty])}); "
            "remove empty cells before building the cohort"
        )
    silent = np.flatnonzero(per_feature == 0)
    if silent.size:
        raise ValueError(
            f"{silent.size} {modality} features have zero counts in every cell "
            f"({few_names(adata.var_names[silent])}); drop them (e.g. adata[:, adata.X.sum(0) > 0])"
        )


@dataclass
class _ValueSummary:
    """What the count checks need of the stored values, gathered in one pass over their chunks."""

    n_not_finite: int = 0
    lowest: float = 0.0
    deviation: float = 0.0  # largest distance of a finite value from an integer
    example: float | None = None  # the first value that is not an integer

    @classmethod
    def of(cls, parts: Iterator[np.ndarray]) -> _ValueSummary:
        out, lowest = cls(), None
        for part in parts:
            if not part.size:
                continue
            out.n_not_finite += part.size - int(np.count_nonzero(np.isfinite(part)))
            if out.n_not_finite:
                continue  # the first check refuses them: only their number is needed
            low = part.min()
            lowest = low if lowest is None else min(lowest, low)
            off = np.abs(part - np.round(part))
            out.deviation = max(out.deviation, float(off.max()))
            if out.example is None and out.deviation > 0:
                out.example = part[off > 0][0]
        out.lowest = 0 if lowest is None else lowest
        return out


def _chunks(values: np.ndarray, size: int = CHECK_CHUNK) -> Iterator[np.ndarray]:
    """Consecutive slices of (n,) ``values`` (views, no copies), so checks hold one chunk's temporaries."""
    for start in range(0, values.size, size):
        yield values[start : start + size]


def _layer_hint(adata: ad.AnnData) -> str:
    """Where raw counts may be: the modality's layers and the option that reads one."""
    if not len(adata.layers):
        return "; this modality has no layers: put its raw counts in .X"
    return (
        f"; its layers {list(adata.layers)} may hold them: --counts-layer LAYER "
        "(Python: counts_layer='LAYER')"
    )


def _genetics_origin(
    given: GeneticsOrigin | None, genotypes: Genotypes | None, truth: Truth | None
) -> GeneticsOrigin:
    """The cohort's genetics provenance: ``given``, checked against the genotypes, or inferred."""
    if given is None:
        if genotypes is None:
            return "none"
        return "simulated" if truth is not None else "measured"
    if given not in get_args(GeneticsOrigin):
        raise ValueError(f"genetics must be one of {list(get_args(GeneticsOrigin))}, got {given!r}")
    if (given == "none") != (genotypes is None):
        raise ValueError(
            f"genetics={given!r} but the cohort has {'no genotypes' if genotypes is None else 'genotypes'}; "
            "pass genotypes, or genetics='none' for a cohort without them"
        )
    return given


def _check_cells_per_donor(donor: pd.Series, min_cells: int) -> None:
    sizes = donor.value_counts()
    small = sizes[sizes < min_cells]
    if len(small):
        raise ValueError(
            f"{len(small)} donors have fewer than {min_cells} cells ({few_names(small.index)}); "
            "remove them or lower min_cells_per_donor"
        )


def _match_donors(cell_donors: pd.Series, genotyped: pd.Index, mode: str) -> np.ndarray | None:
    """Boolean mask of cells to keep, or None when the donor sets agree."""
    cells = pd.Index(cell_donors.astype(str).unique())
    genotyped = pd.Index(genotyped.astype(str))
    ungenotyped = cells.difference(genotyped)
    cellless = genotyped.difference(cells)
    if not len(ungenotyped) and not len(cellless):
        return None
    message = (
        f"{len(ungenotyped)} donors have cells but no genotypes ({few_names(ungenotyped)}); "
        f"{len(cellless)} genotyped donors have no cells ({few_names(cellless)})"
    )
    common = cells.intersection(genotyped)
    if not len(common):
        raise ValueError(
            message + "; no donor id is in both: the cells and the genotypes (.fam) name donors differently "
            "(e.g. 'D01' vs '1', zero padding); recode one of them, or pass keys=ObsKeys(donor=...) if the "
            "cells' donor column is another one"
        )
    if mode == "strict":
        raise ValueError(
            message + "; pass donors='intersect' (--donors intersect) to keep only donors with both"
        )
    logger.warning("%s; keeping the %d donors with both", message, len(common))
    return cell_donors.astype(str).isin(common).to_numpy()


def _check_donor_matrix(kinship: pd.DataFrame, donors: pd.Index) -> pd.DataFrame:
    if not isinstance(kinship, pd.DataFrame):
        raise TypeError("kinship must be a DataFrame indexed and labelled by donor name")
    kinship = kinship.copy()
    kinship.index = kinship.index.astype(str)
    kinship.columns = kinship.columns.astype(str)
    missing = donors.difference(kinship.index).union(donors.difference(kinship.columns))
    if len(missing):
        raise ValueError(
            f"kinship lacks {len(missing)} cohort donors ({few_names(missing)}); give one row and column per "
            "donor"
        )
    kinship = kinship.loc[donors, donors].astype(np.float64)
    values = kinship.to_numpy()
    if not np.all(np.isfinite(values)):
        raise ValueError("kinship contains NaN or infinite values")
    if not np.allclose(values, values.T, atol=1e-8):
        raise ValueError("kinship is not symmetric; pass (K + K.T) / 2 if it is a rounding artefact")
    return kinship


def _check_covariates(covariates: pd.DataFrame, donors: pd.Index) -> pd.DataFrame:
    covariates = covariates.copy()
    covariates.index = covariates.index.astype(str)
    missing = donors.difference(covariates.index)
    if len(missing):
        raise ValueError(
            f"donor_covariates lack {len(missing)} donors ({few_names(missing)}); give a row per donor"
        )
    covariates = covariates.loc[donors]
    non_numeric = [c for c in covariates.columns if not pd.api.types.is_numeric_dtype(covariates[c])]
    if non_numeric:
        raise ValueError(
            f"donor covariates {non_numeric} are not numeric; one-hot encode them (pd.get_dummies)"
        )
    if not np.all(np.isfinite(covariates.to_numpy(np.float64))):
        raise ValueError("donor covariates contain NaN or infinite values; impute or drop them")
    return covariates.astype(np.float64)
