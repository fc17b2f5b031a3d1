"""Genotype sources: the same genotypes as .bed, .pgen, .bgen and .vcf.gz read identically, in chunks.

The reference is a PLINK 1 fixture (60 donors x 300 variants of the default simulated cohort, 37 missing
calls); the .bgen and the plink2 kinship beside it were made from it by plink2
(tests/data/fixtures/make_genotype_fixtures.py); .pgen and .vcf.gz are written here with pgenlib's and
htslib's (cyvcf2) own writers.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_factories import make_mdata

from multilivi.data import Cohort, Genotypes, gower_normalise, kinship_from_genotypes, standardised_genotypes
from multilivi.data.genotype_io import read_genotypes, write_genotypes
from multilivi.data.io import read_kinship, read_plink

pgenlib = pytest.importorskip("pgenlib", reason="the [genotypes] extra is not installed")
cyvcf2 = pytest.importorskip("cyvcf2", reason="the [genotypes] extra is not installed")
pytest.importorskip("cbgen", reason="the [genotypes] extra is not installed")

FIXTURES = Path(__file__).parent / "fixtures" / "genotypes"
FORMATS = ["bed", "pgen", "bgen", "vcf.gz", "bcf"]


@pytest.fixture(scope="module")
def reference() -> Genotypes:
    genotypes = read_plink(FIXTURES / "genotypes")
    return Genotypes(genotypes.dosage, genotypes.donors, genotypes.variants)  # in memory


def cells_of(donors: pd.Index):
    """Toy counts, 3 cells per donor, for these donor names."""
    mdata = make_mdata(n_cells=3 * len(donors), n_donors=len(donors))
    mdata.obs["donor"] = [donors[int(d[1:])] for d in mdata.obs["donor"]]
    return mdata


def write_pgen(genotypes: Genotypes, prefix: Path) -> None:
    """A .pgen/.pvar/.psam fileset written with pgenlib (ALT = a1, the allele whose dosage is stored)."""
    dosage = np.where(np.isnan(genotypes.dosage), -9.0, genotypes.dosage).astype(np.float32)
    with pgenlib.PgenWriter(
        f"{prefix}.pgen".encode(), genotypes.n_donors, variant_ct=genotypes.n_variants, dosage_present=True
    ) as writer:
        for column in dosage.T:
            writer.append_dosages(np.ascontiguousarray(column))
    v = genotypes.variants
    pvar = pd.DataFrame(
        {"#CHROM": v["chrom"], "POS": v["pos"], "ID": v["id"], "REF": v["a2"], "ALT": v["a1"]}
    )
    Path(f"{prefix}.pvar").write_text("##fileformat=PVARv1.0\n" + pvar.to_csv(sep="\t", index=False))
    Path(f"{prefix}.psam").write_text("#IID\n" + "".join(f"{d}\n" for d in genotypes.donors))


def write_vcf(genotypes: Genotypes, path: Path, *, ds: np.ndarray | None = None) -> None:
    """A VCF of GT calls (ALT = a1), with FORMAT/DS = ``ds`` (donors x variants) when given, compressed by
    htslib (cyvcf2's Writer) to .vcf.gz or .bcf.
    """
    v = genotypes.variants
    gt = {0.0: "0/0", 1.0: "0/1", 2.0: "1/1"}
    header = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID={c}>" for c in pd.unique(v["chrom"])),
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    ]
    if ds is not None:
        header.append('##FORMAT=<ID=DS,Number=1,Type=Float,Description="ALT dosage">')
    header.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"]))
    header[-1] += "\t" + "\t".join(genotypes.donors)
    lines = []
    for j, row in enumerate(v.itertuples()):
        calls = [gt.get(x, "./.") for x in genotypes.dosage[:, j]]
        if ds is not None:
            calls = [f"{c}:{x:.4f}" for c, x in zip(calls, ds[:, j])]
        fmt = "GT:DS" if ds is not None else "GT"
        lines.append("\t".join([row.chrom, str(row.pos), row.id, row.a2, row.a1, ".", ".", ".", fmt, *calls]))
    text = path.with_name(path.name + ".txt.vcf")
    text.write_text("\n".join(header + lines) + "\n")
    reader = cyvcf2.VCF(str(text))
    writer = cyvcf2.Writer(str(path), reader, mode="wb" if path.suffix == ".bcf" else "wz")
    for record in reader:
        writer.write_record(record)
    writer.close()
    reader.close()
    text.unlink()


@pytest.fixture(scope="module")
def files(tmp_path_factory, reference) -> dict[str, Path]:
    """The reference genotypes in every format: format -> path (or prefix) for read_genotypes."""
    folder = tmp_path_factory.mktemp("formats")
    write_pgen(reference, folder / "p")
    write_vcf(reference, folder / "g.vcf.gz")
    write_vcf(reference, folder / "g.bcf")
    return {
        "bed": FIXTURES / "genotypes.bed",
        "pgen": folder / "p",
        "bgen": FIXTURES / "genotypes.bgen",
        "vcf.gz": folder / "g.vcf.gz",
        "bcf": folder / "g.bcf",
    }


# ------------------------------------------------------------------------------- same dosages
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_the_same_dosages(files, reference, fmt):
    genotypes = read_genotypes(files[fmt])
    assert genotypes.donors.equals(reference.donors)
    pd.testing.assert_frame_equal(genotypes.variants, reference.variants, check_dtype=False)
    expected = reference.dosage
    assert np.isnan(expected).sum() == 37
    np.testing.assert_array_equal(genotypes.read(), expected)  # NaN == NaN here
    chunks = [genotypes.read(start, stop) for start, stop in genotypes.chunks(37)]
    np.testing.assert_array_equal(np.hstack(chunks), expected)
    assert all(c.flags.c_contiguous or c.flags.f_contiguous for c in chunks)
    np.testing.assert_array_equal(genotypes.read(250, 300, dtype=np.float32), expected[:, 250:], strict=False)
    for columns in (np.array([299, 3, 3, 150, 0]), np.array([5, 2])):  # any order, repeats
        np.testing.assert_array_equal(genotypes.read_columns(columns), expected[:, columns])
    np.testing.assert_array_equal(genotypes.read(10, 20), expected[:, 10:20])  # backwards after the end
    np.testing.assert_allclose(genotypes.allele_frequencies(), np.nanmean(expected, axis=0) / 2, rtol=1e-12)


@pytest.mark.parametrize("fmt", FORMATS)
def test_donor_subsets_are_lazy_views(files, reference, fmt, monkeypatch):
    genotypes = read_genotypes(files[fmt])
    donors = list(reference.donors[[7, 0, 42, 3]])
    monkeypatch.setattr(type(genotypes.source), "read", lambda *a: pytest.fail("subset_donors read dosages"))
    subset = genotypes.subset_donors(donors).subset_donors(donors[1:])
    monkeypatch.undo()
    assert list(subset.donors) == donors[1:]
    np.testing.assert_array_equal(subset.read(), reference.subset_donors(donors[1:]).dosage)
    restored = pickle.loads(pickle.dumps(subset))  # what a Dask worker receives
    np.testing.assert_array_equal(restored.read(5, 9), subset.read(5, 9))
    pd.testing.assert_frame_equal(restored.variants, subset.variants)
    if fmt in ("bed", "pgen"):  # the variant table is parsed again from the files, not pickled
        assert len(pickle.dumps(genotypes)) < 3_000


@pytest.mark.parametrize("fmt", ["pgen", "bgen", "vcf.gz"])
def test_threads_share_one_source(files, reference, fmt):
    genotypes = read_genotypes(files[fmt])
    ranges = list(genotypes.chunks(20)) * 2
    with ThreadPoolExecutor(4) as pool:  # as Dask's threaded scheduler reads chunks
        chunks = list(pool.map(lambda r: genotypes.read(*r), ranges))
    for (start, stop), chunk in zip(ranges, chunks):
        np.testing.assert_array_equal(chunk, reference.dosage[:, start:stop])


@pytest.mark.skipif(shutil.which("tabix") is None, reason="tabix is not installed (apt-get install tabix)")
def test_indexed_vcf_seeks_to_any_chunk(tmp_path, reference):
    variants = reference.variants.copy()
    assert variants["chrom"].iloc[9:13].nunique() == 1
    variants.loc[10, "pos"] = variants.loc[9, "pos"] + 5  # inside the deletion at variant 9
    variants.loc[11, "pos"] = variants.loc[10, "pos"]  # two records at one position
    variants.loc[9, "a2"] = "A" * 20
    genotypes = Genotypes(reference.dosage, reference.donors, variants)
    write_vcf(genotypes, tmp_path / "ix.vcf.gz")
    subprocess.run(["tabix", "-p", "vcf", str(tmp_path / "ix.vcf.gz")], check=True)
    source = read_genotypes(tmp_path / "ix.vcf.gz")
    assert source.source.indexed
    ranges = [(11, 13), (10, 12), (200, 260), (47, 60), (0, 3), (12, 15), (299, 300), (100, 101)]
    for start, stop in ranges:  # backwards, forwards, across chromosome ends
        np.testing.assert_array_equal(source.read(start, stop), reference.dosage[:, start:stop])
    np.testing.assert_array_equal(
        source.read_columns(np.array([290, 11, 10])), reference.dosage[:, [290, 11, 10]]
    )


def test_vcf_variant_table_is_built_in_pieces(files, reference, monkeypatch):
    import multilivi.data.dosage_formats as formats

    monkeypatch.setattr(formats, "VCF_TABLE_PIECE", 7)
    genotypes = read_genotypes(files["vcf.gz"])
    pd.testing.assert_frame_equal(genotypes.variants, reference.variants, check_dtype=False)


def test_ds_vcf_keeps_fractional_dosages(tmp_path, reference):
    rng = np.random.default_rng(0)
    ds = np.round(rng.uniform(0, 2, reference.dosage.shape), 4)
    ds[np.isnan(reference.dosage)] = np.nan
    write_vcf(reference, tmp_path / "ds.vcf.gz", ds=ds)
    dosage = read_genotypes(tmp_path / "ds.vcf.gz").read()
    assert np.isnan(dosage).sum() == 37
    np.testing.assert_array_equal(dosage, ds.astype(np.float32).astype(np.float64))  # float32 as stored
    np.testing.assert_allclose(dosage, ds, rtol=0, atol=2e-7)
    assert (dosage[~np.isnan(dosage)] % 1 != 0).mean() > 0.99


def test_pgen_keeps_fractional_dosages(tmp_path, reference):
    ds = np.round(np.random.default_rng(1).uniform(0, 2, reference.dosage.shape), 3)
    write_pgen(Genotypes(ds, reference.donors, reference.variants), tmp_path / "ds")
    np.testing.assert_allclose(read_genotypes(tmp_path / "ds.pgen").read(), ds, rtol=0, atol=1 / 16384)


# ------------------------------------------------------------------------------------ kinship
def dense_kinship(dosage: np.ndarray) -> np.ndarray:
    standardised, _ = standardised_genotypes(dosage)
    return gower_normalise(standardised @ standardised.T / standardised.shape[1])


@pytest.mark.parametrize("chunk_size", [1, 7, 300])
def test_streaming_kinship_equals_the_dense_one(files, reference, chunk_size):
    dosage = reference.dosage.copy()
    dosage[:, 11] = 1.0  # monomorphic: dropped in both
    genotypes = Genotypes(dosage, reference.donors, reference.variants)
    k = kinship_from_genotypes(genotypes, chunk_size=chunk_size)
    np.testing.assert_allclose(k.to_numpy(), dense_kinship(dosage), rtol=0, atol=1e-12)
    on_disk = kinship_from_genotypes(read_genotypes(files["bed"]), chunk_size=chunk_size)
    np.testing.assert_allclose(on_disk.to_numpy(), dense_kinship(reference.dosage), rtol=0, atol=1e-12)


def test_plink2_rel_is_read_with_its_ids(reference):
    k = read_kinship(FIXTURES / "kinship.rel")
    assert list(k.index) == list(k.columns) == list(reference.donors)
    # plink2 --make-rel: allele-frequency-standardised products over the variants both donors have called
    x = reference.dosage
    p = np.nanmean(x, axis=0) / 2
    called = ~np.isnan(x)
    z = np.where(called, (np.nan_to_num(x) - 2 * p) / np.sqrt(2 * p * (1 - p)), 0.0)
    expected = z @ z.T / (called.astype(float) @ called.T.astype(float))
    np.testing.assert_allclose(k.to_numpy(), expected, rtol=0, atol=1e-5)  # 6 significant digits


def test_bad_rel_files(tmp_path):
    (tmp_path / "k.rel").write_text("1 0\n0 1\n")
    with pytest.raises(FileNotFoundError, match=r"k\.rel\.id is missing"):
        read_kinship(tmp_path / "k.rel")
    (tmp_path / "k.rel.id").write_text("#IID\na\nb\nc\n")
    with pytest.raises(ValueError, match="--make-rel square"):
        read_kinship(tmp_path / "k.rel")


# ---------------------------------------------------------------------------------- data hash
def test_on_disk_hash_streams_the_files_not_the_matrix(tmp_path, reference, monkeypatch):
    for ext in ("bed", "bim", "fam"):
        shutil.copy(FIXTURES / f"genotypes.{ext}", tmp_path / f"g.{ext}")
    genotypes = read_genotypes(tmp_path / "g")
    cohort = Cohort(cells_of(reference.donors), genotypes=genotypes)
    monkeypatch.setattr(type(genotypes.source), "read", lambda *a: pytest.fail("the hash read dosages"))
    first, before = cohort.data_hash, genotypes.content_hash()
    h = hashlib.sha256()
    for ext in ("bed", "bim", "fam"):
        data = (tmp_path / f"g.{ext}").read_bytes()
        h.update(f".{ext}\0{len(data)}\0".encode() + data)
    h.update("\n".join(reference.donors).encode())
    h.update("\n".join(reference.variant_ids).encode())
    assert genotypes.content_hash() == h.hexdigest()
    data = bytearray((tmp_path / "g.bed").read_bytes())
    data[-1] ^= 1  # one call changed
    (tmp_path / "g.bed").write_bytes(bytes(data))
    assert read_genotypes(tmp_path / "g").content_hash() != before
    assert Cohort(cohort.mdata, genotypes=read_genotypes(tmp_path / "g")).data_hash != first
    cohort.write(tmp_path / "c")  # copied under another name: the same content, the same hash
    assert (
        Cohort.read(tmp_path / "c").genotypes.content_hash() == read_genotypes(tmp_path / "g").content_hash()
    )


def test_in_memory_hash_is_the_matrix_bytes(reference):
    h = hashlib.sha256(np.ascontiguousarray(reference.dosage).tobytes())
    h.update("\n".join(reference.variant_ids).encode())
    assert reference.content_hash() == h.hexdigest()  # as data_hash hashed the dense matrix before


# ------------------------------------------------------------------------------ cohort folders
@pytest.mark.parametrize("fmt", FORMATS)
def test_cohort_folder_keeps_the_format(tmp_path, files, reference, fmt):
    genotypes = read_genotypes(files[fmt])
    cohort = Cohort(cells_of(reference.donors), genotypes=genotypes)
    cohort.write(tmp_path / "c")
    names = sorted(p.name for p in (tmp_path / "c").iterdir() if p.name.startswith("genotypes."))
    main = {"bed": "genotypes.bed", "pgen": "genotypes.pgen", "bgen": "genotypes.bgen"}.get(
        fmt, f"genotypes.{fmt}"
    )
    assert main in names and len(names) == {"bed": 3, "pgen": 3, "bgen": 2}.get(fmt, 1), names  # copied
    back = Cohort.read(tmp_path / "c")
    np.testing.assert_array_equal(back.genotypes.read(), reference.dosage)
    assert back.genotypes.donors.equals(reference.donors)
    back.write(tmp_path / "c")  # onto its own source files
    np.testing.assert_array_equal(Cohort.read(tmp_path / "c").genotypes.read(), reference.dosage)


def test_donor_subset_is_written_as_bed_in_chunks(tmp_path, files, reference):
    genotypes = read_genotypes(files["pgen"]).subset_donors(reference.donors[5:50])
    write_genotypes(genotypes, tmp_path / "sub")
    back = read_genotypes(tmp_path / "sub")
    assert back.donors.equals(reference.donors[5:50])
    np.testing.assert_array_equal(back.read(), reference.dosage[5:50])


def test_fractional_donor_subset_is_refused(tmp_path, reference):
    ds = np.full(reference.dosage.shape, 0.5)
    write_pgen(Genotypes(ds, reference.donors, reference.variants), tmp_path / "ds")
    subset = read_genotypes(tmp_path / "ds").subset_donors(reference.donors[:10])
    with pytest.raises(ValueError, match="cannot write fractional dosages.*plink2 --keep"):
        write_genotypes(subset, tmp_path / "out")
    assert not list(tmp_path.glob("out*")), "no partial files"


def test_rewriting_a_folder_in_another_format_replaces_the_old_files(tmp_path, files, reference):
    mdata = cells_of(reference.donors)
    Cohort(mdata, genotypes=reference).write(tmp_path / "c")
    Cohort(mdata, genotypes=read_genotypes(files["vcf.gz"])).write(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").glob("genotypes.*")) == ["genotypes.vcf.gz"]


# ---------------------------------------------------------------------------------- bad input
def test_two_formats_in_a_folder_are_refused(tmp_path, files, reference):
    mdata = cells_of(reference.donors)
    Cohort(mdata, genotypes=reference).write(tmp_path / "c")
    shutil.copy(files["vcf.gz"], tmp_path / "c" / "genotypes.vcf.gz")
    with pytest.raises(ValueError, match=r"2 formats \(PLINK 1, VCF.*keep one"):
        Cohort.read(tmp_path / "c")


@pytest.mark.parametrize(
    ("missing", "message"), [("psam", "need the .pgen, .pvar and .psam"), ("bgen", "need the .bgen")]
)
def test_missing_member_files_are_named(tmp_path, files, missing, message):
    for ext in ("pgen", "pvar", "psam"):
        shutil.copy(f"{files['pgen']}.{ext}", tmp_path / f"genotypes.{ext}")
    shutil.copy(FIXTURES / "genotypes.sample", tmp_path / "genotypes.sample")
    shutil.copy(FIXTURES / "genotypes.bgen", tmp_path / "genotypes.bgen")
    (tmp_path / f"genotypes.{missing}").unlink()
    keep = "bgen" if missing == "bgen" else "pgen"
    for p in tmp_path.iterdir():
        if (keep == "pgen") == (p.suffix in (".bgen", ".sample")):
            p.unlink()
    with pytest.raises(FileNotFoundError, match=rf"genotypes\.{missing}.*{message}"):
        read_genotypes(tmp_path / f"genotypes.{'sample' if keep == 'bgen' else 'pgen'}")


def test_mismatched_psam_is_refused(tmp_path, files):
    for ext in ("pgen", "pvar", "psam"):
        shutil.copy(f"{files['pgen']}.{ext}", tmp_path / f"g.{ext}")
    psam = tmp_path / "g.psam"
    psam.write_text("".join(psam.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(ValueError, match="holds 60 samples.*lists 59.*re-export all three"):
        read_genotypes(tmp_path / "g")


def test_ds_out_of_range_is_refused(tmp_path, reference):
    ds = np.full(reference.dosage.shape, 1.0)
    ds[4, 7] = 2.5
    write_vcf(reference, tmp_path / "bad.vcf.gz", ds=ds)
    genotypes = read_genotypes(tmp_path / "bad.vcf.gz")
    genotypes.read(0, 7)  # the bad value is at variant 7
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\].*2\.5.*not dosages"):
        genotypes.read(0, 8)


def test_vcf_samples_without_ds_keep_their_gt(tmp_path):
    text = tmp_path / "m.vcf"
    text.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=1>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        '##FORMAT=<ID=DS,Number=1,Type=Float,Description="ALT dosage">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\tc\td\n"
        "1\t5\trs1\tA\tC\t.\t.\t.\tGT:DS\t0/1:0.9\t./.:.\t1/1\t0/0:.\n"
        "1\t6\t.\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t./.\t0/0\n"
    )
    genotypes = read_genotypes(text)
    assert list(genotypes.variant_ids) == ["rs1", "1:6:A:G"]
    expected = np.array([[np.float32(0.9), 1], [np.nan, 2], [2, np.nan], [0, 0]])
    np.testing.assert_array_equal(genotypes.read(), expected)


def test_multiallelic_vcf_is_refused(tmp_path):
    text = tmp_path / "m.vcf"
    text.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=1>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\n1\t5\trs1\tA\tC,G\t.\t.\t.\tGT\t1/2\n"
    )
    with pytest.raises(ValueError, match="not biallelic.*bcftools norm"):
        read_genotypes(text)


def test_genotypes_under_another_name_are_refused(tmp_path, files, reference):
    Cohort(cells_of(reference.donors)).write(tmp_path / "c")
    for ext in ("pgen", "pvar", "psam"):
        shutil.copy(f"{files['pgen']}.{ext}", tmp_path / "c" / f"chr1.{ext}")
    with pytest.raises(ValueError, match=r"genotype files \['chr1.pgen'\].*genotypes.<ext>"):
        Cohort.read(tmp_path / "c")


def test_unknown_path_lists_the_formats(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\.pgen/\.pvar/\.psam, \.bgen"):
        read_genotypes(tmp_path / "nothing")


def test_missing_reader_names_the_extra(tmp_path, files, monkeypatch):
    import multilivi.data.dosage_formats as formats

    real = formats.importlib.import_module

    def no_pgenlib(name):
        if name == "pgenlib":
            raise ImportError("No module named 'pgenlib'")
        return real(name)

    monkeypatch.setattr(formats.importlib, "import_module", no_pgenlib)
    with pytest.raises(ImportError, match=r"pip install 'multilivi\[genotypes\]'"):
        read_genotypes(files["pgen"])


# ------------------------------------------------------------------- fixtures and plink2 itself
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 is not installed (apt-get install plink2)")
def test_fixtures_regenerate_and_plink2_conversions_agree(tmp_path, reference):
    script = Path(__file__).parent / "fixtures" / "make_genotype_fixtures.py"
    root = str(Path(__file__).parents[2])  # this checkout's multilivi
    subprocess.run(
        [sys.executable, str(script), str(tmp_path)], check=True, env={**os.environ, "PYTHONPATH": root}
    )
    np.testing.assert_array_equal(read_genotypes(tmp_path / "genotypes.bed").read(), reference.dosage)
    np.testing.assert_array_equal(read_genotypes(tmp_path / "genotypes.bgen").read(), reference.dosage)
    pd.testing.assert_frame_equal(
        read_kinship(tmp_path / "kinship.rel"), read_kinship(FIXTURES / "kinship.rel")
    )
    bfile = ["plink2", "--bfile", str(FIXTURES / "genotypes"), "--threads", "1", "--silent"]
    subprocess.run([*bfile, "--make-pgen", "--out", str(tmp_path / "p")], check=True)
    subprocess.run([*bfile, "--export", "vcf", "bgz", "--out", str(tmp_path / "v")], check=True)
    for path in (tmp_path / "p.pgen", tmp_path / "v.vcf.gz"):  # plink2's ALT is the .bim's allele 1
        genotypes = read_genotypes(path)
        np.testing.assert_array_equal(genotypes.read(), reference.dosage)
        pd.testing.assert_frame_equal(
            genotypes.variants.drop(columns="id"), reference.variants.drop(columns="id"), check_dtype=False
        )


def test_in_memory_constructor_still_validates(reference):
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\]"):
        Genotypes(reference.dosage + 1, reference.donors, reference.variants)
    with pytest.raises(ValueError, match="duplicated donor names"):
        Genotypes(reference.dosage[:2], ["a", "a"], reference.variants)


def test_bed_reads_by_variant_ranges_hold_no_per_variant_index(tmp_path):
    """bed-reader caches an 8 B-per-variant position array on its first read; ours reads the same
    values without it (a read of 200 of 400,000 variants allocates far less than 3.2 MB)."""
    import tracemalloc

    from bed_reader import open_bed, to_bed

    from multilivi.data.genotype_sources import open_bed_by_ranges

    n_donors, n_variants = 4, 400_000
    path = tmp_path / "wide.bed"
    to_bed(path, np.random.default_rng(0).integers(0, 3, (n_donors, n_variants)).astype(np.float32))
    plain = open_bed(path, iid_count=n_donors, sid_count=n_variants)
    ours = open_bed_by_ranges(path, n_donors, n_variants)
    tracemalloc.start()
    chunk = ours.read(index=np.s_[:, 1000:1200])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * n_variants / 10
    np.testing.assert_array_equal(chunk, plain.read(index=np.s_[:, 1000:1200]))
    for index in (np.s_[:, ::7], np.s_[:, [5, 3, n_variants - 1]], np.s_[:, -3:]):
        np.testing.assert_array_equal(ours.read(index=index), plain.read(index=index))
