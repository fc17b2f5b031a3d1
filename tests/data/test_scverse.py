"""scverse inputs converted to the Cohort's MuData (multilivi.data.scverse), each with its log line."""

from __future__ import annotations

import logging

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from cohort_factories import make_genotypes, make_mdata

from multilivi.data import Cohort, ObsKeys
from multilivi.data.io import read_cohort_file, write_plink
from multilivi.data.scverse import cohort_mudata, parse_counts_layer

N_CELLS, N_GENES, N_PROTEINS, N_DONORS = 60, 12, 4, 6
pytestmark = pytest.mark.filterwarnings(  # the inputs built here share a gene and an antibody name
    "ignore:Variable names are not unique:UserWarning",
    "ignore:var_names are not unique:UserWarning",
    "ignore:Cannot join columns with the same name:UserWarning",
    "ignore:From 0.4 .update:FutureWarning",
)


@pytest.fixture
def parts() -> md.MuData:
    return make_mdata(n_cells=N_CELLS, n_genes=N_GENES, n_proteins=N_PROTEINS, n_donors=N_DONORS)


def rna_anndata(parts: md.MuData) -> ad.AnnData:
    """RNA counts with the cell annotations in their own obs (a plain scanpy AnnData)."""
    return ad.AnnData(parts["rna"].X.copy(), obs=parts.obs.copy(), var=parts["rna"].var.copy())


def dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def cellranger_anndata(parts: md.MuData) -> ad.AnnData:
    """One AnnData of genes then antibodies, typed by var['feature_types']; gene and antibody CD14."""
    x = sp.hstack([parts["rna"].X, sp.csr_matrix(parts["prot"].X)]).tocsr()
    genes = ["CD14", *parts["rna"].var_names[1:]]
    antibodies = ["CD14", *parts["prot"].var_names[1:]]
    var = pd.DataFrame(
        {"feature_types": ["Gene Expression"] * N_GENES + ["Antibody Capture"] * N_PROTEINS},
        index=genes + antibodies,
    )
    return ad.AnnData(x, obs=parts.obs.copy(), var=var)


def messages(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "multilivi.data.scverse")


# ------------------------------------------------------------------------------------------ 1. RNA
def test_plain_anndata_is_the_rna_modality(parts, caplog):
    caplog.set_level(logging.INFO)
    cohort = Cohort(rna_anndata(parts))
    assert cohort.modalities == ("rna",) and cohort.n_cells == N_CELLS and cohort.n_donors == N_DONORS
    np.testing.assert_array_equal(cohort.counts("rna").toarray(), dense(parts["rna"].X))
    assert cohort.obs["donor"].astype(str).tolist() == parts.obs["donor"].tolist()
    assert "AnnData read as the 'rna' modality (60 cells x 12 features)" in messages(caplog)


def test_a_mudata_needing_no_conversion_is_returned_as_it_is(parts):
    assert cohort_mudata(parts) is parts


def test_other_types_are_refused():
    with pytest.raises(TypeError, match="AnnData or a mudata.MuData, got ndarray"):
        Cohort(np.zeros((3, 3)))


# ----------------------------------------------------------------------------- 2. obsm protein
def test_protein_expression_dataframe_becomes_prot(parts, caplog):
    caplog.set_level(logging.INFO)
    adata = rna_anndata(parts)
    adata.obsm["protein_expression"] = pd.DataFrame(
        dense(parts["prot"].X), index=adata.obs_names, columns=parts["prot"].var_names
    )
    cohort = Cohort(adata)
    assert cohort.has_protein and list(cohort.feature_names("prot")) == list(parts["prot"].var_names)
    np.testing.assert_array_equal(cohort.counts("prot").toarray(), dense(parts["prot"].X))
    assert "obsm['protein_expression'] read as the 'prot' modality (4 proteins" in messages(caplog)


def test_a_converted_cohort_reads_back(parts, tmp_path):
    adata = rna_anndata(parts)
    adata.obsm["protein_expression"] = pd.DataFrame(
        dense(parts["prot"].X), index=adata.obs_names, columns=parts["prot"].var_names
    )
    Cohort(adata).write(tmp_path / "c")
    back = Cohort.read(tmp_path / "c")
    assert back.modalities == ("rna", "prot")
    np.testing.assert_array_equal(back.counts("prot").toarray(), dense(parts["prot"].X))


def test_protein_expression_array_is_named_by_uns(parts):
    adata = rna_anndata(parts)
    adata.obsm["protein_expression"] = dense(parts["prot"].X)
    adata.uns["protein_names"] = np.array([f"CD{j}" for j in range(N_PROTEINS)])
    cohort = Cohort(adata)
    assert list(cohort.feature_names("prot")) == ["CD0", "CD1", "CD2", "CD3"]
    np.testing.assert_array_equal(cohort.counts("prot").toarray(), dense(parts["prot"].X))


