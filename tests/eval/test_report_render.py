"""Report rendering: sections, LIVI comparison arrows, skipped rows, self-contained HTML, screenshot."""

from __future__ import annotations

import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from multilivi.eval import figures
from multilivi.eval.metrics import Metric, lookup, register, unregister
from multilivi.eval.report import DOWN, SAME, UP, arrow, compare_to_baseline, format_number, write_report
from multilivi.eval.results import ScoreRow, not_run, scores_frame

SUBTYPES = ["naive B", "memory B", "plasma", "transitional B"]
CELL_TYPES = ["B", "CD4 T", "CD8 T", "NK", "monocyte"]
CELL_VIEWS = {"livi": ["c"], "mslivi-50": ["c"], "dmlivi-50": ["shared", "all"], "emb-scvi": ["emb"]}
DONOR_VIEWS = {
    "livi": ["D", "V"],
    "mslivi-50": ["D", "V"],
    "dmlivi-50": ["D", "V"],
    "emb-scvi": ["donor_means"],
}
SECTIONS = [
    "Run summary",
    "Reconstruction",
    "Probes",
    "Donor leakage",
    "Association",
    "Ground truth",
    "UMAP",
    "Other metrics",
    "Skipped tasks",
]
# RNA NLL: mslivi worse than LIVI, dmlivi better; lambda_gc: LIVI 1.30, dmlivi 1.05 (closer to 1).
NLL = {"livi": (1520.0, None), "mslivi-50": (1610.5, 310.2), "dmlivi-50": (1498.25, 280.7)}
LAMBDA = {"livi": 1.30, "mslivi-50": 1.42, "dmlivi-50": 1.05, "emb-scvi": 0.97}
NULL_LAMBDA = {("livi", "D"): 1.06, ("mslivi-50", "D"): 0.98}


def _reconstruction_rows(rng: np.random.Generator) -> list[ScoreRow]:
    rows: list[ScoreRow] = []
    for model, (rna, prot) in NLL.items():
        rows += [
            ScoreRow(model, "-", "reconstruction", "nll_per_cell_rna", rna, higher_is_better=False),
            ScoreRow(model, "-", "reconstruction", "nll_per_feature_rna", rna / 2000, higher_is_better=False),
        ]
        for ct in CELL_TYPES:
            rows.append(
                ScoreRow(
                    model,
                    "-",
                    "reconstruction",
                    f"nll_per_cell_rna/{ct}",
                    rna + rng.normal(0, 50),
                    higher_is_better=False,
                )
            )
        if prot is None:
            rows.append(
                ScoreRow(
                    model,
                    "-",
                    "reconstruction",
                    "nll_per_cell_prot",
                    math.nan,
                    higher_is_better=False,
                    status="skipped",
                    reason="model has no protein decoder",
                )
            )
        else:
            rows.append(
                ScoreRow(model, "-", "reconstruction", "nll_per_cell_prot", prot, higher_is_better=False)
            )
        rows.append(
            ScoreRow(model, "-", "training", "fit_seconds", 40 + 30 * rng.random(), higher_is_better=False)
        )
    rows.append(not_run("emb-scvi", "-", "reconstruction", "an embedding has no decoder"))
    return rows


def _cell_rows(rng: np.random.Generator) -> list[ScoreRow]:
    rows: list[ScoreRow] = []
    for model, views in CELL_VIEWS.items():
        for view in views:
            for task, classes in (("probe_cell_type", CELL_TYPES), ("probe_cell_subtype", SUBTYPES)):
                base = 0.97 if task == "probe_cell_type" else 0.82
                rows += [
                    ScoreRow(model, view, task, "accuracy", base + rng.normal(0, 0.01), sd=0.004),
                    ScoreRow(
                        model, view, task, "balanced_accuracy", base - 0.05 + rng.normal(0, 0.01), sd=0.006
                    ),
                ]
                rows += [
                    ScoreRow(model, view, task, f"class_accuracy/{c}", float(rng.uniform(0.6, 1.0)))
                    for c in classes
                ]
            leak = 0.12 if model == "livi" else 0.35 + 0.1 * rng.random()
            rows.append(
                ScoreRow(model, view, "probe_donor", "accuracy", leak, sd=0.02, higher_is_better=False)
            )
    return rows


