"""The task table: which metric functions run on which outputs of a model, as score rows.

Tasks read a :class:`ModelOutputs` (arrays and tables, whatever produced them) and an
:class:`EvalContext` (labels, held-out cells, genotypes and truth taken from the cohort). A task
whose inputs are missing yields a ``skipped`` row with the reason; an exception yields an
``error`` row, and the other tasks still run.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from multilivi.data import Cohort, Genotypes, Truth
from multilivi.eval.association import AssociationResult, lmm_scan
from multilivi.eval.phenotypes import donor_means
from multilivi.eval.probes import probe
from multilivi.eval.reconstruction import reconstruction_summary
from multilivi.eval.results import MODEL_LEVEL, ScoreRow, not_run, rows_from_metrics
from multilivi.eval.truth import association_truth, cell_state_recovery, factor_recovery

logger = logging.getLogger(__name__)

PROBE_LABELS = ("cell_type", "cell_subtype", "donor")


@dataclass
class ModelOutputs:
    """Everything the tasks need from one model or embedding, computed once and cached.

    Attributes
    ----------
    views
        Cell embeddings by name, each of shape (n_cells, d), for every cell of the cohort.
    donor_factors
        Donor phenotypes by name (e.g. ``D``, ``V``), each (n_donors, n_factors) indexed by donor
        name. Empty for an embedding without donor factors: donor means of its views are used.
    heldout_nll
        Per-cell negative log-likelihood (nats) of the held-out cells by modality, each of shape
        (n_heldout,); None when the model has no likelihood.
    fit_seconds
        Training time (NaN when not trained here).
    seconds_per_epoch
        Mean training time per epoch (NaN when not trained here).
    history
        The training history, one row per epoch (loss terms and stage); None when not trained here.
        It travels with the outputs, so a model read from the cache still has it.
    """

    views: dict[str, np.ndarray]
    donor_factors: dict[str, pd.DataFrame] = field(default_factory=dict)
    heldout_nll: dict[str, np.ndarray] | None = None
    fit_seconds: float = math.nan
    seconds_per_epoch: float = math.nan
    history: pd.DataFrame | None = None


@dataclass
class EvalContext:
    """Cohort-derived inputs and settings shared by every task."""

    labels: dict[str, np.ndarray | None]
    cell_donors: np.ndarray
    heldout_idx: np.ndarray
    n_features: dict[str, int]
    genotypes: Genotypes | None
    kinship: np.ndarray | None
    donor_covariates: pd.DataFrame | None
    truth: Truth | None
    fdr: float = 0.05
    engine: str = "batched"
    n_probe_seeds: int = 5
    probe_max_cells: int | None = 20_000
    seed: int = 0

    @classmethod
    def from_cohort(cls, cohort: Cohort, heldout_idx: np.ndarray, **settings: Any) -> EvalContext:
        labels = {column: cohort.labels(column) for column in PROBE_LABELS}
        return cls(
            labels=labels,
            cell_donors=cohort.labels("donor"),
            heldout_idx=np.asarray(heldout_idx),
            n_features={m: cohort.n_features(m) for m in cohort.modalities},
            genotypes=cohort.genotypes,
            kinship=None if cohort.kinship is None else cohort.kinship.to_numpy(),
            donor_covariates=cohort.donor_covariates,
            truth=cohort.truth,
            **settings,
        )


@dataclass
class TaskRun:
    """Rows of one model's tasks, plus artefacts for figures and per-model files."""

    rows: list[ScoreRow] = field(default_factory=list)
    associations: dict[str, AssociationResult] = field(default_factory=dict)
    phenotypes: dict[str, pd.DataFrame] | None = None  # donor phenotypes, computed once per model


def run_tasks(model: str, outputs: ModelOutputs, ctx: EvalContext, *, fail_fast: bool = False) -> TaskRun:
    """Run every task on one model's outputs."""
    run = TaskRun()
    for name, task in TASKS.items():
        try:
            task(model, outputs, ctx, run)
        except Exception as exc:  # a failing task is a row, not a crashed benchmark
            if fail_fast:
                raise
            logger.error("task %s failed for %s:\n%s", name, model, traceback.format_exc())
            run.rows.append(not_run(model, MODEL_LEVEL, name, f"{type(exc).__name__}: {exc}", status="error"))
    return run


# ---------------------------------------------------------------------------------------- tasks
def task_training(model: str, outputs: ModelOutputs, ctx: EvalContext, run: TaskRun) -> None:
    if math.isnan(outputs.fit_seconds):
        run.rows.append(
            not_run(
                model,
                MODEL_LEVEL,
                "training",
                "not trained here (a precomputed embedding or a fixed baseline)",
            )
        )
        return
    run.rows.append(
        ScoreRow(model, MODEL_LEVEL, "training", "fit_seconds", outputs.fit_seconds, higher_is_better=False)
    )
    if not math.isnan(outputs.seconds_per_epoch):
        run.rows.append(
            ScoreRow(
                model,
                MODEL_LEVEL,
                "training",
                "seconds_per_epoch",
                outputs.seconds_per_epoch,
                higher_is_better=False,
            )
        )


