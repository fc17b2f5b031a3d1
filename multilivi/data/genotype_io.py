"""Genotype files: open any accepted format, find it in a cohort folder, write it back.

Accepted formats (see :mod:`multilivi.data.dosage_formats` for which allele is counted): PLINK 1
``.bed/.bim/.fam``, PLINK 2 ``.pgen/.pvar/.psam``, BGEN ``.bgen`` (+ ``.sample``) and VCF/BCF ``.vcf.gz``,
``.vcf``, ``.bcf``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from bed_reader import to_bed

from multilivi.atomic import atomic_path, atomic_write
from multilivi.data.dosage_formats import BgenSource, PgenSource, VcfSource
from multilivi.data.genetics import Genotypes
from multilivi.data.genotype_sources import BED_MAGIC, BedSource, MemorySource, few_names

logger = logging.getLogger(__name__)

FORMATS: dict[str, tuple[tuple[str, ...], type]] = {
    # format: (member file extensions, the main file's first; source class)
    "PLINK 1": (("bed", "bim", "fam"), BedSource),
    "PLINK 2": (("pgen", "pvar", "psam"), PgenSource),
    "BGEN": (("bgen", "sample"), BgenSource),
    "VCF": (("vcf.gz",), VcfSource),
    "plain VCF": (("vcf",), VcfSource),
    "BCF": (("bcf",), VcfSource),
}
PREFIX_FORMATS = ("PLINK 1", "PLINK 2")  # opened by prefix; the others by the main file's path
ACCEPTED = "genotypes need .bed/.bim/.fam, .pgen/.pvar/.psam, .bgen (+ .sample), .vcf.gz, .vcf or .bcf"


def read_genotypes(path: str | Path) -> Genotypes:
    """Open genotypes by a file's path or a fileset's prefix, choosing the reader by extension.

    Reads no dosage.

    Raises
    ------
    FileNotFoundError
        When no accepted file exists at ``path``, or a member of a fileset is missing.
    ValueError
        When a prefix names files of two formats.
    """
    path = Path(path)
    fmt = _format_of(path)
    if fmt is None:  # a prefix: exactly one format's main file must exist
        found = [f for f, (exts, _) in FORMATS.items() if _with_ext(path, exts[0]).exists()]
        if not found:
            raise FileNotFoundError(f"no genotype files at {path}; {ACCEPTED}")
        if len(found) > 1:
            raise ValueError(f"{path} names genotypes in {len(found)} formats ({', '.join(found)}); keep one")
        fmt = found[0]
        path = _with_ext(path, FORMATS[fmt][0][0])
    exts, source = FORMATS[fmt]
    stem = _without_ext(path, _ext_of(path))
    return Genotypes.from_source(source(stem if fmt in PREFIX_FORMATS else _with_ext(stem, exts[0])))


def find_genotypes(directory: Path, prefix: str) -> Path | None:
    """A genotype file ``prefix.*`` in ``directory`` (for :func:`read_genotypes`), None when there is none.

    Raises a ``ValueError`` when two formats are present, so that one is not silently ignored.
    """
    present = {
        fmt: [e for e in exts if (directory / f"{prefix}.{e}").exists()] for fmt, (exts, _) in FORMATS.items()
    }
    present = {fmt: found for fmt, found in present.items() if found}
    if len(present) > 1:
        files = [f"{prefix}.{e}" for found in present.values() for e in found]
        raise ValueError(
            f"{directory} holds genotypes in {len(present)} formats ({', '.join(present)}: {files}); "
            "keep one format's files and move the others out"
        )
    if not present:
        return None
    return directory / f"{prefix}.{next(iter(present.values()))[0]}"  # read_genotypes names missing members


def stray_genotype_files(directory: Path, prefix: str) -> list[str]:
    """Names of genotype main files in ``directory`` that are not ``prefix.*`` (they would be ignored)."""
    mains = {exts[0] for exts, _ in FORMATS.values()}
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.is_file()
        and _format_of(p) is not None
        and _ext_of(p) in mains
        and not p.name.startswith(prefix + ".")
    )


def write_genotypes(genotypes: Genotypes, prefix: str | Path) -> None:
    """Write ``genotypes`` under ``prefix`` without holding every dosage in memory.

    In memory: a PLINK 1 trio. From files: the source files are copied (renamed ``prefix.<ext>``) when
    the view has all of the source's donors (in any order); otherwise the view's donors are written as a
    PLINK 1 trio chunk by chunk, which needs hard calls (fractional dosages are refused). Files of other
    formats left under ``prefix`` by an earlier write are removed, so the folder holds one format.
    """
    prefix = Path(prefix)
    source = genotypes.source
    if isinstance(source, MemorySource):
        write_plink(genotypes, prefix)
        written = [_with_ext(prefix, e) for e in ("bed", "bim", "fam")]
    elif set(genotypes.donors) == set(source.donors):
        written = [_with_ext(prefix, _ext_of(p)) for p in source.files]
        for src, dst in zip(source.files, written):
            if src.resolve() != dst.resolve():
                atomic_write(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
    else:
        _write_plink_chunked(genotypes, prefix)
        written = [_with_ext(prefix, e) for e in ("bed", "bim", "fam")]
    for exts, _ in FORMATS.values():
        for ext in exts:
            stale = _with_ext(prefix, ext)
            if stale.exists() and stale not in written:
                logger.info(
                    "removing %s left by an earlier write (the genotypes are now %s)", stale, written[0]
                )
                stale.unlink()


def write_plink(genotypes: Genotypes, prefix: str | Path) -> None:
    """Write in-memory genotypes as a PLINK 1 trio ``prefix.{bed,bim,fam}`` (dosage counts allele ``a1``)."""
    prefix = Path(prefix)
    paths = {ext: _with_ext(prefix, ext) for ext in ("bed", "bim", "fam")}
    dosage = genotypes.dosage
    if not (dosage.flags.c_contiguous or dosage.flags.f_contiguous):  # bed-reader needs one or the other
        dosage = np.ascontiguousarray(dosage)
    with atomic_path(paths["bed"]) as bed, atomic_path(paths["bim"]) as bim, atomic_path(paths["fam"]) as fam:
        to_bed(
            bed,
            dosage,
            _plink_properties(genotypes),
            fam_filepath=fam,
            bim_filepath=bim,
            num_threads=1,
        )


def read_plink(prefix: str | Path) -> Genotypes:
    """Open a PLINK 1 trio ``prefix.{bed,bim,fam}`` (checked, not read); missing calls become NaN.

    Raises a ``ValueError`` naming the problem when a file is missing, when the .bim and .fam
    lengths do not match the .bed file's size, or when the .bed file is not a SNP-major PLINK file.
    """
    return Genotypes.from_source(BedSource(prefix))


def _write_plink_chunked(genotypes: Genotypes, prefix: Path) -> None:
    """A PLINK 1 trio of on-disk genotypes, written one chunk of variants at a time (hard calls only).

    Each chunk is written by bed-reader as a small .bed, whose variant blocks follow the magic bytes;
    the chunks' blocks and .bim lines are appended in order.
    """
    paths = {ext: _with_ext(prefix, ext) for ext in ("bed", "bim", "fam")}
    properties = _plink_properties(genotypes)
    per_variant = ("sid", "chromosome", "bp_position", "allele_1", "allele_2")
    with (
        atomic_path(paths["bed"]) as bed,
        atomic_path(paths["bim"]) as bim,
        atomic_path(paths["fam"]) as fam,
        tempfile.TemporaryDirectory(dir=prefix.parent) as tmp,
        open(bed, "wb") as bed_out,
        open(bim, "wb") as bim_out,
    ):
        bed_out.write(BED_MAGIC)
        chunk_bed, chunk_bim = Path(tmp) / "chunk.bed", Path(tmp) / "chunk.bim"
        for start, stop in genotypes.chunks():
            chunk = genotypes.read(start, stop)
            fractional = ~np.isnan(chunk) & (chunk != np.round(chunk))
            if fractional.any():
                ids = genotypes.variant_ids[start:stop][fractional.any(axis=0)]
                raise ValueError(
                    f"cannot write fractional dosages (variants {few_names(ids)}) of a donor subset as a "
                    "PLINK 1 .bed; keep every genotyped donor (the files are then copied) or subset the "
                    "files with plink2 --keep"
                )
            part = {k: (v[start:stop] if k in per_variant else v) for k, v in properties.items()}
            to_bed(chunk_bed, chunk, part, fam_filepath=fam, bim_filepath=chunk_bim, num_threads=1)
            bed_out.write(chunk_bed.read_bytes()[len(BED_MAGIC) :])
            bim_out.write(chunk_bim.read_bytes())


def _plink_properties(genotypes: Genotypes) -> dict[str, np.ndarray]:
    v = genotypes.variants
    return {
        "fid": genotypes.donors.to_numpy(str),
        "iid": genotypes.donors.to_numpy(str),
        "sid": v["id"].to_numpy(str),
        "chromosome": v["chrom"].to_numpy(str),
        "bp_position": v["pos"].to_numpy(np.int64),
        "allele_1": v["a1"].to_numpy(str),
        "allele_2": v["a2"].to_numpy(str),
    }


def _ext_of(path: Path) -> str:
    return "vcf.gz" if path.name.endswith(".vcf.gz") else path.suffix.lstrip(".")


def _format_of(path: Path) -> str | None:
    ext = _ext_of(path)
    return next((fmt for fmt, (exts, _) in FORMATS.items() if ext in exts), None)


def _with_ext(prefix: Path, ext: str) -> Path:
    return prefix.with_name(f"{prefix.name}.{ext}")


def _without_ext(path: Path, ext: str) -> Path:
    return path.with_name(path.name[: -len(ext) - 1])
