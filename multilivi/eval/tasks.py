"""The built-in tasks and the metrics they report: which metric functions run on which outputs of a model.

Each task reads a :class:`ModelOutputs` (arrays and tables, whatever produced them), the cohort's
:class:`EvalContext` and the artefacts it declares in ``needs``; it returns its scores and, when it
declares ``provides``, an artefact for later tasks. Inputs a task lacks give ``skipped`` rows with
the reason. Each metric is declared once, here, beside the task that reports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from multilivi.data import Truth
from multilivi.eval.association import (
    AssociationResult,
    lmm_scan,
    permuted_null_scan,
    permuted_null_summary,
    string_index,
)
from multilivi.eval.metrics import Metric, register
from multilivi.eval.outputs import PROBE_LABELS, EvalContext, ModelOutputs
from multilivi.eval.phenotypes import donor_means
from multilivi.eval.probes import probe
from multilivi.eval.reconstruction import reconstruction_summary
from multilivi.eval.records import MetricResult
from multilivi.eval.results import MODEL_LEVEL
from multilivi.eval.task_runner import NotRun, Score, Task, TaskResult, register_task
from multilivi.eval.truth import (
    association_truth,
    cell_state_recovery,
    factor_recovery,
    matched_recovery,
    power_any_view,
)

PROPORTION = {"lower": 0.0, "upper": 1.0}
_V_LAMBDA = (
    "λ of the 2-3 persistent factors is the inflation of two or three traits, heavy-tailed over seeds "
    "(CI cohort, livi: 1.275 at fresh seed 3 against 0.80-1.09 at 20 baseline seeds); λ of D is gated"
)


# ------------------------------------------------------------------------------------- training
register(Metric("training", "fit_seconds", "fit seconds", "min", unit="s", lower=0.0))
register(Metric("training", "seconds_per_epoch", "seconds / epoch", "min", unit="s", lower=0.0))


def task_training(outputs: ModelOutputs, ctx: EvalContext) -> TaskResult:
    """Training time, when the model was trained here."""
    if math.isnan(outputs.fit_seconds):
        return TaskResult(
            [NotRun(MODEL_LEVEL, "not trained here (a precomputed embedding or a fixed baseline)")]
        )
    scores = [Score(MODEL_LEVEL, MetricResult("fit_seconds", outputs.fit_seconds))]
    if not math.isnan(outputs.seconds_per_epoch):
        scores.append(Score(MODEL_LEVEL, MetricResult("seconds_per_epoch", outputs.seconds_per_epoch)))
    return TaskResult(scores)


# ------------------------------------------------------------------------------- reconstruction
_MODALITIES = (("rna", "RNA"), ("prot", "protein"))
for _per, _gated in (("cell", True), ("feature", False)):
    for _modality, _label in _MODALITIES:
        register(
            Metric(
                "reconstruction",
                f"nll_per_{_per}_{_modality}",
                f"{_label} NLL / {_per}",
                "min",
                unit="nats",
                lower=0.0,
                keyed=True,
                gated=_gated,
            )
        )


def task_reconstruction(outputs: ModelOutputs, ctx: EvalContext) -> TaskResult:
    """Held-out NLL per cell and per feature by modality, and per cell type (keyed rows)."""
    if outputs.heldout_nll is None:
        reason = (
            "no likelihood: an embedding has no held-out NLL"
            if outputs.own_nll is None
            else "the model reports only its own likelihood (task own_likelihood), not this NLL"
        )
        return TaskResult([NotRun(MODEL_LEVEL, reason)])
    cell_type = ctx.labels["cell_type"]
    heldout_types = None if cell_type is None else cell_type[ctx.heldout_idx]
    n_features = {m: ctx.n_features[m] for m in outputs.heldout_nll}
    scores = []
    for result in reconstruction_summary(outputs.heldout_nll, n_features, heldout_types):
        scores.append(Score(MODEL_LEVEL, result))
        for cell_type_name, value in result.details.get("per_cell_type", {}).items():
            scores.append(Score(MODEL_LEVEL, MetricResult(f"{result.name}/{cell_type_name}", value)))
    return TaskResult(scores)


# a third-party model's own held-out likelihood (totalVI's reconstruction error): another likelihood
# and estimator than the NLL above, so never compared with it nor gated
for _modality, _label in _MODALITIES:
    register(
        Metric(
            "own_likelihood",
            f"nll_per_cell_{_modality}",
            f"{_label} NLL / cell (own likelihood)",
            "min",
            unit="nats",
            lower=0.0,
            compared=False,
        )
    )


def task_own_likelihood(outputs: ModelOutputs, ctx: EvalContext) -> TaskResult:
    """Mean held-out NLL per cell under the model's own likelihood; no rows for a model without one."""
    if outputs.own_nll is None:
        return TaskResult()
    scores = [
        Score(MODEL_LEVEL, MetricResult(f"nll_per_cell_{modality}", float(np.mean(values))))
        for modality, values in outputs.own_nll.items()
    ]
    return TaskResult(scores)


