"""Cohorts on disk: ``cohort.h5mu`` (mudata) + PLINK ``genotypes.{bed,bim,fam}`` + ``truth.npz``.

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
from bed_reader import open_bed, to_bed

from multilivi.atomic import atomic_path, atomic_write
from multilivi.data.cohort import Cohort, new_mudata
from multilivi.data.genetics import Genotypes
from multilivi.data.truth import Truth

logger = logging.getLogger(__name__)

COHORT_FILE = "cohort.h5mu"
GENOTYPES_PREFIX = "genotypes"
TRUTH_FILE = "truth.npz"
KINSHIP_FILE = "kinship.tsv"
COVARIATES_FILE = "donor_covariates.tsv"


def write_plink(genotypes: Genotypes, prefix: str | Path) -> None:
    """Write genotypes as a PLINK 1 trio ``prefix.{bed,bim,fam}`` (dosage counts allele ``a1``)."""
    prefix = Path(prefix)
    v = genotypes.variants
    properties = {
        "fid": genotypes.donors.to_numpy(str),
        "iid": genotypes.donors.to_numpy(str),
        "sid": v["id"].to_numpy(str),
        "chromosome": v["chrom"].to_numpy(str),
        "bp_position": v["pos"].to_numpy(np.int64),
        "allele_1": v["a1"].to_numpy(str),
        "allele_2": v["a2"].to_numpy(str),
    }
    paths = {ext: prefix.with_name(prefix.name + f".{ext}") for ext in ("bed", "bim", "fam")}
    with atomic_path(paths["bed"]) as bed, atomic_path(paths["bim"]) as bim, atomic_path(paths["fam"]) as fam:
        to_bed(bed, genotypes.dosage, properties, fam_filepath=fam, bim_filepath=bim, num_threads=1)


def read_plink(prefix: str | Path) -> Genotypes:
    """Read a PLINK 1 trio ``prefix.{bed,bim,fam}``; missing calls become NaN.

    Raises a ``ValueError`` naming the problem when a file is missing, when the .bim and .fam
    lengths do not match the .bed file's size, or when the .bed file is not a SNP-major PLINK file.
    """
    prefix = Path(prefix)
    paths = {ext: prefix.with_name(prefix.name + f".{ext}") for ext in ("bed", "bim", "fam")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"PLINK files missing: {missing}; genotypes need the .bed, .bim and .fam trio"
        )
    n_donors = _count_lines(paths["fam"])
    n_variants = _count_lines(paths["bim"])
    with open(paths["bed"], "rb") as f:
        magic = f.read(3)
    if magic != b"\x6c\x1b\x01":
        raise ValueError(
            f"{paths['bed']} is not a SNP-major PLINK .bed file (bad magic bytes); re-export it with plink "
            "--make-bed"
        )
    expected = 3 + n_variants * ((n_donors + 3) // 4)
    actual = paths["bed"].stat().st_size
    if actual != expected:
        raise ValueError(
            f"{paths['bed']} has {actual} bytes but {n_variants} variants (.bim) x {n_donors} donors (.fam) "
            f"need {expected}: the trio is mismatched or the .bed is truncated; re-export all three together"
        )
    with open_bed(paths["bed"], num_threads=1) as bed:
        dosage = bed.read(dtype="float64", num_threads=1)
        variants = pd.DataFrame(
            {
                "id": bed.sid,
                "chrom": bed.chromosome,
                "pos": bed.bp_position,
                "a1": bed.allele_1,
                "a2": bed.allele_2,
            }
        )
        donors = bed.iid
    return Genotypes(dosage, donors, variants)


def write_cohort(cohort: Cohort, directory: str | Path) -> Path:
    """Write ``cohort`` to ``directory`` (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mdata = without_index_names(cohort.mdata.copy())
    mdata.uns["multilivi"] = {"name": cohort.name, "genetics": cohort.genetics}
    atomic_write(directory / COHORT_FILE, lambda tmp: mdata.write(tmp))
    if cohort.genotypes is not None:
        write_plink(cohort.genotypes, directory / GENOTYPES_PREFIX)
    if cohort.kinship_given:
        atomic_write(directory / KINSHIP_FILE, lambda tmp: _write_table(cohort.kinship, tmp))
    if cohort.donor_covariates is not None:
        atomic_write(directory / COVARIATES_FILE, lambda tmp: _write_table(cohort.donor_covariates, tmp))
    if cohort.truth is not None:
        atomic_write(directory / TRUTH_FILE, lambda tmp: cohort.truth.write(tmp))
    return directory


def read_cohort(directory: str | Path, **cohort_kwargs) -> Cohort:
    """Read a cohort written by :func:`write_cohort` (or assembled by hand in the same layout).

    ``cohort_kwargs`` go to :class:`Cohort` (e.g. ``keys=ObsKeys(donor="individual")`` for a
    hand-made ``cohort.h5mu``, ``donors="intersect"``).
    """
    directory = Path(directory)
    layout = (
        "a cohort folder holds cohort.h5mu (+ genotypes.bed/.bim/.fam, kinship.tsv, donor_covariates.tsv, "
        "truth.npz)"
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
        mdata = read_h5mu(path)
    except (OSError, KeyError, TypeError) as exc:  # h5py: truncated or not HDF5; mudata: not a MuData layout
        raise ValueError(
            f"{path} cannot be read as a MuData .h5mu file ({exc}); it may be truncated or another format: "
            "write it again with mudata (mdata.write(path))"
        ) from exc
    meta = mdata.uns.pop("multilivi", {})
    genotypes = None
    if any((directory / f"{GENOTYPES_PREFIX}.{ext}").exists() for ext in ("bed", "bim", "fam")):
        genotypes = read_plink(directory / GENOTYPES_PREFIX)  # raises naming any missing member of the trio
    else:
        _check_no_stray_plink(directory)
    optional = {
        "kinship": directory / KINSHIP_FILE,
        "donor_covariates": directory / COVARIATES_FILE,
    }
    tables = {key: _read_table(p) for key, p in optional.items() if p.exists()}
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
    **cohort_kwargs,
) -> Cohort:
    """A cohort from one ``.h5mu`` or ``.h5ad`` file of cells, with optional donor files beside it.

    Parameters
    ----------
    path
        Cells: a MuData (``.h5mu``) or an AnnData (``.h5ad``) in any layout :class:`Cohort` converts.
    genotypes
        PLINK 1 prefix of ``PREFIX.{bed,bim,fam}``; None: no genotypes (association is skipped).
    kinship, covariates
        Donors x donors kinship and donors x covariates tables (.tsv or .csv, first column the donor id).
    cohort_kwargs
        Go to :class:`Cohort` (``keys=``, ``counts_layer=``, ``round_counts=``, ``donors=``...); the name
        defaults to the file's stem.
    """
    path = Path(path)
    cells = read_cells(path)
    tables = {
        key: read_table(table)
        for key, table in (("kinship", kinship), ("donor_covariates", covariates))
        if table is not None
    }
    cohort_kwargs.setdefault("name", path.stem)
    plink = None if genotypes is None else read_plink(genotypes)
    return Cohort(cells, genotypes=plink, **tables, **cohort_kwargs)


def read_cells(path: str | Path) -> ad.AnnData | md.MuData:
    """The cells of one ``.h5ad`` (an AnnData) or ``.h5mu`` (a MuData) file, as written.

    Raises a ``FileNotFoundError`` for a missing file and a ``ValueError`` for another suffix or a
    file that is not readable as its suffix says.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".h5ad", ".h5mu"):
        raise ValueError(
            f"{path}: cells are read from a .h5mu (MuData) or .h5ad (AnnData) file, not {suffix!r}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    try:
        if suffix == ".h5mu":
            cells = read_h5mu(path)
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


def read_h5mu(path: Path) -> md.MuData:
    """Read a .h5mu file modality by modality, then its global obs and uns.

    ``mudata.read_h5mu`` joins the modalities' obs on update, and that join fails on files whose
    obs or var indexes are named (as the simulator's, ``cell``/``gene``, were) under
    ``pull_on_update=False``, and on duplicated cell names under the legacy pull. The Cohort sets its
    own obs, so the modalities are read as they are and the global annotations attached afterwards.
    """
    with h5py.File(path, "r") as f:
        if "mod" not in f:
            raise KeyError(f"no 'mod' group: {path} is not a MuData file")
        names = [str(m) for m in f["mod"].attrs.get("mod-order", list(f["mod"].keys()))]
        obs = read_elem(f["obs"]) if "obs" in f else pd.DataFrame()
        uns = read_elem(f["uns"]) if "uns" in f else {}
    modalities = {name: without_index_names(md.read_h5ad(path, name)) for name in names}
    mdata = new_mudata(modalities)
    if len(obs.columns):
        obs.index.name = None
        mdata.obs = obs.reindex(mdata.obs_names) if obs.index.is_unique else obs
    mdata.uns.update(uns)
    return mdata


def without_index_names(data: md.MuData | ad.AnnData) -> md.MuData | ad.AnnData:
    """``data`` with unnamed obs and var indexes (in place, modalities too), so any mudata reads it back."""
    frames = [data.obs, data.var] + [f for m in getattr(data, "mod", {}).values() for f in (m.obs, m.var)]
    for frame in frames:
        frame.index.name = None
    return data


def _check_no_stray_plink(directory: Path) -> None:
    """Refuse PLINK files under another prefix: they would be ignored and every association skipped."""
    stray = sorted(p.name for p in directory.glob("*.bed"))
    if stray:
        raise ValueError(
            f"{directory} holds PLINK files {stray} but genotypes are read from "
            f"{GENOTYPES_PREFIX}.bed/.bim/.fam; "
            f"rename them {GENOTYPES_PREFIX}.bed, {GENOTYPES_PREFIX}.bim, {GENOTYPES_PREFIX}.fam (or move "
            "them "
            "out of the folder to run without genotypes)"
        )


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


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())
