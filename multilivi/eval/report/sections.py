"""Report content: the built-in sections, one function each, registered in report order.

Each section reads :class:`ReportInputs` and returns blocks; columns, headers and directions
come from the metric registry, the prose and the choice of figures are written here.
"""

from __future__ import annotations

from collections.abc import Sequence

from multilivi.eval import figures
from multilivi.eval.figures import better, fdr_label
from multilivi.eval.report.baseline import is_livi
from multilivi.eval.report.blocks import Block, Cell, Heading, Paragraph, Table
from multilivi.eval.report.inputs import ReportInputs, claimed_figure, claimed_tasks, register_section
from multilivi.eval.report.summary import run_summary, title
from multilivi.eval.report.tables import Column, columns_of, direction_notes, present_columns

PROBE_TASKS = ("probe_cell_type", "probe_cell_subtype")
PER_CLASS_FIGURES = (  # (task, figure name, what, thesis figure)
    ("probe_cell_subtype", "per_class_subtype", "cell subtypes", "4b"),
    ("probe_cell_type", "per_class_cell_type", "cell types", "4c"),
)


def agreed_direction(columns: Sequence[Column]) -> str:
    """``"lower is better"`` (etc.) when every column's metric has that direction, else ``""``."""
    directions = {better(task, metric) for task, metric, _ in columns}
    return directions.pop() if len(directions) == 1 else ""


def with_direction(text: str, columns: Sequence[Column], sep: str = "; ") -> str:
    """``text; lower is better.`` when every column agrees on the direction, else ``text.``."""
    direction = agreed_direction(columns)
    return f"{text}{sep}{direction}." if direction else f"{text}."


def _owner(inputs: ReportInputs) -> str:
    """Whose values the baseline's are, for captions: ``LIVI's`` or ```name`'s``."""
    base = inputs.baseline
    return "LIVI's" if base is None or is_livi(base, inputs.meta) else f"`{base}`'s"


def _or(table: Table | None, missing: str) -> list[Block]:
    return [table] if table is not None else [Paragraph(missing)]


def reconstruction(inputs: ReportInputs) -> list[Block]:
    """Held-out NLL per cell and per feature, the RNA–protein trade-off, per cell type, models' own NLL."""
    tables = inputs.tables
    columns = columns_of("reconstruction")
    table = tables.table(columns, caption=with_direction("Held-out negative log-likelihood", columns))
    blocks: list[Block] = [
        Heading("Reconstruction"),
        *_or(table, "No model reported a reconstruction likelihood."),
    ]
    blocks += inputs.figure(
        "nll_tradeoff",
        figures.nll_tradeoff(inputs.scores, baseline=inputs.baseline),
        f"RNA vs protein held-out NLL per cell (thesis Fig. 4a); dashed line: {_owner(inputs)} RNA NLL.",
    )
    for modality, label in (("rna", "RNA"), ("prot", "protein")):
        name = f"nll_per_cell_{modality}"
        caption = with_direction(f"{label} NLL per cell by cell type", [("reconstruction", name, "")])
        table = tables.per_key("reconstruction", name, caption=caption)
        if table is not None:
            blocks += [Heading(f"{label} NLL per cell type", 3), table]
    own = tables.table(
        columns_of("own_likelihood"),
        caption="Held-out NLL per cell under each third-party model's own likelihood and estimator "
        "(totalVI: NB for RNA, NB background/foreground mixture for protein; scVI: ZINB; one posterior "
        "sample of z): not comparable with the harness's NLL above, which these models do not report.",
    )
    if own is not None:
        blocks += [Heading("Third-party models' own likelihood", 3), own]
    return blocks + tables.leftovers(["reconstruction", "own_likelihood"])


def subsample_note(inputs: ReportInputs, task: str, what: str) -> list[Block]:
    """A paragraph saying that ``task`` ran on a subsample, when the run's cell cap lay below the cells."""
    cap, n_cells = inputs.meta.get("cell_caps", {}).get(task), inputs.dataset.get("n_cells")
    if cap is None or n_cells is None or n_cells <= cap:
        return []
    return [Paragraph(f"{what} used a fixed-seed subsample of {cap:,} of the {n_cells:,} cells.")]


def probes(inputs: ReportInputs) -> list[Block]:
    """Cell-type and subtype probes, per-class accuracy figures, subtype versus donor accuracy."""
    tables, scores, baseline = inputs.tables, inputs.scores, inputs.baseline
    columns = columns_of(*PROBE_TASKS)
    table = tables.table(columns, caption=with_direction("Linear probes on each cell view", columns))
    blocks: list[Block] = [Heading("Probes"), *_or(table, "No cell-type or subtype probe ran.")]
    if table is not None:
        blocks += subsample_note(inputs, "probes", "Each probe (cell type, subtype and donor)")
    for task, name, what, thesis in PER_CLASS_FIGURES:
        fig = figures.per_class_accuracy(scores, task, baseline=baseline)
        blocks += inputs.figure(name, fig, f"Per-class accuracy for {what} (thesis Fig. {thesis}).")
        tables.shown_elsewhere(task, "class_accuracy")
    blocks += inputs.figure(
        "subtype_donor_accuracy",
        figures.subtype_and_donor_accuracy(scores, baseline=baseline),
        "Cell-subtype accuracy and donor accuracy (leakage) per cell view, mean ± sd (thesis Fig. 4e).",
    )
    return blocks + tables.leftovers(PROBE_TASKS)


