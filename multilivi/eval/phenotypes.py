"""Donor phenotypes for embeddings without donor factors: per-donor (and per-cell-type) means of a view."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from numpy.typing import NDArray

logger = logging.getLogger(__name__)


def donor_means(
    view: NDArray[np.floating],
    donors: NDArray,
    *,
    cell_type: NDArray | None = None,
    min_cells: int = 5,
) -> pd.DataFrame:
    """Per-donor mean of every view dimension, optionally one column block per cell type.

    Parameters
    ----------
    view
        (cells, dims) embedding.
    donors
        (cells,) donor name of each cell.
    cell_type
        (cells,) labels; columns become ``<cell type>:<dim>``.
    min_cells
        A donor (or donor x cell type) mean over fewer cells is treated as missing.

    Returns
    -------
    DataFrame (donors, dims) or (donors, cell types x dims), indexed by donor name (sorted).
    Missing donor x cell-type means (fewer than ``min_cells`` cells) are filled with the mean of
    that column over the other donors, so every donor keeps a full phenotype row; cell types
    that no donor has ``min_cells`` cells of are dropped. Donors without ``min_cells`` cells in
    total are dropped. Both are logged.
    """
    view = np.asarray(view, dtype=np.float64)
    donors = np.asarray(donors).astype(str)
    if view.ndim != 2 or donors.shape != (view.shape[0],):
        raise ValueError(
            f"donors has shape {donors.shape} but view has shape {view.shape}; need one donor per row"
        )
    if cell_type is not None and len(cell_type) != view.shape[0]:
        raise ValueError(f"cell_type has {len(cell_type)} entries but view has {view.shape[0]} rows")
    if min_cells < 1:
        raise ValueError(f"min_cells must be at least 1, got {min_cells}")
    columns = [f"dim{i}" for i in range(view.shape[1])]
    frame = pd.DataFrame(view, columns=columns)
    frame["donor"] = donors
    totals = frame["donor"].value_counts()
    enough = totals.index[totals >= min_cells]
    if len(enough) < len(totals):
        logger.info("dropping %d donors with fewer than %d cells", len(totals) - len(enough), min_cells)
    frame = frame[frame["donor"].isin(enough)]
    if cell_type is None:
        return frame.groupby("donor")[columns].mean().sort_index()
    frame["cell_type"] = np.asarray(cell_type).astype(str)[frame.index]
    grouped = frame.groupby(["donor", "cell_type"])
    means = grouped[columns].mean()
    means[grouped.size().to_numpy() < min_cells] = np.nan
    wide = means.unstack("cell_type").swaplevel(axis=1).sort_index(axis=1)
    wide = wide.reindex(sorted(enough)).dropna(axis=1, how="all")
    n_filled = int(wide.isna().to_numpy().sum())
    if n_filled:
        logger.info("filled %d donor x cell-type means (< %d cells) with column means", n_filled, min_cells)
    wide = wide.fillna(wide.mean())
    wide.columns = [f"{ct}:{dim}" for ct, dim in wide.columns]
    return wide
