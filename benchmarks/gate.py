"""Metric-regression gate: bounds on the worse side of each gated metric, from seeds the check never uses.

The baseline (``--update-baseline``) runs the comparison at ``N_BASELINE_SEEDS`` seeds starting at
``FIRST_BASELINE_SEED`` (each seed changes model initialisation, minibatch order, the held-out split
and the probe splits, on the same cohort); a check runs at another seed (``--seed``, default 0) and
is refused at a baseline seed. Per gated metric with baseline values x_1..x_n (mean x̄, sd s), the
bound on the worse side is

    x̄ ∓ max(t_{n-1}(1 - α/m) · s · √(1 + 1/n), tolerance),   and never inside [min x, max x] ± tolerance,

the normal-theory prediction bound for one new run, Bonferroni-corrected over the m candidate
metrics so that a run of an unchanged model fails with probability at most α = ``FAMILY_ALPHA``
(for normal seed spreads; heavy tails widen s, and the worst-value rule covers the rest).
``tolerance`` (1 % of |x̄|, at least 0.01, or 1 for counts) is the smallest change worth failing for.
λ_GC, whose target is 1, gets both bounds (α/2m each), widened to include 1: reaching the target
never fails. A metric is gated only when it can fail: a bound outside the metric's attainable range
(e.g. a count that may fall to 0 because the baseline seeds found 0 or 1 hits) is recorded as
ungated with the reason. Empirical FDR is never gated: with a handful of discoveries it is 0 or 1
by chance. Improvements never fail the gate; a gated metric missing from the run does.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import threadpoolctl
import torch
from scipy import stats

from multilivi.atomic import atomic_write_json
from multilivi.eval.metrics import Metric, find
from multilivi.eval.replicates import summarise

SCHEMA_VERSION = 2
FAMILY_ALPHA = 0.01
N_BASELINE_SEEDS = 20
MIN_BASELINE_SEEDS = 10
FIRST_BASELINE_SEED = 100
REL_TOLERANCE = 0.01
KEY = ("model", "view", "task", "metric")


@dataclass(frozen=True)
class Violation:
    """A gated metric that regressed beyond its bounds (or went missing)."""

    model: str
    view: str
    task: str
    metric: str
    baseline: float
    low: float | None
    high: float | None
    value: float
    n_seeds: int

    def __str__(self) -> str:
        where = f"{self.model}/{self.view}/{self.task}/{self.metric}"
        if math.isnan(self.value):
            return f"{where}: missing from this run (baseline mean {self.baseline:.4g})"
        side, bound = (
            ("below", self.low) if self.low is not None and self.value < self.low else ("above", self.high)
        )
        return (
            f"{where}: {self.value:.4g} is {side} the gate's bound {bound:.4g} "
            f"(baseline mean {self.baseline:.4g} over {self.n_seeds} seeds)"
        )


# ------------------------------------------------------------------------------------ baseline
def gated_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The rows the gate reads: status ok, of metrics declared gated (not their ``name/key`` rows)."""
    declared = [_gated(t, m) is not None for t, m in zip(scores["task"], scores["metric"])]
    return scores.loc[np.asarray(declared, dtype=bool) & (scores["status"] == "ok").to_numpy()]


def _gated(task: str, metric: str) -> Metric | None:
    declared = find(task, metric)
    return declared if declared is not None and declared.gated and declared.name == metric else None


def acceptable_range(
    values: np.ndarray, metric: Metric, *, alpha: float, n_new: int = 1
) -> tuple[float | None, float | None]:
    """The gate's (low, high) bounds for one metric; None on a side where any change is an improvement.

    Parameters
    ----------
    values
        Baseline values (n_seeds,).
    metric
        The metric's declaration: direction, target, attainable range, whether it is a count.
    alpha
        The false-alarm probability allowed for this metric (split between two sides for a target).
    n_new
        Replicates the checked value is the mean of (the bound is for that mean).
    """
    n = len(values)
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    tolerance = max(REL_TOLERANCE * abs(mean), 1.0 if metric.count else 0.01)
    has_low, has_high = metric.worse_sides()
    quantile = float(stats.t.ppf(1.0 - alpha / (has_low + has_high), n - 1))
    margin = max(quantile * sd * math.sqrt(1.0 / n_new + 1.0 / n), tolerance)
    low = min(mean - margin, float(values.min()) - tolerance) if has_low else None
    high = max(mean + margin, float(values.max()) + tolerance) if has_high else None
    if metric.target is not None:  # reaching the target never fails
        low, high = min(low, metric.target), max(high, metric.target)
    return low, high


