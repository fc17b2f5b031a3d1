"""Turn specs into :class:`ModelOutputs` through the spec-kind registry (:mod:`benchmarks.kinds`).

Each spec is parsed by the kind that claims it, validated against the cohort before anything
trains, and computed (trained, read from the model cache, or loaded) when the run reaches it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.kinds import Entry, Spec, resolve
from benchmarks.kinds.store import default_cache_dir, write_outputs
from multilivi.data import Cohort
from multilivi.eval.outputs import ModelOutputs
from multilivi.models.train import progress_label

__all__ = [
    "Entry",
    "compute_outputs",
    "default_cache_dir",
    "model_info",
    "prepare",
    "resolve_spec",
    "write_outputs",
]


def resolve_spec(raw: str) -> Spec:
    """Parse any spec (``emb:...``, ``pca[...]``, a model family spec...) with the kind that claims it."""
    return resolve(raw)


def prepare(specs: list[Spec], cohort: Cohort, *, preset: str, seed: int) -> list[Entry]:
    """Validate every spec against the cohort before anything trains.

    Each kind checks its own: model configs are built (bad overrides raise here), precomputed
    embeddings are read and aligned (missing cells raise here), and a model that needs a modality
    the cohort lacks is marked skipped with the reason.
    """
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(
            f"specs {duplicated} appear twice; each model needs its own name (e.g. emb:...:name=NAME)"
        )
    return [spec.prepare(cohort, preset=preset, seed=seed) for spec in specs]


def compute_outputs(
    entry: Entry,
    cohort: Cohort,
    train_idx: np.ndarray,
    heldout_idx: np.ndarray,
    *,
    seed: int,
    cache_dir: Path | None,
    progress: bool = True,
    label: str | None = None,
) -> ModelOutputs:
    """Outputs of one prepared entry, with their provenance (see :meth:`Entry.outputs`).

    ``label`` names its training on the progress bar and the log lines (default: the entry's name).
    """
    with progress_label(label or entry.name):
        return entry.outputs(
            cohort, train_idx, heldout_idx, seed=seed, cache_dir=cache_dir, progress=progress
        )


def model_info(entry: Entry, outputs: ModelOutputs | None) -> dict[str, Any]:
    """One model in the run summary: its kind's description, its outputs' provenance, status and reason.

    ``outputs`` is None when the model was skipped or failed (then ``cached`` and ``fit_seconds``
    are absent).
    """
    info = entry.describe()
    if outputs is not None:
        fit = outputs.fit_seconds
        info |= {"cached": outputs.cached, "fit_seconds": None if math.isnan(fit) else fit}
    return info | {"status": "skipped" if entry.skip_reason else "ok", "reason": entry.skip_reason}
