"""Held-out reconstruction: mean negative log-likelihood per cell and per feature, by modality."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from multilivi.eval.records import MetricResult, skipped


def reconstruction_summary(
    nll: Mapping[str, NDArray[np.floating]],
    n_features: Mapping[str, int],
    cell_type: NDArray | None = None,
) -> list[MetricResult]:
    """Mean held-out NLL per cell and per feature for every modality (lower is better).

    Parameters
    ----------
    nll
        Modality -> (held-out cells,) negative log-likelihood in nats, summed over features.
    n_features
        Modality -> number of features the NLL is summed over.
    cell_type
        (held-out cells,) labels; adds the per-cell-type means to ``details``.

    Returns
    -------
    Two results per modality: ``nll_per_cell_<mod>`` and ``nll_per_feature_<mod>``. A modality
    with no cells or a non-finite NLL yields skipped results with the reason.
    """
    results = []
    for modality, values in nll.items():
        values = np.asarray(values, dtype=np.float64)
        names = (f"nll_per_cell_{modality}", f"nll_per_feature_{modality}")
        if modality not in n_features or n_features[modality] < 1:
            raise ValueError(f"n_features lacks a positive count for {modality!r}; pass one per modality")
        if cell_type is not None and len(cell_type) != values.size:
            raise ValueError(f"cell_type has {len(cell_type)} entries, nll[{modality!r}] has {values.size}")
        if values.size == 0 or not np.isfinite(values).all():
            reason = f"{modality!r} NLL " + ("is empty" if values.size == 0 else "has NaN or inf entries")
            results += [skipped(name, reason) for name in names]
            continue
        per_type = {}
        if cell_type is not None:
            per_type = pd.Series(values).groupby(np.asarray(cell_type)).mean().to_dict()
        for name, divisor in zip(names, (1, n_features[modality])):
            details = {
                "n_cells": int(values.size),
                "n_features": int(n_features[modality]),
                "per_cell_type": {str(k): float(v) / divisor for k, v in per_type.items()},
            }
            results.append(MetricResult(name, float(values.mean()) / divisor, details))
    return results
