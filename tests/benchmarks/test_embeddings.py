"""Third-party embeddings and the PCA baseline: parsing, alignment by name, and the errors users see."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from cohort_factories import make_mdata

from benchmarks.kinds.embedding import check_embedding, parse_embedding_spec
from benchmarks.kinds.pca import parse_pca_spec, pca_outputs
from multilivi.data import Cohort


@pytest.fixture
def cohort():
    return Cohort(make_mdata(n_cells=120, n_donors=6))


def _embedding(cohort):
    return pd.DataFrame(np.random.default_rng(0).normal(size=(cohort.n_cells, 4)), index=cohort.cell_names)


def test_spec_grammar():
    spec = parse_embedding_spec("emb:out/scvi.h5ad#X_scVI:donor_factors=f.csv,name=scVI")
    assert (str(spec.path), spec.key, str(spec.donor_factors), spec.name) == (
        "out/scvi.h5ad",
        "X_scVI",
        "f.csv",
        "scVI",
    )
    assert parse_embedding_spec("emb:x.npy").name == "emb-x"
    with pytest.raises(ValueError, match="embedding options are"):
        parse_embedding_spec("emb:x.npy:colour=red")
    assert parse_pca_spec("pca").n_components == 20
    assert parse_pca_spec("pca:n_components=5").name == "pca-5"
    with pytest.raises(ValueError, match="n_components"):
        parse_pca_spec("pca:n=5")


def test_h5ad_rows_in_another_order_are_aligned_by_name(tmp_path, cohort):
    frame = _embedding(cohort)
    shuffled = frame.sample(frac=1.0, random_state=1)
    adata = ad.AnnData(np.zeros((cohort.n_cells, 1)), obs=pd.DataFrame(index=shuffled.index))
    adata.obsm["X_tool"] = shuffled.to_numpy()
    adata.write_h5ad(tmp_path / "e.h5ad")
    outputs = check_embedding(parse_embedding_spec(f"emb:{tmp_path}/e.h5ad#X_tool"), cohort)
    np.testing.assert_array_equal(outputs.views["emb"], frame.to_numpy())
    with pytest.raises(KeyError, match="no obsm\\['X_umap'\\]"):
        check_embedding(parse_embedding_spec(f"emb:{tmp_path}/e.h5ad#X_umap"), cohort)


def test_npy_with_sidecar_and_parquet(tmp_path, cohort):
    frame = _embedding(cohort)
    np.save(tmp_path / "e.npy", frame.to_numpy())
    with pytest.raises(FileNotFoundError, match="cell-id sidecar"):
        check_embedding(parse_embedding_spec(f"emb:{tmp_path}/e.npy"), cohort)
    (tmp_path / "e.cells.txt").write_text("\n".join(frame.index))
    np.testing.assert_array_equal(
        check_embedding(parse_embedding_spec(f"emb:{tmp_path}/e.npy"), cohort).views["emb"], frame
    )
    frame.columns = frame.columns.astype(str)
    frame.iloc[::-1].to_parquet(tmp_path / "e.parquet")
    np.testing.assert_array_equal(
        check_embedding(parse_embedding_spec(f"emb:{tmp_path}/e.parquet"), cohort).views["emb"],
        frame.to_numpy(),
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.iloc[3:], r"3 cohort cells have no embedding row \('cell0000'"),
        (
            lambda f: pd.concat([f, f.iloc[:2].set_axis(["x1", "x2"])]),
            r"2 rows are not cohort cells \('x1', 'x2'\)",
        ),
        (
            lambda f: f.mask(np.broadcast_to((f.index == "cell0005")[:, None], f.shape)),
            r"1 cells have NaN or infinite embedding values \('cell0005'\)",
        ),
    ],
)
def test_bad_embeddings_are_named(tmp_path, cohort, edit, message):
    edit(_embedding(cohort)).to_csv(tmp_path / "e.csv")
    with pytest.raises(ValueError, match=message):
        check_embedding(parse_embedding_spec(f"emb:{tmp_path}/e.csv"), cohort)


def test_donor_factor_table_is_aligned_and_checked(tmp_path, cohort):
    _embedding(cohort).to_csv(tmp_path / "e.csv")
    factors = pd.DataFrame(
        np.arange(12.0).reshape(6, 2), index=cohort.donor_names[::-1], columns=["f0", "f1"]
    )
    factors.to_csv(tmp_path / "f.tsv", sep="\t")
    outputs = check_embedding(
        parse_embedding_spec(f"emb:{tmp_path}/e.csv:donor_factors={tmp_path}/f.tsv"), cohort
    )
    assert outputs.donor_factors["D"].index.equals(cohort.donor_names)
    assert outputs.donor_factors["D"].loc[cohort.donor_names[-1], "f0"] == 0.0
    factors.iloc[1:].to_csv(tmp_path / "f.tsv", sep="\t")
    with pytest.raises(ValueError, match="lack 1 cohort donors"):
        check_embedding(parse_embedding_spec(f"emb:{tmp_path}/e.csv:donor_factors={tmp_path}/f.tsv"), cohort)


def test_pca_baseline_views(cohort):
    outputs = pca_outputs(cohort, parse_pca_spec("pca:n_components=5"))
    assert set(outputs.views) == {"rna", "rna+prot"}
    assert outputs.views["rna"].shape == (cohort.n_cells, 5)
    assert outputs.donor_factors == {} and outputs.heldout_nll is None
    variances = outputs.views["rna"].var(axis=0)
    assert np.all(np.diff(variances) <= 1e-9), "PCs come in decreasing variance"
