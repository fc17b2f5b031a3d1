"""Evaluation metrics: pure functions over arrays and tables that return :class:`MetricResult` rows."""

from multilivi.eval.association import AssociationResult, fit_null, lmm_scan, rank_inverse_normal
from multilivi.eval.fdr import benjamini_hochberg, genomic_control_lambda, qq_plot, storey_qvalues
from multilivi.eval.records import MetricResult, skipped

__all__ = [
    "AssociationResult",
    "MetricResult",
    "benjamini_hochberg",
    "fit_null",
    "genomic_control_lambda",
    "lmm_scan",
    "qq_plot",
    "rank_inverse_normal",
    "skipped",
    "storey_qvalues",
]