def can_fail(low: float | None, high: float | None, metric: Metric) -> bool:
    """Whether some attainable value lies beyond the bounds."""
    return (low is not None and low > metric.lower) or (high is not None and high < metric.upper)


def make_baseline(
    runs: dict[int, pd.DataFrame], *, models: Sequence[str], meta: dict[str, Any], alpha: float = FAMILY_ALPHA
) -> dict[str, Any]:
    """Baseline entries from the score tables of runs at different seeds.

    Parameters
    ----------
    runs
        Seed → score table of the comparison at that seed (at least ``MIN_BASELINE_SEEDS``).
    models
        The compared model names.
    meta
        Stored beside the entries (preset, dataset, ...); the machine is added here.
    alpha
        Family-wise false-alarm probability of one check over all gated metrics.
    """
    if len(runs) < MIN_BASELINE_SEEDS:
        raise ValueError(
            f"a baseline needs runs at {MIN_BASELINE_SEEDS} or more seeds to estimate the tails of the "
            f"seed spread (got {len(runs)}); {N_BASELINE_SEEDS} are used by default"
        )
    stacked = pd.concat([gated_rows(scores).assign(seed=seed) for seed, scores in runs.items()])
    groups = {key: group for key, group in stacked.groupby(list(KEY), sort=True)}
    complete = {key for key, g in groups.items() if len(g) == len(runs) and g["value"].notna().all()}
    candidates = [key for key in complete if key[1] not in _gated(key[2], key[3]).ungated_views]
    alpha_each = alpha / max(1, len(candidates))
    entries = [
        _entry(key, group, n_runs=len(runs), complete=key in complete, alpha=alpha_each)
        for key, group in groups.items()
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "models": list(models),
        **meta,
        "seeds": sorted(runs),
        "family_alpha": alpha,
        "alpha_per_metric": alpha_each,
        "machine": machine(),
        "entries": entries,
    }


def _entry(
    key: tuple[str, ...], group: pd.DataFrame, *, n_runs: int, complete: bool, alpha: float
) -> dict[str, Any]:
    """The baseline entry of one (model, view, task, metric) from its rows at every seed."""
    metric = _gated(key[2], key[3])
    raw = group.sort_values("seed")["value"].to_numpy(float)
    entry: dict[str, Any] = dict(zip(KEY, key)) | {
        "higher_is_better": metric.higher_is_better,
        "values": raw.tolist(),
    }
    if not complete:
        return entry | {
            "gated": False,
            "reason": f"ok and finite in {int(group['value'].notna().sum())} of {n_runs} seeds",
        }
    if key[1] in metric.ungated_views:
        return entry | {"gated": False, "reason": metric.ungated_views[key[1]]}
    low, high = acceptable_range(raw, metric, alpha=alpha)
    gated = can_fail(low, high, metric)
    entry |= {
        "mean": float(raw.mean()),
        "sd": float(raw.std(ddof=1)),
        "low": low,
        "high": high,
        "gated": gated,
    }
    if not gated:
        entry["reason"] = (
            f"cannot fail: the bounds ({_shown(low)}, {_shown(high)}) hold every value it can take"
        )
    return entry


def _shown(bound: float | None) -> str:
    return "none" if bound is None else f"{bound:.3g}"


def machine() -> dict[str, Any]:
    """Where a baseline was built: CPU model, thread counts and the numeric libraries' versions."""
    return {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "scipy": version("scipy"),
        "scikit-learn": version("scikit-learn"),
        "blas": [
            {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for lib in threadpoolctl.threadpool_info()
            if lib.get("user_api") == "blas"
        ],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_baseline(baseline: dict[str, Any], path: str | Path) -> None:
    atomic_write_json(path, baseline)


def read_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"baseline {path} does not exist; create it with --update-baseline {path}")
    try:
        baseline = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc}); regenerate it with --update-baseline {path}") from None
    if not isinstance(baseline, dict) or "entries" not in baseline:
        raise ValueError(f"{path} is not a multilivi baseline; regenerate it with --update-baseline {path}")
    if baseline.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path} is a baseline of schema {baseline.get('schema_version')}, "
            f"this gate reads schema {SCHEMA_VERSION}; "
            f"regenerate it with --update-baseline {path}"
        )
    return baseline