def test_unnamed_protein_array_is_kept_with_generated_names(parts, caplog):
    adata = rna_anndata(parts)
    adata.obsm["protein_expression"] = dense(parts["prot"].X)
    cohort = Cohort(adata)
    assert list(cohort.feature_names("prot")) == [f"protein_{j}" for j in range(N_PROTEINS)]
    assert "no protein names" in messages(caplog)


def test_protein_names_of_another_length_are_refused(parts):
    adata = rna_anndata(parts)
    adata.obsm["protein_expression"] = dense(parts["prot"].X)
    adata.uns["protein_names"] = ["a", "b"]
    with pytest.raises(ValueError, match="names 2 proteins but obsm\\['protein_expression'\\] has 4"):
        Cohort(adata)


def test_two_protein_sources_are_refused(parts):
    parts["rna"].obsm["protein_expression"] = dense(parts["prot"].X)
    with pytest.raises(ValueError, match="both a protein modality and 'rna'.obsm"):
        Cohort(parts)


# -------------------------------------------------------------------------- 3. feature_types
def test_feature_types_split_matches_mudata(parts, caplog):
    caplog.set_level(logging.INFO)
    adata = cellranger_anndata(parts)
    cohort = Cohort(adata)
    with pytest.warns(UserWarning):  # mudata notes the shared name CD14
        reference = md.MuData(adata)  # mudata's own split by feature_types: the independent reference
    assert cohort.modalities == ("rna", "prot")
    for modality in ("rna", "prot"):
        assert list(cohort.feature_names(modality)) == list(reference[modality].var_names)
        np.testing.assert_array_equal(cohort.counts(modality).toarray(), dense(reference[modality].X))
    assert "CD14" in cohort.feature_names("rna") and "CD14" in cohort.feature_names("prot")
    assert "split by var['feature_types']: ['Gene Expression'] -> rna (12 features)" in messages(caplog)


@pytest.mark.parametrize("made_unique", [False, True])
def test_rna_modality_holding_antibodies_is_split(parts, made_unique):
    """The old advice (var_names_make_unique) must not turn antibodies into genes."""
    adata = cellranger_anndata(parts)
    if made_unique:
        adata.var_names_make_unique()
    cohort = Cohort(md.MuData({"rna": adata}))
    assert cohort.n_features("rna") == N_GENES and cohort.n_features("prot") == N_PROTEINS
    assert not cohort.feature_names("rna").isin(parts["prot"].var_names).any()


def test_unknown_feature_types_are_refused_with_the_filter(parts):
    adata = cellranger_anndata(parts)
    adata.var["feature_types"] = adata.var["feature_types"].astype(str)
    adata.var.iloc[-1, 0] = "CRISPR Guide Capture"
    with pytest.raises(ValueError, match=r"\['CRISPR Guide Capture'\].*isin\(\['Antibody Capture', 'Gene"):
        Cohort(adata)


def test_antibodies_in_rna_beside_a_protein_modality_are_refused(parts):
    adata = cellranger_anndata(parts)
    adata.var_names_make_unique()
    with pytest.raises(ValueError, match="holds antibody features.*beside a protein modality"):
        Cohort(md.MuData({"rna": adata, "prot": parts["prot"]}))


# ------------------------------------------------------------------------------ 4. counts layer
def normalised_with_counts_layer(parts: md.MuData) -> ad.AnnData:
    adata = rna_anndata(parts)
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(dense(adata.X) / dense(adata.X).sum(1, keepdims=True) * 1e4))
    return adata


def test_normalised_x_is_refused_naming_the_counts_layer(parts):
    with pytest.raises(ValueError, match=r"layers \['counts'\] may hold them: --counts-layer LAYER"):
        Cohort(normalised_with_counts_layer(parts))


@pytest.mark.parametrize("counts_layer", ["counts", {"rna": "counts"}, {"gex": "counts"}])
def test_counts_layer_is_read(parts, counts_layer, caplog):
    caplog.set_level(logging.INFO)
    cohort = Cohort(normalised_with_counts_layer(parts), counts_layer=counts_layer)
    np.testing.assert_array_equal(cohort.counts("rna").toarray(), dense(parts["rna"].X))
    assert "modality 'rna': counts read from layers['counts']" in messages(caplog)


