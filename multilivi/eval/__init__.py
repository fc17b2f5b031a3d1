"""Evaluation metrics: pure functions over arrays and tables that return :class:`MetricResult` rows.

Importing the package declares the built-in metrics and tasks (:mod:`multilivi.eval.tasks`) in the
registries of :mod:`multilivi.eval.metrics` and :mod:`multilivi.eval.task_runner`.
"""

from multilivi.eval import programs as _program_tasks  # noqa: F401  (programs, loci, hits)
from multilivi.eval import scib as _scib_task  # noqa: F401  (scIB metrics, opt-in)
from multilivi.eval import tasks as _builtin_tasks  # noqa: F401  (declares the built-in metrics)
from multilivi.eval.association import AssociationResult, fit_null, lmm_scan, rank_inverse_normal
from multilivi.eval.embedding_plots import plot_umap_grid, umap_coordinates
from multilivi.eval.fdr import benjamini_hochberg, genomic_control_lambda, qq_plot, storey_qvalues
from multilivi.eval.phenotypes import donor_means
from multilivi.eval.probes import ProbeResult, probe
from multilivi.eval.reconstruction import reconstruction_summary
from multilivi.eval.records import MetricResult, skipped
from multilivi.eval.truth import association_truth, cell_state_recovery, factor_recovery

__all__ = [
    "AssociationResult",
    "MetricResult",
    "ProbeResult",
    "association_truth",
    "benjamini_hochberg",
    "cell_state_recovery",
    "donor_means",
    "factor_recovery",
    "fit_null",
    "genomic_control_lambda",
    "lmm_scan",
    "plot_umap_grid",
    "probe",
    "qq_plot",
    "rank_inverse_normal",
    "reconstruction_summary",
    "skipped",
    "storey_qvalues",
    "umap_coordinates",
]
