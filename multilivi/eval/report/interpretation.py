"""Report sections of what a LIVI user reads: hits and loci, gene programs, programs against the truth.

They read the per-model task artefacts (:attr:`ReportInputs.artefacts`: ``hits``, ``loci``,
``associations``, ``programs``, ``program_truth``; see :mod:`multilivi.eval.programs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from multilivi.eval import locus_plots
from multilivi.eval.fdr import QQData
from multilivi.eval.programs import FILE_ARTEFACTS, ProgramTruth, top_genes
from multilivi.eval.report import sections as _anchors  # noqa: F401  (registers the sections placed after)
from multilivi.eval.report.blocks import Block, Cell, Heading, Paragraph, Table
from multilivi.eval.report.formatting import format_number
from multilivi.eval.report.inputs import ReportInputs, register_section
from multilivi.eval.report.tables import columns_of

TOP_HITS = 20  # hits shown per model
PROGRAM_GENES = 10  # top genes shown per program
MAX_PROGRAMS = 12  # programs shown per model when no factor has a hit


def frame_table(frame: pd.DataFrame, columns: Sequence[str], caption: str = "") -> Table:
    """A report table of ``frame[columns]``: floats formatted, numbers right-aligned."""
    rows = []
    for record in frame.loc[:, list(columns)].itertuples(index=False):
        cells = []
        for value in record:
            if isinstance(value, (float, np.floating)):
                text = "—" if np.isnan(value) else format_number(float(value))
                cells.append(Cell(text, numeric=True))
            elif isinstance(value, (int, np.integer)):
                cells.append(Cell(str(value), numeric=True))
            else:
                cells.append(Cell(str(value)))
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), caption)


def _artefact(inputs: ReportInputs, name: str) -> dict:
    """Model → its artefact ``name``, for the models that have one."""
    found = {m: a.get(name) for m, a in inputs.artefacts.items()}
    return {m: a for m, a in found.items() if a is not None}


# ------------------------------------------------------------------------------------------- hits
def _hit_blocks(model: str, hits: pd.DataFrame, inputs: ReportInputs) -> list[Block]:
    """Top hits of one model and its Manhattan plot."""
    blocks: list[Block] = [Heading(f"Hits: {model}", 3)]
    where = f"`outputs/{model}/{FILE_ARTEFACTS['hits']}`"
    if hits.empty:
        blocks.append(Paragraph(f"No factor–variant pair is significant at q ≤ {inputs.fdr:g}."))
    else:
        caption = f"Top {min(TOP_HITS, len(hits))} of {len(hits)} hits (q ≤ {inputs.fdr:g}); all in {where}."
        columns = ["factor", "variant", "locus", "beta", "se", "pvalue", "qvalue", "cell_state", "top_genes"]
        blocks.append(frame_table(hits.head(TOP_HITS), ["view", *columns], caption))
    loci = inputs.artefacts.get(model, {}).get("loci")
    if loci is not None:
        fig = locus_plots.manhattan(loci, title=model, fdr=inputs.fdr)
        caption = f"Manhattan plot of {model}: minimum p over factors per variant; diamonds are hits."
        blocks += inputs.figure(f"manhattan_{model}", fig, caption)
    return blocks


def _scan_view(view: str) -> str:
    return "donor_means" if view.startswith("donor_means") else view


def _pvalue_blocks(inputs: ReportInputs) -> list[Block]:
    """P-value histograms and banded QQ plots per view, models side by side."""
    by_view: dict[str, dict[str, np.ndarray | QQData]] = {}
    for model, scans in _artefact(inputs, "associations").items():
        for view, result in scans.items():
            by_view.setdefault(_scan_view(view), {})[model] = result.pvalue_distribution()
    blocks: list[Block] = []
    for view, pvalues in by_view.items():
        blocks += inputs.figure(
            f"phist_{view}", locus_plots.pvalue_histograms(pvalues), f"P-value histograms ({view})."
        )
        blocks += inputs.figure(
            f"qqband_{view}", locus_plots.qq_banded(pvalues), f"QQ plot with the 95 % null band ({view})."
        )
    return blocks


def hits_section(inputs: ReportInputs) -> list[Block]:
    """Per model the top hits with their cell state and genes, the Manhattan plot; p-value figures."""
    blocks: list[Block] = [Heading("Hits and loci")]
    for model, hits in _artefact(inputs, "hits").items():
        blocks += _hit_blocks(model, hits, inputs)
    blocks += _pvalue_blocks(inputs)
    return blocks if len(blocks) > 1 else [*blocks, Paragraph("No association scan ran in this run.")]


# --------------------------------------------------------------------------------------- programs
def _program_rows(programs: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """One row per factor: its state, σ(A), cell types, subtypes, top genes and proteins."""
    first = programs.drop_duplicates("factor").set_index("factor")
    rows = []
    for factor in factors:
        prot = programs.loc[(programs["factor"] == factor) & (programs["modality"] == "prot"), "feature"]
        rows.append(
            {
                "factor": factor,
                **first.loc[factor, ["state", "state_weight", "cell_types", "cell_subtypes"]].to_dict(),
                "top_genes": ", ".join(top_genes(programs, factor, PROGRAM_GENES)),
                "top_proteins": ", ".join(prot[:3]) or "—",
            }
        )
    return pd.DataFrame(rows)


def programs_section(inputs: ReportInputs) -> list[Block]:
    """The programs of the factors with hits (else the first factors) of every model with programs."""
    blocks: list[Block] = [Heading("Programs")]
    hits = _artefact(inputs, "hits")
    for model, programs in _artefact(inputs, "programs").items():
        factors = list(dict.fromkeys(programs["factor"]))
        with_hits = [f for f in dict.fromkeys(hits.get(model, pd.DataFrame(columns=["factor"]))["factor"])]
        shown = [f for f in factors if f in with_hits] or factors[:MAX_PROGRAMS]
        what = "factors with hits" if set(shown) <= set(with_hits) and shown else "first factors (no hits)"
        caption = (
            f"{model}: {what}; state = dominant cell-state dimension of σ(A), cell types where it is high; "
            f"all programs in `outputs/{model}/{FILE_ARTEFACTS['programs']}`."
        )
        columns = [
            "factor",
            "state",
            "state_weight",
            "cell_types",
            "cell_subtypes",
            "top_genes",
            "top_proteins",
        ]
        blocks.append(frame_table(_program_rows(programs, shown), columns, caption))
    if len(blocks) == 1:
        blocks.append(Paragraph("No model of this run has D x C loadings and σ(A) (no programs)."))
    return blocks


def program_truth_section(inputs: ReportInputs) -> list[Block]:
    """Matched true programs: overlap of top genes, causal variant found, assigned vs true cell state."""
    blocks: list[Block] = [Heading("Programs vs truth")]
    table = inputs.tables.table(
        columns_of("program_truth"), caption="Means over the true programs matched one-to-one (Hungarian)."
    )
    blocks += [table] if table is not None else []
    per_key = inputs.tables.per_key(
        "program_truth", "precision_at_25", caption="Precision@25 per true program."
    )
    blocks += [per_key] if per_key is not None else []
    for model, truth in _artefact(inputs, "program_truth").items():
        blocks += _truth_blocks(model, truth, inputs)
    blocks += inputs.tables.leftovers(["program_truth"])
    return blocks if len(blocks) > 1 else [*blocks, Paragraph("No program was scored against a truth.")]


def _truth_blocks(model: str, truth: ProgramTruth, inputs: ReportInputs) -> list[Block]:
    columns = ["program", "factor", "abs_r", "precision", "jaccard", "causal_found", "state_r"]
    columns += ["true_cell_types", "cell_types"]
    caption = (
        f"{model}: each true program, its matched D factor, and the assigned cell state beside the true one."
    )
    blocks: list[Block] = [
        Heading(f"Programs vs truth: {model}", 3),
        frame_table(truth.table, columns, caption),
    ]
    matched = dict(zip(truth.table["program"], truth.table["factor"]))
    fig = locus_plots.correlation_heatmap(truth.abs_r, matched, title=model)
    return blocks + inputs.figure(
        f"program_r_{model}", fig, f"|r| of true programs × learned D factors ({model}); boxes: the matching."
    )


register_section("Hits and loci", hits_section, tasks=("hits", "loci"), after="Association")
register_section("Programs", programs_section, tasks=("programs",), after="Ground truth")
register_section("Programs vs truth", program_truth_section, tasks=("program_truth",), after="Programs")