def _donor_rows(rng: np.random.Generator) -> list[ScoreRow]:
    rows: list[ScoreRow] = []
    for model, views in DONOR_VIEWS.items():
        for view in views:
            pairs = int(rng.integers(5, 60))
            rows += [
                ScoreRow(model, view, "association", "n_significant_pairs", pairs),
                ScoreRow(model, view, "association", "n_significant_variants", pairs // 2),
                ScoreRow(
                    model,
                    view,
                    "association",
                    "lambda_gc",
                    LAMBDA[model] + (0.02 if view == "V" else 0),
                    higher_is_better=False,
                ),
                ScoreRow(model, view, "association", "n_tests", 2000.0),
            ]
            rows += [
                ScoreRow(model, view, "truth", "power", float(rng.uniform(0.3, 0.9))),
                ScoreRow(
                    model,
                    view,
                    "truth",
                    "empirical_fdr",
                    float(rng.uniform(0.0, 0.1)),
                    higher_is_better=False,
                ),
                ScoreRow(
                    model,
                    view,
                    "truth",
                    "lambda_gc_null",
                    NULL_LAMBDA.get((model, view), 1.01),
                    higher_is_better=False,
                ),
            ]
            if view == "D":
                rows += [
                    ScoreRow(model, view, "truth", f"factor_recovery/program_{p}", float(rng.uniform(0.4, 1)))
                    for p in range(3)
                ]
    return rows


def synthetic_scores(with_livi: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = _reconstruction_rows(rng) + _cell_rows(rng) + _donor_rows(rng)
    rows.append(not_run("emb-scvi", "donor_means", "probe_donor", "donor means have one row per donor"))
    # metrics outside the SCORES.md vocabulary must still reach the report
    rows += [
        ScoreRow(m, "c" if m != "dmlivi-50" else "shared", "truth", "cell_state_r2", r2)
        for m, r2 in (("livi", 0.30), ("mslivi-50", 0.42), ("dmlivi-50", 0.25))
    ]
    rows += [
        ScoreRow("livi", "D", "truth", "calibration_slope", 0.97),
        ScoreRow("livi", "-", "memory", "peak_rss_gb", 1.5, higher_is_better=False),
    ]
    rows.append(
        ScoreRow(
            "mslivi-50",
            "V",
            "association",
            "*",
            math.nan,
            status="error",
            reason="LinAlgError: singular kinship <matrix>",
        )
    )
    frame = scores_frame(rows)
    return frame if with_livi else frame.loc[frame["model"] != "livi"].reset_index(drop=True)


def synthetic_meta() -> dict:
    models = {
        m: {
            "family": m.split("-")[0],
            "config": {"n_factors": 10, "lambda_prot": 50, "train": {"epochs": 3}},
            "fit_seconds": 42.0,
            "cached": m == "livi",
            "status": "ok",
        }
        for m in CELL_VIEWS
    }
    models["emb-scvi"] = {"family": "emb", "path": "/data/scvi.h5ad", "status": "ok"}
    models["pca"] = {"family": "pca", "n_components": 30, "status": "skipped", "reason": "no protein counts"}
    return {
        "dataset": {
            "name": "sim-ci",
            "n_cells": 1200,
            "n_donors": 24,
            "modalities": {"rna": 2000, "prot": 30},
            "n_variants": 2000,
            "semi_synthetic": True,
            "note": "genotypes drawn from HWE at random MAF",
            "data_hash": "ab12cd",
            "simulated_truth": True,
        },
        "models": models,
        "versions": {"python": "3.11.2", "torch": "2.13.0", "numpy": "2.4.0", "multilivi": "0.1.0"},
        "git_sha": "0123456789abcdef",
        "argv": ["benchmarks.compare", "--preset", "ci"],
        "created": "2025-01-01T00:00:00",
        "seed": 0,
        "preset": "ci",
        "wall_seconds": 321.5,
    }


def extra_figures() -> dict[str, Figure]:
    rng = np.random.default_rng(1)
    umap = Figure(figsize=(6, 3))
    for i, ax in enumerate(umap.subplots(1, 2)):
        xy = rng.normal(size=(200, 2)) + np.repeat(rng.normal(0, 4, (4, 2)), 50, axis=0)
        ax.scatter(xy[:, 0], xy[:, 1], c=np.repeat(np.arange(4), 50), s=4, cmap="tab10")
        ax.set_title(["livi · c", "dmlivi-50 · shared"][i])
    qq = Figure(figsize=(3, 3))
    ax = qq.add_subplot()
    expected = -np.log10((np.arange(1, 501) - 0.5) / 500)
    ax.plot(expected, np.sort(-np.log10(rng.uniform(size=500)))[::-1], ".")
    return {"umap_grid": umap, "qq_D": qq}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path, Path]:
    run_dir = tmp_path_factory.mktemp("run")
    md, html = write_report(run_dir, synthetic_scores(), synthetic_meta(), extra_figures())
    return run_dir, md, html


def test_files_written(report):
    run_dir, md, html = report
    assert md == run_dir / "report.md" and md.stat().st_size > 1000
    assert html == run_dir / "report.html" and html.stat().st_size > 10000
    pngs = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {
        "nll_tradeoff",
        "per_class_subtype",
        "per_class_cell_type",
        "association_counts",
        "subtype_donor_accuracy",
        "power_fdr",
        "umap_grid",
        "qq_D",
    } <= pngs
    assert not [p for p in run_dir.rglob(".*")], "temporary files were left behind"
    text = md.read_text()
    for name in pngs:
        assert f"(figures/{name}.png)" in text


def test_sections_in_order(report):
    _, md, html = report
    text = md.read_text()
    positions = [text.index(f"\n## {s}\n") for s in SECTIONS]
    assert positions == sorted(positions)
    page = html.read_text()
    for section in SECTIONS:
        assert f">{section}</h2>" in page
    assert "genotypes of this cohort are simulated" in text
    summary = text[text.index("## Run summary") : text.index("## Reconstruction")]
    assert "| modalities | rna (2,000), prot (30) |" in summary
    assert "train.epochs=3" in summary and "path=/data/scvi.h5ad" in summary
    assert "skipped: no protein counts" in summary
    assert text.index("umap_grid.png") > text.index("## UMAP")
    assert text.index("## Association") < text.index("qq_D.png") < text.index("## Ground truth")


def test_direction_rules():
    nll = lookup("reconstruction", "nll_per_cell_rna")
    accuracy = lookup("probe_cell_type", "accuracy")
    lambda_gc = lookup("association", "lambda_gc")  # declared direction "target", target 1
    assert arrow(1610.5, 1520.0, nll) == DOWN
    assert arrow(1498.0, 1520.0, nll) == UP
    assert arrow(0.9, 0.8, accuracy) == UP
    assert arrow(1.05, 1.30, lambda_gc) == UP
    assert arrow(0.90, 1.05, lambda_gc) == DOWN  # |0.90-1| > |1.05-1|
    assert arrow(1.2, 0.8, lambda_gc) == SAME
    assert arrow(0.5, 0.5 + 1e-13, accuracy) == SAME
    assert arrow(0.5, math.nan, accuracy) == ""
    # descriptive metrics (compared=False) have no arrow; undeclared ones follow higher_is_better
    assert arrow(2400.0, 600.0, lookup("association", "n_tests")) == ""
    assert arrow(1.6, 1.5, None, higher_is_better=False) == DOWN
    assert arrow(1.6, 1.5) == UP


def test_compare_to_baseline_matches_views():
    cmp = compare_to_baseline(synthetic_scores(), "livi").set_index(["model", "view", "task", "metric"])
    ms = cmp.loc[("mslivi-50", "-", "reconstruction", "nll_per_cell_rna")]
    assert ms.arrow == DOWN and ms["diff"] == pytest.approx(1610.5 - 1520.0)
    assert cmp.loc[("dmlivi-50", "-", "reconstruction", "nll_per_cell_rna"), "arrow"] == UP
    dm = cmp.loc[("dmlivi-50", "D", "association", "lambda_gc")]
    assert dm.arrow == UP and dm.baseline == pytest.approx(1.30)
    shared = cmp.loc[("dmlivi-50", "shared", "probe_cell_type", "accuracy")]
    assert shared.baseline_view == "c"
    assert cmp.loc[("emb-scvi", "donor_means", "association", "lambda_gc"), "baseline_view"] == "D"
    assert cmp.loc[("livi", "c", "probe_cell_type", "accuracy"), "arrow"] == ""
    pca = scores_frame(
        [
            ScoreRow("livi", "D", "association", "lambda_gc", 1.2, higher_is_better=False),
            ScoreRow("pca", "donor_means_rna", "association", "lambda_gc", 1.1, higher_is_better=False),
        ]
    )
    assert compare_to_baseline(pca, "livi").iloc[1][["baseline_view", "arrow"]].tolist() == ["D", UP]
    # mslivi has no protein baseline in LIVI: no arrow rather than a made-up comparison
    assert cmp.loc[("mslivi-50", "-", "reconstruction", "nll_per_cell_prot"), "arrow"] == ""


def test_arrows_rendered(report):
    _, md, html = report
    text = md.read_text()
    ms_row = next(line for line in text.splitlines() if line.startswith("| mslivi-50 | - | 1,610.5"))
    assert f"({DOWN} +90.5)" in ms_row
    dm_row = next(line for line in text.splitlines() if line.startswith("| dmlivi-50 | - | 1,498.2"))
    assert f"({UP} -21.75)" in dm_row
    dm_assoc = next(
        line for line in text.splitlines() if line.startswith("| dmlivi-50 | D |") and "1.05 (" in line
    )
    assert f"1.05 ({UP} -0.25)" in dm_assoc
    page = html.read_text()
    assert f'<span class="delta down">{DOWN} +90.5</span>' in page
    assert f'<span class="delta up">{UP}' in page
    assert "0.8" in text and " ± 0.004" in text  # mean ± sd formatting
    assert "2,000 (Δ 0)" in dm_assoc  # descriptive count: difference without a verdict


def test_unplaced_metrics_are_shown(report):
    _, md, _ = report
    text = md.read_text()
    truth = text[text.index("## Ground truth") : text.index("## UMAP")]
    assert "### Further truth metrics" in truth and "calibration_slope" in truth
    ms = next(line for line in truth.splitlines() if line.startswith("| mslivi-50 | D |") and "0.98" in line)
    assert f"0.98 ({UP} -0.08)" in ms  # lambda-type metric: closer to 1 is better
    assert "0.25 (▼ -0.05 vs c)" in truth
    other = text[text.index("## Other metrics") : text.index("## Skipped tasks")]
    assert "peak_rss_gb" in other
    assert "class_accuracy/" not in text


def test_skipped_rows_listed(report):
    _, md, html = report
    text = md.read_text()
    skipped = text[text.index("## Skipped tasks") :]
    assert "an embedding has no decoder" in skipped
    assert "model has no protein decoder" in skipped
    assert "donor means have one row per donor" in skipped
    assert "LinAlgError: singular kinship <matrix>" in skipped
    page = html.read_text()
    assert "singular kinship &lt;matrix&gt;" in page and "<matrix>" not in page
    # a task that did not run also shows in its section's table, not only at the end
    recon = text[text.index("## Reconstruction") : text.index("## Probes")]
    assert "| emb-scvi | - | skipped | skipped | skipped |" in recon


class _TagBalance(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs.get("src", ""))
        if tag in ("a", "link", "script"):
            self.hrefs.append(attrs.get("href") or attrs.get("src") or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}> at {self.getpos()}")


def test_html_well_formed_and_self_contained(report):
    _, _, html = report
    page = html.read_text()
    parser = _TagBalance()
    parser.feed(page)
    assert not parser.errors and not parser.stack
    assert len(parser.srcs) >= 8 and all(s.startswith("data:image/png;base64,") for s in parser.srcs)
    assert all(h.startswith("#") for h in parser.hrefs)
    assert "http://" not in page and "https://" not in page
    root = ET.fromstring(page.split("\n", 1)[1])  # XHTML-compatible body after the doctype
    assert root.tag == "html" and len(root.findall(".//table")) >= 8


def test_report_without_livi(tmp_path):
    md, html = write_report(tmp_path, synthetic_scores(with_livi=False), synthetic_meta())
    text = md.read_text()
    assert "No `livi` model in this run" in text
    assert UP not in text and DOWN not in text
    assert (tmp_path / "figures" / "nll_tradeoff.png").exists()


def test_figures_absent_rows_give_none():
    empty = synthetic_scores().iloc[:0]
    for make in (
        figures.nll_tradeoff,
        figures.association_counts,
        figures.subtype_and_donor_accuracy,
        figures.power_fdr,
    ):
        assert make(empty) is None
    assert figures.per_class_accuracy(empty, "probe_cell_type") is None
    with pytest.raises(ValueError, match="probe_cell_subtype"):
        figures.per_class_accuracy(empty, "probe_donor")
    with pytest.raises(ValueError, match="lacks columns"):
        figures.nll_tradeoff(pd.DataFrame({"model": ["livi"]}))


def test_format_number():
    assert format_number(1610.5) == "1,610.5"
    assert format_number(0.93412) == "0.934"
    assert format_number(12.0, count=True) == "12"
    assert format_number(-0.25, signed=True) == "-0.25"
    assert format_number(90.5, signed=True) == "+90.5"
    assert format_number(-0.000985, signed=True) == "-0.000985"
    assert format_number(0.0, count=True, signed=True) == "0"
    assert format_number(math.nan) == "n/a"


@pytest.fixture
def toy_metric():
    metric = register(Metric("toy_task", "toy_loss", "toy loss (registry header)", "min", unit="nats"))
    yield metric
    unregister("toy_task", "toy_loss")


def test_metric_of_a_new_task_in_other_metrics(tmp_path, toy_metric):
    rows = [
        # higher_is_better=True on the rows: the declared "min" direction must win
        ScoreRow("livi", "-", "toy_task", "toy_loss", 2.0),
        ScoreRow("mslivi-50", "-", "toy_task", "toy_loss", 1.5),
        ScoreRow("dmlivi-50", "-", "toy_task", "toy_loss", 2.5),
        ScoreRow("livi", "-", "memory", "peak_rss_gb", 1.5, higher_is_better=False),
        ScoreRow("mslivi-50", "-", "memory", "peak_rss_gb", 1.2, higher_is_better=False),
    ]
    md, _ = write_report(tmp_path, scores_frame(rows), synthetic_meta())
    text = md.read_text()
    other = text[text.index("## Other metrics") : text.index("## Skipped tasks")]
    assert "### Further toy_task metrics" in other
    assert "| model | view | toy loss (registry header) |" in other and "| toy_loss |" not in other
    assert f"| mslivi-50 | - | 1.5 ({UP} -0.5) |" in other
    assert f"| dmlivi-50 | - | 2.5 ({DOWN} +0.5) |" in other
    # an undeclared metric: its name as header, its rows' higher_is_better as direction
    assert "| model | view | peak_rss_gb |" in other
    assert f"| mslivi-50 | - | 1.2 ({UP} -0.3) |" in other


def _two_livi_scores() -> tuple[pd.DataFrame, dict]:
    rows = [
        ScoreRow(m, "c", "probe_cell_type", "accuracy", acc, sd=0.01)
        for m, acc in (("mslivi-50", 0.91), ("livi-big", 0.95), ("pca", 0.80))
    ]
    rows += [
        ScoreRow(m, view, "association", "n_significant_pairs", n)
        for m, view, n in (("mslivi-50", "D", 7.0), ("livi-big", "D", 5.0), ("pca", "donor_means_rna", 9.0))
    ]
    meta = synthetic_meta()
    meta["models"] = {
        "mslivi-50": {"family": "mslivi", "status": "ok"},
        "livi-big": {"family": "livi", "status": "ok"},
        "pca": {"family": "pca", "status": "ok"},
    }
    return scores_frame(rows), meta


def test_baseline_is_the_livi_family_model(tmp_path):
    scores, meta = _two_livi_scores()
    md, _ = write_report(tmp_path / "auto", scores, meta)
    text = md.read_text()
    assert "beside the LIVI baseline (model `livi-big`)" in text
    assert "| livi-big (baseline) | c |" in text and "(baseline)" not in text.replace(
        "livi-big (baseline)", ""
    )
    assert f"| mslivi-50 | c | 0.91 ± 0.01 ({DOWN} -0.04) |" in text
    assert f"| pca | donor_means_rna | 9 ({UP} +4 vs D) |" in text
    assert "No `livi` model" not in text


def test_baseline_chosen_by_the_caller(tmp_path):
    scores, meta = _two_livi_scores()
    md, _ = write_report(tmp_path, scores, meta, baseline="pca", fdr=0.1)
    text = md.read_text()
    assert "beside the baseline (model `pca`)" in text and "LIVI baseline" not in text
    assert "| pca (baseline) | c |" in text
    assert f"| livi-big | c | 0.95 ± 0.01 ({UP} +0.15) |" in text
    assert "Factor–variant tests at FDR 10 %" in text and "FDR 5 %" not in text
    missing = write_report(tmp_path / "missing", scores, meta, baseline="nope")[0].read_text()
    assert "No `nope` model in this run" in missing and UP not in missing


def test_registered_section_is_one_function(tmp_path):
    from multilivi.eval.report import Heading, Paragraph, register_section, unregister_section

    def toy(inputs):
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().plot([0, 1], [0, 1])
        baseline = inputs.baseline or "none"
        return [Heading("Toy"), Paragraph(f"baseline {baseline}"), *inputs.figure("toy_fig", fig, "A toy.")]

    register_section("Toy", toy, after="Association")
    try:
        md, _ = write_report(tmp_path, synthetic_scores(), synthetic_meta())
    finally:
        unregister_section("Toy")
    text = md.read_text()
    assert text.index("## Association") < text.index("## Toy") < text.index("## Ground truth")
    assert "baseline livi" in text and (tmp_path / "figures" / "toy_fig.png").exists()


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def test_headless_screenshot(report, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium/google-chrome on PATH; HTML well-formedness is checked by the other tests")
    _, _, html = report
    shot = tmp_path / "report.png"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        html.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert float(pixels[..., :3].std()) > 0.05, "screenshot is blank"


def test_report_says_when_probes_and_umaps_subsampled(tmp_path):
    meta = synthetic_meta()
    meta["cell_caps"] = {"probes": 1000, "umap": 500}
    md = write_report(tmp_path / "capped", synthetic_scores(), meta, extra_figures())[0].read_text()
    probes, umap = md.split("## Probes")[1].split("\n## ")[0], md.split("## UMAP")[1].split("\n## ")[0]
    assert "fixed-seed subsample of 1,000 of the 1,200 cells" in probes
    assert "Each UMAP used a fixed-seed subsample of 500 of the 1,200 cells" in umap
    meta["cell_caps"] = {"probes": 20_000, "umap": 5_000}  # above the cohort's cells: all were used
    md = write_report(tmp_path / "all", synthetic_scores(), meta, extra_figures())[0].read_text()
    assert "subsample" not in md
