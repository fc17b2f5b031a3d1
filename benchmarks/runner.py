"""Turn specs into :class:`ModelOutputs`: train (or load from the cache) and read out each model.

Trained models are cached by (spec, effective config, cohort data hash, held-out split, seed):
a second identical run trains nothing, and a run interrupted while a model trains resumes with
the models already finished. Cache entries are folders written under a temporary name and renamed
into place when complete, so a killed run never leaves a half-written entry.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import multilivi.models as models_package
from benchmarks.embeddings import (
    EmbeddingSpec,
    PCASpec,
    check_embedding,
    parse_embedding_spec,
    parse_pca_spec,
    pca_outputs,
)
from benchmarks.specs import ModelSpec, build_config, parse_spec
from multilivi.atomic import atomic_write, atomic_write_json
from multilivi.data import Cohort
from multilivi.eval.tasks import ModelOutputs
from multilivi.models.registry import model_class

logger = logging.getLogger(__name__)

AnySpec = ModelSpec | EmbeddingSpec | PCASpec
UNCACHED_FIELDS = ("progress",)  # config fields that do not change the trained model
HISTORY_FILE = "history.csv"


def resolve_spec(raw: str) -> AnySpec:
    """Parse any spec: ``emb:...``, ``pca[...]`` or a model family spec."""
    if raw.startswith("emb:"):
        return parse_embedding_spec(raw)
    if raw == "pca" or raw.startswith("pca:"):
        return parse_pca_spec(raw)
    return parse_spec(raw)


@dataclass
class Entry:
    """One spec prepared for a run: validated, with its effective config or its loaded embedding."""

    spec: AnySpec
    config: Any = None
    outputs: ModelOutputs | None = None
    skip_reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


def prepare(specs: list[AnySpec], cohort: Cohort, *, preset: str, seed: int) -> list[Entry]:
    """Validate every spec against the cohort before anything trains.

    Model configs are built (bad overrides raise here); precomputed embeddings are read and aligned
    (missing cells raise here); a model that needs protein on a cohort without it is marked skipped.
    """
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(
            f"specs {duplicated} appear twice; each model needs its own name (e.g. emb:...:name=NAME)"
        )
    entries = []
    for spec in specs:
        if isinstance(spec, EmbeddingSpec):
            entries.append(
                Entry(
                    spec,
                    outputs=check_embedding(spec, cohort),
                    info={"family": "emb", "path": str(spec.path)},
                )
            )
        elif isinstance(spec, PCASpec):
            entries.append(Entry(spec, info={"family": "pca", "n_components": spec.n_components}))
        else:
            config = build_config(spec, preset, seed=seed)
            entry = Entry(spec, config=config, info={"family": spec.family, "config": _config_dict(config)})
            needs = model_class(spec.family).modalities
            missing = [m for m in needs if m not in cohort.modalities]
            if missing:
                entry.skip_reason = (
                    f"{spec.family} needs modality {missing[0]!r}, which cohort {cohort.name!r} lacks"
                )
            entries.append(entry)
    return entries


def compute_outputs(
    entry: Entry,
    cohort: Cohort,
    train_idx: np.ndarray,
    heldout_idx: np.ndarray,
    *,
    seed: int,
    cache_dir: Path | None,
    progress: bool = True,
) -> ModelOutputs:
    """Outputs of one entry: a precomputed embedding, the PCA baseline, or a (cached) trained model."""
    if entry.outputs is not None:
        return entry.outputs
    if isinstance(entry.spec, PCASpec):
        return pca_outputs(cohort, entry.spec, seed=seed)
    key = cache_key(entry, cohort, heldout_idx)
    folder = None if cache_dir is None else Path(cache_dir) / f"{entry.name}-{key}"
    if folder is not None and (folder / "outputs.npz").exists():
        logger.info("%s: loaded from the cache (%s)", entry.name, folder)
        entry.info["cached"] = True
        outputs = _read_outputs(folder)
        entry.info["fit_seconds"] = outputs.fit_seconds
        return outputs
    model = model_class(entry.spec.family)(replace(entry.config, progress=progress))
    logger.info("%s: training on %d cells", entry.name, len(train_idx))
    model.fit(cohort, train_idx)
    outputs = ModelOutputs(
        views=model.views(cohort, np.arange(cohort.n_cells)),
        donor_factors=model.donor_factors(),
        heldout_nll=model.reconstruction_nll(cohort, heldout_idx),
        fit_seconds=float(model.fit_seconds_),
        seconds_per_epoch=float(model.fit_seconds_) / max(1, len(model.history_)),
        history=pd.DataFrame(model.history_).rename_axis("epoch"),
    )
    entry.info["cached"] = False
    entry.info["fit_seconds"] = outputs.fit_seconds
    if folder is not None:
        _write_cache_entry(folder, model, outputs, entry.info)
    return outputs


def cache_key(entry: Entry, cohort: Cohort, heldout_idx: np.ndarray) -> str:
    """Hash of (model code, spec, effective config, data hash, held-out split); the seed is in the config."""
    config = {k: v for k, v in _config_dict(entry.config).items() if k not in UNCACHED_FIELDS}
    payload = {
        "code": model_code_hash(),
        "family": entry.spec.family,
        "config": config,
        "data": cohort.data_hash,
        "heldout": hashlib.sha256(np.asarray(heldout_idx, dtype=np.int64).tobytes()).hexdigest()[:16],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@functools.cache
def model_code_hash() -> str:
    """Hash of the model package's source, so a changed model never reuses a stale cache entry."""
    h = hashlib.sha256()
    for path in sorted(Path(models_package.__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------ cache i/o
def _write_cache_entry(folder: Path, model: Any, outputs: ModelOutputs, info: dict[str, Any]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        model.save(tmp / "model.pt")
        write_outputs(tmp, outputs)
        atomic_write_json(tmp / "info.json", {k: v for k, v in info.items() if k != "cached"})
        if folder.exists():  # a concurrent run finished first: keep its entry
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_outputs(folder: Path, outputs: ModelOutputs) -> None:
    """Write views, held-out NLL, donor factors and training history into ``folder`` (atomically, file by file)."""
    arrays = {f"view/{k}": v for k, v in outputs.views.items()}
    arrays |= {f"nll/{k}": v for k, v in (outputs.heldout_nll or {}).items()}
    arrays["timing"] = np.array([outputs.fit_seconds, outputs.seconds_per_epoch])
    atomic_write(folder / "outputs.npz", lambda tmp: np.savez(tmp, **arrays))
    for name, table in outputs.donor_factors.items():
        atomic_write(
            folder / f"donor_factors_{name}.csv", lambda tmp, t=table: t.to_csv(tmp, float_format="%.17g")
        )
    if outputs.history is not None:
        history = outputs.history
        atomic_write(folder / HISTORY_FILE, lambda tmp: history.to_csv(tmp, float_format="%.17g"))


def _read_outputs(folder: Path) -> ModelOutputs:
    with np.load(folder / "outputs.npz", allow_pickle=False) as f:
        views = {k.removeprefix("view/"): f[k] for k in f.files if k.startswith("view/")}
        nll = {k.removeprefix("nll/"): f[k] for k in f.files if k.startswith("nll/")}
        fit_seconds, per_epoch = f["timing"]
    factors = {
        p.stem.removeprefix("donor_factors_"): pd.read_csv(p, index_col=0, dtype={0: str})
        for p in sorted(folder.glob("donor_factors_*.csv"))
    }
    for table in factors.values():
        table.index = table.index.astype(str)
        table.index.name = "donor"
    history = (
        pd.read_csv(folder / HISTORY_FILE, index_col="epoch") if (folder / HISTORY_FILE).exists() else None
    )
    return ModelOutputs(views, factors, nll or None, float(fit_seconds), float(per_epoch), history)


def _config_dict(config: Any) -> dict[str, Any] | None:
    return asdict(config) if is_dataclass(config) else None


def default_cache_dir() -> Path:
    root = os.environ.get("MULTILIVI_CACHE") or Path.home() / ".cache" / "multilivi"
    return Path(root) / "models"
