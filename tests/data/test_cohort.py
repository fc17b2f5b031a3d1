"""Cohort validation, on-disk round trip, kinship and held-out split."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from cohort_factories import make_genotypes, make_mdata

from multilivi.data import Cohort, Genotypes, ObsKeys, kinship_from_genotypes, split_cells
from multilivi.data.io import read_plink, write_plink


def _with_rna(mdata: md.MuData, x) -> md.MuData:
    """Copy of ``mdata`` whose rna counts are replaced by ``x``."""
    rna = ad.AnnData(x, obs=mdata["rna"].obs.copy(), var=mdata["rna"].var.copy())
    out = md.MuData({"rna": rna, "prot": mdata["prot"].copy()})
    out.obs = mdata.obs.copy()
    return out


# ------------------------------------------------------------------------------------ construction
def test_valid_cohort_exposes_canonical_annotations(mdata, genotypes):
    cohort = Cohort(mdata, genotypes=genotypes)
    assert cohort.n_cells == 240 and cohort.n_donors == 12
    assert cohort.modalities == ("rna", "prot")
    assert list(cohort.obs.columns) == ["donor", "cell_type", "cell_subtype", "batch"]
    assert cohort.counts("rna").shape == (240, 40) and sp.isspmatrix_csr(cohort.counts("rna"))
    assert (cohort.donor_names[cohort.donor_index] == cohort.obs["donor"].to_numpy()).all()
    assert cohort.genotypes.donors.equals(cohort.donor_names)
    assert "240 cells from 12 donors" in repr(cohort)


def test_custom_keys_and_modality_aliases(mdata):
    mdata.obs = mdata.obs.rename(columns={"donor": "individual", "cell_type": "ct"})
    renamed = md.MuData({"gex": mdata["rna"], "adt": mdata["prot"]})
    renamed.obs = mdata.obs
    cohort = Cohort(renamed, keys=ObsKeys(donor="individual", cell_type="ct"))
    assert cohort.modalities == ("rna", "prot")
    assert {"donor", "cell_type"} <= set(cohort.obs.columns)


def test_integer_donor_ids_match_string_genotype_ids(mdata):
    mdata.obs["donor"] = [int(d[1:]) for d in mdata.obs["donor"]]
    genotypes = make_genotypes([str(d) for d in range(12)])
    cohort = Cohort(mdata, genotypes=genotypes)
    assert cohort.n_donors == 12 and cohort.genotypes.n_donors == 12


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda x: x * 0.5, "not integers"),
        (lambda x: x - 5, "negative"),
        (lambda x: np.where(np.arange(x.shape[1]) == 3, np.nan, x), "NaN or infinite"),
        (lambda x: np.where(np.arange(x.shape[1]) == 3, np.inf, x), "NaN or infinite"),
        (lambda x: np.where(np.arange(x.shape[0])[:, None] == 7, 0, x), "zero rna counts"),
        (lambda x: np.where(np.arange(x.shape[1]) == 5, 0, x), "zero counts in every cell"),
    ],
)
def test_bad_counts_are_named(mdata, corrupt, message):
    x = corrupt(mdata["rna"].X.toarray().astype(np.float64))
    with pytest.raises(ValueError, match=message):
        Cohort(_with_rna(mdata, x))


def test_missing_donor_column_names_the_fix(mdata):
    with pytest.raises(ValueError, match="ObsKeys"):
        Cohort(mdata, keys=ObsKeys(donor="individual"))


def test_missing_rna_modality(mdata):
    with pytest.raises(ValueError, match="'rna' modality"):
        Cohort(md.MuData({"prot": mdata["prot"]}))


def test_unknown_modality(mdata):
    with pytest.raises(ValueError, match="unknown modality 'atac'"):
        Cohort(md.MuData({"rna": mdata["rna"], "atac": mdata["prot"]}))


def test_duplicated_names(mdata):
    rna = mdata["rna"].copy()
    rna.var_names = ["g000"] * 2 + list(rna.var_names[2:])
    with pytest.raises(ValueError, match="duplicated feature names"):
        Cohort(md.MuData({"rna": rna}))


def test_modalities_with_different_cells(mdata):
    prot = mdata["prot"][:-3].copy()
    with pytest.raises(ValueError, match="different cells: 3 only in rna"):
        Cohort(md.MuData({"rna": mdata["rna"], "prot": prot}))


def test_donor_with_too_few_cells(mdata):
    mdata.obs.iloc[0, mdata.obs.columns.get_loc("donor")] = "lonely"
    with pytest.raises(ValueError, match="fewer than 2 cells.*'lonely'"):
        Cohort(mdata)


def test_donor_sets_must_match_unless_intersect(mdata):
    genotypes = make_genotypes([f"d{d:02d}" for d in range(2, 15)])
    with pytest.raises(
        ValueError, match=r"2 donors have cells but no genotypes \('d00', 'd01'\).*3 genotyped"
    ):
        Cohort(mdata, genotypes=genotypes)
    cohort = Cohort(mdata, genotypes=genotypes, donors="intersect")
    assert cohort.n_donors == 10 and cohort.genotypes.n_donors == 10
    assert cohort.n_cells == 200


def test_bad_covariates_and_kinship(mdata, genotypes):
    donors = [f"d{d:02d}" for d in range(12)]
    with pytest.raises(ValueError, match="lack 1 donors"):
        Cohort(mdata, donor_covariates=pd.DataFrame({"age": np.arange(11.0)}, index=donors[:11]))
    with pytest.raises(ValueError, match="not numeric"):
        Cohort(mdata, donor_covariates=pd.DataFrame({"sex": ["f"] * 12}, index=donors))
    asymmetric = pd.DataFrame(np.triu(np.ones((12, 12))), index=donors, columns=donors)
    with pytest.raises(ValueError, match="not symmetric"):
        Cohort(mdata, genotypes=genotypes, kinship=asymmetric)


def test_genotype_dosage_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        Genotypes(np.full((2, 3), 3.0), ["a", "b"], make_genotypes(["a", "b"], n_variants=3).variants)


# ------------------------------------------------------------------------------------ round trip
def test_write_read_round_trip_is_exact(tmp_path, mdata, genotypes):
    donors = [f"d{d:02d}" for d in range(12)]
    kinship = kinship_from_genotypes(genotypes) * 0.5 + 0.5 * np.eye(12)
    covariates = pd.DataFrame(
        {"age": np.linspace(20.123456789, 80, 12), "sex": np.arange(12) % 2}, index=donors
    )
    cohort = Cohort(mdata, genotypes=genotypes, kinship=kinship, donor_covariates=covariates, name="toy")
    cohort.write(tmp_path / "toy")
    back = Cohort.read(tmp_path / "toy")
    assert back.name == "toy"
    for modality in ("rna", "prot"):
        assert (back.counts(modality) != cohort.counts(modality)).nnz == 0
        assert back.feature_names(modality).equals(cohort.feature_names(modality))
    pd.testing.assert_frame_equal(back.obs, cohort.obs)
    np.testing.assert_array_equal(back.genotypes.dosage, cohort.genotypes.dosage)  # NaN == NaN here
    assert np.isnan(back.genotypes.dosage).sum() == np.isnan(genotypes.dosage).sum() > 0
    # on disk the strings are pyarrow-backed (compact at millions of variants), in memory str objects
    pd.testing.assert_frame_equal(back.genotypes.variants, cohort.genotypes.variants, check_dtype=False)
    pd.testing.assert_frame_equal(back.kinship, cohort.kinship, check_names=False)
    pd.testing.assert_frame_equal(back.donor_covariates, cohort.donor_covariates, check_names=False)
    assert Cohort.read(tmp_path / "toy").data_hash == back.data_hash  # on disk: the files' hash, stable
    assert not any(p.name.startswith(".") for p in (tmp_path / "toy").iterdir()), (
        "temporary files left behind"
    )


def test_truncated_bed_is_reported(tmp_path, genotypes):
    write_plink(genotypes, tmp_path / "g")
    bed = tmp_path / "g.bed"
    bed.write_bytes(bed.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_plink(tmp_path / "g")


def test_failed_write_leaves_previous_file_intact(tmp_path, mdata, monkeypatch):
    cohort = Cohort(mdata, name="first")
    cohort.write(tmp_path)
    before = (tmp_path / "cohort.h5mu").read_bytes()

    def broken_write(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(md.MuData, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        Cohort(mdata, name="second").write(tmp_path)
    assert (tmp_path / "cohort.h5mu").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cohort.h5mu"]


# ------------------------------------------------------------------------------------ kinship
def test_kinship_is_symmetric_psd_and_gower_normalised():
    genotypes = make_genotypes([f"d{i}" for i in range(30)], n_variants=200, missing_rate=0.01)
    genotypes.dosage[:, 7] = 1.0  # monomorphic: dropped
    k = kinship_from_genotypes(genotypes).to_numpy()
    n = k.shape[0]
    assert np.allclose(k, k.T)
    assert np.linalg.eigvalsh(k).min() > -1e-9
    centring = np.eye(n) - 1.0 / n
    assert np.trace(centring @ k @ centring) == pytest.approx(n - 1)
    # an independent route: impute, drop the monomorphic column, standardise, Z Z^T / m, Gower scale
    x = genotypes.dosage.copy()
    x = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    x = np.delete(x, 7, axis=1)
    z = (x - x.mean(0)) / x.std(0)
    grm = z @ z.T / z.shape[1]
    np.testing.assert_allclose(k, grm * (n - 1) / np.trace(centring @ grm @ centring), rtol=1e-10)


def test_related_donors_share_kinship():
    genotypes = make_genotypes([f"d{i}" for i in range(40)], n_variants=500, seed=3)
    genotypes.dosage[1] = genotypes.dosage[0]  # identical twins
    k = kinship_from_genotypes(genotypes).to_numpy()
    off_diagonal = k[~np.eye(40, dtype=bool)]
    assert k[0, 1] > off_diagonal.mean() + 5 * off_diagonal.std()


# ------------------------------------------------------------------------------------ split
def test_split_is_stratified_within_donors_and_deterministic():
    cohort = Cohort(make_mdata(n_cells=600, n_donors=12))
    train, heldout = split_cells(cohort, frac=0.1, seed=1)
    assert np.intersect1d(train, heldout).size == 0
    assert np.union1d(train, heldout).size == cohort.n_cells
    assert heldout.size == pytest.approx(60, abs=6)
    for d in range(cohort.n_donors):
        in_donor = cohort.donor_index == d
        assert in_donor[train].any() and in_donor[heldout].any()
    types = cohort.labels("cell_type")
    for t in np.unique(types):
        assert np.mean(types[heldout] == t) == pytest.approx(np.mean(types == t), abs=0.08)
    again = split_cells(cohort, frac=0.1, seed=1)
    np.testing.assert_array_equal(again[1], heldout)
    assert not np.array_equal(split_cells(cohort, frac=0.1, seed=2)[1], heldout)


def test_small_donors_keep_training_cells():
    mdata = make_mdata(n_cells=60, n_donors=12)  # 5 cells each: below 1/frac
    cohort = Cohort(mdata)
    train, heldout = split_cells(cohort, frac=0.1, seed=0)
    for d in range(cohort.n_donors):
        assert (cohort.donor_index[train] == d).sum() >= 1
    train, heldout = split_cells(cohort, frac=0.5, seed=0)
    for d in range(cohort.n_donors):
        assert (cohort.donor_index[train] == d).any() and (cohort.donor_index[heldout] == d).any()


def test_split_rejects_bad_fraction(mdata):
    with pytest.raises(ValueError, match=r"frac must lie in \(0, 1\)"):
        split_cells(Cohort(mdata), frac=1.0)
