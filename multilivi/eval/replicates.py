"""Replicated runs: per-metric means with t intervals, and paired differences from a baseline model.

Replicate ``r`` of every model shares its seed, held-out split and probe splits, so the difference
of two models is taken replicate by replicate (a paired comparison): its mean and a 95 % Student-t
interval over the replicates. A verdict is ``better`` or ``worse`` only when the interval of the
gain excludes 0 and the mean gain exceeds the metric's resolution; otherwise ``no detectable
difference``. With one replicate there is no interval and no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from multilivi.eval.metrics import Metric, find

KEY = ["model", "view", "task", "metric"]
LEVEL = 0.95
BETTER, WORSE, SAME = "better", "worse", "no detectable difference"


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval of ``values`` (n,); the interval is NaN for n < 2."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if values.size else math.nan
    if values.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def n_replicates(scores: pd.DataFrame) -> int:
    """How many replicates a score table holds (1 for a table without a ``replicate`` column)."""
    return int(scores["replicate"].nunique()) if "replicate" in scores.columns and len(scores) else 1


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, view, task, metric): the mean over the replicates where it is ``ok``.

    Returns the first replicate's rows (status, reason, direction, chance) with ``value`` the mean
    over ``ok`` replicates, and added columns ``n_replicates``, ``ci_low`` and ``ci_high`` (the 95 %
    t interval of the mean, clipped to the metric's attainable range; NaN with one replicate).
    ``sd`` stays the within-run sd with one replicate and becomes the sd over replicates with more.
    A metric ``ok`` in some replicates only is ``ok``, over those. Rows keep their first order.
    """
    if n_replicates(scores) == 1:
        return scores.assign(n_replicates=1, ci_low=math.nan, ci_high=math.nan)
    ok = scores.loc[scores["status"] == "ok"]
    stats_by_key = {key: t_interval(group["value"].to_numpy()) for key, group in ok.groupby(KEY, sort=False)}
    sd_by_key = ok.groupby(KEY, sort=False)["value"].std(ddof=1).to_dict()
    count = ok.groupby(KEY, sort=False).size().to_dict()
    first = scores.sort_values("replicate", kind="stable")
    first = first.loc[~first.duplicated(KEY)].copy()
    keys = list(zip(*(first[c] for c in KEY)))
    ok_somewhere = [k in stats_by_key for k in keys]
    first.loc[ok_somewhere, ["status", "reason"]] = ["ok", ""]
    first["value"] = [stats_by_key[k][0] if k in stats_by_key else v for k, v in zip(keys, first["value"])]
    first["sd"] = [sd_by_key.get(k, math.nan) for k in keys]
    first["n_replicates"] = [count.get(k, 0) for k in keys]
    bounds = [_range(task, metric) for task, metric in zip(first["task"], first["metric"])]
    intervals = [stats_by_key.get(k, (math.nan,) * 3)[1:] for k in keys]
    first["ci_low"] = [
        max(low, lo) if math.isfinite(low) else low for (low, _), (lo, _) in zip(intervals, bounds)
    ]
    first["ci_high"] = [
        min(high, hi) if math.isfinite(high) else high for (_, high), (_, hi) in zip(intervals, bounds)
    ]
    return first.sort_index()


def _range(task: str, metric: str) -> tuple[float, float]:
    """The attainable range of a metric (an interval of the mean is clipped to it)."""
    declared = find(task, metric)
    return (declared.lower, declared.upper) if declared is not None else (-math.inf, math.inf)


def verdict(gain_low: float, gain_high: float, mean_gain: float, metric: Metric | None) -> str:
    """``better``/``worse`` when the gain's interval excludes 0 beyond the resolution, else no difference."""
    if not (math.isfinite(gain_low) and math.isfinite(gain_high)):
        return ""
    resolution = metric.resolution if metric is not None else 0.0
    if gain_low > 0 and mean_gain > resolution:
        return BETTER
    if gain_high < 0 and -mean_gain > resolution:
        return WORSE
    return SAME


def _gain_function(
    metric: Metric | None, higher_is_better: bool
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if metric is not None:
        return lambda value, base: np.array([metric.gain(v, b) for v, b in zip(value, base)])
    sign = 1.0 if higher_is_better else -1.0
    return lambda value, base: sign * (value - base)


def paired_difference(
    values: Mapping[int, float], baseline: Mapping[int, float], metric: Metric | None, higher_is_better: bool
) -> dict[str, float | str]:
    """Paired difference of a model's and the baseline's values over their common replicates.

    Returns ``diff`` (mean of value − baseline), ``diff_low``/``diff_high`` (its 95 % t interval,
    clipped to the differences the metric's range allows given the baseline's mean),
    ``n_pairs`` and ``verdict`` (from the interval of the gain, which for a ``target`` metric is the
    change in distance to the target; '' with fewer than two pairs).
    """
    common = sorted(set(values) & set(baseline))
    value = np.array([values[r] for r in common], dtype=float)
    base = np.array([baseline[r] for r in common], dtype=float)
    diff, low, high = t_interval(value - base)
    gain, gain_low, gain_high = t_interval(_gain_function(metric, higher_is_better)(value, base))
    if metric is not None and len(common):  # the mean difference cannot leave [lower, upper] - base mean
        low = max(low, metric.lower - float(base.mean())) if math.isfinite(low) else low
        high = min(high, metric.upper - float(base.mean())) if math.isfinite(high) else high
    return {
        "diff": diff,
        "diff_low": low,
        "diff_high": high,
        "n_pairs": len(common),
        "verdict": verdict(gain_low, gain_high, gain, metric),
    }


def replicate_values(scores: pd.DataFrame) -> dict[tuple[str, str, str, str], dict[int, float]]:
    """(model, view, task, metric) → replicate → value, over ``ok`` rows."""
    ok = scores.loc[scores["status"] == "ok"]
    out: dict[tuple[str, str, str, str], dict[int, float]] = {}
    replicates = ok["replicate"] if "replicate" in ok.columns else pd.Series(0, index=ok.index)
    for model, view, task, metric, value, r in zip(
        ok["model"], ok["view"].astype(str), ok["task"], ok["metric"], ok["value"], replicates
    ):
        out.setdefault((str(model), view, task, metric), {})[int(r)] = float(value)
    return out
