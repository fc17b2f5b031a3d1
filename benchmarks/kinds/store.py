""":class:`ModelOutputs` on disk (run folders and model-cache entries), and the model cache itself.

A cache entry is a folder ``<cache>/<name>-<key>`` written under a temporary name and renamed into
place when complete, so a killed run never leaves a half-written entry; a kind that trains keys its
entries by everything that determines the trained model (see :func:`code_hash` for the code part).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from multilivi import cache
from multilivi.atomic import atomic_write
from multilivi.eval.outputs import ModelOutputs

OUTPUTS_FILE = "outputs.npz"
HISTORY_FILE = "history.csv"
ASSIGNMENT = "assignment"  # σ(A), cell-state dims × D x C factors


def default_cache_dir() -> Path:
    """The model cache: the ``models`` folder of :func:`multilivi.cache.default_cache_dir`."""
    return cache.default_cache_dir() / "models"


def write_outputs(folder: Path, outputs: ModelOutputs) -> None:
    """Write views, held-out NLL (ours and a model's own), timings, donor factors, history, loadings, σ(A).

    Each file is written atomically.
    """
    arrays = {f"view/{k}": v for k, v in outputs.views.items()}
    arrays |= {f"nll/{k}": v for k, v in (outputs.heldout_nll or {}).items()}
    arrays |= {f"own_nll/{k}": v for k, v in (outputs.own_nll or {}).items()}
    arrays["timing"] = np.array([outputs.fit_seconds, outputs.seconds_per_epoch])
    atomic_write(folder / OUTPUTS_FILE, lambda tmp: np.savez(tmp, **arrays))
    for name, table in outputs.donor_factors.items():
        atomic_write(
            folder / f"donor_factors_{name}.csv", lambda tmp, t=table: t.to_csv(tmp, float_format="%.17g")
        )
    if outputs.history is not None:
        history = outputs.history
        atomic_write(folder / HISTORY_FILE, lambda tmp: history.to_csv(tmp, float_format="%.17g"))
    tables = {f"loadings_{m}": t for m, t in (outputs.loadings or {}).items()}
    if outputs.assignment is not None:
        tables[ASSIGNMENT] = outputs.assignment
    for name, table in tables.items():
        atomic_write(folder / f"{name}.csv", lambda tmp, t=table: t.to_csv(tmp, float_format="%.17g"))


def read_outputs(folder: Path) -> ModelOutputs:
    """The outputs :func:`write_outputs` wrote into ``folder`` (their ``config`` is not stored)."""
    with np.load(folder / OUTPUTS_FILE, allow_pickle=False) as f:
        views = {k.removeprefix("view/"): f[k] for k in f.files if k.startswith("view/")}
        nll = {k.removeprefix("nll/"): f[k] for k in f.files if k.startswith("nll/")}
        own_nll = {k.removeprefix("own_nll/"): f[k] for k in f.files if k.startswith("own_nll/")}
        fit_seconds, per_epoch = f["timing"]
    factors = {
        p.stem.removeprefix("donor_factors_"): pd.read_csv(
            p, index_col=0, dtype={0: str}, float_precision="round_trip"
        )
        for p in sorted(folder.glob("donor_factors_*.csv"))
    }
    for table in factors.values():
        table.index = table.index.astype(str)
        table.index.name = "donor"
    history = _read_history(folder / HISTORY_FILE) if (folder / HISTORY_FILE).exists() else None
    loadings = {p.stem.removeprefix("loadings_"): _read_table(p) for p in sorted(folder.glob("loadings_*"))}
    assignment = folder / f"{ASSIGNMENT}.csv"
    return ModelOutputs(
        views,
        factors,
        heldout_nll=nll or None,
        own_nll=own_nll or None,
        fit_seconds=float(fit_seconds),
        seconds_per_epoch=float(per_epoch),
        history=history,
        loadings=loadings or None,
        assignment=_read_table(assignment) if assignment.exists() else None,
    )


def _read_table(path: Path) -> pd.DataFrame:
    """A float table written with ``to_csv``: string index, exact floats."""
    table = pd.read_csv(path, index_col=0, dtype={0: str}, float_precision="round_trip")
    table.index = table.index.astype(str)
    return table


def _read_history(path: Path) -> pd.DataFrame:
    """The history as written: float columns (``epoch`` among them) indexed by ``epoch``, names kept."""
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    table = pd.read_csv(path, index_col=0, dtype=np.float64, float_precision="round_trip")
    table.columns = header[1:]  # pandas would rename the repeated "epoch" column "epoch.1"
    table.index = table.index.astype(np.int64).rename(header[0])
    return table


def read_cached(folder: Path) -> ModelOutputs | None:
    """The outputs of a complete cache entry, marked ``cached``; None when there is none."""
    if not (folder / OUTPUTS_FILE).exists():
        return None
    return replace(read_outputs(folder), cached=True)


def write_cache_entry(folder: Path, write: Callable[[Path], None]) -> None:
    """Publish a cache entry: ``write(tmp)`` fills a temporary folder, renamed to ``folder`` when done.

    When a concurrent run published ``folder`` first, its entry is kept.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        write(tmp)
        if not folder.exists():
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@functools.cache
def code_hash(package: ModuleType) -> str:
    """Hash of a package's source files, so changed model code never reuses a stale cache entry."""
    h = hashlib.sha256()
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def index_hash(*indices: np.ndarray) -> str:
    """Hash of cell-index arrays (e.g. the training and held-out rows), as int64 bytes."""
    joined = b"|".join(np.asarray(i, dtype=np.int64).tobytes() for i in indices)
    return hashlib.sha256(joined).hexdigest()[:16]


def entry_key(payload: dict) -> str:
    """The cache key of an entry: a hash of its JSON ``payload`` (code, settings, data hash, split)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
