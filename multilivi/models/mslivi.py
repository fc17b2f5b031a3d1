"""MultiSLIVI: LIVI with RNA and protein sharing one cell-state latent (thesis eq. 5–11).

One encoder on ``[rna, prot]`` (each log1p-transformed, or raw), modality-specific decoders
W_C^m, W_DxC^m, W_V^m on the shared c, D and V. Loss =
λ_rna·NLL_rna + λ_prot·NLL_prot + KL + λ_L1(‖W_DxC^rna‖₁ + ‖W_DxC^prot‖₁) + λ_A·L_A.

Beyond the thesis, off by default: ``donor_stage_prot_scale`` < 1 lowers λ_prot in the donor stage
only, so protein can shape the cell state without dominating D and V.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from multilivi.data.cohort import PROT, RNA
from multilivi.models.base import ModelBase, ModelConfig, check_weights
from multilivi.models.livi import SharedLatentModule


@dataclass(frozen=True, kw_only=True)
class MultiSLIVIConfig(ModelConfig):
    """MultiSLIVI settings: :class:`~multilivi.models.base.ModelConfig` plus the modality weights."""

    rna_weight: float = 1.0  # λ_rna, weight of the RNA reconstruction NLL
    prot_weight: float = 1.0  # λ_prot, weight of the protein NLL (the thesis uses 50–200; spec suffix -W)
    protein_likelihood: Literal["nb", "nbmix"] = "nb"  # "nbmix": background/foreground mixture (totalVI)
    donor_stage_prot_scale: float = 1.0  # λ_prot × this in stage 2 (1: the thesis; 0: protein shapes only c)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_weights(self, "rna_weight", "prot_weight", "donor_stage_prot_scale")
        if self.protein_likelihood not in ("nb", "nbmix"):
            raise ValueError(f"protein_likelihood must be 'nb' or 'nbmix', got {self.protein_likelihood!r}")


class MultiSLIVI(ModelBase):
    """MultiSLIVI on RNA + protein counts; refuses a cohort without protein.

    Views: ``{"c": (n_cells, n_latent)}``, the posterior mean of the pre-softmax shared latent.
    Loadings: ``rna/C, rna/DxC, rna/V, prot/C, prot/DxC, prot/V``.
    History terms: ``loss, nll_rna, nll_prot, kl, l1_rna, l1_prot, assign`` (NLLs unweighted).
    """

    family = "mslivi"
    config_class = MultiSLIVIConfig
    modalities = (RNA, PROT)

    def _build_module(
        self, config: MultiSLIVIConfig, n_features: dict[str, int], n_donors: int
    ) -> SharedLatentModule:
        weights = {RNA: config.rna_weight, PROT: config.prot_weight}
        return SharedLatentModule(
            config,
            n_features,
            n_donors,
            weights=weights,
            likelihoods={RNA: "nb", PROT: config.protein_likelihood},
            donor_weights={**weights, PROT: config.prot_weight * config.donor_stage_prot_scale},
        )
