"""DMLIVI: shared and modality-specific cell-state latents (thesis eq. 12–18).

Four encoders: shared and specific per modality. The shared posterior is the product of the two
shared experts and the N(0, I) prior (eq. 12, thesis A.2); the specific latents s_rna, s_prot have
their own posteriors. Decoder of modality m sees ``[softmax(c), softmax(s_m)]`` (each latent is put
on its own simplex, as LIVI's c is); the interaction uses ``softmax(c)`` (``interaction_input=
"shared"``, eq. 13) or ``[softmax(c), softmax(s_rna), softmax(s_prot)]`` (``"all"``, the thesis'
proposed follow-up). Loss (eq. 18) = λ_rna·NLL_rna + λ_prot·NLL_prot + KL(c) + KL(s_rna) + KL(s_prot)
+ λ_align·L_align + λ_disent·L_disent + λ_L1 Σ_m ‖W_DxC^m‖₁ + λ_A·L_A, where
L_align = mean over cells and dims of (μ_c^rna − μ_c^prot)² (eq. 16) and L_disent = Σ_m Σ_jk R_jk²
with R the batch correlation matrix between the posterior means of c and s_m (eq. 17).
``donor_stage_prot_scale`` < 1 (beyond the thesis, off by default) lowers λ_prot in the donor stage only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from multilivi.data.cohort import PROT, RNA
from multilivi.models.base import (
    Batch,
    DonorEffects,
    LatentModule,
    LossOutput,
    ModelBase,
    ModelConfig,
    as_int_tuple,
    check_weights,
    encoder_input,
    encoder_parameters,
    sample,
)
from multilivi.models.components import (
    Encoder,
    ModalityDecoder,
    interaction,
    kl_standard_normal,
    product_of_experts,
)


@dataclass(frozen=True, kw_only=True)
class DMLIVIConfig(ModelConfig):
    """DMLIVI settings. ``n_latent`` is the shared dimension; ``encoder_hidden`` the RNA-shared encoder."""

    n_rna_specific: int = 5  # RNA-specific latent dimension
    n_prot_specific: int = 2  # protein-specific latent dimension
    prot_shared_hidden: tuple[int, ...] = (64, 32)  # protein-shared encoder widths
    rna_specific_hidden: tuple[int, ...] = (128, 64)  # RNA-specific encoder widths
    prot_specific_hidden: tuple[int, ...] = (32, 16)  # protein-specific encoder widths
    rna_weight: float = 1.0  # λ_rna
    prot_weight: float = 1.0  # λ_prot (spec suffix -W)
    donor_stage_prot_scale: float = (
        1.0  # λ_prot × this in stage 2 (1: the thesis; 0: protein shapes only c, s)
    )
    align_weight: float = 1.0  # λ_align on the shared-means MSE
    disent_weight: float = 1.0  # λ_disent on the shared/specific correlation penalty
    protein_likelihood: Literal["nb", "nbmix"] = "nb"  # "nbmix": background/foreground mixture (totalVI)
    interaction_input: Literal["shared", "all"] = "shared"  # cell state that enters u = (c σ(A)) ⊙ D

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("prot_shared_hidden", "rna_specific_hidden", "prot_specific_hidden"):
            as_int_tuple(self, name)
        for name in ("n_rna_specific", "n_prot_specific"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_weights(
            self, "rna_weight", "prot_weight", "align_weight", "disent_weight", "donor_stage_prot_scale"
        )
        if self.protein_likelihood not in ("nb", "nbmix"):
            raise ValueError(f"protein_likelihood must be 'nb' or 'nbmix', got {self.protein_likelihood!r}")
        if self.interaction_input not in ("shared", "all"):
            raise ValueError(f"interaction_input must be 'shared' or 'all', got {self.interaction_input!r}")


def correlation_penalty(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Σ_jk corr(a_j, b_k)² over a batch: ``a`` (B, J), ``b`` (B, K) centred and unit-normed per column."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    a = a / (a.norm(dim=0) + eps)
    b = b / (b.norm(dim=0) + eps)
    return (a.T @ b).pow(2).sum()


class DMLIVIModule(LatentModule):
    """Four encoders, product of experts, decoders on [c, s_m], shared donor effects."""

    sum_order = "flat"

    def __init__(self, config: DMLIVIConfig, n_features: dict[str, int], n_donors: int) -> None:
        super().__init__()
        self.config = config
        k, k_rna, k_prot = config.n_latent, config.n_rna_specific, config.n_prot_specific
        g_rna, g_prot = n_features[RNA], n_features[PROT]
        self.enc_rna_shared = Encoder(g_rna, config.encoder_hidden, k)
        self.enc_prot_shared = Encoder(g_prot, config.prot_shared_hidden, k)
        self.enc_rna_specific = Encoder(g_rna, config.rna_specific_hidden, k_rna)
        self.enc_prot_specific = Encoder(g_prot, config.prot_specific_hidden, k_prot)
        decoder = dict(n_dxc=config.n_dxc, n_v=config.n_v, batch_norm=config.batch_norm)
        self.decoders = nn.ModuleDict(
            {
                RNA: ModalityDecoder(g_rna, k + k_rna, **decoder),
                PROT: ModalityDecoder(g_prot, k + k_prot, likelihood=config.protein_likelihood, **decoder),
            }
        )
        n_state = k if config.interaction_input == "shared" else k + k_rna + k_prot
        self.donor = DonorEffects(n_donors, n_state, config.n_dxc, config.n_v)
        self.weights = {RNA: config.rna_weight, PROT: config.prot_weight}
        self.donor_weights = {**self.weights, PROT: config.prot_weight * config.donor_stage_prot_scale}
        self.set_stage(self.stage)

    def _encoders(self) -> tuple[Encoder, ...]:
        return (self.enc_rna_shared, self.enc_prot_shared, self.enc_rna_specific, self.enc_prot_specific)

    def cell_state_parameters(self) -> list[nn.Parameter]:
        return encoder_parameters(*self._encoders()) + [
            p for d in self.decoders.values() for p in d.cell_state_parameters()
        ]

    def _encode(self, batch: Batch) -> dict[str, tuple[Tensor, Tensor]]:
        """(μ, log σ²) of every posterior: ``c`` (PoE), ``c_rna``, ``c_prot``, ``s_rna``, ``s_prot``."""
        x_rna = encoder_input(batch["x"][RNA], self.config.encoder_input)
        x_prot = encoder_input(batch["x"][PROT], self.config.encoder_input)
        c_rna, c_prot = self.enc_rna_shared(x_rna), self.enc_prot_shared(x_prot)  # (B, K) each
        c = product_of_experts([c_rna[0], c_prot[0]], [c_rna[1], c_prot[1]], prior=True)
        return {
            "c": c,
            "c_rna": c_rna,
            "c_prot": c_prot,
            "s_rna": self.enc_rna_specific(x_rna),  # (B, K_rna)
            "s_prot": self.enc_prot_specific(x_prot),  # (B, K_prot)
        }

    def _log_probs(self, batch: Batch, c: Tensor, s_rna: Tensor, s_prot: Tensor) -> dict[str, Tensor]:
        """Per-cell log-likelihood (B,) per modality from pre-softmax latents."""
        cs, ss = torch.softmax(c, -1), {RNA: torch.softmax(s_rna, -1), PROT: torch.softmax(s_prot, -1)}
        u = v = None
        if self.donor_on:
            state = (
                cs if self.config.interaction_input == "shared" else torch.cat([cs, ss[RNA], ss[PROT]], -1)
            )
            u = interaction(state, self.donor.assign_logits, self.donor.d[batch["donor"]])  # (B, M)
            v = self.donor.v[batch["donor"]]  # (B, P)
        out = {}
        for m, decoder in self.decoders.items():
            state_m = torch.cat([cs, ss[m]], -1)  # (B, K + K_m)
            out[m] = decoder.log_prob(
                batch["x"][m],
                batch["library"][m],
                batch["log_factorial"][m],
                state_m,
                decoder.logits(state_m, u, v),
            )
        return out

    def loss(self, batch: Batch, generator: torch.Generator) -> LossOutput:
        post = self._encode(batch)
        draws = {k: sample(*post[k], generator) for k in ("c", "s_rna", "s_prot")}
        log_probs = self._log_probs(batch, draws["c"], draws["s_rna"], draws["s_prot"])
        regularisers = {f"kl_{k}": kl_standard_normal(*post[k]).mean() for k in ("c", "s_rna", "s_prot")}
        align = (post["c_rna"][0] - post["c_prot"][0]).pow(2).mean()
        regularisers["align"] = self.config.align_weight * align
        regularisers["disent"] = self.config.disent_weight * sum(
            correlation_penalty(post["c"][0], post[s][0]) for s in ("s_rna", "s_prot")
        )
        return self.loss_output(log_probs, regularisers)

    def posterior_means(self, batch: Batch) -> dict[str, Tensor]:
        post = self._encode(batch)
        shared = post["c"][0]
        return {"shared": shared, "all": torch.cat([shared, post["s_rna"][0], post["s_prot"][0]], -1)}

    def log_prob_at_mean(self, batch: Batch) -> dict[str, Tensor]:
        post = self._encode(batch)
        return self._log_probs(batch, post["c"][0], post["s_rna"][0], post["s_prot"][0])


class DMLIVI(ModelBase):
    """DMLIVI on RNA + protein counts; refuses a cohort without protein.

    Views (posterior means of the pre-softmax Gaussians): ``"shared"`` (n_cells, n_latent), the
    product-of-experts mean of c, and ``"all"`` (n_cells, n_latent + n_rna_specific + n_prot_specific)
    = [shared, s_rna, s_prot]. Loadings: ``rna/C`` (columns ``c_*`` then ``s_rna_*``), ``prot/C``
    (``c_*``, ``s_prot_*``), ``*/DxC``, ``*/V``. History terms: ``loss, nll_rna, nll_prot, kl_c,
    kl_s_rna, kl_s_prot, align, disent, l1_rna, l1_prot, assign`` (NLLs unweighted, penalties weighted).
    """

    family = "dmlivi"
    config_class = DMLIVIConfig
    modalities = (RNA, PROT)

    def _build_module(self, config: DMLIVIConfig, n_features: dict[str, int], n_donors: int) -> DMLIVIModule:
        return DMLIVIModule(config, n_features, n_donors)

    def _loading_columns(self, modality: str, term: str, n: int) -> list[str]:
        if term != "C":
            return super()._loading_columns(modality, term, n)
        k = self.config_.n_latent
        return [f"c_{j}" for j in range(k)] + [f"s_{modality}_{j}" for j in range(n - k)]