def task_reconstruction(model: str, outputs: ModelOutputs, ctx: EvalContext, run: TaskRun) -> None:
    if outputs.heldout_nll is None:
        run.rows.append(
            not_run(model, MODEL_LEVEL, "reconstruction", "no likelihood: an embedding has no held-out NLL")
        )
        return
    cell_type = ctx.labels["cell_type"]
    heldout_types = None if cell_type is None else cell_type[ctx.heldout_idx]
    results = reconstruction_summary(
        outputs.heldout_nll, {m: ctx.n_features[m] for m in outputs.heldout_nll}, heldout_types
    )
    for result in results:
        run.rows.append(
            ScoreRow(
                model,
                MODEL_LEVEL,
                "reconstruction",
                result.name,
                result.value,
                higher_is_better=False,
                status=result.status,
                reason=result.reason,
            )
        )
        for cell_type_name, value in result.details.get("per_cell_type", {}).items():
            run.rows.append(
                ScoreRow(
                    model,
                    MODEL_LEVEL,
                    "reconstruction",
                    f"{result.name}/{cell_type_name}",
                    value,
                    higher_is_better=False,
                )
            )


def task_probes(model: str, outputs: ModelOutputs, ctx: EvalContext, run: TaskRun) -> None:
    for view, embedding in outputs.views.items():
        for label in PROBE_LABELS:
            task = f"probe_{label}"
            labels = ctx.labels[label]
            if labels is None:
                run.rows.append(not_run(model, view, task, f"the cohort has no {label!r} annotation"))
                continue
            result = probe(
                embedding,
                labels,
                task=label,
                n_seeds=ctx.n_probe_seeds,
                max_cells=ctx.probe_max_cells,
                seed=ctx.seed,
            )
            higher = label != "donor"  # donor identity in a cell view is leakage: lower is better
            for metric in result.metrics():
                name = metric.name.removeprefix(f"{label}_")
                sd = float(metric.details.get("sd", math.nan))
                run.rows.append(
                    ScoreRow(model, view, task, name, metric.value, sd, higher, metric.status, metric.reason)
                )
                if name == "accuracy" and label != "donor":  # one class per donor would swamp the table
                    for cls, value in metric.details.get("per_class_accuracy", {}).items():
                        run.rows.append(
                            ScoreRow(
                                model, view, task, f"class_accuracy/{cls}", value, higher_is_better=higher
                            )
                        )


def donor_phenotypes(outputs: ModelOutputs, ctx: EvalContext, run: TaskRun) -> dict[str, pd.DataFrame]:
    """The model's donor factors, or per-donor (and per cell type) means of each of its views (kept in ``run``)."""
    if run.phenotypes is None:
        run.phenotypes = outputs.donor_factors or _view_means(outputs, ctx)
    return run.phenotypes


def _view_means(outputs: ModelOutputs, ctx: EvalContext) -> dict[str, pd.DataFrame]:
    cell_type = ctx.labels["cell_type"]
    return {
        f"donor_means_{view}" if len(outputs.views) > 1 else "donor_means": donor_means(
            embedding, ctx.cell_donors, cell_type=cell_type
        )
        for view, embedding in outputs.views.items()
    }


def task_association(model: str, outputs: ModelOutputs, ctx: EvalContext, run: TaskRun) -> None:
    phenotypes = donor_phenotypes(outputs, ctx, run)
    if ctx.genotypes is None:
        for view in phenotypes:
            run.rows.append(not_run(model, view, "association", "the cohort has no genotypes"))
        return
    for view, factors in phenotypes.items():
        if factors.shape[1] == 0:
            run.rows.append(not_run(model, view, "association", "no factors to test"))
            continue
        result = lmm_scan(
            factors,
            ctx.genotypes.dosage,
            donors=list(ctx.genotypes.donors),
            variant_ids=list(ctx.genotypes.variant_ids),
            kinship=ctx.kinship,
            covariates=ctx.donor_covariates,
            engine=ctx.engine if ctx.kinship is not None else "ols",
        )
        run.associations[view] = result
        run.rows += rows_from_metrics(result.summary(ctx.fdr), model=model, view=view, task="association")
        run.rows.append(ScoreRow(model, view, "association", "n_tests", float(result.n_tests)))
        run.rows.append(
            ScoreRow(
                model,
                view,
                "association",
                "n_monomorphic_skipped",
                float(result.n_monomorphic_skipped),
                higher_is_better=False,
            )
        )


def task_truth(model: str, outputs: ModelOutputs, ctx: EvalContext, run: TaskRun) -> None:
    if ctx.truth is None:
        run.rows.append(
            not_run(model, MODEL_LEVEL, "truth", "the cohort has no ground truth (not simulated)")
        )
        return
    truth = ctx.truth
    for view, factors in donor_phenotypes(outputs, ctx, run).items():
        results = factor_recovery(true_factors_for(view, truth), factors)
        association = run.associations.get(view)
        if association is not None:
            results += association_truth(association, truth.causal_variants, truth.null_variants, fdr=ctx.fdr)
        run.rows += rows_from_metrics(results, model=model, view=view, task="truth")
        for result in results:
            for program, value in result.details.get("per_program", {}).items():
                run.rows.append(ScoreRow(model, view, "truth", f"{result.name}/{program}", value))
    for view, embedding in outputs.views.items():
        results = cell_state_recovery(truth.cell_state, embedding, seed=ctx.seed)
        run.rows += rows_from_metrics(results, model=model, view=view, task="truth")


def true_factors_for(view: str, truth: Truth) -> pd.DataFrame:
    """The true donor factors a learned set should recover: D programs for ``D``, persistent for ``V``, else both."""
    if view == "D" or truth.persistent_factors.shape[1] == 0:
        return truth.donor_factors
    if view == "V":
        return truth.persistent_factors
    return pd.concat([truth.donor_factors, truth.persistent_factors], axis=1)


TaskFn = Callable[[str, ModelOutputs, EvalContext, TaskRun], None]
TASKS: Mapping[str, TaskFn] = {
    "training": task_training,
    "reconstruction": task_reconstruction,
    "probes": task_probes,
    "association": task_association,  # before truth: truth reads its p-values
    "truth": task_truth,
}