def donor_leakage(inputs: ReportInputs) -> list[Block]:
    """Donor identity predicted from the cell-state views (lower is better)."""
    tables = inputs.tables
    columns = columns_of("probe_donor")
    cell_views = tables.views_at("cell")
    table = tables.table(columns, views=lambda model, view: (model, view) in cell_views)
    text = with_direction(
        "Donor identity predicted from the cell-state views. The cell state should describe the cell, "
        "not its donor",
        columns,
        sep=": ",
    )
    blocks: list[Block] = [Heading("Donor leakage"), Paragraph(text)]
    blocks += _or(table, "No donor probe ran on a cell-state view.")
    return blocks + tables.leftovers(["probe_donor"])


def association(inputs: ReportInputs) -> list[Block]:
    """Factor–variant association counts and λ_GC, the counts figure and the harness' QQ plots."""
    columns = columns_of("association")
    notes = direction_notes(present_columns(inputs.cmp, columns), lower=False)
    caption = "; ".join([f"Factor–variant tests at {fdr_label(inputs.fdr)}", *notes]) + "."
    table = inputs.tables.table(columns, caption=caption)
    blocks: list[Block] = [Heading("Association"), *_or(table, "No association test ran.")]
    blocks += inputs.figure(
        "association_counts",
        figures.association_counts(inputs.scores, baseline=inputs.baseline, fdr=inputs.fdr),
        "Significant factor–variant pairs and distinct variants per model view (thesis Fig. 4d).",
    )
    blocks += inputs.tables.leftovers(["association"])
    for name in inputs.extras("qq"):
        view = name.removeprefix("qq").lstrip("_") or "all"
        blocks += inputs.figure(
            name, inputs.extra_figures[name], f"QQ plot of association p-values ({view})."
        )
    return blocks


def _truth_note(dataset: dict) -> list[Block]:
    if dataset.get("semi_synthetic"):
        text = (
            "The genotypes of this cohort are simulated: power and FDR measure recovery of "
            "planted effects, not biology."
        )
        return [Paragraph(text, note=True)]
    if dataset.get("simulated_truth"):
        text = "This cohort is simulated: power and FDR measure recovery of the planted effects."
        return [Paragraph(text, note=True)]
    return []


def ground_truth(inputs: ReportInputs) -> list[Block]:
    """Power, empirical FDR, null λ and recovery of the simulated donor programs and cell state."""
    tables = inputs.tables
    columns = columns_of("truth")
    notes = direction_notes(present_columns(inputs.cmp, columns))
    truth = tables.table(columns, caption="; ".join(["Against the simulated truth", *notes]) + ".")
    per_program = tables.per_key(
        "truth",
        "factor_recovery",
        caption="Best |correlation| of any learnt donor factor with each true program.",
    )
    blocks: list[Block] = [truth] if truth else []
    if per_program is not None:
        blocks += [Heading("Donor-factor recovery per true program", 3), per_program]
    blocks += inputs.figure(
        "power_fdr",
        figures.power_fdr(inputs.scores, baseline=inputs.baseline, fdr=inputs.fdr),
        f"Power and empirical FDR; dashed line: nominal {fdr_label(inputs.fdr)}.",
    )
    blocks += tables.leftovers(["truth"])
    missing = [Paragraph("The cohort has no ground truth (or no truth task ran).")]
    return [Heading("Ground truth"), *_truth_note(inputs.dataset), *(blocks or missing)]


def umap(inputs: ReportInputs) -> list[Block]:
    """The harness' UMAP figures of the cell-state views."""
    blocks: list[Block] = [Heading("UMAP")]
    caption = "UMAP of the cell-state views, coloured by cell type (thesis Fig. 5)."
    for name in inputs.extras("umap"):
        blocks += inputs.figure(name, inputs.extra_figures[name], caption)
    if len(blocks) == 1:
        return [*blocks, Paragraph("No UMAP figure was made for this run.")]
    return blocks + subsample_note(inputs, "umap", "Each UMAP")


def other_figures(inputs: ReportInputs) -> list[Block]:
    """Harness figures no section shows, captioned by name."""
    others = [name for name in inputs.extra_figures if not claimed_figure(name)]
    if not others:
        return []
    blocks: list[Block] = [Heading("Other figures")]
    for name in others:
        blocks += inputs.figure(name, inputs.extra_figures[name], name)
    return blocks


def other_metrics(inputs: ReportInputs) -> list[Block]:
    """Metrics of tasks no section shows: declared ones with their header, undeclared ones by name."""
    claimed = claimed_tasks()
    blocks = inputs.tables.leftovers([t for t in dict.fromkeys(inputs.cmp["task"]) if t not in claimed])
    return [Heading("Other metrics"), *blocks] if blocks else []


def skipped_tasks(inputs: ReportInputs) -> list[Block]:
    """Every score row that is not ``ok``, with its status and reason."""
    failed = inputs.scores.loc[inputs.scores["status"] != "ok"]
    if failed.empty:
        return [Heading("Skipped tasks"), Paragraph("Every task ran.")]
    rows = tuple(
        (
            Cell(str(r.model)),
            Cell(str(r.view)),
            Cell(str(r.task)),
            Cell(str(r.metric)),
            Cell(str(r.status)),
            Cell(str(r.reason) or "—"),
        )
        for r in failed.itertuples(index=False)
    )
    return [Heading("Skipped tasks"), Table(("model", "view", "task", "metric", "status", "reason"), rows)]


register_section("Title", title)
register_section("Run summary", run_summary, tasks=("training",))
register_section("Reconstruction", reconstruction, tasks=("reconstruction", "own_likelihood"))
register_section("Probes", probes, tasks=PROBE_TASKS)
register_section("Donor leakage", donor_leakage, tasks=("probe_donor",))
register_section("Association", association, tasks=("association",), figures=("qq",))
register_section("Ground truth", ground_truth, tasks=("truth",))
register_section("UMAP", umap, figures=("umap",))
register_section("Other figures", other_figures)
register_section("Other metrics", other_metrics)
register_section("Skipped tasks", skipped_tasks)
