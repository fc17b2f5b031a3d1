"""scvi-tools baselines: ``totalvi`` (TOTALVI on RNA + protein counts) and ``scvi`` (SCVI on RNA counts).

Spec grammar::

    totalvi[:max_epochs=N,n_latent=K,batch_size=B,name=NAME]
    scvi[:max_epochs=N,n_latent=K,batch_size=B,name=NAME]

Each trains on exactly the harness's training cells at the run's seed (``scvi.settings.seed``, which
seeds torch, numpy and Lightning): scvi-tools' own validation split is replaced by the harness's, so
early stopping and the learning-rate schedule on plateau, which watch that split, are off. The batch
covariate is the cohort's ``batch`` column when it has one. ``max_epochs`` defaults by preset
(:data:`DEFAULT_EPOCHS`; ``paper``: scvi-tools' own default, 400 epochs up to 20 000 cells, fewer above),
``n_latent`` and ``batch_size`` to scvi-tools' defaults for the model (:data:`DEFAULTS`).

Outputs: view ``c``, the posterior mean of the latent z for every cell (the cell state, named as the
families' cell-state view); no donor factors, so donor phenotypes are donor (x cell-type) means of
``c``, as for any embedding (:func:`multilivi.eval.phenotypes.donor_means`); and, as
``own_nll``, scvi-tools' per-cell reconstruction error on the held-out cells (its own likelihood and
estimator: one posterior sample of z), reported apart from the harness's NLL.

scvi-tools is an optional extra (``pip install -e ".[scvi]"``), imported only when a model trains: a
run without it gets a skipped row naming the install command. Trained outputs are cached like the
families' (:mod:`benchmarks.kinds.store`), keyed by this module's code, the scvi-tools version, the
model, its settings, the seed, the cohort's data hash and the split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd

from benchmarks.kinds import Entry, SpecKind, register, safe_name
from benchmarks.kinds.store import entry_key, index_hash, read_cached, write_cache_entry, write_outputs
from multilivi.data import Cohort
from multilivi.eval.outputs import ModelOutputs

logger = logging.getLogger(__name__)

Model = Literal["totalvi", "scvi"]
INSTALL_COMMAND = 'pip install -e ".[scvi]"'
VIEW = "c"
PROTEIN_KEY = "protein_expression"  # obsm key of the protein counts in the AnnData scvi-tools reads
BATCH = "batch"
DEFAULT_EPOCHS: dict[str, int | None] = {"ci": 10, "quick": 100, "paper": None}  # None: scvi-tools'


@dataclass(frozen=True)
class ScviSettings:
    """What a spec sets: epochs (None: scvi-tools' default), latent dimension, minibatch size."""

    max_epochs: int | None
    n_latent: int
    batch_size: int


DEFAULTS: dict[Model, dict[str, int]] = {  # scvi-tools 1.4's defaults of TOTALVI / SCVI
    "totalvi": {"n_latent": 20, "batch_size": 256},
    "scvi": {"n_latent": 10, "batch_size": 128},
}
OPTIONS = ("max_epochs", "n_latent", "batch_size", "name")
_MINIMUM = {"max_epochs": 1, "n_latent": 1, "batch_size": 2}  # BatchNorm needs 2 cells
# scvi-tools' per-cell reconstruction terms -> modality
RECONSTRUCTION_TERMS: dict[Model, dict[str, str]] = {
    "totalvi": {"reconst_loss_gene": "rna", "reconst_loss_protein": "prot"},
    "scvi": {"reconstruction_loss": "rna"},
}


@dataclass(frozen=True)
class ScviSpec:
    """A parsed ``totalvi`` / ``scvi`` spec: the model, its overrides in the order written, a label."""

    raw: str
    model: Model
    overrides: tuple[tuple[str, int], ...] = ()
    label: str | None = None

    @property
    def name(self) -> str:
        """Filesystem-safe display name: ``name=``, else the spec (``totalvi_max_epochs-5``)."""
        return safe_name(self.label if self.label is not None else self.raw.replace("=", "-"))

    def settings(self, preset: str) -> ScviSettings:
        """The effective settings: scvi-tools' defaults, the preset's epochs, then the overrides."""
        if preset not in DEFAULT_EPOCHS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(DEFAULT_EPOCHS)}")
        values = {"max_epochs": DEFAULT_EPOCHS[preset], **DEFAULTS[self.model], **dict(self.overrides)}
        return ScviSettings(**values)

    def prepare(self, cohort: Cohort, *, preset: str, seed: int) -> ScviEntry:
        """The effective settings; skipped without scvi-tools, or for ``totalvi`` without protein."""
        return ScviEntry(self, skip_reason(self.model, cohort), settings=self.settings(preset))


