"""Score records shared by every metric: one small frozen dataclass per reported number.

What a metric means (its direction, range, header) is declared once in :mod:`multilivi.eval.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

STATUSES = ("ok", "skipped", "error")


@dataclass(frozen=True)
class MetricResult:
    """One named score.

    Parameters
    ----------
    name
        Metric name, e.g. ``"cell_type_accuracy"``; equals the column used in ``scores.csv``.
    value
        The score, always a Python ``float`` (NaN when the metric could not be computed).
    details
        Supporting numbers (standard deviations, per-class values, counts); read-only.
    status
        ``"ok"``, ``"skipped"`` (inputs do not allow the metric) or ``"error"``.
    reason
        Why the status is not ``"ok"``; empty otherwise.
    """

    name: str
    value: float
    details: Mapping[str, Any] = field(default_factory=dict)
    status: str = "ok"
    reason: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status != "ok" and not self.reason:
            raise ValueError(f"a {self.status!r} result needs a reason; metric {self.name!r} has none")
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    @property
    def ok(self) -> bool:
        """Whether the metric was computed."""
        return self.status == "ok" and not math.isnan(self.value)


def skipped(name: str, reason: str) -> MetricResult:
    """A result for a metric that cannot be computed on these inputs (value NaN)."""
    return MetricResult(name, math.nan, status="skipped", reason=reason)
