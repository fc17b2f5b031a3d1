"""Held-out cells, stratified within each donor (and cell type when present)."""

from __future__ import annotations

import numpy as np

from multilivi.data.cohort import Cohort


def split_cells(
    cohort: Cohort, frac: float = 0.1, seed: int = 0, *, within: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split cells into training and held-out sets, stratified within each donor.

    Within a donor, cells are ordered by cell type (randomly within a type) and every k-th cell is
    held out from a random offset, so each donor's held-out cells follow its cell-type composition.
    Every donor keeps at least one training cell; a donor with at least ``ceil(1 / frac)`` cells
    gets at least one held-out cell.

    Parameters
    ----------
    cohort
        The cohort to split.
    frac
        Target fraction of held-out cells per donor, in (0, 1).
    seed
        Seed of the random ordering.
    within
        (n,) cell positions to split (e.g. the training cells, for a validation split); all cells
        when None.

    Returns
    -------
    train_idx, heldout_idx
        Sorted integer arrays of cell positions; disjoint, covering ``within`` (all cells).
    """
    if not 0 < frac < 1:
        raise ValueError(f"frac must lie in (0, 1), got {frac}")
    rng = np.random.default_rng(seed)
    cell_type = cohort.labels("cell_type")
    strata = (
        np.zeros(cohort.n_cells, dtype=np.int64)
        if cell_type is None
        else np.unique(cell_type, return_inverse=True)[1]
    )
    pool = np.arange(cohort.n_cells) if within is None else np.unique(within)
    heldout = np.zeros(cohort.n_cells, dtype=bool)
    for donor in range(cohort.n_donors):
        cells = pool[cohort.donor_index[pool] == donor]
        n_heldout = min(int(np.floor(frac * len(cells) + 0.5)), len(cells) - 1)
        if len(cells) >= np.ceil(1 / frac):
            n_heldout = max(n_heldout, 1)
        if n_heldout <= 0:
            continue
        ordered = cells[np.lexsort((rng.random(len(cells)), strata[cells]))]
        positions = np.floor(
            rng.random() * len(cells) / n_heldout + np.arange(n_heldout) * len(cells) / n_heldout
        )
        heldout[ordered[positions.astype(np.int64)]] = True
    return pool[~heldout[pool]], np.flatnonzero(heldout)
