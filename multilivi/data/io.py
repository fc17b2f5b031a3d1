"""Cohorts on disk: ``cohort.h5mu`` (mudata) + ``genotypes.*`` (PLINK 1/2, BGEN or VCF) + ``truth.npz``.

Every file is written atomically: to a temporary name in the same folder, then renamed over the
target, so an interrupted write never leaves a half-written file behind.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import h5py
import mudata as md
import numpy as np
import pandas as pd
from anndata.io import read_elem

from multilivi.atomic import atomic_write
from multilivi.data.cohort import Cohort, new_mudata
from multilivi.data.genotype_io import (
    find_genotypes,
    read_genotypes,
    read_plink,
    stray_genotype_files,
    write_genotypes,
    write_plink,
)
from multilivi.data.ondisk import ON_DISK_BYTES, stored_bytes
from multilivi.data.truth import Truth

__all__ = [
    "read_cohort",
    "read_genotypes",
    "read_h5mu",
    "read_kinship",
    "read_plink",
    "read_table",
    "write_cohort",
    "write_genotypes",
    "write_plink",
]

logger = logging.getLogger(__name__)

COHORT_FILE = "cohort.h5mu"
GENOTYPES_PREFIX = "genotypes"
TRUTH_FILE = "truth.npz"
KINSHIP_FILE = "kinship.tsv"
KINSHIP_REL_FILE = "kinship.rel"  # plink2 --make-rel square output, with kinship.rel.id
COVARIATES_FILE = "donor_covariates.tsv"


def write_cohort(cohort: Cohort, directory: str | Path) -> Path:
    """Write ``cohort`` to ``directory`` (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if cohort.on_disk:
        atomic_write(directory / COHORT_FILE, lambda tmp: _write_streamed(cohort, tmp))
    else:
        mdata = without_index_names(cohort.mdata.copy())
        mdata.uns["multilivi"] = {"name": cohort.name, "genetics": cohort.genetics}
        atomic_write(directory / COHORT_FILE, lambda tmp: mdata.write(tmp))
    if cohort.genotypes is not None:
        write_genotypes(cohort.genotypes, directory / GENOTYPES_PREFIX)
    if cohort.kinship_given:
        atomic_write(directory / KINSHIP_FILE, lambda tmp: _write_table(cohort.kinship, tmp))
    if cohort.donor_covariates is not None:
        atomic_write(directory / COVARIATES_FILE, lambda tmp: _write_table(cohort.donor_covariates, tmp))
    if cohort.truth is not None:
        atomic_write(directory / TRUTH_FILE, lambda tmp: cohort.truth.write(tmp))
    return directory


def _write_streamed(cohort: Cohort, path: Path) -> None:
    """Write an on-disk cohort's .h5mu: its annotations by mudata, each modality's counts copied from the
    file they are read from by HDF5 (chunk by chunk, never in memory).
    """
    modalities = {
        m: ad.AnnData(obs=a.obs, var=a.var, obsm=dict(a.obsm), varm=dict(a.varm), uns=dict(a.uns))
        for m, a in cohort.mdata.mod.items()
    }
    mdata = new_mudata(modalities)
    mdata.obs = cohort.obs.copy()
    mdata.uns["multilivi"] = {"name": cohort.name, "genetics": cohort.genetics}
    without_index_names(mdata).write(path)
    with h5py.File(path, "r+") as f:
        for m in cohort.modalities:
            source = cohort.disk_counts(m).dataset.group
            del f["mod"][m]["X"]  # anndata's empty placeholder of an AnnData without X
            source.file.copy(source, f["mod"][m], name="X")


def read_cohort(directory: str | Path, *, on_disk: bool | None = None, **cohort_kwargs) -> Cohort:
    """Read a cohort written by :func:`write_cohort` (or assembled by hand in the same layout).

    ``on_disk``: keep the counts in the file and stream them (True), read them into memory (False), or
    decide by their stored size (None: on disk above :data:`~multilivi.data.ondisk.ON_DISK_BYTES`).
    ``cohort_kwargs`` go to :class:`Cohort` (e.g. ``keys=ObsKeys(donor="individual")`` for a
    hand-made ``cohort.h5mu``, ``donors="intersect"``).
    """
    directory = Path(directory)
    layout = (
        "a cohort folder holds cohort.h5mu (+ genotypes as genotypes.bed/.bim/.fam, "
        "genotypes.pgen/.pvar/.psam, "
        "genotypes.bgen (+ .sample), genotypes.vcf.gz/.vcf/.bcf; kinship.tsv or kinship.rel/.rel.id, "
        "donor_covariates.tsv, truth.npz)"
    )
    if directory.is_file():
        raise FileNotFoundError(
            f"{directory} is a file, not a cohort folder ({layout}); read a .h5mu or .h5ad file with "
            "read_cohort_file(path, genotypes=PLINK_PREFIX) (CLI: --dataset FILE --genotypes PREFIX)"
        )
    path = directory / COHORT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {COHORT_FILE} in {directory}; {layout}")
    try:
        mdata = read_h5mu(path, on_disk=counts_on_disk(path, on_disk))
    except (OSError, KeyError, TypeError) as exc:  # h5py: truncated or not HDF5; mudata: not a MuData layout
        raise ValueError(
            f"{path} cannot be read as a MuData .h5mu file ({exc}); it may be truncated or another format: "
            "write it again with mudata (mdata.write(path))"
        ) from exc
    meta = mdata.uns.pop("multilivi", {})
    found = find_genotypes(directory, GENOTYPES_PREFIX)  # raises when two formats are present
    if found is None:
        _check_no_stray_genotypes(directory)
    genotypes = None if found is None else read_genotypes(found)  # raises naming a missing member file
    tables = {}
    kinship_files = [p for p in (directory / KINSHIP_FILE, directory / KINSHIP_REL_FILE) if p.exists()]
    if len(kinship_files) > 1:
        raise ValueError(f"{directory} holds both {KINSHIP_FILE} and {KINSHIP_REL_FILE}; keep one kinship")
    if kinship_files:
        tables["kinship"] = read_kinship(kinship_files[0])
    if (directory / COVARIATES_FILE).exists():
        tables["donor_covariates"] = _read_table(directory / COVARIATES_FILE)
    truth = Truth.read(directory / TRUTH_FILE) if (directory / TRUTH_FILE).exists() else None
    cohort_kwargs.setdefault("name", str(meta.get("name", directory.name)))
    if genotypes is not None and "genetics" in meta:  # older folders: inferred by the Cohort
        cohort_kwargs.setdefault("genetics", str(meta["genetics"]))
    return Cohort(mdata, genotypes=genotypes, truth=truth, **tables, **cohort_kwargs)


def read_cohort_file(
    path: str | Path,
    *,
    genotypes: str | Path | None = None,
    kinship: str | Path | None = None,
    covariates: str | Path | None = None,
    on_disk: bool | None = None,
    **cohort_kwargs,
) -> Cohort:
    """A cohort from one ``.h5mu`` or ``.h5ad`` file of cells, with optional donor files beside it.

    Parameters
    ----------
    path
        Cells: a MuData (``.h5mu``) or an AnnData (``.h5ad``) in any layout :class:`Cohort` converts.
    genotypes
        Genotype file or fileset prefix in any accepted format (:func:`read_genotypes`: PLINK 1/2,
        BGEN, VCF/BCF); None: no genotypes (association is skipped).
    kinship, covariates
        Donors x donors kinship (.tsv/.csv with the donor ids in the first column, or plink2's
        ``--make-rel square`` .rel with its .rel.id) and donors x covariates (.tsv/.csv).
    on_disk
        Keep the counts of a ``.h5mu`` in the file and stream them (True), read them (False), or decide
        by their stored size (None, see :func:`counts_on_disk`); a ``.h5ad`` is always read.
    cohort_kwargs
        Go to :class:`Cohort` (``keys=``, ``counts_layer=``, ``round_counts=``, ``donors=``...); the name
        defaults to the file's stem.
    """
    path = Path(path)
    cells = read_cells(path, on_disk=on_disk)
    tables = {} if covariates is None else {"donor_covariates": read_table(covariates)}
    if kinship is not None:
        tables["kinship"] = read_kinship(kinship)
    cohort_kwargs.setdefault("name", path.stem)
    donor_genotypes = None if genotypes is None else read_genotypes(genotypes)
    return Cohort(cells, genotypes=donor_genotypes, **tables, **cohort_kwargs)


def read_cells(path: str | Path, *, on_disk: bool | None = False) -> ad.AnnData | md.MuData:
    """The cells of one ``.h5ad`` (an AnnData) or ``.h5mu`` (a MuData) file, as written.

    ``on_disk`` as in :func:`read_cohort_file` (a ``.h5mu``'s counts may stay in the file).
    Raises a ``FileNotFoundError`` for a missing file and a ``ValueError`` for another suffix, a
    file that is not readable as its suffix says, or ``on_disk=True`` for a ``.h5ad``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".h5ad", ".h5mu"):
        raise ValueError(
            f"{path}: cells are read from a .h5mu (MuData) or .h5ad (AnnData) file, not {suffix!r}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    if on_disk and suffix == ".h5ad":
        raise ValueError(
            f"{path}: counts stay on disk only from a .h5mu file or a cohort folder; convert it once "
            "(mudata.MuData({'rna': adata}).write('cells.h5mu')), or read it into memory (no --on-disk)"
        )
    try:
        if suffix == ".h5mu":
            cells = read_h5mu(path, on_disk=counts_on_disk(path, on_disk))
            cells.uns.pop("multilivi", None)
            return cells
        with warnings.catch_warnings():  # a gene and an antibody may share a name until split by type
            warnings.filterwarnings("ignore", message="Variable names are not unique", category=UserWarning)
            return ad.read_h5ad(path)
    except (OSError, KeyError, TypeError) as exc:  # h5py: truncated or not HDF5; anndata/mudata: layout
        raise ValueError(
            f"{path} cannot be read as {'a MuData' if suffix == '.h5mu' else 'an AnnData'} file ({exc}); it "
            "may be truncated or another format"
        ) from exc


def read_h5mu(path: Path, *, on_disk: bool = False) -> md.MuData:
    """Read a .h5mu file modality by modality, then its global obs and uns.

    ``mudata.read_h5mu`` joins the modalities' obs on update, and that join fails on files whose
    obs or var indexes are named (as the simulator's, ``cell``/``gene``, were) under
    ``pull_on_update=False``, and on duplicated cell names under the legacy pull. The Cohort sets its
    own obs, so the modalities are read as they are and the global annotations attached afterwards.

    With ``on_disk``, each modality's ``X`` stays in the file as anndata's backed CSR dataset (the
    file stays open, read-only) and its layers are not read; obs, var, obsm, varm and uns are read.
    """
    with h5py.File(path, "r") as f:
        if "mod" not in f:
            raise KeyError(f"no 'mod' group: {path} is not a MuData file")
        names = [str(m) for m in f["mod"].attrs.get("mod-order", list(f["mod"].keys()))]
        obs = read_elem(f["obs"]) if "obs" in f else pd.DataFrame()
        uns = read_elem(f["uns"]) if "uns" in f else {}
    if on_disk:
        handle = h5py.File(path, "r")  # kept open by the datasets that read from it
        modalities = {name: without_index_names(_backed_modality(handle, name)) for name in names}
    else:
        modalities = {name: without_index_names(md.read_h5ad(path, name)) for name in names}
    mdata = new_mudata(modalities)
    if len(obs.columns):
        obs.index.name = None
        mdata.obs = obs.reindex(mdata.obs_names) if obs.index.is_unique else obs
    mdata.uns.update(uns)
    return mdata


def counts_on_disk(path: Path, on_disk: bool | None) -> bool:
    """Whether the counts of the .h5mu ``path`` stay on disk: ``on_disk``, or (None) whether they are
    stored in more than :data:`~multilivi.data.ondisk.ON_DISK_BYTES`; logs the path taken.
    """
    with h5py.File(path, "r") as f:
        mods = f.get("mod", {})
        size = sum(stored_bytes(mods[m]["X"]) for m in mods if "X" in mods[m])
    chosen = size > ON_DISK_BYTES if on_disk is None else on_disk
    why = (
        "asked" if on_disk is not None else f"{'above' if chosen else 'within'} {ON_DISK_BYTES / 2**30:g} GiB"
    )
    logger.info(
        "%s: counts (%.2f GiB stored) %s (%s)",
        path,
        size / 2**30,
        "stay on disk, streamed in row blocks" if chosen else "read into memory",
        why,
    )
    return chosen


def _backed_modality(f: h5py.File, name: str) -> ad.AnnData:
    """Modality ``name`` of an open .h5mu with its ``X`` left on disk (anndata's backed CSR dataset)."""
    group = f["mod"][name]
    x = group.get("X")
    encoding = None if x is None else x.attrs.get("encoding-type")
    if encoding != "csr_matrix":
        raise ValueError(
            f"{f.filename}: the {name!r} counts are {encoding or 'absent'} in X, but counts stay on disk "
            "only as a CSR matrix (rows = cells); write them as scipy.sparse.csr_matrix (Cohort.write does), "
            "or "
            "read them into memory (on_disk=False, no --on-disk)"
        )
    parts = {key: read_elem(group[key]) for key in ("obs", "var", "obsm", "varm", "uns") if key in group}
    return ad.AnnData(X=ad.io.sparse_dataset(x), **parts)


def without_index_names(data: md.MuData | ad.AnnData) -> md.MuData | ad.AnnData:
    """``data`` with unnamed obs and var indexes (in place, modalities too), so any mudata reads it back."""
    frames = [data.obs, data.var] + [f for m in getattr(data, "mod", {}).values() for f in (m.obs, m.var)]
    for frame in frames:
        frame.index.name = None
    return data


def _check_no_stray_genotypes(directory: Path) -> None:
    """Refuse genotype files under another prefix: they would be ignored and every association skipped."""
    stray = stray_genotype_files(directory, GENOTYPES_PREFIX)
    if stray:
        raise ValueError(
            f"{directory} holds genotype files {stray} but genotypes are read from {GENOTYPES_PREFIX}.*"
            f"; rename them {GENOTYPES_PREFIX}.bed, {GENOTYPES_PREFIX}.bim, {GENOTYPES_PREFIX}.fam (or "
            f"{GENOTYPES_PREFIX}.<ext> for another format), or move them out of the folder to run without "
            "genotypes"
        )


def read_kinship(path: str | Path) -> pd.DataFrame:
    """A donors x donors kinship: a delimited table (first column and header = donor names), or plink2's
    ``--make-rel square`` matrix ``path`` (``.rel``) with its ids in ``path.id`` (``#FID IID`` or ``#IID``).
    """
    path = Path(path)
    if path.suffix != ".rel":
        return read_table(path)
    ids_path = path.with_name(path.name + ".id")
    if not ids_path.exists():
        raise FileNotFoundError(
            f"{ids_path} is missing: plink2 --make-rel writes the .rel and .rel.id together"
        )
    ids = pd.read_csv(ids_path, sep=r"\s+", dtype=str, keep_default_na=False)
    column = "IID" if "IID" in ids.columns else ids.columns[-1]
    donors = ids[column].tolist()
    matrix = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if matrix.shape != (len(donors), len(donors)):
        raise ValueError(
            f"{path} is {matrix.shape[0]} x {matrix.shape[1]} but {ids_path} lists {len(donors)} samples: "
            "write it with plink2 --make-rel square (not triangle or bin)"
        )
    return pd.DataFrame(matrix, index=pd.Index(donors), columns=pd.Index(donors))


def _write_table(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, sep="\t", float_format="%.17g")


def _read_table(path: Path) -> pd.DataFrame:
    return read_table(path, sep="\t")


def read_table(path: str | Path, *, sep: str | None = None) -> pd.DataFrame:
    """Read a delimited table whose first column is the index, keeping index ids as written.

    Ids such as ``001`` or ``1`` stay the strings ``'001'`` and ``'1'`` (pandas alone would parse them
    as the number 1). ``sep`` defaults to a tab for ``.tsv`` files and a comma otherwise.
    """
    path = Path(path)
    sep = sep or ("\t" if path.suffix.lower() == ".tsv" else ",")
    ids = pd.read_csv(path, sep=sep, usecols=[0], dtype=str, keep_default_na=False).iloc[:, 0]
    table = pd.read_csv(path, sep=sep, index_col=0)
    table.index = pd.Index(ids.to_numpy(), name=table.index.name)
    return table
