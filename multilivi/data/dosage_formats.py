"""Readers of imputed-dosage formats: PLINK 2 .pgen, BGEN and VCF/BCF, as :class:`GenotypeSource` s.

Allele ``a1`` (the one whose dosage is read) is the same allele in every format, so that a variant
converted between formats keeps its dosage:

- .pgen: ``a1`` = ALT of the .pvar (pgenlib's default ``allele_idx=1``); plink2 turns a .bim's allele 1
  into ALT, so a .bed converted with ``plink2 --make-pgen`` reads back identically;
- BGEN: ``a1`` = the first allele of each variant, ``a2`` the second: ``plink2 --export bgen-1.2``
  writes a .bim's allele 1 (the .pgen's ALT) first; dosage = expected count of the first allele
  (2 P(hom a1) + P(het), or the sum of both haplotypes' a1 probabilities when phased);
- VCF/BCF: ``a1`` = ALT; FORMAT/DS when the header declares it (fractional dosages, float32 as stored),
  else the ALT count of GT.

Only biallelic diploid variants are read; others are refused with the command that splits them. The
packages (pgenlib, cbgen, cyvcf2) are the ``multilivi[genotypes]`` extra.
"""

from __future__ import annotations

import importlib
import itertools
import tempfile
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from multilivi.data.genotype_sources import (
    COMPACT_STRING,
    FileSource,
    donor_index,
    few_names,
    read_columns_tsv,
    variant_table,
)

EXTRA = "pip install 'multilivi[genotypes]'"
PGEN_MISSING = -9.0  # pgenlib's value for a missing dosage
VCF_TABLE_PIECE = 100_000  # records held as Python strings at a time while a VCF's variant table is built


