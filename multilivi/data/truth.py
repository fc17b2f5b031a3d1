"""Ground truth recorded by the simulator, needed to score recovery, power and FDR."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(eq=False)
class Truth:
    """What a simulated cohort was generated from.

    Attributes
    ----------
    cell_state
        Array of shape (n_cells, n_states): true non-negative cell-state weights (rows sum to 1).
    donor_factors
        DataFrame (n_donors, n_programs): true donor x cell-state (D) factor values, indexed by donor.
    persistent_factors
        DataFrame (n_donors, n_persistent): true persistent donor (V) factor values, indexed by donor.
    causal
        Table with one row per causal (variant, factor) pair: columns ``variant, factor, effect``.
        ``factor`` names a column of ``donor_factors`` or ``persistent_factors``.
    null_variants
        Ids of the variants with no effect on any factor.
    program_states
        Array of shape (n_programs,): the cell state each D x C program acts in.
    program_loadings
        DataFrame (n_genes, n_programs): the true RNA logit effect of each D x C program per gene,
        indexed by gene; the program's genes are its non-zero rows. None when not recorded.
    """

    cell_state: np.ndarray
    donor_factors: pd.DataFrame
    persistent_factors: pd.DataFrame
    causal: pd.DataFrame
    null_variants: pd.Index
    program_states: np.ndarray
    program_loadings: pd.DataFrame | None = None

    @property
    def causal_variants(self) -> pd.Index:
        return pd.Index(self.causal["variant"].unique(), name="variant")

    def write(self, path: str | Path) -> None:
        """Write to an ``.npz`` file (no pickles)."""
        loadings = {}
        if self.program_loadings is not None:
            loadings = {
                "program_loadings": self.program_loadings.to_numpy(np.float64),
                "program_genes": self.program_loadings.index.to_numpy(str),
            }
        np.savez(
            path,
            cell_state=self.cell_state,
            donors=self.donor_factors.index.to_numpy(str),
            donor_factors=self.donor_factors.to_numpy(),
            donor_factor_names=self.donor_factors.columns.to_numpy(str),
            persistent_factors=self.persistent_factors.to_numpy(),
            persistent_factor_names=self.persistent_factors.columns.to_numpy(str),
            causal_variant=self.causal["variant"].to_numpy(str),
            causal_factor=self.causal["factor"].to_numpy(str),
            causal_effect=self.causal["effect"].to_numpy(np.float64),
            null_variants=self.null_variants.to_numpy(str),
            program_states=self.program_states,
            **loadings,
        )

    @classmethod
    def read(cls, path: str | Path) -> Truth:
        with np.load(path, allow_pickle=False) as f:
            donors = pd.Index(f["donors"], name="donor")
            loadings = None
            if "program_loadings" in f.files:
                genes = pd.Index(f["program_genes"], name="gene")
                loadings = pd.DataFrame(f["program_loadings"], index=genes, columns=f["donor_factor_names"])
            return cls(
                cell_state=f["cell_state"],
                donor_factors=pd.DataFrame(f["donor_factors"], index=donors, columns=f["donor_factor_names"]),
                persistent_factors=pd.DataFrame(
                    f["persistent_factors"], index=donors, columns=f["persistent_factor_names"]
                ),
                causal=pd.DataFrame(
                    {
                        "variant": f["causal_variant"],
                        "factor": f["causal_factor"],
                        "effect": f["causal_effect"],
                    }
                ),
                null_variants=pd.Index(f["null_variants"], name="variant"),
                program_states=f["program_states"],
                program_loadings=loadings,
            )
