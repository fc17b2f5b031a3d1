"""The metric registry: one declaration per reported metric, read by tasks, report, figures and gate.

A :class:`Metric` says what a number means: the task that reports it, its display header, its
direction (``max``, ``min``, or ``target``: best at ``target``, e.g. λ_GC → 1), unit, attainable
range, whether it is a count, whether the regression gate bounds it, and a hook for its chance
level. Nothing else in the package infers meaning from a metric's name.

Adding a metric is one :func:`register` call beside the function that computes it::

    register(Metric("probe_cell_type", "f1", "cell type F1", "max", lower=0.0, upper=1.0))

Keyed metrics (``keyed=True``) also cover rows named ``<name>/<key>``: per class, per cell type,
per program.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Direction = Literal["max", "min", "target"]
Level = Literal["model", "cell", "donor"]

KEY_SEPARATOR = "/"
DIRECTIONS = ("max", "min", "target")
LEVELS = ("model", "cell", "donor")


@dataclass(frozen=True)
class Metric:
    """What one reported metric means.

    Attributes
    ----------
    task
        The ``task`` column of its score rows.
    name
        The ``metric`` column (for a keyed metric, the part before ``/``).
    header
        Column header in report tables.
    direction
        ``"max"`` (higher is better), ``"min"`` (lower is better) or ``"target"`` (closer to
        ``target`` is better, from either side).
    level
        What a view of its rows describes: ``"model"`` (one row per model), ``"cell"`` (a cell
        embedding) or ``"donor"`` (donor phenotypes); the report compares a view with the
        baseline's view of the same level when the baseline lacks that view.
    target
        The best value of a ``"target"`` metric.
    unit
        Unit shown beside the header (``""`` when unitless).
    lower, upper
        Attainable range (an accuracy lies in [0, 1], an NLL above 0).
    count
        Whether the value is a count (shown as an integer; the gate's smallest change is 1).
    compared
        Whether the report marks it better or worse than the baseline (False: descriptive, the
        difference is shown without an arrow).
    keyed
        Whether rows ``<name>/<key>`` belong to it.
    resolution
        The smallest difference worth calling better or worse (a paired difference whose
        interval excludes 0 but whose mean is within it is no detectable difference).
    gated
        Whether the regression gate bounds it.
    ungated_views
        View → why the gate leaves the metric unbounded on that view.
    chance
        The value the metric takes by chance when that does not depend on the data (0 for an R²,
        1 for λ_GC), or None. A chance level that depends on the data (majority class of a probe,
        best |r| of random factors for these donors) comes with each result, in
        ``MetricResult.details["chance"]``, and wins over this one.
    """

    task: str
    name: str
    header: str
    direction: Direction
    level: Level = "model"
    target: float | None = None
    unit: str = ""
    lower: float = -math.inf
    upper: float = math.inf
    count: bool = False
    compared: bool = True
    keyed: bool = False
    resolution: float = 0.0
    gated: bool = False
    ungated_views: Mapping[str, str] = field(default_factory=dict)
    chance: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"metric {self.key}: direction must be one of {DIRECTIONS}, got {self.direction!r}"
            )
        if self.level not in LEVELS:
            raise ValueError(f"metric {self.key}: level must be one of {LEVELS}, got {self.level!r}")
        if (self.direction == "target") != (self.target is not None):
            raise ValueError(
                f"metric {self.key}: a 'target' direction needs target=VALUE, and only it takes one"
            )
        if KEY_SEPARATOR in self.name or not self.name or not self.task:
            raise ValueError(f"metric {self.key}: task and name must be non-empty, and the name has no '/'")
        object.__setattr__(self, "ungated_views", MappingProxyType(dict(self.ungated_views)))

    @property
    def key(self) -> tuple[str, str]:
        """``(task, name)``: the registry key."""
        return self.task, self.name

    @property
    def higher_is_better(self) -> bool:
        """The ``higher_is_better`` column of its score rows: True only for ``"max"`` metrics."""
        return self.direction == "max"

    @property
    def label(self) -> str:
        """The header with its unit, e.g. ``"fit (s)"``."""
        return f"{self.header} ({self.unit})" if self.unit else self.header

    def gain(self, value: float, baseline: float) -> float:
        """How much better ``value`` is than ``baseline`` (negative: worse; NaN when either is NaN)."""
        if self.direction == "target":
            return abs(baseline - self.target) - abs(value - self.target)
        return value - baseline if self.direction == "max" else baseline - value

    def worse_sides(self) -> tuple[bool, bool]:
        """Whether a fall is worse (needs a lower bound) and whether a rise is worse (an upper bound)."""
        if self.direction == "target":
            return True, True
        return self.direction == "max", self.direction == "min"


_REGISTRY: dict[tuple[str, str], Metric] = {}


def register(metric: Metric) -> Metric:
    """Declare ``metric``; a second declaration of the same ``(task, name)`` is an error."""
    if metric.key in _REGISTRY and _REGISTRY[metric.key] != metric:
        raise ValueError(f"metric {metric.key} is declared twice; keep one declaration")
    _REGISTRY[metric.key] = metric
    return metric


def unregister(task: str, name: str) -> None:
    """Remove a declaration (for tests and plug-ins that add metrics for one run)."""
    _REGISTRY.pop((task, name), None)


def find(task: str, metric: str) -> Metric | None:
    """The declaration behind a score row's ``(task, metric)``, or None when there is none."""
    declared = _REGISTRY.get((task, metric))
    if declared is not None:
        return declared
    base, sep, _ = metric.partition(KEY_SEPARATOR)
    keyed = _REGISTRY.get((task, base)) if sep else None
    return keyed if keyed is not None and keyed.keyed else None


def lookup(task: str, metric: str) -> Metric:
    """Like :func:`find`, but an undeclared metric is a KeyError naming the fix."""
    declared = find(task, metric)
    if declared is None:
        known = [name for t, name in _REGISTRY if t == task]
        close = difflib.get_close_matches(metric, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise KeyError(
            f"metric {metric!r} of task {task!r} is not declared; {hint}declare it with "
            f"multilivi.eval.metrics.register(Metric({task!r}, {metric.partition(KEY_SEPARATOR)[0]!r}, ...))"
        )
    return declared


def metrics_of(task: str) -> list[Metric]:
    """The metrics of ``task`` in declaration order."""
    return [m for (t, _), m in _REGISTRY.items() if t == task]


def all_metrics() -> Iterator[Metric]:
    """Every declared metric, in declaration order."""
    return iter(list(_REGISTRY.values()))


def tasks() -> list[str]:
    """Task names with declared metrics, in declaration order."""
    return list(dict.fromkeys(t for t, _ in _REGISTRY))