# --------------------------------------------------------------------------------------- check
def check_models(baseline: dict[str, Any], models: Sequence[str], *, seed: int | None = None) -> None:
    """Raise before training unless the baseline covers these models and ``seed`` is not one of its seeds."""
    unknown = [m for m in models if m not in baseline["models"]]
    if unknown:
        raise ValueError(
            f"the baseline covers models {baseline['models']}, not {unknown}; "
            "run with models among the baseline's, "
            "or regenerate it with --update-baseline"
        )
    if seed is not None and seed in baseline.get("seeds", ()):
        raise ValueError(
            f"seed {seed} is one of the baseline's seeds "
            f"({min(baseline['seeds'])}..{max(baseline['seeds'])}): a check must run at a seed the bounds "
            "were not estimated from; pass another --seed (default 0)"
        )


def gated_entries(baseline: dict[str, Any], models: Sequence[str]) -> list[dict[str, Any]]:
    """The gated entries of the baseline for the models of this run."""
    return [e for e in baseline["entries"] if e["gated"] and e["model"] in models]


def check_against(
    scores: pd.DataFrame, baseline: dict[str, Any], *, models: Sequence[str]
) -> list[Violation]:
    """Gated metrics of ``scores`` that are worse than the baseline's bound, or missing."""
    check_models(baseline, models)
    observed = gated_rows(summarise(scores)).set_index(list(KEY))
    violations = []
    for entry in gated_entries(baseline, models):
        key = tuple(entry[k] for k in KEY)
        value = float(observed["value"].get(key, np.nan))
        entry = for_replicates(entry, baseline, int(observed["n_replicates"].get(key, 1)))
        if is_violation(entry, value):
            n = len(entry["values"])
            violations.append(
                Violation(*key, entry["mean"], entry["low"], entry["high"], value=value, n_seeds=n)
            )
    return violations


def for_replicates(entry: dict[str, Any], baseline: dict[str, Any], n_new: int) -> dict[str, Any]:
    """The entry with its bounds for the mean of ``n_new`` replicates (as stored for one)."""
    if n_new <= 1:
        return entry
    metric = _gated(entry["task"], entry["metric"])
    values = np.asarray(entry["values"], dtype=float)
    low, high = acceptable_range(values, metric, alpha=baseline["alpha_per_metric"], n_new=n_new)
    return entry | {"low": low, "high": high}


def is_violation(entry: dict[str, Any], value: float) -> bool:
    """Whether ``value`` is missing or beyond the entry's bounds."""
    if math.isnan(value):
        return True
    return (entry["low"] is not None and value < entry["low"]) or (
        entry["high"] is not None and value > entry["high"]
    )


def band_used(entry: dict[str, Any], value: float) -> float:
    """How far toward its bound a value moved from the baseline mean: 0 at the mean, 1 at the bound."""
    used = [0.0]
    if entry["low"] is not None and value < entry["mean"]:
        used.append((entry["mean"] - value) / (entry["mean"] - entry["low"]))
    if entry["high"] is not None and value > entry["mean"]:
        used.append((value - entry["mean"]) / (entry["high"] - entry["mean"]))
    return max(used)


def describe(baseline: dict[str, Any], models: Sequence[str]) -> str:
    """One line: how many metrics the check gates, at which false-alarm rate, from which machine."""
    gated = gated_entries(baseline, models)
    total = [e for e in baseline["entries"] if e["model"] in models]
    where = baseline.get("machine", {})
    return (
        f"{len(gated)} of {len(total)} metrics gated "
        f"(family-wise false-alarm rate {baseline['family_alpha']:g}; "
        f"bounds from {len(baseline['seeds'])} seeds on {where.get('cpu', 'an unrecorded CPU')}, "
        f"torch {where.get('torch', '?')}, {where.get('torch_threads', '?')} torch threads)"
    )