def require(package: str, what: str):
    """Import ``package`` or raise an ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(f"reading {what} needs the {package} package: {EXTRA}") from exc


class PgenSource(FileSource):
    """A PLINK 2 fileset ``prefix.{pgen,pvar,psam}`` read with pgenlib (dosages, hard calls as 0/1/2)."""

    _transient = ("_reader", "variants")

    def __init__(self, prefix: str | Path) -> None:
        super().__init__()
        prefix = Path(prefix)
        self.files = tuple(prefix.with_name(prefix.name + f".{ext}") for ext in ("pgen", "pvar", "psam"))
        _check_present(self.files, "PLINK 2 genotypes need the .pgen, .pvar and .psam files")
        require("pgenlib", "PLINK 2 .pgen genotypes")
        self.donors = donor_index(_read_psam(self.files[2]))
        self.variants = _read_pvar(self.files[1])
        reader = require("pgenlib", "PLINK 2 .pgen genotypes").PgenReader(str(self.files[0]).encode())
        if reader.get_raw_sample_ct() != len(self.donors) or reader.get_variant_ct() != len(self.variants):
            raise ValueError(
                f"{self.files[0]} holds {reader.get_raw_sample_ct()} samples x {reader.get_variant_ct()} "
                f"variants but the .psam lists {len(self.donors)} and the .pvar {len(self.variants)}: the "
                "fileset is mismatched; re-export all three together (plink2 --make-pgen)"
            )
        reader.close()
        self.n_variants = len(self.variants)

    @cached_property
    def variants(self) -> pd.DataFrame:
        """The variant table (parsed at construction; again from the .pvar after unpickling)."""
        return _read_pvar(self.files[1])

    @cached_property
    def _reader(self):
        pgenlib = require("pgenlib", "PLINK 2 .pgen genotypes")
        return pgenlib.PgenReader(str(self.files[0]).encode(), raw_sample_ct=len(self.donors))

    def read(self, rows: np.ndarray | None, columns: slice | np.ndarray, dtype: type) -> np.ndarray:
        with self._lock:  # the reader keeps a file position
            dtype = np.float32 if np.dtype(dtype) == np.float32 else np.float64
            if isinstance(columns, slice):
                out = np.empty((columns.stop - columns.start, len(self.donors)), dtype=dtype)
                self._reader.read_dosages_range(columns.start, columns.stop, out)
            else:
                out = np.empty((len(columns), len(self.donors)), dtype=dtype)
                self._reader.read_dosages_list(np.asarray(columns, dtype=np.uint32), out)
            out[out == PGEN_MISSING] = np.nan
            return out.T if rows is None else out.T[rows]


class BgenSource(FileSource):
    """A BGEN file (v1.1-1.3) read with cbgen; donors from ``path.sample`` or the file's own sample ids.

    Opening builds cbgen's variant index (one pass over the file, in a temporary folder) and keeps the
    variant table and the byte offset of each variant.
    """

    _transient = ("_bgen",)

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        path = Path(path)
        sample = path.with_suffix(".sample")
        _check_present((path,), "BGEN genotypes need the .bgen file")
        cbgen = require("cbgen", "BGEN genotypes")
        self.files = (path, sample) if sample.exists() else (path,)
        with cbgen.bgen_file(path) as bgen:
            if sample.exists():
                donors = _read_sample_file(sample)
            elif bgen.contain_samples:
                donors = [s.decode() if isinstance(s, bytes) else str(s) for s in bgen.read_samples()]
            else:
                raise FileNotFoundError(
                    f"{path} stores no sample ids and {sample} is missing; write the .sample file next to it "
                    "(plink2 --export bgen-1.2 writes one)"
                )
            if len(donors) != bgen.nsamples:
                raise ValueError(
                    f"{path} holds {bgen.nsamples} samples but {len(donors)} sample ids were found; the "
                    ".sample file belongs to another .bgen"
                )
            self.donors = donor_index(donors)
            with tempfile.TemporaryDirectory() as tmp:
                bgen.create_metafile(Path(tmp) / "index.metafile", verbose=False)
                with cbgen.bgen_metafile(Path(tmp) / "index.metafile") as meta:
                    parts = [meta.read_partition(i).variants for i in range(meta.npartitions)]
        alleles = pd.Series(np.concatenate([p.allele_ids for p in parts]).astype(str)).str.split(",")
        n_alleles = np.concatenate([p.nalleles for p in parts])
        ids = np.concatenate([p.rsid for p in parts]).astype(str)
        vids = np.concatenate([p.id for p in parts]).astype(str)
        self._check_biallelic(n_alleles, ids)
        self.variants = variant_table(
            pd.DataFrame(
                {
                    "id": np.where(np.isin(ids, ["", "."]), vids, ids),
                    "chrom": np.concatenate([p.chromosome for p in parts]).astype(str),
                    "pos": np.concatenate([p.position for p in parts]),
                    "a1": alleles.str[0],
                    "a2": alleles.str[1],
                }
            ),
            compact=True,
        )
        self.offsets = np.concatenate([p.offset for p in parts]).astype(np.uint64)
        self.n_variants = len(self.offsets)

    def _check_biallelic(self, n_alleles: np.ndarray, ids: np.ndarray) -> None:
        if (n_alleles != 2).any():
            raise ValueError(
                f"{self.files[0]}: {int((n_alleles != 2).sum())} variants are not biallelic "
                f"({few_names(ids[n_alleles != 2])}); split them first (qctool or plink2 --max-alleles 2)"
            )

    @cached_property
    def _bgen(self):
        return require("cbgen", "BGEN genotypes").bgen_file(self.files[0])

    def read(self, rows: np.ndarray | None, columns: slice | np.ndarray, dtype: type) -> np.ndarray:
        with self._lock:  # the reader keeps a file position
            positions = np.arange(columns.start, columns.stop) if isinstance(columns, slice) else columns
            out = np.empty((len(self.donors), len(positions)), dtype=dtype, order="F")
            for k, j in enumerate(positions):
                genotype = self._bgen.read_genotype(int(self.offsets[j]))
                probs = genotype.probability  # unphased: AA, AB, BB; phased: h1 A, h1 B, h2 A, h2 B (A = a1)
                if (genotype.ploidy != 2).any() or probs.shape[1] != (4 if genotype.phased else 3):
                    raise ValueError(
                        f"{self.files[0]}: variant {self.variants['id'].iat[j]!r} is not diploid biallelic "
                        "(ploidy or probability count); only diploid dosages can be read"
                    )
                out[:, k] = probs[:, 0] + probs[:, 2] if genotype.phased else 2 * probs[:, 0] + probs[:, 1]
                out[genotype.missing, k] = np.nan
            _check_range(out, self.files[0])
            return out if rows is None else out[rows]


class VcfSource(FileSource):
    """A VCF (.vcf, .vcf.gz) or BCF file read with cyvcf2: FORMAT/DS when declared, else GT.

    Opening reads the file once to build the variant table (bounded memory: the table only). Chunks are
    then read sequentially from one cached iterator, so a scan from the first to the last variant reads
    the file once more. A read that does not continue where the last one stopped seeks with the file's
    index (``.tbi`` or ``.csi`` beside it, e.g. from ``tabix -p vcf`` or ``bcftools index``) when there is
    one, else restarts from the top of the file (earlier variants) or skips forward.
    """

    _transient = ("_iterator", "_next")
    _iterator = None  # the cached record iterator (class defaults: none yet, or after unpickling)
    _next = 0  # position of the variant the cached iterator yields next

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        path = Path(path)
        _check_present((path,), "VCF genotypes need the .vcf, .vcf.gz or .bcf file")
        cyvcf2 = require("cyvcf2", "VCF/BCF genotypes")
        self.files = (path,)
        vcf = cyvcf2.VCF(str(path), gts012=True, lazy=True)
        self.donors = donor_index(vcf.samples)
        self.dosage_field = any(h.type == "FORMAT" and h.info().get("ID") == "DS" for h in vcf.header_iter())
        columns: dict[str, list] = {"id": [], "chrom": [], "pos": [], "a1": [], "a2": []}
        pieces, multiallelic = [], []
        for n, record in enumerate(vcf, start=1):
            if len(record.ALT) != 1:
                multiallelic.append(f"{record.CHROM}:{record.POS}")
            alt = record.ALT[0] if record.ALT else "."
            columns["id"].append(record.ID or f"{record.CHROM}:{record.POS}:{record.REF}:{alt}")
            columns["chrom"].append(record.CHROM)
            columns["pos"].append(record.POS)
            columns["a1"].append(alt)
            columns["a2"].append(record.REF)
            if n % VCF_TABLE_PIECE == 0:  # Python strings only for one piece at a time
                pieces.append(_compact(columns))
                columns = {k: [] for k in columns}
        vcf.close()
        pieces.append(_compact(columns))
        if multiallelic:
            raise ValueError(
                f"{path}: {len(multiallelic)} variants are not biallelic ({few_names(multiallelic)}); split "
                "them first (bcftools norm -m -any)"
            )
        self.variants = variant_table(pd.concat(pieces, ignore_index=True), compact=True)
        self.n_variants = len(self.variants)
        self.indexed = any(Path(f"{path}.{ext}").exists() for ext in ("tbi", "csi"))

    def read(self, rows: np.ndarray | None, columns: slice | np.ndarray, dtype: type) -> np.ndarray:
        with self._lock:  # the reader keeps a file position
            positions = np.arange(columns.start, columns.stop) if isinstance(columns, slice) else columns
            out = np.empty((len(self.donors), len(positions)), dtype=dtype, order="F")
            if len(positions) and (
                self._iterator is None
                or positions[0] < self._next
                or (self.indexed and positions[0] > self._next)
            ):
                self._iterator, self._next = self._records_from(int(positions[0]))
            for k, j in enumerate(positions):
                while self._next < j:  # skip the variants between two requested ones
                    next(self._iterator)
                    self._next += 1
                self._next += 1
                out[:, k] = self._dosage(next(self._iterator))
            _check_range(out, self.files[0])
            return out if rows is None else out[rows]

    def _records_from(self, j: int) -> tuple[Iterator, int]:
        """An iterator of records and the variant position it yields first: ``j`` with an index, else 0."""
        vcf = require("cyvcf2", "VCF/BCF genotypes").VCF(str(self.files[0]), gts012=True)
        if not self.indexed or j == 0:
            return iter(vcf), 0
        chrom, pos = self.variants["chrom"], self.variants["pos"]
        first = j  # the first variant at j's chrom:pos (a region query starts there)
        while first > 0 and chrom.iat[first - 1] == chrom.iat[j] and pos.iat[first - 1] == pos.iat[j]:
            first -= 1
        start = int(pos.iat[j])
        later = list(chrom.iloc[j:].unique())[1:]  # an indexed file holds each chromosome in one block

        def records() -> Iterator:
            here = (r for r in vcf(f"{chrom.iat[j]}:{start}-") if start <= r.POS)  # not those spanning it
            yield from itertools.islice(here, j - first, None)
            for c in later:
                yield from vcf(c)

        return records(), j

    def _dosage(self, record) -> np.ndarray:
        """(n_donors,) ALT dosage of one record: DS where present, else the ALT count of GT (NaN missing)."""
        counts = record.gt_types.astype(np.float64)  # gts012: 0, 1, 2 ALT alleles; 3 unknown
        counts[counts == 3] = np.nan
        ds = record.format("DS") if self.dosage_field else None
        if ds is None:
            return counts
        ds = ds[:, 0].astype(np.float64)
        return np.where(np.isnan(ds), counts, ds)  # a sample without DS keeps its GT call


def _compact(columns: dict[str, list]) -> pd.DataFrame:
    """A piece of a variant table with pyarrow-backed strings and int64 positions."""
    types = {c: (np.int64 if c == "pos" else COMPACT_STRING) for c in columns}
    return pd.DataFrame(columns).astype(types)


def _check_present(files: tuple[Path, ...], need: str) -> None:
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise FileNotFoundError(f"genotype files missing: {missing}; {need}")


def _check_range(dosage: np.ndarray, path: Path) -> None:
    observed = dosage[~np.isnan(dosage)]
    if observed.size and (observed.min() < 0 or observed.max() > 2):
        raise ValueError(
            f"{path}: dosages must lie in [0, 2] (an expected allele count); found values in "
            f"[{observed.min()}, {observed.max()}]: the DS field or the probabilities are not dosages"
        )


def _read_psam(path: Path) -> list[str]:
    """Sample ids (IID) of a .psam (header ``#FID IID ...`` or ``#IID ...``) or .fam-like file."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("##")]
    if lines and lines[0].startswith("#"):
        header = lines[0][1:].split()
        if "IID" not in header:
            raise ValueError(f"{path}: the header {lines[0]!r} has no IID column")
        column = header.index("IID")
        return [line.split()[column] for line in lines[1:]]
    return [line.split()[1] for line in lines]  # no header: FID IID PAT MAT SEX PHENO, as a .fam


def _read_pvar(path: Path) -> pd.DataFrame:
    """Variant table of a .pvar (``#CHROM POS ID REF ALT ...``) or .bim-like file; a1 = ALT, a2 = REF."""
    with open(path) as f:
        n_meta = 0
        for line in f:
            if not line.startswith("##"):
                header = line
                break
            n_meta += 1
        else:
            header = ""
    if header.startswith("#"):
        names = header[1:].rstrip("\n").split("\t")
        if not {"CHROM", "POS", "ID", "REF", "ALT"} <= set(names):
            raise ValueError(f"{path}: the header {header.strip()!r} lacks #CHROM, POS, ID, REF or ALT")
        table = read_columns_tsv(path, names, ["CHROM", "POS", "ID", "REF", "ALT"], skip_rows=n_meta + 1)
        if table is None:
            raise ValueError(f"{path} is not tab-separated, as a .pvar must be; re-export it with plink2")
        chrom, pos, ids, ref, alt = (table[c] for c in ("CHROM", "POS", "ID", "REF", "ALT"))
    else:
        table = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, keep_default_na=False)
        chrom, ids, pos, alt, ref = (table[c] for c in (0, 1, 3, 4, 5))
    multiallelic = alt.str.contains(",")
    if multiallelic.any():
        raise ValueError(
            f"{path}: {int(multiallelic.sum())} variants are not biallelic ({few_names(ids[multiallelic])}); "
            "split them first (plink2 --max-alleles 2)"
        )
    ids = ids.where(ids != ".", chrom + ":" + pos + ":" + ref + ":" + alt)
    table = pd.DataFrame({"id": ids, "chrom": chrom, "pos": pos, "a1": alt, "a2": ref})
    return variant_table(table, compact=True)


def _read_sample_file(path: Path) -> list[str]:
    """Sample ids of an Oxford .sample file: the ID_2 column (plink2 writes FID as ID_1), else ID_1."""
    table = pd.read_csv(path, sep=r"\s+", dtype=str, keep_default_na=False)
    table = table.iloc[1:]  # the second line gives the column types
    column = "ID_2" if "ID_2" in table.columns else table.columns[0]
    return table[column].tolist()