# ---------------------------------------------------------------------------------------- probes
for _task, _what in (("probe_cell_type", "cell type"), ("probe_cell_subtype", "subtype")):
    register(Metric(_task, "accuracy", f"{_what} acc.", "max", level="cell", gated=True, **PROPORTION))
    register(
        Metric(
            _task, "balanced_accuracy", f"{_what} bal. acc.", "max", level="cell", gated=True, **PROPORTION
        )
    )
    register(
        Metric(_task, "class_accuracy", f"{_what} class acc.", "max", level="cell", keyed=True, **PROPORTION)
    )
# donor identity in a cell view is leakage: lower is better
register(Metric("probe_donor", "accuracy", "donor acc.", "min", level="cell", gated=True, **PROPORTION))
register(Metric("probe_donor", "balanced_accuracy", "donor bal. acc.", "min", level="cell", **PROPORTION))


def task_probes(outputs: ModelOutputs, ctx: EvalContext) -> TaskResult:
    """Linear probes of cell type, subtype and donor on every view; per-class accuracy except for donors."""
    scores: list[Score | NotRun] = []
    for view, embedding in outputs.views.items():
        for label in PROBE_LABELS:
            task = f"probe_{label}"
            labels = ctx.labels[label]
            if labels is None:
                scores.append(NotRun(view, f"the cohort has no {label!r} annotation", task))
                continue
            result = probe(
                embedding,
                labels,
                task=label,
                n_seeds=ctx.n_probe_seeds,
                max_cells=ctx.probe_max_cells,
                seed=ctx.seed,
            )
            for metric in result.metrics():
                name = metric.name.removeprefix(f"{label}_")
                renamed = MetricResult(name, metric.value, metric.details, metric.status, metric.reason)
                scores.append(Score(view, renamed, task))
                if name == "accuracy" and label != "donor":  # one class per donor would swamp the table
                    for cls, value in metric.details.get("per_class_accuracy", {}).items():
                        scores.append(Score(view, MetricResult(f"class_accuracy/{cls}", value), task))
    return TaskResult(scores)


# ---------------------------------------------------------------------------------------- views
register(Metric("views", "n_dims", "dimensions", "max", level="cell", count=True, compared=False))
register(Metric("views", "n_factors", "factors", "max", level="donor", count=True, compared=False))


def task_views(outputs: ModelOutputs, ctx: EvalContext, phenotypes: dict[str, pd.DataFrame]) -> TaskResult:
    """The dimension of every cell view and the number of factors of every donor phenotype set."""
    scores = [Score(view, MetricResult("n_dims", float(x.shape[1]))) for view, x in outputs.views.items()]
    scores += [Score(view, MetricResult("n_factors", float(f.shape[1]))) for view, f in phenotypes.items()]
    return TaskResult(scores)


# ----------------------------------------------------------------------------------- phenotypes
def task_phenotypes(outputs: ModelOutputs, ctx: EvalContext) -> TaskResult:
    """The model's donor factors, or per-donor (and per cell type) means of each of its views."""
    if outputs.donor_factors:
        return TaskResult(artefact=outputs.donor_factors)
    cell_type = ctx.labels["cell_type"]
    means = {
        f"donor_means_{view}" if len(outputs.views) > 1 else "donor_means": donor_means(
            embedding, ctx.cell_donors, cell_type=cell_type
        )
        for view, embedding in outputs.views.items()
    }
    return TaskResult(artefact=means)


