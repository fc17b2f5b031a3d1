"""What a LIVI user reads off a model: gene programs, their cell states, hits and loci, and the truth.

Tasks (registered when :mod:`multilivi.eval` is imported):

``programs``
    Per D x C factor, its top features by decoder loading (the BatchNorm scale is folded into the
    loadings, see :attr:`ModelOutputs.loadings`), its dominant cell-state dimension through σ(A) and
    the cell types / subtypes in which that state is high. Provides ``programs``: a long table.
``loci``
    Per scanned view and variant, chromosome, position, the minimum p over factors and whether it is
    a hit: what a Manhattan plot draws. Provides ``loci``.
``hits``
    The significant factor–variant pairs with their locus, effect, SE, p, q and the factor's cell
    state and top genes (donor means have no programs: those columns stay empty). Provides ``hits``.
``program_truth``
    On a simulated cohort, each true D x C program matched one-to-one to a learned D factor
    (Hungarian assignment on |r| of donor factors) and scored: precision@25 and Jaccard of the top-25
    genes against the program's genes, whether its causal variant is a hit of the matched factor,
    and how well the factor's cell weight tracks the program's true cell state.

Artefacts named in :data:`FILE_ARTEFACTS` are written to ``outputs/<model>/`` by the harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from multilivi.atomic import atomic_write
from multilivi.eval.association import AssociationResult
from multilivi.eval.metrics import Metric, register
from multilivi.eval.outputs import EvalContext, ModelOutputs
from multilivi.eval.records import MetricResult
from multilivi.eval.results import MODEL_LEVEL
from multilivi.eval.task_runner import NotRun, Score, Task, TaskResult, register_task
from multilivi.eval.truth import match_factors

FILE_ARTEFACTS = {"hits": "hits.parquet", "programs": "programs.parquet"}
"""Artefact name → file name under ``outputs/<model>/`` for task artefacts that are DataFrames."""
TOP_FEATURES = {"rna": 50, "prot": 10}  # features kept per factor and modality in the programs table
TOP_K = 25  # top genes compared with a true program
HIT_GENES = 5  # top genes shown beside each hit
DONOR_VIEW = "D"
PROGRAM_COLUMNS = ("factor", "rank", "feature", "modality", "loading", "state", "state_weight")
PROGRAM_COLUMNS += ("cell_types", "cell_subtypes")
HIT_COLUMNS = ("view", "factor", "variant", "locus", "beta", "se", "pvalue", "qvalue", "cell_state")
HIT_COLUMNS += ("top_genes",)
NO_PROGRAMS = "no D x C loadings or σ(A): an embedding without donor factors has no gene programs"

_PROPORTION = {"lower": 0.0, "upper": 1.0}
for _name, _header in (
    ("matched_r", "matched |r|"),
    (f"precision_at_{TOP_K}", f"precision@{TOP_K}"),
    (f"jaccard_at_{TOP_K}", f"Jaccard@{TOP_K}"),
    ("causal_found", "causal variant found"),
):
    register(Metric("program_truth", _name, _header, "max", level="donor", keyed=True, **_PROPORTION))
register(Metric("program_truth", "state_r", "cell-state r", "max", level="donor", keyed=True, upper=1.0))


# ------------------------------------------------------------------------------------ cell states
def cell_states(outputs: ModelOutputs) -> pd.DataFrame | None:
    """(n_cells, n_state_dims) cell-state weights: per-block softmax of the view σ(A)'s rows name.

    The view is the first one as wide as σ(A) has rows; blocks are column-name prefixes (``c``,
    ``s_rna``, ...), as the decoder sees them. None when the outputs have no σ(A).
    """
    if outputs.assignment is None:
        return None
    names = list(outputs.assignment.index)
    view = next((v for v in outputs.views.values() if v.shape[1] == len(names)), None)
    if view is None:
        raise ValueError(f"no view has the {len(names)} columns of σ(A) ({names[:3]}...)")
    states = np.empty(view.shape, dtype=np.float64)
    blocks = np.array([n.rsplit("_", 1)[0] for n in names])
    for block in dict.fromkeys(blocks):
        cols = blocks == block
        z = view[:, cols] - view[:, cols].max(axis=1, keepdims=True)
        states[:, cols] = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return pd.DataFrame(states, columns=names)


def high_labels(weights: NDArray[np.floating], labels: NDArray | None, *, top: int = 3) -> str:
    """Labels whose mean ``weights`` (n_cells,) is at least half the largest, best first (at most ``top``)."""
    if labels is None:
        return ""
    means = pd.Series(np.asarray(weights, dtype=float)).groupby(np.asarray(labels).astype(str)).mean()
    means = means.sort_values(ascending=False, kind="stable")
    return ", ".join(means.index[means >= 0.5 * means.iloc[0]][:top])


# --------------------------------------------------------------------------------------- programs
def program_table(outputs: ModelOutputs, labels: Mapping[str, NDArray | None]) -> pd.DataFrame:
    """The long programs table: one row per (factor, modality, rank) of the top features.

    Columns :data:`PROGRAM_COLUMNS`: ``rank`` 1 = largest |loading| (the signed loading is kept),
    ``state`` the dominant cell-state dimension of σ(A) and ``state_weight`` its σ(A) value,
    ``cell_types`` / ``cell_subtypes`` where that state is high (:func:`high_labels`).
    """
    assert outputs.loadings is not None and outputs.assignment is not None
    states = cell_states(outputs)
    frames = []
    for factor in outputs.assignment.columns:
        dominant = str(outputs.assignment[factor].idxmax())
        per_factor = {
            "state": dominant,
            "state_weight": float(outputs.assignment.loc[dominant, factor]),
            "cell_types": high_labels(states[dominant], labels.get("cell_type")),
            "cell_subtypes": high_labels(states[dominant], labels.get("cell_subtype")),
        }
        for modality, table in outputs.loadings.items():
            column, n_top = table[factor], TOP_FEATURES.get(modality, 10)
            top = column.abs().sort_values(ascending=False, kind="stable").index[:n_top]
            frames.append(
                pd.DataFrame(
                    {
                        "factor": factor,
                        "rank": np.arange(1, len(top) + 1),
                        "feature": top.astype(str),
                        "modality": modality,
                        "loading": column.loc[top].to_numpy(float),
                        **per_factor,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True).loc[:, list(PROGRAM_COLUMNS)]


def task_programs(outputs: ModelOutputs, ctx: EvalContext) -> TaskResult:
    """Top features, dominant state and cell types of every D x C factor; metric-free."""
    if outputs.loadings is None or outputs.assignment is None:
        return TaskResult([NotRun(MODEL_LEVEL, NO_PROGRAMS)])
    return TaskResult(artefact=program_table(outputs, ctx.labels))


def top_genes(programs: pd.DataFrame | None, factor: str, k: int) -> list[str]:
    """The ``k`` top RNA features of ``factor`` in a programs table ([] when there is none)."""
    if programs is None:
        return []
    rows = programs.loc[(programs["factor"] == factor) & (programs["modality"] == "rna")]
    return list(rows.sort_values("rank")["feature"][:k])


# ------------------------------------------------------------------------------------ loci & hits
def min_pvalues(result: AssociationResult) -> NDArray[np.float64]:
    """(n_variants,) minimum p over factors; NaN for untested variants."""
    return result.min_pvalues()


def task_loci(
    outputs: ModelOutputs, ctx: EvalContext, associations: dict[str, AssociationResult]
) -> TaskResult:
    """Per view and variant: chrom, pos, minimum p over factors and hit flag (what a Manhattan plot draws).

    ``view``, ``variant`` and ``chrom`` are categoricals over the genotypes' variant table, so a
    10⁶-variant scan costs ≈ 23 B per view and variant, not a Python string per cell.
    """
    if ctx.genotypes is None or not associations:
        return TaskResult([NotRun(MODEL_LEVEL, "no association scan ran (no genotypes or no factors)")])
    table = ctx.genotypes.variants
    ids = pd.Index(table["id"])
    chrom = pd.Categorical(table["chrom"].astype(str))
    pos = table["pos"].to_numpy()
    frames = []
    for view, result in associations.items():
        rows = ids.get_indexer(pd.Index(result.variants))  # (n_tested,) rows of the variant table
        hits = ids.get_indexer(pd.Index(result.hits(ctx.fdr)["variant"]))
        frames.append(
            pd.DataFrame(
                {
                    "view": pd.Categorical.from_codes(np.zeros(rows.size, np.int8), categories=[view]),
                    "variant": pd.Categorical.from_codes(rows, dtype=pd.CategoricalDtype(ids)),
                    "chrom": pd.Categorical.from_codes(chrom.codes[rows], dtype=chrom.dtype),
                    "pos": pos[rows],
                    "min_p": min_pvalues(result),
                    "hit": np.isin(rows, hits),
                }
            )
        )
    loci = pd.concat(frames, ignore_index=True)
    loci["view"] = loci["view"].astype("category")  # views with different names: one categorical
    return TaskResult(artefact=loci)


def hit_table(
    associations: Mapping[str, AssociationResult],
    variants: pd.DataFrame,
    programs: pd.DataFrame | None,
    *,
    fdr: float,
) -> pd.DataFrame:
    """Every significant pair: view, factor, variant, locus, β, SE, p, q, cell state and top genes."""
    positions = variants.set_index("id")
    states = {} if programs is None else programs.drop_duplicates("factor").set_index("factor")["cell_types"]
    frames = []
    for view, result in associations.items():
        hits = result.hits(fdr)
        hits.insert(0, "view", view)
        where = positions.loc[hits["variant"]]
        hits.insert(3, "locus", [f"{c}:{p}" for c, p in zip(where["chrom"], where["pos"])])
        hits["cell_state"] = [str(states.get(f, "")) for f in hits["factor"]]
        hits["top_genes"] = [", ".join(top_genes(programs, f, HIT_GENES)) for f in hits["factor"]]
        frames.append(hits)
    columns = list(HIT_COLUMNS)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return table.sort_values("pvalue", kind="stable").reset_index(drop=True).loc[:, columns]


def task_hits(
    outputs: ModelOutputs,
    ctx: EvalContext,
    associations: dict[str, AssociationResult],
    programs: pd.DataFrame | None,
) -> TaskResult:
    """The hits table of every scanned view (donor factors or, for an embedding, donor means)."""
    if ctx.genotypes is None or not associations:
        return TaskResult([NotRun(MODEL_LEVEL, "no association scan ran (no genotypes or no factors)")])
    return TaskResult(artefact=hit_table(associations, ctx.genotypes.variants, programs, fdr=ctx.fdr))


# ------------------------------------------------------------------------------------------ truth
@dataclass
class ProgramTruth:
    """The ``program_truth`` artefact.

    Attributes
    ----------
    table
        One row per true program: ``program, factor, abs_r, precision, jaccard, causal_found,
        state_r, true_cell_types, cell_types``.
    abs_r
        (true programs, learned D factors) |Pearson r| of the donor factors.
    """

    table: pd.DataFrame
    abs_r: pd.DataFrame


def gene_overlap(top: list[str], genes: set[str]) -> tuple[float, float]:
    """(precision, Jaccard) of a top-k gene list against a true gene set."""
    found = len(set(top) & genes)
    return found / max(len(top), 1), found / max(len(set(top) | genes), 1)


def _program_row(program: str, factor: str, ctx: EvalContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """One row of :attr:`ProgramTruth.table` (``inputs``: programs, hits, weights, abs_r)."""
    truth = ctx.truth
    true_genes = set(truth.program_loadings.index[truth.program_loadings[program] != 0].astype(str))
    precision, jaccard = gene_overlap(top_genes(inputs["programs"], factor, TOP_K), true_genes)
    causal = set(truth.causal.loc[truth.causal["factor"] == program, "variant"])
    hits = inputs["hits"]
    found = bool(causal & set(hits.loc[hits["factor"] == factor, "variant"]))
    state = truth.program_states[list(truth.donor_factors.columns).index(program)]
    true_state = truth.cell_state[:, int(state)]
    weight = inputs["weights"][factor].to_numpy()
    state_r = float(np.corrcoef(weight, true_state)[0, 1]) if weight.std() > 0 else float("nan")
    dominant = inputs["programs"].drop_duplicates("factor").set_index("factor")
    return {
        "program": program,
        "factor": factor,
        "abs_r": float(inputs["abs_r"].loc[program, factor]),
        "precision": precision,
        "jaccard": jaccard,
        "causal_found": float(found) if causal else float("nan"),
        "state_r": state_r,
        "true_cell_types": high_labels(true_state, ctx.labels.get("cell_type")),
        "cell_types": dominant.loc[factor, "cell_types"],
    }


def _truth_reason(outputs: ModelOutputs, ctx: EvalContext, programs: pd.DataFrame | None) -> str:
    """Why ``program_truth`` cannot run ('' when it can)."""
    if ctx.truth is None:
        return "the cohort has no ground truth (not simulated)"
    if ctx.truth.program_loadings is None or ctx.truth.donor_factors.shape[1] == 0:
        return "the truth records no D x C program genes"
    if programs is None or DONOR_VIEW not in outputs.donor_factors:
        return NO_PROGRAMS
    return ""


def task_program_truth(
    outputs: ModelOutputs,
    ctx: EvalContext,
    programs: pd.DataFrame | None,
    associations: dict[str, AssociationResult],
) -> TaskResult:
    """Each true program matched to a learned D factor, scored per program (keyed rows)."""
    reason = _truth_reason(outputs, ctx, programs)
    if reason:
        return TaskResult([NotRun(DONOR_VIEW, reason)])
    matched, abs_r = match_factors(ctx.truth.donor_factors, outputs.donor_factors[DONOR_VIEW])
    states = cell_states(outputs)
    weights = pd.DataFrame(states.to_numpy() @ outputs.assignment.loc[states.columns].to_numpy())
    weights.columns = outputs.assignment.columns
    scan = associations.get(DONOR_VIEW)
    inputs = {
        "programs": programs,
        "hits": scan.hits(ctx.fdr) if scan is not None else pd.DataFrame(columns=["factor", "variant"]),
        "weights": weights,
        "abs_r": abs_r,
    }
    table = pd.DataFrame([_program_row(p, f, ctx, inputs) for p, f in matched.items()])
    metrics = {"matched_r": "abs_r", f"precision_at_{TOP_K}": "precision", f"jaccard_at_{TOP_K}": "jaccard"}
    metrics |= {"causal_found": "causal_found", "state_r": "state_r"}
    scores: list[Score | NotRun] = []
    for name, column in metrics.items():
        scores.append(Score(DONOR_VIEW, MetricResult(name, float(table[column].mean()))))
        scores += [
            Score(DONOR_VIEW, MetricResult(f"{name}/{p}", v)) for p, v in zip(table["program"], table[column])
        ]
    return TaskResult(scores, artefact=ProgramTruth(table, abs_r))


# ---------------------------------------------------------------------------------------- writing
def write_file_artefacts(folder: Path, artefacts: Mapping[str, Any]) -> list[Path]:
    """Write every DataFrame artefact named in :data:`FILE_ARTEFACTS` into ``folder``; the paths written."""
    written = []
    for name, file_name in FILE_ARTEFACTS.items():
        table = artefacts.get(name)
        if isinstance(table, pd.DataFrame):
            path = Path(folder) / file_name
            atomic_write(path, lambda tmp, t=table: t.to_parquet(tmp, index=False))
            written.append(path)
    return written


register_task(Task("programs", task_programs, provides="programs"))
register_task(Task("loci", task_loci, needs=("associations",), provides="loci"))
register_task(Task("hits", task_hits, needs=("associations", "programs"), provides="hits"))
register_task(
    Task("program_truth", task_program_truth, needs=("programs", "associations"), provides="program_truth")
)
