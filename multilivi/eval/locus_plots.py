"""Figures of the association scans and programs: Manhattan, p-value histograms, banded QQ, |r| heatmap.

Every function returns a matplotlib :class:`Figure` made outside pyplot (never shown or saved
here), or None when there is nothing to draw.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import NDArray
from scipy import stats

from multilivi.eval.embedding_plots import OKABE_ITO
from multilivi.eval.fdr import QQData

_CHROM_SHADES = ("#0072B2", "#56B4E9")
_HIT_COLOUR = "#D55E00"
MAX_POINTS = 20_000  # per series: the smallest p-values drawn exactly, the rest thinned (as fdr.qq_plot)
Curve = NDArray[np.float64]


def _chrom_key(chrom: str) -> tuple[int, str]:
    """Sort key of a chromosome name: numeric ones in numeric order, then the others."""
    text = str(chrom).removeprefix("chr")
    return (int(text), "") if text.isdigit() else (10_000, text)


def manhattan(loci: pd.DataFrame, *, title: str = "", fdr: float = 0.05) -> Figure | None:
    """−log10 of the minimum p over factors per variant along the genome, one panel per view.

    Parameters
    ----------
    loci
        The ``loci`` artefact: columns ``view, variant, chrom, pos, min_p, hit``.
    title
        Figure title (e.g. the model name).
    fdr
        The FDR of the hit calls, for the legend.
    """
    loci = loci.dropna(subset=["min_p"])
    if loci.empty:
        return None
    views = list(dict.fromkeys(loci["view"]))
    fig = Figure(figsize=(9.0, 2.4 * len(views)), layout="constrained")
    axes = fig.subplots(len(views), 1, squeeze=False)[:, 0]
    chroms = sorted(loci["chrom"].astype(str).unique(), key=_chrom_key)
    spans = loci.groupby(loci["chrom"].astype(str))["pos"].max().reindex(chroms)
    offsets = pd.Series(np.concatenate([[0], np.cumsum(spans.to_numpy()[:-1])]), index=chroms)
    for ax, view in zip(axes, views):
        rows = _thinned(loci.loc[loci["view"] == view])
        chrom = rows["chrom"].astype(str)
        x = rows["pos"].to_numpy() + offsets.loc[chrom].to_numpy()
        y = -np.log10(np.clip(rows["min_p"].to_numpy(float), 1e-300, 1.0))
        shade = np.asarray(_CHROM_SHADES)[pd.Index(chroms).get_indexer(chrom) % 2]
        ax.scatter(x, y, s=6, c=shade, linewidths=0, rasterized=True)
        hit = rows["hit"].to_numpy(bool)
        ax.scatter(x[hit], y[hit], s=28, marker="D", color=_HIT_COLOUR, label=f"hit (q ≤ {fdr:g})")
        ax.set_ylabel(f"{view}\n−log10 min p")
        ax.set_xticks(offsets.to_numpy() + spans.to_numpy() / 2, chroms, fontsize=7)
        ax.set_xlim(0, float(offsets.iloc[-1] + spans.iloc[-1]))
        if hit.any():
            ax.legend(loc="upper right", fontsize=8, frameon=False)
    axes[-1].set_xlabel("chromosome")
    if title:
        fig.suptitle(title)
    return fig


def _thinned(rows: pd.DataFrame) -> pd.DataFrame:
    """The ``MAX_POINTS`` variants of smallest p and every hit, plus an even sample of the others.

    A Manhattan plot of millions of variants looks the same with the null bulk thinned.
    """
    if len(rows) <= 2 * MAX_POINTS:
        return rows
    order = np.argsort(rows["min_p"].to_numpy(float), kind="stable")
    keep = np.zeros(len(rows), dtype=bool)
    keep[order[:MAX_POINTS]] = True
    keep[np.linspace(0, len(rows) - 1, MAX_POINTS).astype(np.int64)] = True
    keep |= rows["hit"].to_numpy(bool)
    return rows.loc[keep]


def pvalue_histograms(
    pvalues: Mapping[str, NDArray[np.floating] | QQData], *, bins: int = 20
) -> Figure | None:
    """Histogram of all finite p-values of each model (a panel per model); flat under the null.

    A bounded scan's :class:`QQData` is drawn from its fine histogram (each fine bin counted in
    the bin of its centre's p-value).
    """
    finite = {m: _values_and_weights(p) for m, p in pvalues.items()}
    finite = {m: pw for m, pw in finite.items() if pw[0].size}
    if not finite:
        return None
    fig = Figure(figsize=(2.8 * len(finite), 2.6), layout="constrained")
    axes = fig.subplots(1, len(finite), squeeze=False)[0]
    for ax, (i, (model, (p, weights))) in zip(axes, enumerate(finite.items())):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        ax.hist(p, bins=bins, range=(0, 1), density=True, weights=weights, color=colour)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_title(model, fontsize="medium")
        ax.set_xlabel("p")
    axes[0].set_ylabel("density")
    return fig


def _values_and_weights(pvalues: NDArray[np.floating] | QQData) -> tuple[Curve, Curve | None]:
    """Finite p-values and None, or a bounded scan's fine-bin p-values and counts."""
    if isinstance(pvalues, QQData):
        # the hits (p < threshold) all fall in the first coarse bin with the top fine bins
        p = np.append(pvalues.bin_p, 0.0)
        return p, np.append(pvalues.bin_counts, pvalues.n_tests - pvalues.bin_counts.sum()).astype(float)
    p = np.asarray(pvalues, dtype=float).ravel()
    return p[np.isfinite(p)], None