def skip_reason(model: Model, cohort: Cohort) -> str:
    """Why ``model`` cannot run on ``cohort`` (``""`` when it can); finds scvi-tools without importing it."""
    if model == "totalvi" and not cohort.has_protein:
        return f"totalvi needs a protein modality; cohort {cohort.name!r} has none (use scvi for RNA only)"
    if importlib.util.find_spec("scvi") is None:
        return f"{model} needs scvi-tools: {INSTALL_COMMAND}"
    return ""


@dataclass
class ScviEntry(Entry):
    """A ``totalvi`` / ``scvi`` spec with its effective settings."""

    spec: ScviSpec
    settings: ScviSettings = field(kw_only=True)

    def describe(self) -> dict[str, Any]:
        return {"family": self.spec.model, "config": asdict(self.settings)}

    def outputs(
        self,
        cohort: Cohort,
        train_idx: np.ndarray,
        heldout_idx: np.ndarray,
        *,
        seed: int,
        cache_dir: Path | None,
        progress: bool = True,
    ) -> ModelOutputs:
        """Read the outputs from the cache, or train the model (and cache them when ``cache_dir`` is set)."""
        config = {**asdict(self.settings), "seed": seed, "scvi_tools": scvi_version()}
        key = cache_key(self.spec.model, config, cohort, train_idx, heldout_idx)
        folder = None if cache_dir is None else Path(cache_dir) / f"{self.name}-{key}"
        cached = None if folder is None else read_cached(folder)
        if cached is not None:
            logger.info("%s: loaded from the cache (%s)", self.name, folder)
            return dataclasses.replace(cached, config=config)
        logger.info("%s: training scvi-tools %s on %d cells", self.name, self.spec.model, len(train_idx))
        outputs = train_outputs(
            self.spec.model, cohort, train_idx, heldout_idx, self.settings, seed=seed, progress=progress
        )
        outputs = dataclasses.replace(outputs, config=config)
        if folder is not None:
            write_cache_entry(folder, lambda tmp: write_outputs(tmp, outputs))
        return outputs


def scvi_version() -> str:
    """The installed scvi-tools version (read from its metadata: scvi itself is not imported)."""
    try:
        return importlib.metadata.version("scvi-tools")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"scvi-tools is not installed: {INSTALL_COMMAND}") from None


def cache_key(
    model: Model, config: dict[str, Any], cohort: Cohort, train_idx: np.ndarray, heldout_idx: np.ndarray
) -> str:
    """Hash of (this module's code, model, settings with seed and scvi-tools version, data, split)."""
    payload = {
        "code": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16],
        "model": model,
        "config": config,
        "data": cohort.data_hash,
        "split": index_hash(train_idx, heldout_idx),
    }
    return entry_key(payload)


# ------------------------------------------------------------------------------------- training
def import_scvi() -> ModuleType:
    """``scvi`` (slow: seconds), or an ImportError naming the install command."""
    try:
        import scvi
    except ImportError as error:
        raise ImportError(f"the scvi-tools baselines need scvi-tools: {INSTALL_COMMAND} ({error})") from error
    return scvi


def scvi_anndata(cohort: Cohort, *, protein: bool) -> ad.AnnData:
    """The AnnData scvi-tools reads: RNA counts as X (the cohort's float32 CSR, not copied), the batch.

    With ``protein``, the (n_cells, n_proteins) protein counts as a dense table in
    ``obsm[PROTEIN_KEY]`` (scvi-tools refuses sparse protein counts).
    """
    obs = pd.DataFrame(index=cohort.cell_names.copy())
    batches = cohort.labels(BATCH)
    if batches is not None:
        obs[BATCH] = pd.Categorical(batches)
    adata = ad.AnnData(X=cohort.counts("rna"), obs=obs)
    if protein:
        adata.obsm[PROTEIN_KEY] = pd.DataFrame(
            cohort.counts("prot").toarray(), index=obs.index, columns=cohort.feature_names("prot")
        )
    return adata


