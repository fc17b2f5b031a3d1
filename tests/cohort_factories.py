"""Small hand-built cohorts shared by the test folders (import as ``from cohort_factories import ...``)."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from multilivi.data import Genotypes


def make_mdata(
    n_cells: int = 240, n_genes: int = 40, n_proteins: int | None = 8, n_donors: int = 12, seed: int = 0
):
    """MuData of Poisson counts with donor, cell_type, cell_subtype and batch annotations."""
    rng = np.random.default_rng(seed)
    cells = [f"cell{i:04d}" for i in range(n_cells)]
    rna = ad.AnnData(
        sp.csr_matrix(rng.poisson(3.0, (n_cells, n_genes)).astype(np.float32) + (np.arange(n_genes) == 0))
    )
    rna.obs_names, rna.var_names = cells, [f"g{j:03d}" for j in range(n_genes)]
    modalities = {"rna": rna}
    if n_proteins:
        prot = ad.AnnData(rng.poisson(10.0, (n_cells, n_proteins)).astype(np.float32) + 1)
        prot.obs_names, prot.var_names = cells, [f"p{j:02d}" for j in range(n_proteins)]
        modalities["prot"] = prot
    mdata = md.MuData(modalities)
    donor = np.arange(n_cells) % n_donors
    mdata.obs["donor"] = [f"d{d:02d}" for d in donor]
    mdata.obs["cell_type"] = rng.choice(["B", "T", "NK"], n_cells)
    mdata.obs["cell_subtype"] = [
        f"{t}{k}" for t, k in zip(mdata.obs["cell_type"], rng.integers(0, 2, n_cells))
    ]
    mdata.obs["batch"] = [f"b{d % 2}" for d in donor]
    return mdata


def make_genotypes(donors, n_variants: int = 60, seed: int = 0, missing_rate: float = 0.0) -> Genotypes:
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.1, 0.5, n_variants)
    dosage = rng.binomial(2, freq, (len(donors), n_variants)).astype(float)
    dosage[rng.random(dosage.shape) < missing_rate] = np.nan
    variants = pd.DataFrame(
        {
            "id": [f"rs{j}" for j in range(n_variants)],
            "chrom": [str(1 + j % 3) for j in range(n_variants)],
            "pos": 1000 + 10 * np.arange(n_variants),
            "a1": "A",
            "a2": "G",
        }
    )
    return Genotypes(dosage, list(donors), variants)