def qq_band(
    n: int, level: float = 0.95, ranks: NDArray[np.integer] | None = None
) -> tuple[Curve, Curve, Curve]:
    """Expected −log10 p of ``n`` uniform order statistics and their pointwise ``level`` band (low, high).

    At every rank ``1..n``, or only at ``ranks``.
    """
    i = np.arange(1, n + 1) if ranks is None else np.asarray(ranks)
    expected = -np.log10(i / (n + 1))
    tail = (1 - level) / 2
    low = -np.log10(stats.beta.ppf(1 - tail, i, n - i + 1))
    high = -np.log10(stats.beta.ppf(tail, i, n - i + 1))
    return expected, low, high


def qq_banded(pvalues: Mapping[str, NDArray[np.floating]], *, level: float = 0.95) -> Figure | None:
    """QQ plot of −log10 p per model against the uniform, with the pointwise ``level`` band of the null."""
    finite = {m: _ranked(p) for m, p in pvalues.items()}
    finite = {m: rpn for m, rpn in finite.items() if rpn[1].size}
    if not finite:
        return None
    fig = Figure(figsize=(4.6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    n = max(rpn[2] for rpn in finite.values())
    bounded = [rpn[0] for rpn in finite.values() if rpn[2] == n and rpn[0] is not None]
    expected, low, high = qq_band(n, level, ranks=bounded[0] if bounded else None)
    ax.fill_between(expected, low, high, color="#bbbbbb", alpha=0.5, label=f"{level:.0%} null band")
    ax.plot(expected, expected, color="black", linewidth=1)
    for i, (model, (ranks, p, size)) in enumerate(finite.items()):
        ranks = np.arange(1, p.size + 1) if ranks is None else ranks
        x = -np.log10(ranks / (size + 1))
        y = -np.log10(np.clip(p, 1e-300, 1.0))
        ax.scatter(x, y, s=6, color=OKABE_ITO[i % len(OKABE_ITO)], label=model, rasterized=True)
    ax.set_xlabel("expected −log10 p")
    ax.set_ylabel("observed −log10 p")
    ax.legend(fontsize=8, frameon=False)
    return fig


def _ranked(pvalues: NDArray[np.floating] | QQData) -> tuple[NDArray | None, Curve, int]:
    """(ranks or None for 1..n, ascending p-values, n tests) of dense p-values or a bounded scan.

    Above :data:`MAX_POINTS` dense p-values, the smallest ``MAX_POINTS`` are kept exactly and the
    rest on an even grid of ranks: the curve looks the same and the figure stays small.
    """
    if isinstance(pvalues, QQData):
        return pvalues.ranks, pvalues.pvalues, pvalues.n_tests
    p = np.asarray(pvalues, dtype=float).ravel()
    p = np.sort(p[np.isfinite(p)])
    if p.size <= MAX_POINTS:
        return None, p, p.size
    keep = np.union1d(np.arange(MAX_POINTS), np.linspace(0, p.size - 1, MAX_POINTS).astype(np.int64))
    return keep + 1, p[keep], p.size


def correlation_heatmap(abs_r: pd.DataFrame, matched: Mapping[str, str], *, title: str = "") -> Figure | None:
    """True programs × learned factors |r|, matched pairs outlined.

    Parameters
    ----------
    abs_r
        (true programs, learned factors) absolute correlations of the donor factors.
    matched
        True program → its matched factor.
    """
    if abs_r.empty:
        return None
    fig = Figure(figsize=(1.0 + 0.45 * abs_r.shape[1], 1.0 + 0.4 * abs_r.shape[0]), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(abs_r.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(abs_r.shape[1]), abs_r.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(abs_r.shape[0]), abs_r.index, fontsize=7)
    columns = list(abs_r.columns)
    for row, program in enumerate(abs_r.index):
        if program in matched:
            col = columns.index(matched[program])
            ax.add_patch(_box(col, row))
    fig.colorbar(image, ax=ax, label="|r|")
    ax.set_xlabel("learned D factor")
    ax.set_ylabel("true program")
    if title:
        ax.set_title(title, fontsize="medium")
    return fig


def _box(col: int, row: int):
    """An outline around heatmap cell (row, col)."""
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#D55E00", linewidth=2)
