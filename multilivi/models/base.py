"""The interface every model satisfies, and the one wrapper class that implements it.

Each family file adds a config dataclass, a torch module (a :class:`LatentModule`) and a thin
:class:`ModelBase` subclass that says which module to build; fitting, views, NLL, donor factors,
loadings and save/load are written once, here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from multilivi.data.cohort import PROT, RNA, Cohort
from multilivi.data.genetics import few_names
from multilivi.models.components import Encoder, assignment_penalty
from multilivi.models.streaming import StreamedBatches
from multilivi.models.train import Batch, CellBatches, Stage, TrainConfig, fit_module, resolve_device

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
EVAL_BATCH = 4096


# -------------------------------------------------------------------------------------- protocol
@runtime_checkable
class LatentModel(Protocol):
    """What the harness relies on (DESIGN.md §5). Everything returned is numpy or pandas."""

    def fit(self, cohort: Cohort, train_idx: np.ndarray, config: Any = None) -> Self: ...

    def views(self, cohort: Cohort, idx: np.ndarray | None = None) -> dict[str, np.ndarray]: ...

    def donor_factors(self) -> dict[str, pd.DataFrame]: ...

    def reconstruction_nll(self, cohort: Cohort, idx: np.ndarray | None = None) -> dict[str, np.ndarray]: ...

    def loadings(self) -> dict[str, pd.DataFrame]: ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> LatentModel: ...


# --------------------------------------------------------------------------------------- configs
@dataclass(frozen=True, kw_only=True)
class ModelConfig(TrainConfig):
    """Architecture and penalty settings common to the three families (plus :class:`TrainConfig`)."""

    n_latent: int = 10  # cell-state (LIVI, MultiSLIVI) or shared (DMLIVI) latent dimension
    n_dxc: int = 10  # donor x cell-state (D) factors
    n_v: int = 5  # persistent donor (V) factors; 0 disables them
    encoder_hidden: tuple[int, ...] = (256, 128)  # MLP widths; the last is a linear bottleneck
    encoder_input: Literal["log1p", "raw"] = "log1p"  # encoder sees log1p(counts) or raw counts (reference)
    batch_norm: bool = False  # per-feature BatchNorm1d on the decoder logits (the OneK1K configs use it)
    l1_weight: float = 1e-3  # λ_L1 on every D×C decoder's ‖W_DxC‖₁ (stage 2)
    a_weight: float = 1e-3  # λ_A on Σ(σ(A)(1 − σ(A)))² (stage 2)

    def __post_init__(self) -> None:
        super().__post_init__()
        as_int_tuple(self, "encoder_hidden")
        for name in ("n_latent", "n_dxc"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_v < 0:
            raise ValueError(f"n_v must be >= 0, got {self.n_v}")
        if self.encoder_input not in ("log1p", "raw"):
            raise ValueError(f"encoder_input must be 'log1p' or 'raw', got {self.encoder_input!r}")
        for name in ("l1_weight", "a_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def as_int_tuple(config: Any, name: str) -> None:
    """Normalise a widths field to a non-empty tuple of positive ints (lists are accepted)."""
    value = tuple(int(h) for h in getattr(config, name))
    if not value or min(value) < 1:
        raise ValueError(
            f"{name} must be a non-empty tuple of positive widths, got {getattr(config, name)!r}"
        )
    object.__setattr__(config, name, value)


def check_weights(config: Any, *names: str) -> None:
    """Raise unless each named loss weight is a finite number >= 0."""
    for name in names:
        value = getattr(config, name)
        if not (value >= 0 and np.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


# ---------------------------------------------------------------------------------------- module
SumOrder = Literal["penalties_last", "flat"]


@dataclass
class LossOutput:
    """The named terms of one minibatch loss, by kind, and their total (after scvi-tools' ``LossOutput``).

    Every term is a scalar tensor and every term counts: :attr:`total` sums them all, so a new
    penalty or regulariser cannot be left out of the loss.

    Attributes
    ----------
    reconstruction
        ``nll_<modality>`` → mean per-cell NLL, unweighted (as the history reports it).
    weights
        ``nll_<modality>`` → λ_m, the weight of that NLL in the total (one per reconstruction term).
    regularisers
        Cell-state terms, weighted: KL divergences, DMLIVI's alignment and disentanglement.
    penalties
        Donor-stage penalties, weighted: λ_L1‖W_DxC^m‖₁ per modality and the assignment penalty
        (zero before the donor stage); see :meth:`LatentModule.donor_penalties`.
    sum_order
        How the float sum is associated: ``"penalties_last"`` = (Σ λ_m·NLL_m + Σ regularisers) +
        Σ penalties (LIVI, MultiSLIVI); ``"flat"`` = Σ λ_m·NLL_m + Σ (regularisers, then penalties)
        (DMLIVI). Equal up to rounding; each family keeps the association it was trained with, so a
        seeded fit reproduces bit for bit.
    """

    reconstruction: dict[str, Tensor]
    weights: dict[str, float]
    regularisers: dict[str, Tensor]
    penalties: dict[str, Tensor]
    sum_order: SumOrder = "penalties_last"

    def __post_init__(self) -> None:
        if set(self.weights) != set(self.reconstruction):
            raise ValueError(
                f"reconstruction terms {list(self.reconstruction)} and weights {list(self.weights)} differ"
            )
        names = [*self.reconstruction, *self.regularisers, *self.penalties]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"loss term names must be unique and not 'loss', got {names}")

    @cached_property
    def total(self) -> Tensor:
        """The minibatch loss: every term, the NLLs weighted by λ_m."""
        loss = sum(self.weights[name] * value for name, value in self.reconstruction.items())
        if self.sum_order == "flat":
            return loss + sum([*self.regularisers.values(), *self.penalties.values()])
        return loss + sum(self.regularisers.values()) + sum(self.penalties.values())

    @property
    def terms(self) -> dict[str, Tensor]:
        """Every term by name, then ``loss`` (the total): what the training history records."""
        return {**self.reconstruction, **self.regularisers, **self.penalties, "loss": self.total}


class DonorEffects(nn.Module):
    """Donor embeddings D (n_donors, n_dxc) and V (n_donors, n_v), and the raw assignment A (n_state, n_dxc).

    All N(0, 1) at initialisation, as the reference; all trained only in stage 2.
    """

    def __init__(self, n_donors: int, n_state: int, n_dxc: int, n_v: int) -> None:
        super().__init__()
        self.d = nn.Parameter(torch.randn(n_donors, n_dxc))
        self.v = nn.Parameter(torch.randn(n_donors, n_v))
        self.assign_logits = nn.Parameter(torch.randn(n_state, n_dxc))


class LatentModule(nn.Module):
    """Base of the three torch modules: the stage switch, written once.

    Subclasses hold ``config``, ``donor: DonorEffects`` and ``decoders`` (modality → ModalityDecoder)
    and implement ``cell_state_parameters``, ``loss`` (through :meth:`loss_output`),
    ``posterior_means`` and ``log_prob_at_mean``.
    """

    config: ModelConfig
    donor: DonorEffects
    decoders: nn.ModuleDict  # modality -> ModalityDecoder
    weights: dict[str, float]  # modality -> reconstruction weight λ_m in stage 1
    donor_weights: dict[str, float]  # modality -> λ_m in stage 2 (equal to ``weights`` unless configured)
    sum_order: ClassVar[SumOrder] = "penalties_last"  # see LossOutput

    def __init__(self) -> None:
        super().__init__()
        self.stage = Stage.CELL_STATE

    def reconstruction_weights(self) -> dict[str, float]:
        """λ_m of each modality in the current stage."""
        return self.donor_weights if self.donor_on else self.weights

    def cell_state_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def donor_parameters(self) -> list[nn.Parameter]:
        """D, V, A and every decoder's W_DxC and W_V: frozen in stage 1, trained in stage 2."""
        return list(self.donor.parameters()) + [
            p for d in self.decoders.values() for p in d.donor_parameters()
        ]

    def set_stage(self, stage: Stage) -> None:
        """Apply a stage: which parameters train, and whether the donor terms enter the logits.

        Parameters in neither group (the optional decoder BatchNorm affine) train in both stages, as
        in the reference.
        """
        for p in self.cell_state_parameters():
            p.requires_grad_(stage is Stage.CELL_STATE)
        for p in self.donor_parameters():
            p.requires_grad_(stage is Stage.DONOR)
        self.stage = stage

    @property
    def donor_on(self) -> bool:
        return self.stage is Stage.DONOR

    def loss(self, batch: Batch, generator: torch.Generator) -> LossOutput:
        raise NotImplementedError

    def loss_output(self, log_probs: dict[str, Tensor], regularisers: dict[str, Tensor]) -> LossOutput:
        """The minibatch :class:`LossOutput`: the family's terms and the shared :meth:`donor_penalties`.

        ``log_probs`` maps each modality to its per-cell log-likelihood (B,), whose mean NLL is weighted
        by this stage's λ_m; ``regularisers`` are the family's weighted cell-state terms.
        """
        weights = self.reconstruction_weights()
        return LossOutput(
            reconstruction={f"nll_{m}": -lp.mean() for m, lp in log_probs.items()},
            weights={f"nll_{m}": weights[m] for m in log_probs},
            regularisers=regularisers,
            penalties=self.donor_penalties(),
            sum_order=self.sum_order,
        )

    def donor_penalties(self) -> dict[str, Tensor]:
        """``l1_<m>`` = λ_L1‖W_DxC^m‖₁ per modality and ``assign`` = λ_A Σ(σ(A)(1−σ(A)))².

        Not scaled by the number of cells, as the reference; zero before the donor stage.
        """
        zero = torch.zeros((), device=self.donor.d.device)
        terms = {
            f"l1_{m}": self.config.l1_weight * d.w_dxc.weight.abs().sum() if self.donor_on else zero
            for m, d in self.decoders.items()
        }
        terms["assign"] = (
            self.config.a_weight * assignment_penalty(self.donor.assign_logits) if self.donor_on else zero
        )
        return terms

    def posterior_means(self, batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError

    def log_prob_at_mean(self, batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError

    def loadings(self) -> dict[str, Tensor]:
        """``"<modality>/<C|DxC|V>"`` → that decoder's features × factors weight."""
        return {f"{m}/{term}": w for m, d in self.decoders.items() for term, w in d.loadings().items()}


def encoder_input(x: Tensor, kind: str) -> Tensor:
    """What the encoders see: ``log1p(counts)`` or the raw counts."""
    return torch.log1p(x) if kind == "log1p" else x


def sample(mu: Tensor, logvar: Tensor, generator: torch.Generator) -> Tensor:
    """One reparameterised draw from N(μ, e^logvar)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def _check_every_donor_trains(cohort: Cohort, rows: np.ndarray) -> None:
    """Refuse training cells that leave a donor out: its D and V rows would stay at their random init."""
    counts = np.bincount(cohort.donor_index[rows], minlength=cohort.n_donors)
    untrained = cohort.donor_names[counts == 0]
    if len(untrained):
        raise ValueError(
            f"{len(untrained)} donors have no training cells ({few_names(untrained)}): their donor factors "
            "would be untrained noise tested for association; put at least one cell of every donor in "
            "train_idx (multilivi.data.split_cells stratifies within donor), or drop those donors from "
            "the cohort"
        )


def encoder_parameters(*encoders: Encoder) -> list[nn.Parameter]:
    return [p for e in encoders for p in e.parameters()]


# --------------------------------------------------------------------------------------- wrapper
class ModelBase:
    """Fit / views / donor factors / NLL / loadings / save / load, for every family.

    Subclasses set ``family``, ``config_class``, ``modalities`` and implement ``_build_module``.
    Fitted attributes: ``config_``, ``donor_names_``, ``feature_names_`` (per modality),
    ``history_``, ``device_``, ``fit_seconds_``, ``module_``.
    """

    family: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    modalities: ClassVar[tuple[str, ...]] = (RNA,)

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = self._checked_config(config) if config is not None else self.config_class()

    # --------------------------------------------------------------------------- to implement
    def _build_module(self, config: Any, n_features: dict[str, int], n_donors: int) -> LatentModule:
        raise NotImplementedError

    # ---------------------------------------------------------------------------------- fitting
    def fit(self, cohort: Cohort, train_idx: np.ndarray, config: ModelConfig | None = None) -> Self:
        """Train on the cells ``train_idx`` of ``cohort``.

        Parameters
        ----------
        cohort
            Must hold every modality the family models.
        train_idx
            Integer positions (n_train,) of the training cells.
        config
            Replaces the constructor's config when given (same family's config class).

        Returns
        -------
        self
        """
        config = self._checked_config(config) if config is not None else self.config
        self._check_modalities(cohort)
        if cohort.on_disk and config.shuffle != "blocks":
            raise ValueError(
                f"the counts of cohort {cohort.name!r} stay on disk and are streamed in row blocks: train "
                "with shuffle='blocks' (block-shuffled minibatches, multilivi.models.streaming), not "
                f"{config.shuffle!r}, or read the cohort into memory (on_disk=False)"
            )
        rows = _positions(cohort, train_idx, "train_idx")
        _check_every_donor_trains(cohort, rows)
        device = resolve_device(config.device)
        n_features = {m: cohort.n_features(m) for m in self.modalities}
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(config.seed)
            module = self._build_module(config, n_features, cohort.n_donors).to(device)
        data = _cell_batches(cohort, self.modalities, cohort.donor_index[rows], rows)
        logger.info(
            "fitting %s on %d cells, %d donors, %s; counts %s, %s minibatches",
            self.family,
            len(rows),
            cohort.n_donors,
            device,
            "streamed from disk" if cohort.on_disk else "in memory",
            "block-shuffled" if config.shuffle == "blocks" else "randomly permuted",
        )
        start = time.perf_counter()
        history = fit_module(module, data, config, device)
        self.fit_seconds_ = time.perf_counter() - start
        module.set_stage(Stage.DONOR)
        module.eval()
        self.config = self.config_ = config
        self.module_ = module
        self.history_ = history
        self.device_ = device
        self.donor_names_ = pd.Index(cohort.donor_names, name="donor")
        self.feature_names_ = {m: pd.Index(cohort.feature_names(m), name="feature") for m in self.modalities}
        return self

    # ---------------------------------------------------------------------------------- outputs
    @torch.no_grad()
    def views(self, cohort: Cohort, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Cell embeddings: the posterior means of the pre-softmax Gaussian latents (deterministic).

        Returns
        -------
        dict
            View name → array (n_idx, n_dims); keys per family (see the family's docstring).
        """
        data = self._cells(cohort, idx)
        out: dict[str, np.ndarray] = {}
        for cells, batch in data.in_order(EVAL_BATCH, self.device_):
            for key, value in self.module_.posterior_means(batch).items():
                if key not in out:
                    out[key] = np.empty((data.n_cells, value.shape[1]), dtype=np.float32)
                out[key][cells] = value.cpu().numpy()
        return out

    @torch.no_grad()
    def reconstruction_nll(self, cohort: Cohort, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per-cell negative log-likelihood in nats, summed over features, latents at their posterior mean.

        Returns
        -------
        dict
            Modality → array (n_idx,). For ``protein_likelihood="nbmix"`` the mixture NLL.
        """
        data = self._cells(cohort, idx)
        out = {m: np.empty(data.n_cells, dtype=np.float64) for m in self.modalities}
        for cells, batch in data.in_order(EVAL_BATCH, self.device_):
            log_prob = self.module_.log_prob_at_mean(batch)
            for m in self.modalities:
                out[m][cells] = -log_prob[m].cpu().numpy().astype(np.float64)
        return out

    @torch.no_grad()
    def negative_elbo(self, cohort: Cohort, idx: np.ndarray | None = None, *, seed: int = 0) -> float:
        """Mean negative ELBO per cell in nats: Σ_m NLL_m + Σ KL, unweighted, one seeded latent draw.

        The reconstruction weights λ_m and the penalties are left out, so every family is judged on
        the same bound of its own likelihood (what :mod:`benchmarks.tuning` selects learning rates by).
        """
        data = self._cells(cohort, idx)
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        total = 0.0
        for _, batch in data.in_order(EVAL_BATCH, self.device_):
            out = self.module_.loss(batch, generator)
            kl = [v for k, v in out.regularisers.items() if k == "kl" or k.startswith("kl_")]
            total += float(sum(out.reconstruction.values()) + sum(kl)) * len(batch["donor"])
        return total / data.n_cells

    def donor_factors(self) -> dict[str, pd.DataFrame]:
        """``{"D": donors × n_dxc, "V": donors × n_v}``, indexed by donor name; columns ``D_k`` / ``V_k``."""
        self._check_fitted()
        out = {}
        for key, weight in (("D", self.module_.donor.d), ("V", self.module_.donor.v)):
            values = weight.detach().cpu().numpy().astype(np.float64)
            out[key] = pd.DataFrame(
                values, index=self.donor_names_.copy(), columns=[f"{key}_{k}" for k in range(values.shape[1])]
            )
        return out

    def loadings(self) -> dict[str, pd.DataFrame]:
        """Features × factors of every linear decoder, keyed ``"<modality>/<C|DxC|V>"``.

        With decoder BatchNorm, each feature's row is multiplied by its BN scale γ / √(running var + ε).
        """
        self._check_fitted()
        out = {}
        for key, weight in self.module_.loadings().items():
            modality, term = key.split("/")
            values = weight.detach().cpu().numpy().astype(np.float64)
            columns = self._loading_columns(modality, term, values.shape[1])
            out[key] = pd.DataFrame(values, index=self.feature_names_[modality].copy(), columns=columns)
        return out

    def _loading_columns(self, modality: str, term: str, n: int) -> list[str]:
        prefix = {"C": "C", "DxC": "D", "V": "V"}[term]
        return [f"{prefix}_{k}" for k in range(n)]

    # ---------------------------------------------------------------------------------- persist
    def save(self, path: str | Path) -> None:
        """One ``torch.save`` of family, config, weights, donor and feature names, history and version."""
        self._check_fitted()
        torch.save(
            {
                "family": self.family,
                "config": asdict(self.config_),
                "state_dict": {k: v.detach().cpu() for k, v in self.module_.state_dict().items()},
                "donor_names": list(self.donor_names_),
                "feature_names": {m: list(names) for m, names in self.feature_names_.items()},
                "history": self.history_,
                "fit_seconds": self.fit_seconds_,
                "version": CHECKPOINT_VERSION,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild a fitted model from :meth:`save`'s file (on the config's device)."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{path}: checkpoint version {ckpt.get('version')} is not {CHECKPOINT_VERSION}")
        if ckpt["family"] != cls.family:
            raise ValueError(f"{path} holds a {ckpt['family']!r} model; load it with that family's class")
        config = cls.config_class(**ckpt["config"])
        model = cls(config)
        donors = pd.Index(ckpt["donor_names"], name="donor")
        features = {m: pd.Index(names, name="feature") for m, names in ckpt["feature_names"].items()}
        module = model._build_module(config, {m: len(f) for m, f in features.items()}, len(donors))
        module.load_state_dict(ckpt["state_dict"])
        module.set_stage(Stage.DONOR)
        model.device_ = resolve_device(config.device)
        model.module_ = module.to(model.device_).eval()
        model.config_ = config
        model.donor_names_, model.feature_names_ = donors, features
        model.history_, model.fit_seconds_ = ckpt["history"], ckpt["fit_seconds"]
        return model

    # ---------------------------------------------------------------------------------- checks
    def _checked_config(self, config: Any) -> ModelConfig:
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        return config

    def _check_modalities(self, cohort: Cohort) -> None:
        missing = [m for m in self.modalities if m not in cohort.modalities]
        if missing:
            raise ValueError(
                f"{type(self).__name__} models {list(self.modalities)} but cohort {cohort.name!r} has only "
                f"{list(cohort.modalities)} (missing {missing}); use 'livi' for RNA-only cohorts"
                if PROT in missing
                else f"cohort {cohort.name!r} lacks modality {missing}"
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call .fit(cohort, train_idx) first")

    def _cells(self, cohort: Cohort, idx: np.ndarray | None) -> CellBatches | StreamedBatches:
        """Check ``cohort`` against the training names and return its cells ``idx`` (all when None)."""
        self._check_fitted()
        self._check_modalities(cohort)
        for m in self.modalities:
            _same_names(f"{m} features", self.feature_names_[m], cohort.feature_names(m), ordered=True)
        _same_names("donors", self.donor_names_, cohort.donor_names, ordered=False)
        rows = np.arange(cohort.n_cells) if idx is None else _positions(cohort, idx, "idx")
        donor = self.donor_names_.get_indexer(cohort.donor_names)[cohort.donor_index[rows]]
        return _cell_batches(cohort, self.modalities, donor, rows)


def _cell_batches(
    cohort: Cohort, modalities: tuple[str, ...], donor: np.ndarray, rows: np.ndarray
) -> CellBatches | StreamedBatches:
    """The cells ``rows`` (n,) with donor positions ``donor`` (n,): streamed when the counts stay on disk."""
    if cohort.on_disk:
        return StreamedBatches({m: cohort.disk_counts(m) for m in modalities}, donor, rows)
    return CellBatches({m: cohort.counts(m) for m in modalities}, donor, rows)


def _positions(cohort: Cohort, idx: np.ndarray, name: str) -> np.ndarray:
    rows = np.asarray(idx)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(
            f"{name} must be a 1-d array of integer cell positions, got dtype {rows.dtype} shape {rows.shape}"
        )
    if not len(rows):
        raise ValueError(f"{name} is empty; pass at least one cell position")
    if rows.min() < 0 or rows.max() >= cohort.n_cells:
        raise ValueError(f"{name} holds positions outside [0, {cohort.n_cells}) of cohort {cohort.name!r}")
    return rows.astype(np.int64)


def _same_names(what: str, trained: pd.Index, given: pd.Index, *, ordered: bool) -> None:
    """Raise naming a few differences unless ``given`` matches the training names.

    Features must match exactly and in order; donors of ``given`` must all be training donors.
    """
    unknown = given.difference(trained)
    missing = trained.difference(given) if ordered else pd.Index([])
    if len(unknown) or len(missing):
        missed = f", {len(missing)} missing ({list(missing[:5])})" if len(missing) else ""
        raise ValueError(
            f"the cohort's {what} differ from the model's training {what}: {len(unknown)} unknown "
            f"({list(unknown[:5])}){missed}; use the cohort the model was trained on (or one with the "
            "same names)"
        )
    if ordered and not given.equals(trained):
        raise ValueError(
            f"the cohort's {what} are the training {what} in a different order; reorder them to match"
        )
