"""Where genotypes live: a matrix in memory or PLINK 1 files on disk, read in chunks of variants.

A source holds the donors and the variant table of its file and reads dosages of allele ``a1`` on demand.
:class:`multilivi.data.genetics.Genotypes` is the view on a source that the Cohort holds; the readers of
the other formats (.pgen, .bgen, .vcf/.bcf) are in :mod:`multilivi.data.dosage_formats`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

VARIANT_COLUMNS = ("id", "chrom", "pos", "a1", "a2")
COMPACT_STRING = pd.StringDtype("pyarrow")
BED_MAGIC = b"\x6c\x1b\x01"  # the first bytes of a SNP-major PLINK 1 .bed
HASH_BLOCK = 1 << 20  # bytes read at a time when hashing files


class GenotypeSource(Protocol):
    """Dosages of allele ``a1`` of every donor at every variant of one file set (or matrix).

    Attributes
    ----------
    donors
        Donor names in the source's row order, length n_donors.
    variants
        Table of n_variants rows with columns ``id, chrom, pos, a1, a2``.
    n_variants
        The number of variants (rows of ``variants``, which a file source may parse again on first use).
    files
        The member files (empty for a matrix in memory); their bytes are the source's content.
    """

    donors: pd.Index
    variants: pd.DataFrame
    n_variants: int
    files: tuple[Path, ...]

    def read(self, rows: np.ndarray | None, columns: slice | np.ndarray, dtype: type) -> np.ndarray:
        """Dosages of shape (len(rows), n columns): ``rows`` donor positions (None: all, in order),
        ``columns`` a step-1 slice or a sorted array of unique variant positions; NaN = missing call;
        freshly allocated.
        """
        ...


class MemorySource:
    """A dosage matrix in memory, shape (n_donors, n_variants), validated once at construction."""

    files: tuple[Path, ...] = ()

    def __init__(self, dosage: np.ndarray, donors: Sequence[str] | pd.Index, variants: pd.DataFrame) -> None:
        self.dosage = np.asarray(dosage, dtype=np.float64)
        self.donors = donor_index(donors)
        self.variants = variant_table(variants)
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
        self.n_variants = n_variants
        observed = self.dosage[~np.isnan(self.dosage)]
        if observed.size and (observed.min() < 0 or observed.max() > 2):
            raise ValueError(
                f"dosages must lie in [0, 2] (NaN for a missing call); found values in "
                f"[{observed.min()}, {observed.max()}]"
            )

    def read(self, rows: np.ndarray | None, columns: slice | np.ndarray, dtype: type) -> np.ndarray:
        block = self.dosage[:, columns]
        return np.array(block if rows is None else block[rows], dtype=dtype)


class FileSource:
    """Base of the file-backed sources: their open handles and what can be parsed again from the files
    (attributes named in ``_transient``, e.g. the variant table) are not pickled but rebuilt on first use,
    so a source sent to a Dask worker is small; ``_lock`` serialises the reads of readers that keep a file
    position.
    """

    _transient: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in (*self._transient, "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class BedSource(FileSource):
    """A PLINK 1 trio ``prefix.{bed,bim,fam}`` read with bed-reader (dosage counts the .bim's allele 1).

    The trio is checked at construction (files present, SNP-major magic bytes, .bed size matching the
    .bim and .fam lengths); dosages are read only by :meth:`read`.
    """

    _transient = ("_bed", "variants")

    def __init__(self, prefix: str | Path, *, num_threads: int = 1) -> None:
        super().__init__()
        prefix = Path(prefix)
        paths = {ext: prefix.with_name(prefix.name + f".{ext}") for ext in ("bed", "bim", "fam")}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"PLINK files missing: {missing}; genotypes need the .bed, .bim and .fam trio"
            )
        donors, variants = _read_fam(paths["fam"]), _read_bim(paths["bim"])
        n_donors, n_variants = len(donors), len(variants)
        with open(paths["bed"], "rb") as f:
            magic = f.read(len(BED_MAGIC))
        if magic != BED_MAGIC:
            raise ValueError(
                f"{paths['bed']} is not a SNP-major PLINK .bed file (bad magic bytes); re-export it with "
                "plink --make-bed"
            )
        expected = len(BED_MAGIC) + n_variants * ((n_donors + 3) // 4)
        actual = paths["bed"].stat().st_size
        if actual != expected:
            raise ValueError(
                f"{paths['bed']} has {actual} bytes but {n_variants} variants (.bim) x {n_donors} donors "
                f"(.fam) need {expected}: the trio is mismatched or the .bed is truncated; re-export all "
                "three together"
            )
        self.files = (paths["bed"], paths["bim"], paths["fam"])
        self.num_threads = num_threads
        self.donors = donor_index(donors)
        self.variants = variant_table(variants, compact=True)
        self.n_variants = n_variants

    @cached_property
    def variants(self) -> pd.DataFrame:
        """The variant table (parsed at construction; again from the .bim after unpickling)."""
        return variant_table(_read_bim(self.files[1]), compact=True)

    @cached_property
    def _bed(self):
        return open_bed_by_ranges(self.files[0], len(self.donors), self.n_variants)

    def read(self, rows: np.ndarray | None, columns: slice | np.ndarray, dtype: type) -> np.ndarray:
        index = np.s_[:, columns] if rows is None else np.s_[rows, columns]
        return self._bed.read(index=index, dtype=np.dtype(dtype).name, num_threads=self.num_threads)


class _Positions:
    """What bed-reader indexes to turn a variant index into positions, without its array.

    ``open_bed`` caches ``np.arange(sid_count)`` on its first read (8 B per variant: 76 MiB at 10^7
    variants, held for the reader's life) and indexes it with each read's variant index; a slice,
    what the chunked readers pass, gives the same positions here from its own range.
    """

    def __init__(self, n: int) -> None:
        self.n = n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return np.arange(*index.indices(self.n), dtype=np.intp)
        return np.arange(self.n, dtype=np.intp)[index]


def open_bed_by_ranges(path: str | Path, n_donors: int, n_variants: int, num_threads: int | None = None):
    """bed-reader's ``open_bed`` of a .bed with known counts (no .fam or .bim parsed), whose reads by
    variant slices hold no per-variant array (see :class:`_Positions`).
    """
    from bed_reader import open_bed

    bed = open_bed(path, iid_count=n_donors, sid_count=n_variants, num_threads=num_threads)
    if getattr(bed, "_sid_range", "absent") is None:  # bed-reader 1.x's lazily built cache
        bed._sid_range = _Positions(n_variants)
    return bed


def donor_index(donors: Sequence[str] | pd.Index) -> pd.Index:
    """Donor names as a string Index named ``donor``; refuses duplicates."""
    index = pd.Index(np.asarray(donors).astype(str), name="donor")
    if index.has_duplicates:
        raise ValueError(f"duplicated donor names in genotypes: {few_names(index[index.duplicated()])}")
    return index


def variant_table(variants: pd.DataFrame, *, compact: bool = False) -> pd.DataFrame:
    """The ``id, chrom, pos, a1, a2`` columns of ``variants`` with canonical types; refuses duplicated ids.

    Strings are Python ``str`` objects, or with ``compact`` (the file sources) pyarrow-backed strings:
    about 10 B instead of 60 B per value, which matters at millions of variants.
    """
    missing = [c for c in VARIANT_COLUMNS if c not in variants.columns]
    if missing:
        raise ValueError(
            f"variant table lacks columns {missing}; it needs {list(VARIANT_COLUMNS)} (as in a .bim file)"
        )
    table = variants.loc[:, list(VARIANT_COLUMNS)].reset_index(drop=True)
    for column in ("id", "chrom", "a1", "a2"):
        table[column] = table[column].astype(COMPACT_STRING if compact else str)
    table["pos"] = table["pos"].astype(np.int64)
    if table["id"].nunique() < len(table):  # cheaper than duplicated() on millions of pyarrow strings
        duplicated = table["id"].duplicated()
        raise ValueError(
            f"duplicated variant ids: {few_names(table['id'][duplicated])}; make variant ids unique"
        )
    return table


def hash_files(files: Sequence[Path], h: hashlib._Hash) -> None:
    """Feed each file's extension, size and content (streamed in 1 MiB blocks) into ``h``; not its name,
    so a renamed or copied file set (``chr1.bed`` written as ``genotypes.bed``) keeps its hash.
    """
    for path in files:
        h.update(f"{Path(path).suffix}\0{Path(path).stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while block := f.read(HASH_BLOCK):
                h.update(block)


def few_names(names, k: int = 5) -> str:
    """The first ``k`` names, quoted, for error messages ("'a', 'b' and 3 more")."""
    names = list(map(str, names))
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(repr(n) for n in names[:k]) + more


def _read_fam(path: Path) -> np.ndarray:
    """Sample ids (IID, the second column) of a .fam file."""
    table = pd.read_csv(path, sep=r"\s+", header=None, usecols=[1], dtype=str, keep_default_na=False)
    return table[1].to_numpy()


def _read_bim(path: Path) -> pd.DataFrame:
    """The variant table of a .bim file (chrom, id, cM, pos, allele 1, allele 2)."""
    names = ["chrom", "id", "cm", "pos", "a1", "a2"]
    table = read_columns_tsv(path, names, ["id", "chrom", "pos", "a1", "a2"])
    if table is None:  # not tab-separated
        table = pd.read_csv(path, sep=r"\s+", header=None, names=names, dtype=str, keep_default_na=False)
    return table.astype({"pos": np.int64})


def read_columns_tsv(
    path: Path, names: list[str], keep: list[str], skip_rows: int = 0
) -> pd.DataFrame | None:
    """Columns ``keep`` (as strings) of a headerless tab-separated file with columns ``names``, read in
    16 MiB blocks by pyarrow into pyarrow-backed strings (fast, and compact at millions of rows); None
    when the file is not tab-separated.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip_rows, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter="\t"),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in keep},
                include_columns=keep,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        table = pa.Table.from_batches(list(reader), schema=reader.schema)
    except pa.ArrowInvalid:
        return None
    frame = table.to_pandas(
        types_mapper={pa.string(): COMPACT_STRING}.get, self_destruct=True, split_blocks=True
    )
    del table
    pa.default_memory_pool().release_unused()  # the parser's blocks
    return frame
