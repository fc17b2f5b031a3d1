"""Bad cohorts through the public entry points: each refused before training, with the problem and the fix.

The Python-API checks of the same cases live in tests/data/test_cohort.py; here each case goes through
``python -m benchmarks.compare`` (exit code 2, ``error: ...`` on stderr, no run folder, no cache entry).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cohort_factories import make_genotypes
from reliability_cli import (
    DONORS,
    N_CELLS,
    annotated,
    build,
    cli,
    good_mdata,
    refused,
    with_rna_counts,
    write_folder,
)

from multilivi.data import Cohort
from multilivi.data.io import read_plink, write_plink


def _ran(tmp_path) -> dict:
    """results.json of a run that passed validation."""
    return json.loads((tmp_path / "run" / "results.json").read_text())


# ---------------------------------------------------------------------------------------- donors
def test_donors_without_genotypes_and_genotypes_without_cells(tmp_path, capsys):
    folder = write_folder(tmp_path / "c", donors=[f"d{d:02d}" for d in range(2, 8)])
    err = refused(tmp_path, capsys, folder)
    assert "2 donors have cells but no genotypes ('d00', 'd01')" in err
    assert "2 genotyped donors have no cells ('d06', 'd07')" in err
    assert "--donors intersect" in err
    assert cli(tmp_path, folder, "--donors", "intersect", models=["pca"]) == 0  # proceeds only when asked
    dataset = _ran(tmp_path)["dataset"]
    assert (dataset["n_donors"], dataset["n_cells"]) == (4, N_CELLS * 4 // 6)


def test_many_unmatched_donors_are_counted_and_a_few_named(tmp_path, capsys):
    folder = write_folder(tmp_path / "c", donors=[f"sample_{d}" for d in range(40)])
    err = refused(tmp_path, capsys, folder)
    assert "6 donors have cells but no genotypes ('d00', 'd01', 'd02', 'd03', 'd04' and 1 more)" in err
    assert "40 genotyped donors have no cells ('sample_0'" in err and "and 35 more" in err
    assert "no donor id is in both" in err  # a hint that the two files name donors differently


def test_integer_cell_donor_ids_match_string_genotype_ids(tmp_path):
    mdata = good_mdata()
    mdata.obs["donor"] = [int(d[1:]) for d in mdata.obs["donor"]]  # stored as int64 in the h5mu
    folder = write_folder(tmp_path / "c", mdata, donors=[str(d) for d in range(6)])
    assert cli(tmp_path, folder, models=["pca"]) == 0
    assert _ran(tmp_path)["dataset"]["n_donors"] == 6


def test_float_donor_ids_match_as_integers(tmp_path):
    """A donor column read as float (1.0, 2.0: e.g. from a spreadsheet) matches PLINK ids 1, 2."""
    mdata = good_mdata()
    mdata.obs["donor"] = [float(d[1:]) for d in mdata.obs["donor"]]
    cohort = Cohort(mdata, genotypes=make_genotypes([str(d) for d in range(6)]))
    assert list(cohort.donor_names) == [str(d) for d in range(6)]
    folder = write_folder(tmp_path / "c", mdata, donors=[str(d) for d in range(6)])
    assert cli(tmp_path, folder, models=["pca"]) == 0


def test_zero_padded_donor_ids_survive_kinship_and_covariate_tables(tmp_path):
    mdata = good_mdata()
    mdata.obs["donor"] = [f"00{d[1:]}" for d in mdata.obs["donor"]]  # '000', '001', ...: look like numbers
    donors = sorted(set(mdata.obs["donor"]))
    genotypes = make_genotypes(donors)
    kinship = pd.DataFrame(np.eye(6) * 0.5 + 0.5, index=donors, columns=donors)
    covariates = pd.DataFrame({"age": np.arange(6.0)}, index=donors)
    Cohort(mdata, genotypes=genotypes, kinship=kinship, donor_covariates=covariates).write(tmp_path / "c")
    back = Cohort.read(tmp_path / "c")
    assert list(back.donor_names) == donors and list(back.kinship.index) == donors
    assert list(back.donor_covariates.index) == donors


def test_padded_and_unpadded_ids_are_named_side_by_side(tmp_path, capsys):
    folder = write_folder(tmp_path / "c", donors=[str(d) for d in range(6)])  # cells say d00..d05
    err = refused(tmp_path, capsys, folder)
    assert (
        "('d00', 'd01', 'd02', 'd03', 'd04' and 1 more)" in err
        and "('0', '1', '2', '3', '4' and 1 more)" in err
    )
    assert "no donor id is in both" in err


# ---------------------------------------------------------------------------------------- counts
@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (
            lambda x: x * 0.5,
            "counts of 'rna' are not integers (e.g. 1.5); pass raw counts (often adata.layers['counts'])",
        ),
        (
            lambda x: x - 5,
            "counts of 'rna' contain negative values (min -5.0); pass raw counts, not scaled or log",
        ),
        (
            lambda x: np.where(np.arange(x.shape[1]) == 3, np.nan, x),
            f"counts of 'rna' contain {N_CELLS} NaN or infinite values",
        ),
        (
            lambda x: np.where(np.arange(x.shape[1]) == 3, np.inf, x),
            f"counts of 'rna' contain {N_CELLS} NaN or infinite values",
        ),
        (
            lambda x: np.where(np.arange(x.shape[0])[:, None] == 7, 0, x),
            "1 cells have zero rna counts ('cell0007'); remove empty cells",
        ),
        (
            lambda x: np.where(np.arange(x.shape[1]) == 5, 0, x),
            "1 rna features have zero counts in every cell ('g005'); drop them",
        ),
    ],
    ids=["non-integer", "negative", "nan", "infinite", "empty-cell", "silent-feature"],
)
def test_bad_counts(tmp_path, capsys, corrupt, message):
    mdata = good_mdata()
    folder = write_folder(
        tmp_path / "c", with_rna_counts(mdata, corrupt(mdata["rna"].X.toarray().astype(np.float64)))
    )
    assert message in refused(tmp_path, capsys, folder)


# ------------------------------------------------------------------------------------ modalities
def test_modality_with_other_cells(tmp_path, capsys):
    mods = annotated(good_mdata())
    mods["prot"] = mods["prot"][:-3].copy()
    err = refused(tmp_path, capsys, write_folder(tmp_path / "c", build(**mods)))
    assert (
        "modalities 'rna' and 'prot' hold different cells: 3 only in rna ('cell0117', 'cell0118', 'cell0119')"
        in err
    )
    assert "mudata.MuData.intersect_obs()" in err


def test_modality_in_another_cell_order_is_aligned_by_name():
    mdata = good_mdata()
    mods = annotated(mdata)
    mods["prot"] = mods["prot"][::-1].copy()
    cohort = Cohort(build(**mods))
    np.testing.assert_array_equal(cohort.counts("prot").toarray(), np.asarray(mdata["prot"].X))


def test_common_modality_names_are_mapped(tmp_path):
    mods = annotated(good_mdata())
    folder = write_folder(tmp_path / "c", build(**{"Gene Expression": mods["rna"], "ADT": mods["prot"]}))
    assert cli(tmp_path, folder, models=["pca"]) == 0
    assert _ran(tmp_path)["dataset"]["modalities"] == {"rna": 30, "prot": 6}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (("rna", "prot", "atac"), "unknown modality 'atac'; multilivi models 'rna' (gene counts) and 'prot'"),
        (("rna", "prot", "adt"), "two modalities map to 'prot': rename or drop one of them"),
        (("prot",), "the cohort needs an 'rna' modality of gene counts; found ['prot']"),
    ],
    ids=["unknown", "two-proteins", "no-rna"],
)
def test_modality_names_that_cannot_be_mapped_are_explained(tmp_path, capsys, keys, message):
    mods = annotated(good_mdata())
    given = {k: mods["prot"].copy() if k != "rna" else mods["rna"] for k in keys}
    if "rna" not in given:
        given["prot"].obs = mods["rna"].obs
    assert message in refused(tmp_path, capsys, write_folder(tmp_path / "c", build(**given)))


# ------------------------------------------------------------------------------- cells and names
def test_donor_with_a_single_cell(tmp_path, capsys):
    mdata = good_mdata()
    mdata.obs.iloc[0, mdata.obs.columns.get_loc("donor")] = "lonely"
    folder = write_folder(tmp_path / "c", mdata, donors=[*DONORS, "lonely"])
    assert "1 donors have fewer than 2 cells ('lonely'); remove them" in refused(tmp_path, capsys, folder)


@pytest.mark.parametrize("what", ["cell", "feature"])
def test_duplicated_names(tmp_path, capsys, what):
    mods = annotated(good_mdata())
    for adata in mods.values() if what == "cell" else [mods["rna"]]:
        axis = adata.obs_names if what == "cell" else adata.var_names
        names = list(axis)
        names[1] = names[0]
        if what == "cell":
            adata.obs_names = names
        else:
            adata.var_names = names
    err = refused(tmp_path, capsys, write_folder(tmp_path / "c", build(**mods)))
    expected = "'cell0000'" if what == "cell" else "'g000'"
    assert f"duplicated {what} names in modality 'rna': {expected}; make them unique" in err


# ----------------------------------------------------------------------------------------- PLINK
def _edit_plink(folder, ext, edit):
    path = folder / f"genotypes.{ext}"
    path.write_bytes(edit(path.read_bytes()))


@pytest.mark.parametrize(
    ("ext", "edit", "message"),
    [
        (
            "fam",
            lambda b: b + b"".join(b.splitlines(keepends=True)[:3]).replace(b"d0", b"x9"),
            "x 9 donors (.fam) need",
        ),
        ("bim", lambda b: b"".join(b.splitlines(keepends=True)[:-1]), "39 variants (.bim)"),
        (
            "bed",
            lambda b: b[:-7],
            "the trio is mismatched or the .bed is truncated; re-export all three together",
        ),
        ("bed", lambda b: b"\x00\x00\x00" + b[3:], "is not a SNP-major PLINK .bed file (bad magic bytes)"),
    ],
    ids=["fam-longer", "bim-shorter", "bed-truncated", "bed-not-plink"],
)
def test_broken_plink_trio(tmp_path, capsys, ext, edit, message):
    folder = write_folder(tmp_path / "c")
    _edit_plink(folder, ext, edit)
    assert message in refused(tmp_path, capsys, folder)
    with pytest.raises(ValueError, match="re-export"):
        read_plink(folder / "genotypes")


@pytest.mark.parametrize("missing", ["bed", "bim", "fam"])
def test_incomplete_plink_trio(tmp_path, capsys, missing):
    folder = write_folder(tmp_path / "c")
    (folder / f"genotypes.{missing}").unlink()
    err = refused(tmp_path, capsys, folder)
    assert f"genotypes.{missing}" in err and "genotypes need the .bed, .bim and .fam trio" in err


def test_plink_trio_under_another_name(tmp_path, capsys):
    folder = write_folder(tmp_path / "c", donors=None)
    write_plink(make_genotypes(DONORS), folder / "chr1_qc")
    err = refused(tmp_path, capsys, folder)
    assert "chr1_qc.bed" in err and "rename them genotypes.bed, genotypes.bim, genotypes.fam" in err


# ----------------------------------------------------------------------------------- the folder
def test_corrupt_h5mu(tmp_path, capsys):
    folder = write_folder(tmp_path / "c")
    data = (folder / "cohort.h5mu").read_bytes()
    (folder / "cohort.h5mu").write_bytes(data[: len(data) // 2])
    err = refused(tmp_path, capsys, folder)
    assert "cohort.h5mu cannot be read as a MuData .h5mu file" in err and "write it again" in err


def test_dataset_that_is_not_a_cohort_folder(tmp_path, capsys):
    folder = write_folder(tmp_path / "c")
    assert "cohort folder holds cohort.h5mu" in refused(tmp_path, capsys, folder / "genotypes.bed")
    (tmp_path / "empty").mkdir()
    assert "no cohort.h5mu in" in refused(tmp_path, capsys, tmp_path / "empty")
    err = refused(tmp_path, capsys, tmp_path / "no_such_folder")
    assert "no cohort folder" in err and "no_such_folder" in err
