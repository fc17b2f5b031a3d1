"""The compare CLI's input options, its exit code when nothing can run, progress lines and a light --help."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from cohort_factories import make_genotypes, make_mdata

from benchmarks import compare, gate
from multilivi.data import Cohort
from multilivi.data.io import write_plink
from multilivi.data.ondisk import ON_DISK_BYTES
from multilivi.eval import scan_chunks
from multilivi.eval.outputs import DEFAULT_FDR, EvalContext, ModelOutputs
from multilivi.eval.task_runner import Task, TaskResult, run_tasks
from multilivi.models.livi import LIVIConfig, SharedLatentModule
from multilivi.models.train import CellBatches, fit_module, log_interval, progress_label

HEAVY = ("torch", "anndata", "mudata", "sklearn", "umap", "matplotlib")


@pytest.fixture
def h5ad_with_plink(tmp_path: Path) -> tuple[Path, Path]:
    """An AnnData file (log-normalised X, counts in a layer, donors under 'individual') and a PLINK prefix."""
    parts = make_mdata(n_cells=60, n_genes=12, n_proteins=None, n_donors=6)
    counts = parts["rna"].X.toarray()
    obs = parts.obs.rename(columns={"donor": "individual", "cell_type": "celltype"})
    adata = ad.AnnData(sp.csr_matrix(np.log1p(counts)), obs=obs, var=parts["rna"].var.copy())
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write(tmp_path / "cells.h5ad")
    write_plink(make_genotypes(sorted(obs["individual"].unique())), tmp_path / "geno")
    return tmp_path / "cells.h5ad", tmp_path / "geno"


def parsed(*argv: str):
    return compare.build_parser().parse_args(list(argv))


# ------------------------------------------------------------------------------- input options
def test_a_file_with_plink_prefix_keys_and_counts_layer(h5ad_with_plink):
    path, prefix = h5ad_with_plink
    args = parsed(
        "--dataset", str(path), "--genotypes", str(prefix), "--donor-key", "individual",
        "--cell-type-key", "celltype", "--batch-key", "none", "--counts-layer", "counts",
    )  # fmt: skip
    cohort = compare.cohort_of(args)
    assert cohort.name == "cells" and cohort.n_donors == 6 and cohort.genotypes.n_variants == 60
    assert {"donor", "cell_type", "cell_subtype"} <= set(cohort.obs.columns)
    assert "batch" not in cohort.obs.columns
    np.testing.assert_array_equal(
        cohort.counts("rna").toarray(), ad.read_h5ad(path).layers["counts"].toarray()
    )


def test_without_the_counts_layer_the_error_names_the_option(h5ad_with_plink, capsys):
    path, _ = h5ad_with_plink
    assert compare.main(["--dataset", str(path), "--donor-key", "individual", "--no-cache"]) == 2
    assert "--counts-layer LAYER" in capsys.readouterr().err


def test_a_missing_donor_column_names_the_option(h5ad_with_plink, capsys):
    path, _ = h5ad_with_plink
    assert compare.main(["--dataset", str(path), "--counts-layer", "counts", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "no donor column 'donor'" in err and "'individual'" in err and "--donor-key COLUMN" in err


def test_input_options_are_refused_for_named_datasets_and_donor_files_for_folders(tmp_path, capsys):
    assert compare.main(["--dataset", "sim-ci", "--donor-key", "individual", "--round-counts"]) == 2
    assert "--donor-key, --round-counts apply to a cohort file or folder" in capsys.readouterr().err
    Cohort(make_mdata(n_cells=48, n_genes=10, n_proteins=None, n_donors=4)).write(tmp_path / "folder")
    assert compare.main(["--dataset", str(tmp_path / "folder"), "--genotypes", "x"]) == 2
    assert "a cohort folder holds its own" in capsys.readouterr().err


def test_every_requested_model_skipped_exits_non_zero_naming_why(tmp_path, capsys):
    cells = tmp_path / "rna_only.h5mu"
    make_mdata(n_cells=48, n_genes=10, n_proteins=None, n_donors=4).write(cells)
    argv = [
        "--dataset",
        str(cells),
        "--models",
        "mslivi-50",
        "dmlivi-50",
        "--no-cache",
        "--out",
        str(tmp_path),
    ]
    assert compare.main(argv) == 2
    err = capsys.readouterr().err
    assert "every requested model is skipped (mslivi-50: mslivi needs modality 'prot'" in err
    assert "dmlivi-50: dmlivi needs modality 'prot'" in err and "obsm['protein_expression']" in err


def test_the_defaults_written_in_the_cli_are_those_of_their_modules():
    assert compare.DEFAULT_FDR == DEFAULT_FDR and parsed().fdr == DEFAULT_FDR
    assert compare.SCHEDULER_ENV == scan_chunks.SCHEDULER_ENV
    assert compare.ON_DISK_GIB * 2**30 == ON_DISK_BYTES
    assert (compare.FIRST_BASELINE_SEED, compare.N_BASELINE_SEEDS, compare.MIN_BASELINE_SEEDS) == (
        gate.FIRST_BASELINE_SEED,
        gate.N_BASELINE_SEEDS,
        gate.MIN_BASELINE_SEEDS,
    )
    assert parsed().baseline_seeds == gate.N_BASELINE_SEEDS


# ------------------------------------------------------------------------------------- --help
def test_help_imports_no_heavy_module():
    code = (
        "import sys\nfrom benchmarks import compare\n"
        "try:\n    compare.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert "--counts-layer" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ----------------------------------------------------------------------------------- progress
def test_training_logs_at_most_twenty_labelled_lines_and_the_same_history(caplog):
    cohort = Cohort(make_mdata(n_cells=48, n_genes=10, n_proteins=None, n_donors=4))
    data = CellBatches({"rna": cohort.counts("rna")}, cohort.donor_index)

    def history(progress: bool) -> list[dict[str, float]]:
        config = LIVIConfig(
            epochs=45, warmup_epochs=30, encoder_hidden=(8,), n_latent=3, n_dxc=2, n_v=1, progress=progress
        )
        torch.manual_seed(0)
        module = SharedLatentModule(config, {"rna": 10}, cohort.n_donors, {"rna": 1.0}, {"rna": "nb"})
        with progress_label("livi seed 0"):
            return fit_module(module, data, config, torch.device("cpu"))

    caplog.set_level(logging.INFO, logger="multilivi.models.train")
    logged = history(progress=True)  # stderr is captured here, not a terminal: no bar, log lines
    lines = [r.getMessage() for r in caplog.records if "cells/s" in r.getMessage()]
    assert len(lines) == 45 // log_interval(45) == 15 and len(lines) <= 20
    assert lines[0].startswith("livi seed 0: epoch 3/45 (stage 1), loss ")
    assert lines[-1].startswith("livi seed 0: epoch 45/45 (stage 2)")
    assert logged == history(progress=False)  # logging changes no number


def test_log_interval_caps_the_lines_and_logs_the_last_epoch():
    for epochs in (2, 19, 20, 21, 150, 280, 1000):
        every = log_interval(epochs)
        logged = [e for e in range(1, epochs + 1) if e % every == 0 or e == epochs]
        assert len(logged) <= 21 and logged[-1] == epochs


def test_each_evaluation_task_logs_its_time(caplog):
    def nothing(outputs, ctx):
        return TaskResult([])

    outputs = ModelOutputs(views={"emb": np.zeros((4, 2))})
    ctx = EvalContext({}, np.array([]), np.array([]), {}, None, None, None, None)
    caplog.set_level(logging.INFO, logger="multilivi.eval.task_runner")
    tasks = [Task("first", nothing), Task("second", lambda o, c: 1 / 0)]
    run_tasks("toy-model", outputs, ctx, tasks=tasks)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("task first of toy-model: ") and m.endswith(" s") for m in messages)
    assert any(m.startswith("task second failed for toy-model after ") for m in messages)


def test_the_h5mu_of_a_cohort_folder_read_as_a_file_warns_of_the_genotypes_beside_it(tmp_path, caplog):
    mdata = make_mdata(n_cells=48, n_genes=10, n_proteins=None, n_donors=4)
    Cohort(mdata, genotypes=make_genotypes(sorted(mdata.obs["donor"].unique()))).write(tmp_path / "c")
    cohort = compare.cohort_of(parsed("--dataset", str(tmp_path / "c" / "cohort.h5mu")))
    assert cohort.genotypes is None
    assert any("genotypes.bed lies beside it" in r.getMessage() for r in caplog.records)


def test_on_disk_reads_a_folder_or_h5mu_with_its_counts_on_disk_and_is_refused_for_simulations(
    tmp_path, capsys
):
    mdata = make_mdata(n_cells=48, n_genes=10, n_proteins=None, n_donors=4)
    Cohort(mdata).write(tmp_path / "c")
    for dataset in (tmp_path / "c", tmp_path / "c" / "cohort.h5mu"):
        assert compare.cohort_of(parsed("--dataset", str(dataset), "--on-disk")).on_disk
        assert not compare.cohort_of(parsed("--dataset", str(dataset))).on_disk  # small: in memory
    assert compare.main(["--dataset", "sim-ci", "--on-disk"]) == 2
    assert "--on-disk apply to a cohort file or folder" in capsys.readouterr().err
