"""Comparison with the baseline model: its value beside each score, the difference and an arrow.

The baseline is a role, not a name: :func:`choose_baseline` picks the run's LIVI model unless the
caller names one. The arrow of a declared metric follows :meth:`Metric.gain` (``max``, ``min`` or
``target`` direction); a metric declared ``compared=False`` shows its difference without an arrow;
a metric the registry does not know follows its rows' ``higher_is_better``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import pandas as pd

from multilivi.eval.figures import check_scores
from multilivi.eval.metrics import Metric, find
from multilivi.eval.replicates import (
    BETTER,
    WORSE,
    n_replicates,
    paired_difference,
    replicate_values,
    summarise,
)
from multilivi.eval.replicates import SAME as NO_CHANGE

UP, DOWN, SAME, NO_DIFFERENCE = "▲", "▼", "=", "≈"
_VERDICT_ARROWS = {BETTER: UP, WORSE: DOWN, NO_CHANGE: NO_DIFFERENCE}
EQUAL_TOLERANCE = 1e-12
LIVI_FAMILY = "livi"


def arrow(
    value: float, baseline: float, metric: Metric | None = None, *, higher_is_better: bool = True
) -> str:
    """The arrow for ``value`` against ``baseline``: ``▲`` better, ``▼`` worse, ``=`` equal, ``""`` undefined.

    ``metric`` (its declaration) decides what better means, through :meth:`Metric.gain`; a metric
    declared ``compared=False`` has no arrow. Without a declaration, ``higher_is_better`` decides.
    Values whose gain is within ``EQUAL_TOLERANCE`` (1e-12) are equal.
    """
    if metric is not None and not metric.compared:
        return ""
    if not (math.isfinite(value) and math.isfinite(baseline)):
        return ""
    if metric is not None:
        gain = metric.gain(value, baseline)
    else:
        gain = (value - baseline) if higher_is_better else (baseline - value)
    if abs(gain) <= EQUAL_TOLERANCE:
        return SAME
    return UP if gain > 0 else DOWN


def is_livi(model: str, meta: Mapping[str, Any]) -> bool:
    """Whether ``model`` is a LIVI model: family ``livi`` in ``meta["models"]``, else a name ``livi...``."""
    info = dict(meta.get("models") or {}).get(model)
    family = dict(info).get("family") if isinstance(info, Mapping) else None
    return family == LIVI_FAMILY if family is not None else model.startswith(LIVI_FAMILY)


def choose_baseline(scores: pd.DataFrame, meta: Mapping[str, Any]) -> str | None:
    """The default baseline: the run's first LIVI model with an ``ok`` score, or None when there is none.

    Models are taken in ``meta["models"]`` order, then score-table order. The first whose family
    (``meta["models"][name]["family"]``) is ``livi`` wins; failing that, the first whose name
    starts with ``livi``.
    """
    check_scores(scores)
    scored = set(scores.loc[scores["status"] == "ok", "model"].astype(str))
    models = dict(meta.get("models") or {})
    order = [m for m in dict.fromkeys([*map(str, models), *scores["model"].astype(str)]) if m in scored]

    def family(name: str) -> Any:
        info = models.get(name)
        return dict(info).get("family") if isinstance(info, Mapping) else None

    by_family = next((m for m in order if family(m) == LIVI_FAMILY), None)
    return by_family or next((m for m in order if m.startswith(LIVI_FAMILY)), None)


class _Comparison(NamedTuple):
    baseline_view: str
    baseline: float
    diff: float
    arrow: str
    diff_low: float = math.nan
    diff_high: float = math.nan


def _level_views(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(task, level) → the baseline's first view of that level in that task."""
    first: dict[tuple[str, str], str] = {}
    for r in rows.itertuples(index=False):
        metric = find(r.task, r.metric)
        if metric is not None:
            first.setdefault((r.task, metric.level), r.view)
    return first


