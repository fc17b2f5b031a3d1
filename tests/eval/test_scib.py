"""scIB metrics: scib-metrics' Benchmarker as an opt-in task, its scaling, the report section, the CLI."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from benchmarks.compare import main
from multilivi.eval.outputs import EvalContext, ModelOutputs
from multilivi.eval.report import write_report
from multilivi.eval.results import ScoreRow, scores_frame
from multilivi.eval.scib import INSTALL_HINT, exact_neighbours, scaled_table, scib_results, task_scib
from multilivi.eval.task_runner import NotRun, Score

N_CELLS = 300


def _cells(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Three views of 300 cells: one separating the 4 cell types, one mixing them, one in between."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(["B", "T", "NK", "mono"]), N_CELLS // 4)
    batches = np.tile(np.array(["b0", "b1", "b2"]), N_CELLS // 3)
    centres = {label: rng.normal(0, 4, 6) for label in np.unique(labels)}
    structured = np.stack([centres[label] for label in labels]) + rng.standard_normal((N_CELLS, 6))
    noise = rng.standard_normal((N_CELLS, 6))
    views = {"structured": structured, "random": noise, "blend": 0.3 * structured + noise}
    return views, labels, batches


def _context(labels: np.ndarray | None, batches: np.ndarray | None, *, scib: bool = True) -> EvalContext:
    return EvalContext(
        labels={"cell_type": labels, "cell_subtype": None, "donor": None},
        cell_donors=np.zeros(N_CELLS, dtype=str),
        heldout_idx=np.arange(10),
        n_features={"rna": 5},
        genotypes=None,
        kinship=None,
        donor_covariates=None,
        truth=None,
        batches=batches,
        scib=scib,
    )


@pytest.fixture(scope="module")
def scib_run():
    """scib-metrics' own Benchmarker on the three views, and our raw results of the same cells."""
    pytest.importorskip(
        "scib_metrics", reason="scib-metrics is not installed (pip install 'multilivi[scib]')"
    )
    import anndata as ad
    from scib_metrics.benchmark import BatchCorrection, Benchmarker

    views, labels, batches = _cells()
    adata = ad.AnnData(
        obs=pd.DataFrame({"cell_type": labels, "batch": batches}, index=map(str, range(N_CELLS)))
    )
    for name, x in views.items():
        adata.obsm[name] = x.astype(np.float32)
    reference = Benchmarker(
        adata,
        batch_key="batch",
        label_key="cell_type",
        embedding_obsm_keys=list(views),
        batch_correction_metrics=BatchCorrection(pcr_comparison=False),
        pre_integrated_embedding_obsm_key="random",
        progress_bar=False,
    )
    reference.prepare(neighbor_computer=exact_neighbours)
    reference.benchmark()
    return reference, scib_results(views, labels, batches)


def test_raw_results_are_the_benchmarkers_and_rank_structure_first(scib_run):
    reference, ours = scib_run
    raw = reference.get_results(min_max_scale=False).drop(index="Metric Type").astype(float)
    np.testing.assert_allclose(ours["kmeans_nmi"], raw.loc[list(ours.index), "KMeans NMI"], rtol=1e-12)
    np.testing.assert_allclose(ours["total"], raw.loc[list(ours.index), "Total"], rtol=1e-12)
    assert ours.shape == (3, 12) and ours.notna().all().all()
    bio = ours["bio_conservation"]
    assert bio["structured"] > bio["blend"] > bio["random"]


def test_scaled_table_is_the_benchmarkers_min_max_scaling(scib_run):
    reference, ours = scib_run
    expected = reference.get_results(min_max_scale=True).drop(index="Metric Type").astype(float)
    scaled = scaled_table(ours.drop(columns=["bio_conservation", "batch_correction", "total"]))
    for name, column in (("bio_conservation", "Bio conservation"), ("batch_correction", "Batch correction")):
        np.testing.assert_allclose(scaled[name], expected.loc[list(scaled.index), column], rtol=1e-10)
    np.testing.assert_allclose(scaled["total"], expected.loc[list(scaled.index), "Total"], rtol=1e-10)
    assert scaled["total"].idxmax() == "structured"


def test_task_scores_every_view_on_the_probes_cells(scib_run):
    views, labels, batches = _cells()
    ctx = _context(labels, batches)
    ctx.probe_max_cells = 200  # the probes' cap: the task subsamples the same cells
    result = task_scib(ModelOutputs(views=views), ctx)
    scores = [s for s in result.scores if isinstance(s, Score)]
    assert {s.view for s in scores} == set(views) and len(scores) == 3 * 12
    assert all(s.result.details == {"n_cells": 200, "subsampled": True} for s in scores)


def test_task_is_opt_in_and_names_what_is_missing(monkeypatch):
    views, labels, batches = _cells()
    outputs = ModelOutputs(views=views)
    assert task_scib(outputs, _context(labels, batches, scib=False)).scores == []
    no_batch = task_scib(outputs, _context(labels, None)).scores
    assert all(isinstance(s, NotRun) and "no 'batch' annotation" in s.reason for s in no_batch)
    monkeypatch.setitem(sys.modules, "scib_metrics", None)  # import fails as if not installed
    missing = task_scib(outputs, _context(labels, batches)).scores
    assert len(missing) == 3 and all(s.reason == INSTALL_HINT for s in missing)


def test_report_shows_raw_and_scaled_tables(tmp_path):
    rng = np.random.default_rng(0)
    metrics = ["isolated_labels", "kmeans_nmi", "kmeans_ari", "silhouette_label", "clisi"]
    metrics += [
        "bras",
        "ilisi",
        "kbet",
        "graph_connectivity",
        "bio_conservation",
        "batch_correction",
        "total",
    ]
    rows = [
        ScoreRow(model, "c", "scib", metric, float(rng.uniform(0.2, 0.9)), higher_is_better=True)
        for model in ("livi", "mslivi-50", "control-random")
        for metric in metrics
    ]
    meta = {"dataset": {"name": "toy"}, "models": {}, "seed": 0, "preset": "ci"}
    md_path, _ = write_report(tmp_path, scores_frame(rows), meta, {})
    text = md_path.read_text()
    assert "## scIB metrics" in text and "### Scaled, as scib-metrics' Benchmarker" in text
    scaled_rows = [line for line in text.splitlines() if line.startswith("| ") and "0.6 bio" not in line]
    assert any("control-random" in line for line in scaled_rows)


def test_cli_refuses_scib_without_the_package_before_any_work(monkeypatch, tmp_path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "scib_metrics" else real(name, *a)
    )
    code = main(["--preset", "ci", "--models", "livi", "--scib", "--out", str(tmp_path / "run")])
    assert code != 0 and INSTALL_HINT in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