# ---------------------------------------------------------------------------------- association
register(
    Metric(
        "association",
        "n_significant_pairs",
        "significant pairs",
        "max",
        level="donor",
        count=True,
        lower=0.0,
        gated=True,
    )
)
register(
    Metric(
        "association",
        "n_significant_variants",
        "significant variants",
        "max",
        level="donor",
        count=True,
        lower=0.0,
        gated=True,
    )
)
register(
    Metric(
        "association",
        "lambda_gc",
        "λ_GC",
        "target",
        target=1.0,
        level="donor",
        lower=0.0,
        gated=True,
        ungated_views={"V": _V_LAMBDA},
    )
)
register(Metric("association", "n_tests", "tests", "max", level="donor", count=True, compared=False))
# the in-run null: the same scan against genotypes of permuted donors (kinship permuted with them)
register(
    Metric(
        "association",
        "n_significant_pairs_permuted",
        "false hits (permuted genotypes)",
        "min",
        level="donor",
        count=True,
        lower=0.0,
    )
)
register(
    Metric(
        "association",
        "lambda_gc_permuted",
        "λ_GC (permuted genotypes)",
        "target",
        target=1.0,
        level="donor",
        lower=0.0,
    )
)
register(
    Metric(
        "association",
        "n_monomorphic_skipped",
        "monomorphic skipped",
        "min",
        level="donor",
        count=True,
        compared=False,
    )
)


def task_association(
    outputs: ModelOutputs, ctx: EvalContext, phenotypes: dict[str, pd.DataFrame]
) -> TaskResult:
    """LMM (kinship) or OLS scan of every donor phenotype against every variant; provides the results.

    Each view is also scanned against genotypes of permuted donors (seeded by ``ctx.seed``): its
    hits and λ are the in-run false-positive estimate.
    """
    if ctx.genotypes is None:
        return TaskResult([NotRun(view, "the cohort has no genotypes") for view in phenotypes], artefact={})
    scores: list[Score | NotRun] = []
    associations: dict[str, AssociationResult] = {}
    for view, factors in phenotypes.items():
        if factors.shape[1] == 0:
            scores.append(NotRun(view, "no factors to test"))
            continue
        scan = {
            "donors": list(ctx.genotypes.donors),
            "variant_ids": ctx.genotypes.variant_ids,  # an Index over the variant table's ids: no copy
            "kinship": ctx.kinship,
            "covariates": ctx.donor_covariates,
            "engine": ctx.engine if ctx.kinship is not None else "ols",
            "test": ctx.test,
            "fdr": ctx.fdr,
        }
        # a bounded (large) scan keeps the columns truth.py needs beyond the hits: every non-null variant
        keep = [] if ctx.truth is None else non_null_variants(scan["variant_ids"], ctx.truth.null_variants)
        result = lmm_scan(factors, ctx.genotypes, keep_variants=keep, **scan)  # read in chunks
        associations[view] = result
        scores += [Score(view, metric) for metric in result.summary(ctx.fdr)]
        null = permuted_null_scan(factors, ctx.genotypes, seed=ctx.seed, **scan)
        scores += [Score(view, metric) for metric in permuted_null_summary(null, ctx.fdr)]
        scores.append(Score(view, MetricResult("n_tests", float(result.n_tests))))
        scores.append(Score(view, MetricResult("n_monomorphic_skipped", float(result.n_monomorphic_skipped))))
    return TaskResult(scores, artefact=associations)


def non_null_variants(variant_ids: pd.Index, null_variants: Sequence[str]) -> list[str]:
    """The ids of ``variant_ids`` that are not null."""
    ids = string_index(variant_ids)
    return list(ids[~ids.isin(string_index(null_variants))])


