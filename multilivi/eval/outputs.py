"""What tasks read: a model's outputs (:class:`ModelOutputs`) and the cohort's (:class:`EvalContext`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from multilivi.data import Cohort, Genotypes, Truth

PROBE_LABELS = ("cell_type", "cell_subtype", "donor")
DEFAULT_FDR = 0.05  # false-discovery rate of association calls unless a run sets another
PROBE_MAX_CELLS = 20_000  # the probes (and scIB metrics) use a fixed-seed subsample above this


@dataclass
class ModelOutputs:
    """Everything the tasks need from one model or embedding, computed once and cached, with its provenance.

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
    own_nll
        Per-cell held-out negative log-likelihood (nats) by modality under a third-party model's own
        likelihood and estimator (totalVI's reconstruction error: its NB / NB-mixture, one posterior
        sample of z), each of shape (n_heldout,). Reported apart from ``heldout_nll``, with which it
        is not comparable; None for the models trained here and for embeddings.
    fit_seconds
        Training time (NaN when not trained here).
    seconds_per_epoch
        Mean training time per epoch (NaN when not trained here).
    history
        The training history, one row per epoch (loss terms and stage); None when not trained here.
        It travels with the outputs, so a model read from the cache still has it.
    cached
        Whether the outputs were read from the model cache rather than computed in this run.
    config
        The effective configuration that produced them (a model's config fields, an embedding's
        path, PCA's components); None when there is none to record.
    loadings
        Decoder loadings of the D x C factors by modality, each (n_features, n_dxc) indexed by
        feature name with the columns of ``donor_factors["D"]``; the decoder's BatchNorm scale is
        folded in where it has one. None for an embedding (nothing to interpret).
    assignment
        σ(A), the soft assignment of cell-state dimensions to D x C factors: (n_state_dims, n_dxc),
        indexed by state dimension (``c_0``, ...; the columns of the view whose per-block softmax
        is the cell state) with the columns of ``donor_factors["D"]``. None for an embedding.
    """

    views: dict[str, np.ndarray]
    donor_factors: dict[str, pd.DataFrame] = field(default_factory=dict)
    heldout_nll: dict[str, np.ndarray] | None = None
    own_nll: dict[str, np.ndarray] | None = None
    fit_seconds: float = math.nan
    seconds_per_epoch: float = math.nan
    history: pd.DataFrame | None = None
    cached: bool = False
    config: dict[str, Any] | None = None
    loadings: dict[str, pd.DataFrame] | None = None
    assignment: pd.DataFrame | None = None


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
    fdr: float = DEFAULT_FDR
    engine: str = "batched"
    test: str = "wald"  # association test: "wald" (t-test, calibrated at small n) or "lrt"
    n_probe_seeds: int = 5
    probe_max_cells: int | None = PROBE_MAX_CELLS
    seed: int = 0
    batches: np.ndarray | None = None  # (n_cells,) batch of every cell, None when the cohort has none
    scib: bool = False  # run the scIB metrics (needs scib-metrics)

    @classmethod
    def from_cohort(cls, cohort: Cohort, heldout_idx: np.ndarray, **settings: Any) -> EvalContext:
        """The context of ``cohort`` with held-out cells ``heldout_idx`` and task ``settings``."""
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
            batches=cohort.labels("batch"),
            **settings,
        )
