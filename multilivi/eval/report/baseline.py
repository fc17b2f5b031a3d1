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

UP, DOWN, SAME = "▲", "▼", "="
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


def _level_views(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(task, level) → the baseline's first view of that level in that task."""
    first: dict[tuple[str, str], str] = {}
    for r in rows.itertuples(index=False):
        metric = find(r.task, r.metric)
        if metric is not None:
            first.setdefault((r.task, metric.level), r.view)
    return first


def _compare(
    r: Any,
    baseline: str | None,
    values: Mapping[tuple[str, str, str], float],
    level_views: Mapping[tuple[str, str], str],
) -> _Comparison:
    none = _Comparison("", math.nan, math.nan, "")
    if baseline is None or r.model == baseline:
        return none
    metric = find(r.task, r.metric)
    view = r.view
    if (r.task, r.metric, view) not in values:
        view = level_views.get((r.task, metric.level), "") if metric is not None else ""
        if (r.task, r.metric, view) not in values:
            return none
    base = values[(r.task, r.metric, view)]
    value = float(r.value)
    return _Comparison(
        view, base, value - base, arrow(value, base, metric, higher_is_better=bool(r.higher_is_better))
    )


def compare_to_baseline(scores: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """The ``ok`` rows of ``scores`` with the baseline's value, the difference and an arrow.

    The baseline of a row is the ``ok`` row of model ``baseline`` with the same task and metric on
    the same view when it has that view; otherwise on the baseline's first view of the metric's
    ``level`` in that task (for LIVI: its cell state ``c`` for cell-level metrics, its donor
    factors ``D`` for donor-level ones). Undeclared metrics are compared on the same view only.

    Returns
    -------
    A copy of the ``ok`` rows with added columns ``baseline_view`` (str, '' when none),
    ``baseline`` (float, NaN when none), ``diff`` (value − baseline) and ``arrow``
    (``▲``/``▼``/``=``, '' when there is no baseline, the row is the baseline itself, or the
    metric is declared ``compared=False``).
    """
    check_scores(scores)
    ok = scores.loc[scores["status"] == "ok"].copy()
    ok["view"] = ok["view"].astype(str)
    rows = ok.loc[ok["model"] == baseline]
    values = {(r.task, r.metric, r.view): float(r.value) for r in rows.itertuples(index=False)}
    level_views = _level_views(rows)
    compared = [_compare(r, baseline, values, level_views) for r in ok.itertuples(index=False)]
    extra = pd.DataFrame(compared, columns=list(_Comparison._fields), index=ok.index)
    for column in _Comparison._fields:
        ok[column] = extra[column].astype(str if column in ("baseline_view", "arrow") else float)
    return ok
