"""Programs, hits, loci, programs vs truth, their report sections and files; the 1024-px layout."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

from benchmarks.kinds.family import trained_outputs
from benchmarks.kinds.store import read_outputs, write_outputs
from multilivi.data import split_cells
from multilivi.data.simulate import SimulationConfig, simulate
from multilivi.eval.figures import sweep_curves
from multilivi.eval.outputs import EvalContext, ModelOutputs
from multilivi.eval.programs import NO_PROGRAMS, PROGRAM_COLUMNS, gene_overlap, write_file_artefacts
from multilivi.eval.report import write_report
from multilivi.eval.report.html import TABLE_WRAPPER
from multilivi.eval.results import scores_frame
from multilivi.eval.task_runner import registered_tasks, run_tasks
from multilivi.models import FAMILIES

TASKS = ("phenotypes", "association", "programs", "loci", "hits", "program_truth")
TINY = {
    "epochs": 8,
    "warmup_epochs": 4,
    "batch_size": 256,
    "lr": 1e-2,
    "progress": False,
    "encoder_hidden": (32, 16),
    "n_latent": 5,
    "n_dxc": 4,
    "n_v": 2,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def setup():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cohort = simulate(SimulationConfig.ci(), seed=0)
    train, heldout = split_cells(cohort, frac=0.1, seed=0)
    model = FAMILIES["livi"][0]().fit(cohort, train, FAMILIES["livi"][1](**TINY))
    livi = trained_outputs(model, cohort, heldout, {})
    rng = np.random.default_rng(0)
    embedding = ModelOutputs(views={"emb": rng.standard_normal((cohort.n_cells, 4))})
    ctx = EvalContext.from_cohort(cohort, heldout, n_probe_seeds=1)
    tasks = [t for t in registered_tasks() if t.name in TASKS]
    runs = {
        name: run_tasks(name, out, ctx, tasks=tasks) for name, out in (("livi", livi), ("emb", embedding))
    }
    return cohort, livi, runs


def test_truth_records_program_genes(setup):
    cohort, _, _ = setup
    loadings = cohort.truth.program_loadings
    assert list(loadings.columns) == list(cohort.truth.donor_factors.columns)
    assert ((loadings != 0).sum() == SimulationConfig.ci().dxc_genes_per_program).all()


def test_outputs_round_trip_loadings_and_assignment(setup, tmp_path):
    _, livi, _ = setup
    assert set(livi.loadings) == {"rna"} and livi.assignment.shape == (TINY["n_latent"], TINY["n_dxc"])
    assert list(livi.assignment.columns) == list(livi.donor_factors["D"].columns)
    write_outputs(tmp_path, livi)
    back = read_outputs(tmp_path)
    pd.testing.assert_frame_equal(back.assignment, livi.assignment, check_names=False)
    pd.testing.assert_frame_equal(back.loadings["rna"], livi.loadings["rna"], check_names=False)


def test_programs_hits_and_loci_for_a_model_with_donor_factors(setup, tmp_path):
    cohort, _, runs = setup
    art = runs["livi"].artefacts
    programs, hits, loci = art["programs"], art["hits"], art["loci"]
    assert tuple(programs.columns) == PROGRAM_COLUMNS and set(programs["factor"]) == {
        "D_0",
        "D_1",
        "D_2",
        "D_3",
    }
    assert programs.groupby("factor")["rank"].min().eq(1).all()
    assert {"locus", "beta", "se", "pvalue", "qvalue", "cell_state", "top_genes"} <= set(hits.columns)
    assert set(loci["view"]) == {"D", "V"} and len(loci) == 2 * cohort.genotypes.n_variants
    written = write_file_artefacts(tmp_path, art)
    assert sorted(p.name for p in written) == ["hits.parquet", "programs.parquet"]
    assert len(pd.read_parquet(tmp_path / "programs.parquet")) == len(programs)


def test_program_truth_rows_per_program(setup):
    _, _, runs = setup
    rows = [r for r in runs["livi"].rows if r.task == "program_truth" and r.status == "ok"]
    keyed = {r.metric for r in rows if r.metric.startswith("precision_at_25/")}
    assert len(keyed) == TINY["n_dxc"]  # one-to-one: as many matched programs as learned factors
    assert all(0.0 <= r.value <= 1.0 for r in rows if r.metric.startswith("precision"))
    assert gene_overlap(["a", "b", "c", "d"], {"a", "b", "x"}) == (0.5, 0.4)


def test_embedding_gets_hits_from_donor_means_and_skips_programs(setup):
    _, _, runs = setup
    run = runs["emb"]
    assert run.artefacts["programs"] is None
    skipped = [r for r in run.rows if r.task == "programs"]
    assert [r.status for r in skipped] == ["skipped"] and skipped[0].reason == NO_PROGRAMS
    hits = run.artefacts["hits"]
    assert isinstance(hits, pd.DataFrame) and set(hits["view"]) <= {"donor_means"}
    assert set(run.artefacts["loci"]["view"]) == {"donor_means"}


@pytest.fixture(scope="module")
def report(setup, tmp_path_factory):
    _, _, runs = setup
    out = tmp_path_factory.mktemp("run")
    scores = scores_frame([row for run in runs.values() for row in run.rows])
    meta = {"models": {"livi": {"family": "livi"}, "emb": {"family": "embedding"}}, "device": "cpu"}
    md, html = write_report(out, scores, meta, artefacts={m: r.artefacts for m, r in runs.items()})
    return out, md.read_text(), html


def test_report_shows_hits_programs_and_figures(report):
    out, text, _ = report
    for heading in ("## Hits and loci", "## Programs", "## Programs vs truth"):
        assert heading in text
    assert text.index("## Association") < text.index("## Hits and loci")
    for name in ("manhattan_livi", "manhattan_emb", "qqband_D", "phist_D", "program_r_livi"):
        assert (out / "figures" / f"{name}.png").exists(), name


def test_every_table_is_in_the_scrolling_box(report):
    html = report[2].read_text()
    tables = html.count("<table>")
    assert tables > 3 and html.count(f'<div class="{TABLE_WRAPPER}"><table>') == tables
    assert re.search(r"\.table-scroll\s*\{[^}]*overflow-x:\s*auto", html)


def test_sweep_curves_join_weights_per_family():
    curves = sweep_curves(["livi", "mslivi-10", "mslivi-50", "mslivi-0.5", "dmlivi-50", "pca"])
    assert curves == {"mslivi": [(0.5, "mslivi-0.5"), (10.0, "mslivi-10"), (50.0, "mslivi-50")]}


_WIDTH_SCRIPT = """
<script>window.onload = () => {
  const wide = [...document.querySelectorAll('body *')].filter(
    e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.%s'));
  document.title = 'overflow:' + wide.length + ':' + document.documentElement.scrollWidth;
};</script>
"""


def test_no_element_overflows_at_1024_px(report, tmp_path):
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no chromium/google-chrome on PATH; the scrolling-box check runs without a browser")
    page = tmp_path / "report.html"
    page.write_text(report[2].read_text().replace("</body>", (_WIDTH_SCRIPT % TABLE_WRAPPER) + "</body>"))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    cmd += [f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1024,2000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    match = re.search(r"<title>overflow:(\d+):(\d+)</title>", dom)
    assert match is not None, "the layout script did not run"
    assert int(match[1]) == 0 and int(match[2]) <= 1024


def test_figures_of_a_million_tests_draw_a_thinned_curve():
    from multilivi.eval import locus_plots

    rng = np.random.default_rng(0)
    n = 300_000
    p = rng.uniform(size=n)
    p[:5] = 1e-12  # the strongest tests are always drawn
    qq = locus_plots.qq_banded({"model": p})
    drawn = qq.axes[0].collections[-1].get_offsets()
    assert len(drawn) <= 2 * locus_plots.MAX_POINTS
    assert np.isclose(drawn[:, 1].max(), 12.0)  # -log10 of the smallest p
    loci = pd.DataFrame(
        {
            "view": "D",
            "variant": np.arange(n).astype(str),
            "chrom": np.repeat(np.arange(1, 4), n // 3).astype(str),
            "pos": np.tile(np.arange(n // 3), 3),
            "min_p": p,
            "hit": p < 1e-10,
        }
    )
    fig = locus_plots.manhattan(loci)
    bulk, hits = (c.get_offsets() for c in fig.axes[0].collections)
    assert len(bulk) <= 2 * locus_plots.MAX_POINTS + 5 and len(hits) == 5
    small = loci.iloc[:1000]
    assert len(locus_plots.manhattan(small).axes[0].collections[0].get_offsets()) == 1000  # small: all drawn