def test_counts_layer_per_modality(parts, caplog):
    caplog.set_level(logging.INFO)
    rna = normalised_with_counts_layer(parts)
    prot = parts["prot"].copy()
    prot.layers["raw"] = prot.X.copy()
    prot.X = np.log1p(prot.X)
    mdata = md.MuData({"rna": rna, "prot": prot})
    cohort = Cohort(mdata, counts_layer=parse_counts_layer("rna=counts,prot=raw"))
    np.testing.assert_array_equal(cohort.counts("prot").toarray(), dense(parts["prot"].X))
    with pytest.raises(ValueError, match="modality 'prot' has no layer 'counts'"):
        Cohort(mdata, counts_layer={"rna": "counts", "prot": "counts"})
    # one name for all: a modality without it keeps X (here prot's log values, then refused)
    with pytest.raises(ValueError, match="counts of 'prot' are not integers"):
        Cohort(mdata, counts_layer="counts")
    assert "modality 'prot' has no layer 'counts': its counts are read from X" in messages(caplog)


def test_counts_layer_in_no_modality_is_refused(parts):
    with pytest.raises(ValueError, match="counts layer 'raw' is in no modality"):
        Cohort(rna_anndata(parts), counts_layer="raw")


def test_parse_counts_layer():
    assert parse_counts_layer("counts") == "counts"
    assert parse_counts_layer("rna=counts, prot=raw") == {"rna": "counts", "prot": "raw"}
    with pytest.raises(ValueError, match="'prot' is not modality=layer"):
        parse_counts_layer("rna=counts,prot")


# ------------------------------------------------------------------------------------ 5. obs keys
def test_missing_donor_column_lists_the_rna_obs_columns(parts):
    mdata = md.MuData({"rna": rna_anndata(parts)})
    mdata.obs = pd.DataFrame(index=mdata.obs_names)  # the global obs may be empty
    with pytest.raises(ValueError) as error:
        Cohort(mdata, keys=ObsKeys(donor="donr"))
    message = str(error.value)
    assert "rna obs columns: ['donor', 'cell_type', 'cell_subtype', 'batch']" in message
    assert "did you mean ['donor']" in message and "--donor-key COLUMN" in message


def test_custom_keys_are_read_and_a_missing_custom_label_is_an_error(parts):
    adata = rna_anndata(parts)
    adata.obs = adata.obs.rename(columns={"donor": "individual", "cell_type": "celltype"})
    cohort = Cohort(adata, keys=ObsKeys(donor="individual", cell_type="celltype", batch=None))
    assert {"donor", "cell_type", "cell_subtype"} <= set(cohort.obs.columns)
    assert "batch" not in cohort.obs.columns
    with pytest.raises(ValueError, match="no cell_type column 'ct'.*--cell-type-key COLUMN"):
        Cohort(adata, keys=ObsKeys(donor="individual", cell_type="ct"))


# ------------------------------------------------------------------------------ 7. near-integers
def test_near_integer_counts_are_offered_rounding(parts, caplog):
    caplog.set_level(logging.INFO)
    adata = rna_anndata(parts)
    counts = dense(adata.X).astype(np.float64)
    noise = np.random.default_rng(0).uniform(-1e-6, 1e-6, counts.shape) * (counts > 0)
    adata.X = counts + noise  # a CSV / R round trip
    with pytest.raises(ValueError, match=r"within 1e-06 of integers .*--round-counts"):
        Cohort(adata)
    cohort = Cohort(adata, round_counts=True)
    np.testing.assert_array_equal(cohort.counts("rna").toarray(), counts)
    assert "counts rounded to integers (max deviation 1e-06)" in messages(caplog)


def test_normalised_counts_are_not_rounded(parts):
    adata = rna_anndata(parts)
    adata.X = dense(adata.X) * 0.5
    with pytest.raises(ValueError, match="not normalised data \\(max deviation from an integer 0.5\\)"):
        Cohort(adata, round_counts=True)


# ------------------------------------------------------------------------------ 6. one file
@pytest.mark.parametrize("suffix", [".h5ad", ".h5mu"])
def test_read_cohort_file_with_plink_and_donor_tables(tmp_path, parts, suffix):
    adata = cellranger_anndata(parts)
    adata.var_names_make_unique()
    path = tmp_path / f"cells{suffix}"
    (adata if suffix == ".h5ad" else md.MuData({"rna": adata})).write(path)
    donors = sorted(parts.obs["donor"].unique())
    write_plink(make_genotypes(donors), tmp_path / "geno")
    covariates = pd.DataFrame({"age": np.arange(N_DONORS, dtype=float)}, index=donors)
    covariates.to_csv(tmp_path / "cov.tsv", sep="\t")
    cohort = read_cohort_file(path, genotypes=tmp_path / "geno", covariates=tmp_path / "cov.tsv")
    assert cohort.name == "cells" and cohort.modalities == ("rna", "prot")
    assert cohort.genotypes.n_variants == 60 and list(cohort.donor_covariates.columns) == ["age"]