def train_outputs(
    model: Model,
    cohort: Cohort,
    train_idx: np.ndarray,
    heldout_idx: np.ndarray,
    settings: ScviSettings,
    *,
    seed: int,
    progress: bool = True,
) -> ModelOutputs:
    """Train TOTALVI or SCVI on the ``train_idx`` cells; its latent means, held-out error and timings.

    Parameters
    ----------
    train_idx, heldout_idx
        Cell positions (n_train,) trained on and (n_heldout,) scored by the reconstruction error.

    Returns
    -------
    Outputs with view ``c`` (n_cells, n_latent), ``own_nll`` by modality (n_heldout,) in nats summed
    over features, the per-epoch history and the training time.
    """
    scvi = import_scvi()
    scvi.settings.seed = seed
    train_idx = np.asarray(train_idx, dtype=np.int64)
    adata = scvi_anndata(cohort, protein=model == "totalvi")
    batch_key = BATCH if BATCH in adata.obs else None
    # every cell is in one of scvi-tools' train / validation / test sets: the rest is its test set
    split = [train_idx, np.array([], dtype=np.int64), np.setdiff1d(np.arange(cohort.n_cells), train_idx)]
    # a last minibatch of 1-2 cells breaks the encoder's BatchNorm: drop it (scvi-tools warns about it)
    datasplitter = {"drop_last": 0 < len(train_idx) % settings.batch_size < 3}
    if model == "totalvi":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "We recommend using setup_mudata", DeprecationWarning)
            scvi.model.TOTALVI.setup_anndata(
                adata, protein_expression_obsm_key=PROTEIN_KEY, batch_key=batch_key
            )
        vae = scvi.model.TOTALVI(adata, n_latent=settings.n_latent)
        kwargs = {
            "external_indexing": split,
            "reduce_lr_on_plateau": False,
            "datasplitter_kwargs": datasplitter,
        }
    else:
        scvi.model.SCVI.setup_anndata(adata, batch_key=batch_key)
        vae = scvi.model.SCVI(adata, n_latent=settings.n_latent)
        kwargs = {"datasplitter_kwargs": {**datasplitter, "external_indexing": split}}
    start = time.perf_counter()
    vae.train(
        max_epochs=settings.max_epochs,
        batch_size=settings.batch_size,
        early_stopping=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        **kwargs,
    )
    fit_seconds = time.perf_counter() - start
    latent = vae.get_latent_representation(batch_size=settings.batch_size)
    error = vae.get_reconstruction_error(indices=np.asarray(heldout_idx), return_mean=False)
    own_nll = {
        modality: error[term].detach().cpu().numpy().astype(np.float64)
        for term, modality in RECONSTRUCTION_TERMS[model].items()
    }
    history = pd.concat(list(vae.history.values()), axis=1).rename_axis("epoch").astype(np.float64)
    return ModelOutputs(
        views={VIEW: np.asarray(latent, dtype=np.float64)},
        own_nll=own_nll,
        fit_seconds=fit_seconds,
        seconds_per_epoch=fit_seconds / len(history),
        history=history,
    )


# --------------------------------------------------------------------------------------- grammar
def parse_scvi_spec(raw: str) -> ScviSpec:
    """Parse ``totalvi[:key=value,...]`` or ``scvi[:key=value,...]``; bad options raise a ValueError."""
    model, _, text = raw.strip().partition(":")
    if model not in RECONSTRUCTION_TERMS:
        raise ValueError(f"spec {raw!r} is not an scvi-tools baseline; those are {', '.join(DEFAULTS)}")
    options: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in OPTIONS or not value:
            raise ValueError(
                f"bad option {item!r} in {raw!r}; {model} takes {', '.join(f'{k}=' for k in OPTIONS)} "
                "(max_epochs, n_latent, batch_size: integers; name: the display name)"
            )
        if key in options:
            raise ValueError(f"spec {raw!r} sets {key!r} twice")
        if key != "name" and not (value.isdigit() and int(value) >= _MINIMUM[key]):
            raise ValueError(f"spec {raw!r}: {key} must be an integer >= {_MINIMUM[key]}, got {value!r}")
        options[key] = value if key == "name" else int(value)
    label = options.pop("name", None)
    return ScviSpec(raw=raw.strip(), model=model, overrides=tuple(options.items()), label=label)


class ScviKind(SpecKind):
    """``totalvi``, ``scvi`` and their ``:key=value`` forms."""

    name = "scvi-tools"

    def matches(self, raw: str) -> bool:
        return raw.strip().partition(":")[0] in RECONSTRUCTION_TERMS

    def parse(self, raw: str) -> ScviSpec:
        return parse_scvi_spec(raw)


register(ScviKind())