def _baseline_view(
    r: Any, values: Mapping[tuple[str, str, str], float], level_views: Mapping[tuple[str, str], str]
) -> str | None:
    """The baseline's view a row is compared with: the same view, else its first of the same level."""
    if (r.task, r.metric, r.view) in values:
        return r.view
    metric = find(r.task, r.metric)
    view = level_views.get((r.task, metric.level), "") if metric is not None else ""
    return view if (r.task, r.metric, view) in values else None


def _compare(r: Any, baseline: str | None, context: _Context) -> _Comparison:
    if baseline is None or r.model == baseline:
        return _Comparison("", math.nan, math.nan, "")
    view = _baseline_view(r, context.values, context.level_views)
    if view is None:
        return _Comparison("", math.nan, math.nan, "")
    metric = find(r.task, r.metric)
    base, value = context.values[(r.task, r.metric, view)], float(r.value)
    if context.replicated is None:
        return _Comparison(
            view, base, value - base, arrow(value, base, metric, higher_is_better=bool(r.higher_is_better))
        )
    paired = paired_difference(
        context.replicated.get((r.model, r.view, r.task, r.metric), {}),
        context.replicated.get((baseline, view, r.task, r.metric), {}),
        metric,
        bool(r.higher_is_better),
    )
    shown = (
        "" if metric is not None and not metric.compared else _VERDICT_ARROWS.get(str(paired["verdict"]), "")
    )
    return _Comparison(
        view, base, float(paired["diff"]), shown, float(paired["diff_low"]), float(paired["diff_high"])
    )


class _Context(NamedTuple):
    values: Mapping[tuple[str, str, str], float]  # the baseline's (task, metric, view) → mean value
    level_views: Mapping[tuple[str, str], str]
    replicated: Mapping[tuple[str, str, str, str], Mapping[int, float]] | None  # None: one replicate


def compare_to_baseline(
    scores: pd.DataFrame, baseline: str | None, summary: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The ``ok`` rows of ``scores`` (means over replicates) beside the baseline's: difference and arrow.

    The baseline of a row is the ``ok`` row of model ``baseline`` with the same task and metric on
    the same view when it has that view; otherwise on the baseline's first view of the metric's
    ``level`` in that task (for LIVI: its cell state ``c`` for cell-level metrics, its donor
    factors ``D`` for donor-level ones). Undeclared metrics are compared on the same view only.
    With one replicate the arrow compares the two values; with several, the difference is the mean
    paired difference over replicates, with its 95 % interval, and the arrow is ``▲``/``▼`` only when
    the interval of the gain excludes 0 (:func:`multilivi.eval.replicates.paired_difference`), else ``≈``.

    ``summary`` is :func:`~multilivi.eval.replicates.summarise` of ``scores``, when the caller has it.

    Returns
    -------
    A copy of the ``ok`` rows of :func:`~multilivi.eval.replicates.summarise` with added columns
    ``baseline_view`` (str, '' when none), ``baseline`` (float, NaN when none), ``diff`` (value −
    baseline), ``diff_low``/``diff_high`` (its interval; NaN with one replicate) and ``arrow``
    ('' when there is no baseline, the row is the baseline itself, or the metric is declared
    ``compared=False``).
    """
    check_scores(scores)
    summary = summarise(scores) if summary is None else summary
    ok = summary.loc[summary["status"] == "ok"].copy()
    ok["view"] = ok["view"].astype(str)
    rows = ok.loc[ok["model"] == baseline]
    values = {(r.task, r.metric, r.view): float(r.value) for r in rows.itertuples(index=False)}
    replicated = replicate_values(scores) if n_replicates(scores) > 1 else None
    context = _Context(values, _level_views(rows), replicated)
    compared = [_compare(r, baseline, context) for r in ok.itertuples(index=False)]
    extra = pd.DataFrame(compared, columns=list(_Comparison._fields), index=ok.index)
    for column in _Comparison._fields:
        ok[column] = extra[column].astype(str if column in ("baseline_view", "arrow") else float)
    return ok
