"""LIVI: one encoder, one cell-state latent, linear decoders with donor × cell-state interaction.

Reference semantics (livi_reference.md §1–4, §8.1): q(z|x) diagonal Gaussian with prior N(0, I);
decoders see ``c = softmax(z)``; interaction ``u = (c σ(A)) ⊙ D[donor]``; bias-free linear decoders
W_C, W_DxC, W_V; NB mean ``library · softmax_features(h)``; per-feature dispersion.
Loss per minibatch = mean over cells of [−Σ_features log p + KL] + λ_L1‖W_DxC‖₁ + λ_A Σ(σ(A)(1−σ(A)))²,
the penalties (stage 2 only) not scaled by the number of cells, as the reference.

Deliberate differences: the encoder sees ``log1p(counts)`` by default (``encoder_input="raw"`` gives
the reference's raw counts; log1p trains more stably at the reference's learning rate), and views
are posterior means, never samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from multilivi.data.cohort import RNA
from multilivi.models.base import (
    Batch,
    DonorEffects,
    LatentModule,
    LossOutput,
    ModelBase,
    ModelConfig,
    encoder_input,
    encoder_parameters,
    sample,
)
from multilivi.models.components import Encoder, ModalityDecoder, interaction, kl_standard_normal


@dataclass(frozen=True, kw_only=True)
class LIVIConfig(ModelConfig):
    """LIVI settings: everything in :class:`~multilivi.models.base.ModelConfig`, nothing more."""


class SharedLatentModule(LatentModule):
    """One encoder on the concatenated modalities, one latent z, a decoder per modality.

    LIVI is this module with ``rna`` only; MultiSLIVI with ``rna`` and ``prot`` (thesis eq. 5–11).

    Parameters
    ----------
    config
        Architecture, penalties and encoder input.
    n_features
        Modality → number of features, in encoder-input order.
    n_donors
        Rows of D and V.
    weights
        Modality → reconstruction weight λ_m.
    likelihoods
        Modality → ``"nb"`` or ``"nbmix"``.
    donor_weights
        Modality → λ_m in stage 2; None: ``weights``.
    """

    def __init__(
        self,
        config: ModelConfig,
        n_features: dict[str, int],
        n_donors: int,
        weights: dict[str, float],
        likelihoods: dict[str, Literal["nb", "nbmix"]],
        donor_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.weights = weights
        self.donor_weights = weights if donor_weights is None else donor_weights
        k = config.n_latent
        self.encoder = Encoder(sum(n_features.values()), config.encoder_hidden, k)
        self.decoders = nn.ModuleDict(
            {
                m: ModalityDecoder(
                    n, k, config.n_dxc, config.n_v, batch_norm=config.batch_norm, likelihood=likelihoods[m]
                )
                for m, n in n_features.items()
            }
        )
        self.donor = DonorEffects(n_donors, k, config.n_dxc, config.n_v)
        self.set_stage(self.stage)

    def cell_state_parameters(self) -> list[nn.Parameter]:
        return encoder_parameters(self.encoder) + [
            p for d in self.decoders.values() for p in d.cell_state_parameters()
        ]

    def _encode(self, batch: Batch) -> tuple[Tensor, Tensor]:
        x = torch.cat(
            [encoder_input(batch["x"][m], self.config.encoder_input) for m in self.decoders], dim=-1
        )
        return self.encoder(x)  # 2 × (B, K)

    def _log_probs(self, batch: Batch, z: Tensor) -> dict[str, Tensor]:
        """Per-cell log-likelihood (B,) of each modality given the pre-softmax latent z (B, K)."""
        c = torch.softmax(z, dim=-1)  # (B, K) on the simplex
        u = v = None
        if self.donor_on:
            u = interaction(c, self.donor.assign_logits, self.donor.d[batch["donor"]])  # (B, M)
            v = self.donor.v[batch["donor"]]  # (B, P)
        out = {}
        for m, decoder in self.decoders.items():
            h = decoder.logits(c, u, v)  # (B, G_m)
            out[m] = decoder.log_prob(batch["x"][m], batch["library"][m], batch["log_factorial"][m], c, h)
        return out

    def loss(self, batch: Batch, generator: torch.Generator) -> LossOutput:
        mu, logvar = self._encode(batch)
        log_probs = self._log_probs(batch, sample(mu, logvar, generator))
        return self.loss_output(log_probs, {"kl": kl_standard_normal(mu, logvar).mean()})

    def posterior_means(self, batch: Batch) -> dict[str, Tensor]:
        return {"c": self._encode(batch)[0]}

    def log_prob_at_mean(self, batch: Batch) -> dict[str, Tensor]:
        return self._log_probs(batch, self._encode(batch)[0])


class LIVI(ModelBase):
    """LIVI on RNA counts (a cohort's protein modality, if any, is ignored).

    Views: ``{"c": (n_cells, n_latent)}``, the posterior mean μ of the *pre-softmax* Gaussian latent z
    (the decoders see softmax(z); μ is the embedding used for probes and UMAP, as in the thesis).
    Loadings: ``rna/C``, ``rna/DxC``, ``rna/V``. History terms: ``loss, nll_rna, kl, l1_rna, assign``.
    """

    family = "livi"
    config_class = LIVIConfig
    modalities = (RNA,)

    def _build_module(
        self, config: LIVIConfig, n_features: dict[str, int], n_donors: int
    ) -> SharedLatentModule:
        return SharedLatentModule(config, n_features, n_donors, weights={RNA: 1.0}, likelihoods={RNA: "nb"})


__all__ = ["LIVI", "LIVIConfig", "SharedLatentModule"]
