"""Score rows: the long-format table every task writes and every report and gate reads."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from multilivi.atomic import atomic_write

SCORE_COLUMNS = (
    "model",
    "view",
    "task",
    "metric",
    "value",
    "sd",
    "higher_is_better",
    "status",
    "reason",
    "chance",
    "replicate",
)
CORE_COLUMNS = SCORE_COLUMNS[:9]  # what a score table written before chance levels and replicates holds
MODEL_LEVEL = "-"


@dataclass(frozen=True)
class ScoreRow:
    """One number of one task for one model view (a row of ``scores.csv``)."""

    model: str
    view: str
    task: str
    metric: str
    value: float
    sd: float = math.nan
    higher_is_better: bool = True
    status: str = "ok"
    reason: str = ""
    chance: float = math.nan
    replicate: int = 0


def not_run(model: str, view: str, task: str, reason: str, *, status: str = "skipped") -> ScoreRow:
    """A row recording that a whole task could not run for this model view, and why."""
    return ScoreRow(model, view, task, "*", math.nan, status=status, reason=reason)


_TYPES = {"value": float, "sd": float, "higher_is_better": bool, "chance": float, "replicate": int}


def scores_frame(rows: Iterable[ScoreRow]) -> pd.DataFrame:
    """The long-format score table of ``rows`` (columns ``SCORE_COLUMNS``)."""
    frame = pd.DataFrame([asdict(r) for r in rows], columns=list(SCORE_COLUMNS))
    return frame.astype(_TYPES)


def write_scores(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the score table as CSV, atomically."""
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.10g"))


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read a score table; one written before chance levels and replicates gets NaN chance, replicate 0."""
    numeric = ["", "nan"]
    frame = pd.read_csv(
        path, keep_default_na=False, na_values={"value": numeric, "sd": numeric, "chance": numeric}
    )
    missing = [c for c in CORE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is not a multilivi score table: columns {missing} are missing")
    if "chance" not in frame.columns:
        frame["chance"] = math.nan
    if "replicate" not in frame.columns:
        frame["replicate"] = 0
    return frame[list(SCORE_COLUMNS)].astype(_TYPES | {"reason": str})