# ---------------------------------------------------------------------------------------- truth
# power over the causal variants of the view's targets (D: D x C programs, V: persistent factors,
# other views: all), keyed per program; FDR at the variant and the pair level, skipped without discoveries
register(
    Metric(
        "truth",
        "power",
        "power (target variants)",
        "max",
        level="donor",
        keyed=True,
        gated=True,
        **PROPORTION,
    )
)
register(Metric("truth", "power_any_view", "power (any view)", "max", level="model", **PROPORTION))
register(Metric("truth", "empirical_fdr", "empirical FDR (variants)", "min", level="donor", **PROPORTION))
register(Metric("truth", "empirical_fdr_pairs", "empirical FDR (pairs)", "min", level="donor", **PROPORTION))
register(
    Metric("truth", "lambda_gc_null", "λ on null variants", "target", target=1.0, level="donor", lower=0.0)
)
register(
    Metric(
        "truth",
        "factor_recovery",
        "donor-factor recovery (best |r| per true factor)",
        "max",
        level="donor",
        keyed=True,
        gated=True,
        **PROPORTION,
    )
)
register(
    Metric(
        "truth",
        "matched_recovery",
        "donor-factor recovery (one-to-one |r|)",
        "max",
        level="donor",
        keyed=True,
        **PROPORTION,
    )
)
register(
    Metric(
        "truth",
        "matched_recovery_chance",
        "chance of one-to-one recovery",
        "max",
        level="donor",
        compared=False,
        **PROPORTION,
    )
)
register(
    Metric(
        "truth", "matched_recovery_corrected", "chance-corrected recovery", "max", level="donor", upper=1.0
    )
)
register(
    Metric(
        "truth",
        "cell_state_r2",
        "cell-state recovery (held-out R²)",
        "max",
        level="cell",
        gated=True,
        upper=1.0,
    )
)


def task_truth(
    outputs: ModelOutputs,
    ctx: EvalContext,
    phenotypes: dict[str, pd.DataFrame],
    associations: dict[str, AssociationResult],
) -> TaskResult:
    """Recovery of the simulated donor programs (best and one-to-one), causal variants and cell state."""
    truth = ctx.truth
    if truth is None:
        return TaskResult([NotRun(MODEL_LEVEL, "the cohort has no ground truth (not simulated)")])
    scores: list[Score | NotRun] = []
    for view, factors in phenotypes.items():
        targets = true_factors_for(view, truth)
        results = factor_recovery(targets, factors) + matched_recovery(targets, factors)
        if view in associations:
            results += association_truth(
                associations[view],
                truth.causal,
                truth.null_variants,
                targets=list(targets.columns),
                fdr=ctx.fdr,
            )
        scores += [Score(view, result) for result in results]
        for result in results:
            for program, value in result.details.get("per_program", {}).items():
                scores.append(Score(view, MetricResult(f"{result.name}/{program}", value)))
    if associations:
        scores.append(Score(MODEL_LEVEL, power_any_view(associations, truth.causal_variants, fdr=ctx.fdr)))
    for view, embedding in outputs.views.items():
        scores += [
            Score(view, result) for result in cell_state_recovery(truth.cell_state, embedding, seed=ctx.seed)
        ]
    return TaskResult(scores)


def true_factors_for(view: str, truth: Truth) -> pd.DataFrame:
    """The true factors a learned set should recover: D programs for ``D``, persistent for ``V``, or both."""
    if view == "D" or truth.persistent_factors.shape[1] == 0:
        return truth.donor_factors
    if view == "V":
        return truth.persistent_factors
    return pd.concat([truth.donor_factors, truth.persistent_factors], axis=1)


register_task(Task("training", task_training))
register_task(Task("reconstruction", task_reconstruction))
register_task(Task("own_likelihood", task_own_likelihood))
register_task(Task("probes", task_probes))
register_task(Task("phenotypes", task_phenotypes, provides="phenotypes"))
register_task(Task("views", task_views, needs=("phenotypes",)))
register_task(Task("association", task_association, needs=("phenotypes",), provides="associations"))
register_task(Task("truth", task_truth, needs=("phenotypes", "associations")))
