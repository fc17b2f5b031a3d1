"""Metric-regression gate: a baseline of gated metrics with tolerance bands, and the check against it.

How the bands are made (``--update-baseline``): the comparison runs with 5 seeds (``seed`` ..
``seed + 4``: each seed changes model initialisation, minibatch order, the held-out split and the
probe splits, on the same cohort). Per gated metric the baseline stores the mean over seeds and
a band ``max(K_SD * sd, REL_FLOOR * |mean|, abs_floor)``, where ``sd`` is the standard deviation over
the 5 seeds and ``abs_floor`` is 1 for counts and 0.01 otherwise, so a metric that happens not
to vary over 5 seeds still has a band. ``--check`` fails on any metric whose value lies outside
its band in the worse direction (for λ: farther from 1), and on a gated metric that is missing.
Improvements never fail the gate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multilivi.atomic import atomic_write_json

SCHEMA_VERSION = 1
K_SD = 3.0
REL_FLOOR = 0.02
GATED = {
    "reconstruction": ("nll_per_cell_rna", "nll_per_cell_prot"),
    "probe_cell_type": ("accuracy", "balanced_accuracy"),
    "probe_cell_subtype": ("accuracy", "balanced_accuracy"),
    "probe_donor": ("accuracy",),
    "association": ("n_significant_pairs", "n_significant_variants", "lambda_gc"),
    "truth": ("power", "empirical_fdr", "factor_recovery", "cell_state_r2"),
}
TOWARD_ONE = ("lambda_gc", "lambda_gc_null")
COUNTS = ("n_significant_pairs", "n_significant_variants")
KEY = ["model", "view", "task", "metric"]


@dataclass(frozen=True)
class Violation:
    """A gated metric that regressed beyond its band (or went missing)."""

    model: str
    view: str
    task: str
    metric: str
    baseline: float
    band: float
    value: float

    def __str__(self) -> str:
        where = f"{self.model}/{self.view}/{self.task}/{self.metric}"
        if math.isnan(self.value):
            return f"{where}: missing from this run (baseline {self.baseline:.4g})"
        return f"{where}: {self.value:.4g} is outside baseline {self.baseline:.4g} ± {self.band:.3g} (worse)"


def gated_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The rows of a score table that the gate watches (status ok)."""
    mask = scores.apply(lambda r: r["metric"] in GATED.get(r["task"], ()), axis=1) & (scores["status"] == "ok")
    return scores.loc[mask]


def make_baseline(runs: Sequence[pd.DataFrame], *, models: Sequence[str], meta: dict[str, Any]) -> dict[str, Any]:
    """Baseline entries from the score tables of runs with different seeds."""
    if len(runs) < 2:
        raise ValueError("a baseline needs runs with at least 2 seeds to measure the spread (5 are used by default)")
    stacked = pd.concat([gated_rows(run).assign(run=i) for i, run in enumerate(runs)])
    entries = []
    for key, group in stacked.groupby(KEY, sort=True):
        values = group["value"].to_numpy(float)
        mean, sd = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
        abs_floor = 1.0 if key[3] in COUNTS else 0.01
        entries.append(
            dict(zip(KEY, key))
            | {
                "value": mean,
                "sd": sd,
                "band": max(K_SD * sd, REL_FLOOR * abs(mean), abs_floor),
                "higher_is_better": bool(group["higher_is_better"].iloc[0]),
                "n_seeds": int(len(values)),
                "values": [float(v) for v in values],
            }
        )
    return {"schema_version": SCHEMA_VERSION, "models": list(models), **meta, "entries": entries}


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
    if not isinstance(baseline, dict) or baseline.get("schema_version") != SCHEMA_VERSION or "entries" not in baseline:
        raise ValueError(f"{path} is not a multilivi baseline (schema {SCHEMA_VERSION}); regenerate it with --update-baseline")
    return baseline


def check_models(baseline: dict[str, Any], models: Sequence[str]) -> None:
    """Raise unless the baseline was made for exactly these models (checked before any training)."""
    if sorted(models) != sorted(baseline["models"]):
        raise ValueError(
            f"the baseline is for models {baseline['models']} but this run compares {list(models)}; "
            "run with the baseline's --models, or regenerate it with --update-baseline"
        )


def check_against(scores: pd.DataFrame, baseline: dict[str, Any], *, models: Sequence[str]) -> list[Violation]:
    """Gated metrics of ``scores`` that are worse than ``baseline`` beyond their band."""
    check_models(baseline, models)
    observed = gated_rows(scores).set_index(KEY)["value"]
    violations = []
    for entry in baseline["entries"]:
        key = tuple(entry[k] for k in KEY)
        value = float(observed.get(key, np.nan))
        if _worse_beyond_band(entry, value):
            violations.append(Violation(*key, baseline=entry["value"], band=entry["band"], value=value))
    return violations


def _worse_beyond_band(entry: dict[str, Any], value: float) -> bool:
    if math.isnan(value):
        return True
    base, band = entry["value"], entry["band"]
    if entry["metric"] in TOWARD_ONE:
        return abs(value - 1.0) > abs(base - 1.0) + band
    if entry["higher_is_better"]:
        return value < base - band
    return value > base + band
