"""Multiple testing over all factor x variant tests: BH, Storey q-values, genomic control, QQ plots.

Also the exact binomial interval used for power, FDR and calibration ratios.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

CHI2_MEDIAN = float(stats.chi2.ppf(0.5, 1))  # 0.454936...


def benjamini_hochberg(pvalues: NDArray[np.floating]) -> NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (q-values) over all entries of ``pvalues``.

    Parameters
    ----------
    pvalues
        Array of any shape; NaN entries (untested pairs) are ignored and stay NaN.

    Returns
    -------
    Array of the same shape; equals ``scipy.stats.false_discovery_control(p, axis=None)`` on the
    finite entries.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    q[finite] = bh_qvalues(p[finite], p[finite].size)
    return q


def bh_qvalues(p: NDArray, n_tests: int) -> NDArray:
    """BH q-values of ``p`` (1-d) when ``p`` holds the smallest of ``n_tests`` p-values.

    Exact for the entries whose q-value is at most ``fdr`` whenever no p-value left out of ``p``
    is BH-significant at ``fdr``.
    """
    order = np.argsort(p, kind="stable")
    ranked = p[order] * n_tests / np.arange(1, p.size + 1)
    q = np.empty_like(ranked)
    q[order] = np.minimum.accumulate(ranked[::-1])[::-1]
    return np.minimum(q, 1.0)


def bh_hits(
    pvalues: NDArray[np.floating], fdr: float
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Significant entries of a (factors, variants) p-value matrix under BH at level ``fdr``.

    Streams row by row, so a memory-mapped matrix is never loaded whole: only p-values
    ``<= fdr`` can be significant, and their q-values are exact among themselves because every
    larger p-value has a q-value above ``fdr``.

    Returns
    -------
    rows, cols
        Indices of the significant entries (q <= fdr).
    qvalues
        Their BH q-values.
    """
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must lie in (0, 1), got {fdr}")
    rows, cols, values, n_tests = [], [], [], 0
    for i, row in enumerate(pvalues):
        row = np.asarray(row, dtype=np.float64)
        n_tests += int(np.isfinite(row).sum())
        small = np.nonzero(row <= fdr)[0]
        rows.append(np.full(small.size, i, dtype=np.intp))
        cols.append(small)
        values.append(row[small])
    rows, cols, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(values)
    q = bh_qvalues(values, n_tests) if values.size else values
    significant = q <= fdr
    return rows[significant], cols[significant], q[significant]


def storey_qvalues(pvalues: NDArray[np.floating], *, lambda_: float = 0.5) -> NDArray[np.float64]:
    """Storey q-values: BH scaled by the estimated null proportion ``pi0 = #{p > lambda} / ((1 - lambda) n)``.

    NaN entries are ignored; ``pi0`` is capped at 1.
    """
    if not 0 < lambda_ < 1:
        raise ValueError(f"lambda_ must lie in (0, 1), got {lambda_}")
    p = np.asarray(pvalues, dtype=np.float64)
    finite = p[np.isfinite(p)]
    pi0 = min(1.0, float((finite > lambda_).sum()) / ((1.0 - lambda_) * max(finite.size, 1)))
    return np.minimum(benjamini_hochberg(p) * pi0, 1.0)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided ``level`` interval of a binomial proportion ``k / n``."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    tail = (1.0 - level) / 2.0
    low = float(stats.beta.ppf(tail, k, n - k + 1)) if k > 0 else 0.0
    high = float(stats.beta.ppf(1.0 - tail, k + 1, n - k)) if k < n else 1.0
    return low, high


def genomic_control_lambda(pvalues: NDArray[np.floating]) -> float:
    """Genomic-control inflation ``median(chi2_1 quantile of 1 - p) / 0.4549``; NaN entries ignored."""
    p = np.asarray(pvalues, dtype=np.float64)
    p = p[np.isfinite(p)]
    if p.size == 0:
        return float("nan")
    return float(stats.chi2.isf(np.median(p), 1) / CHI2_MEDIAN)


@dataclass(frozen=True)
class QQData:
    """The p-value distribution of a bounded scan: exact small p-values, then histogram edges.

    Attributes
    ----------
    pvalues, ranks
        (points,) ascending p-values and their ranks (1 = smallest) among ``n_tests``.
    n_tests
        Number of tests.
    lambda_gc
        Genomic-control lambda of all tests.
    bin_p, bin_counts
        (bins,) p-value at each fine histogram bin's centre and the tests in it.
    """

    pvalues: NDArray[np.float64]
    ranks: NDArray[np.int64]
    n_tests: int
    lambda_gc: float
    bin_p: NDArray[np.float64]
    bin_counts: NDArray[np.int64]


def qq_plot(pvalues: Mapping[str, NDArray[np.floating] | QQData], *, max_points: int = 20_000, ax=None):
    """QQ plot of -log10 p against uniform expectation, one series per model, with lambda in the legend.

    Parameters
    ----------
    pvalues
        Model name -> p-values of any shape (NaN ignored), or the :class:`QQData` of a bounded scan.
    max_points
        Above this, only the smallest ``max_points`` p-values are drawn exactly and the rest are
        thinned on an even grid of ranks (the plot looks the same, the file stays small).
    ax
        Matplotlib axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if ax is None:  # a Figure outside pyplot: nothing is retained after the caller drops it
        fig = Figure(figsize=(4.5, 4.5))
        ax = fig.subplots()
    else:
        fig = ax.figure
    top = 0.0
    for name, values in pvalues.items():
        if isinstance(values, QQData):
            if values.n_tests == 0:
                continue
            ranks, p, lam = values.ranks, values.pvalues, values.lambda_gc
            expected = (ranks - 0.5) / values.n_tests
        else:
            p = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
            if p.size == 0:
                continue
            keep = np.unique(
                np.concatenate(
                    [np.arange(min(p.size, max_points)), np.linspace(0, p.size - 1, max_points).astype(int)]
                )
            )
            expected = ((np.arange(1, p.size + 1) - 0.5) / p.size)[keep]
            lam, p = genomic_control_lambda(p), p[keep]
        x, y = -np.log10(expected), -np.log10(np.maximum(p, np.finfo(float).tiny))
        ax.scatter(x, y, s=4, label=f"{name} (λ={lam:.3f})")
        top = max(top, x.max())
    ax.plot([0, top], [0, top], color="grey", lw=1, ls="--")
    ax.set_xlabel("expected −log10 p")
    ax.set_ylabel("observed −log10 p")
    if pvalues:
        ax.legend(fontsize="small", frameon=False)
    return fig
