"""Report figures drawn from the long score table (the thesis' Fig. 4a-e, plus power/FDR).

Every function takes the score table of ``multilivi.eval.results`` (columns ``SCORE_COLUMNS``),
the baseline model (drawn first and in grey; None: no baseline) and, where a panel counts
discoveries, the false-discovery rate of the run; it returns a new
:class:`matplotlib.figure.Figure`, or ``None`` when the table has no usable (status ``ok``) rows
for that panel, so a report can simply leave the panel out. Figures are
built on ``matplotlib.figure.Figure`` directly (no pyplot state, any backend, PNG through Agg)
and are never saved here; the report saves them. Which way is better on an axis comes from the
metric registry (:mod:`multilivi.eval.metrics`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from multilivi.eval.metrics import find
from multilivi.eval.outputs import DEFAULT_FDR
from multilivi.eval.results import MODEL_LEVEL, SCORE_COLUMNS

logger = logging.getLogger(__name__)

CLASS_PREFIX = "class_accuracy/"
_BASELINE_COLOUR = "#444444"
_SWEEP_NAME = re.compile(r"^(?P<family>[A-Za-z]+)-(?P<weight>\d+(?:\.\d+)?)(?:$|[:_-])")
_SWEEP_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")  # Okabe-Ito


def check_scores(scores: pd.DataFrame) -> None:
    """Raise a ValueError naming the missing columns when ``scores`` is not a score table."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(
            f"score table lacks columns {missing}; build it with multilivi.eval.results.scores_frame "
            f"or read it with read_scores (columns {list(SCORE_COLUMNS)})"
        )


def model_order(scores: pd.DataFrame, baseline: str | None = None) -> list[str]:
    """Model names in table order, with the baseline first when present."""
    models = list(dict.fromkeys(scores["model"].astype(str)))
    if baseline in models:
        models.remove(baseline)
        models.insert(0, baseline)
    return models


def row_label(model: str, view: str) -> str:
    """Display label of a model view: ``"dmlivi-50 · shared"``, or the model alone for model-level rows."""
    return model if view == MODEL_LEVEL else f"{model} · {view}"


def better(task: str, metric: str) -> str:
    """Which way is better for a declared metric: ``"higher is better"``, ``"lower is better"`` or
    ``"closer to 1 is better"``; ``""`` for a metric the registry does not know.
    """
    declared = find(task, metric)
    if declared is None:
        return ""
    if declared.direction == "target":
        return f"closer to {declared.target:g} is better"
    return "higher is better" if declared.direction == "max" else "lower is better"


def fdr_label(fdr: float) -> str:
    """``"FDR 5 %"`` for ``fdr=0.05``."""
    return f"FDR {fdr * 100:g} %"


def _titled(text: str, task: str, metric: str) -> str:
    """``text (higher is better)``, the direction from the registry; ``text`` alone when undeclared."""
    direction = better(task, metric)
    return f"{text} ({direction})" if direction else text


def _header(task: str, metric: str) -> str:
    declared = find(task, metric)
    return declared.header if declared is not None else metric


def _ok(scores: pd.DataFrame, task: str, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    check_scores(scores)
    keep = (scores["task"] == task) & (scores["status"] == "ok") & scores["value"].notna()
    if metrics is not None:
        keep &= scores["metric"].isin(metrics)
    return scores.loc[keep]


def _ordered_labels(rows: pd.DataFrame, scores: pd.DataFrame, baseline: str | None) -> list[tuple[str, str]]:
    """(model, view) pairs present in ``rows``, ordered by model (baseline first), then view by appearance."""
    rank = {m: i for i, m in enumerate(model_order(scores, baseline))}
    pairs = list(dict.fromkeys(zip(rows["model"].astype(str), rows["view"].astype(str))))
    return sorted(pairs, key=lambda mv: rank[mv[0]])


def _palette(models: Sequence[str], baseline: str | None) -> dict[str, tuple[float, float, float]]:
    colours = sns.color_palette("tab10", n_colors=max(len(models), 1))
    return {m: (0.25, 0.25, 0.25) if m == baseline else colours[i % 10] for i, m in enumerate(models)}


def _unit_bars(
    ax: Axes,
    pairs: list[tuple[str, str]],
    colours: dict[str, tuple[float, float, float]],
    heights: np.ndarray,
    title: str,
    sds: np.ndarray | None = None,
) -> None:
    """One bar per (model, view) on a [0, 1] axis; NaN heights are drawn as empty bars."""
    x = np.arange(len(pairs))
    yerr = None if sds is None else np.where(np.isnan(sds), 0.0, sds)
    ax.bar(
        x,
        np.nan_to_num(heights),
        yerr=yerr,
        capsize=3,
        color=[colours[m] for m, _ in pairs],
        edgecolor="black",
        linewidth=0.5,
    )
    ax.set_xticks(x, [row_label(*p) for p in pairs], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def _nll_table(scores: pd.DataFrame, baseline: str | None) -> tuple[pd.Series, pd.Series] | None:
    """RNA and protein NLL per cell by model (baseline first), or None without an RNA NLL."""
    rows = _ok(scores, "reconstruction", ["nll_per_cell_rna", "nll_per_cell_prot"])
    table = rows.pivot_table(index="model", columns="metric", values="value", aggfunc="first")
    if "nll_per_cell_rna" not in table.columns or table["nll_per_cell_rna"].notna().sum() == 0:
        return None
    table = table.reindex([m for m in model_order(scores, baseline) if m in table.index])
    rna = table["nll_per_cell_rna"]
    prot = (
        table["nll_per_cell_prot"] if "nll_per_cell_prot" in table.columns else pd.Series(np.nan, rna.index)
    )
    return rna, prot


def _rna_only_points(ax: Axes, rna: pd.Series, models: Sequence[str], colours: dict) -> None:
    """Open triangles on the bottom edge for models without a protein NLL, labelled "RNA only"."""
    for i, model in enumerate(models):
        ax.scatter(
            rna[model],
            0.0,
            s=70,
            marker="^",
            facecolor="white",
            edgecolor=colours[model],
            linewidth=1.6,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=4,
        )
        ax.annotate(
            f"{model} (RNA only)",
            (rna[model], 0.0),
            xycoords=ax.get_xaxis_transform(),
            xytext=(5, 8 + 12 * i),
            textcoords="offset points",
            fontsize=8,
            color=colours[model],
        )


def _nll_axes(ax: Axes, rna: pd.Series, any_protein: bool) -> None:
    lo, hi = float(rna.min()), float(rna.max())
    pad = 0.15 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.margins(y=0.2)
    if not any_protein:
        ax.set_yticks([])
        ax.text(
            0.5,
            0.5,
            "no model reports a protein NLL",
            transform=ax.transAxes,
            ha="center",
            color="grey",
            fontsize=9,
        )
    ax.set_xlabel(_titled("held-out RNA NLL per cell", "reconstruction", "nll_per_cell_rna"))
    ax.set_ylabel(_titled("held-out protein NLL per cell", "reconstruction", "nll_per_cell_prot"))
    ax.set_title("RNA–protein reconstruction trade-off")
    ax.grid(alpha=0.3)


def sweep_curves(models: Sequence[str]) -> dict[str, list[tuple[float, str]]]:
    """Family → its ``(λ_prot, model)`` pairs sorted by λ_prot, for families with two or more λ_prot.

    λ_prot is read from the model name's ``family-W`` spec (``mslivi-50``, ``dmlivi-0.5:...``).
    """
    curves: dict[str, list[tuple[float, str]]] = {}
    for model in models:
        match = _SWEEP_NAME.match(model)
        if match is not None:
            curves.setdefault(match["family"], []).append((float(match["weight"]), model))
    return {f: sorted(points) for f, points in curves.items() if len({w for w, _ in points}) > 1}


def _sweep_lines(ax: Axes, rna: pd.Series, prot: pd.Series, models: Sequence[str]) -> None:
    """One connected curve per family through its models in λ_prot order, λ marked at each point."""
    for i, (family, points) in enumerate(sweep_curves(models).items()):
        names = [m for _, m in points]
        ax.plot(rna[names], prot[names], "-", color=_SWEEP_COLOURS[i % len(_SWEEP_COLOURS)], label=family)
        for weight, model in points:
            ax.annotate(
                f"λ={weight:g}",
                (rna[model], prot[model]),
                xytext=(-8, -12),
                textcoords="offset points",
                fontsize=7,
            )


def nll_tradeoff(scores: pd.DataFrame, *, baseline: str | None = None) -> Figure | None:
    """RNA versus protein held-out NLL per cell, one point per model (thesis Fig. 4a).

    Models with an RNA NLL but no protein NLL (LIVI, RNA-only models) are drawn as open
    triangles on the bottom edge and labelled "RNA only"; the baseline's RNA NLL is a dashed
    vertical reference line. When a family has models at several λ_prot (``mslivi-10``,
    ``mslivi-50``, ...), its points are joined into one curve in λ_prot order
    (:func:`sweep_curves`). Returns ``None`` when no model has an ``ok`` ``nll_per_cell_rna`` row.
    """
    table = _nll_table(scores, baseline)
    if table is None:
        return None
    rna, prot = table
    colours = _palette(list(rna.index), baseline)
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    both = rna.notna() & prot.notna()
    for model in rna.index[both]:
        ax.scatter(rna[model], prot[model], s=60, color=colours[model], edgecolor="black", zorder=3)
        ax.annotate(model, (rna[model], prot[model]), xytext=(5, 5), textcoords="offset points", fontsize=9)
    _sweep_lines(ax, rna, prot, list(rna.index[both]))
    _rna_only_points(ax, rna, list(rna.index[rna.notna() & prot.isna()]), colours)
    if baseline in rna.index and np.isfinite(rna[baseline]):
        ax.axvline(
            rna[baseline],
            color=_BASELINE_COLOUR,
            linestyle="--",
            linewidth=1,
            label=f"baseline {baseline} RNA NLL ({rna[baseline]:.4g})",
        )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    _nll_axes(ax, rna, bool(both.any()))
    return fig


def per_class_accuracy(
    scores: pd.DataFrame, task: str = "probe_cell_subtype", *, baseline: str | None = None
) -> Figure | None:
    """Per-class probe accuracy (recall, mean over seeds), model views × classes (Fig. 4b, 4c).

    Parameters
    ----------
    scores
        Score table.
    task
        ``"probe_cell_subtype"`` or ``"probe_cell_type"``.
    baseline
        The model drawn in the first rows (None: table order).

    Returns
    -------
    A heatmap with one row per model view and one column per class (values annotated), or
    ``None`` when the task has no ``ok`` ``class_accuracy/<class>`` rows.
    """
    if task not in ("probe_cell_subtype", "probe_cell_type"):
        raise ValueError(f"task must be 'probe_cell_subtype' or 'probe_cell_type', got {task!r}")
    rows = _ok(scores, task)
    rows = rows.loc[rows["metric"].str.startswith(CLASS_PREFIX)]
    if rows.empty:
        return None
    pairs = _ordered_labels(rows, scores, baseline)
    classes = list(dict.fromkeys(rows["metric"].str.removeprefix(CLASS_PREFIX)))
    grid = pd.DataFrame(np.nan, index=[row_label(*p) for p in pairs], columns=classes)
    for r in rows.itertuples(index=False):
        grid.loc[row_label(r.model, r.view), r.metric.removeprefix(CLASS_PREFIX)] = r.value

    width = min(max(4.0, 0.75 * len(classes) + 3.0), 18.0)
    height = max(2.4, 0.42 * len(pairs) + 1.6)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    sns.heatmap(
        grid,
        ax=ax,
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
        annot=len(classes) <= 30,
        fmt=".2f",
        annot_kws={"fontsize": 8},
        linewidths=0.5,
        cbar_kws={"label": "accuracy (recall)"},
    )
    ax.set_xticks(np.arange(len(classes)) + 0.5, classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("")
    ax.set_xlabel("")
    what = "cell subtype" if task == "probe_cell_subtype" else "cell type"
    ax.set_title(f"Per-class {what} accuracy (mean over probe seeds)")
    return fig


def association_counts(
    scores: pd.DataFrame, *, baseline: str | None = None, fdr: float = DEFAULT_FDR
) -> Figure | None:
    """Significant factor–variant pairs and distinct variants (at ``fdr``) per model view (Fig. 4d).

    Returns ``None`` when there is no ``ok`` ``n_significant_pairs`` / ``n_significant_variants`` row.
    """
    metrics = ["n_significant_pairs", "n_significant_variants"]
    rows = _ok(scores, "association", metrics)
    if rows.empty:
        return None
    pairs = _ordered_labels(rows, scores, baseline)
    colours = _palette(model_order(scores, baseline), baseline)
    fig = Figure(figsize=(9.0, max(2.6, 0.38 * len(pairs) + 1.4)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    titles = {
        "n_significant_pairs": "significant factor–variant pairs",
        "n_significant_variants": "distinct significant variants",
    }
    y = np.arange(len(pairs))
    for ax, metric in zip(axes, metrics):
        values = rows.loc[rows["metric"] == metric].set_index(["model", "view"])["value"]
        heights = np.array([values.get(p, np.nan) for p in pairs], dtype=float)
        ax.barh(
            y, np.nan_to_num(heights), color=[colours[m] for m, _ in pairs], edgecolor="black", linewidth=0.5
        )
        for yi, h in zip(y, heights):
            ax.text(
                np.nan_to_num(h), yi, " n/a" if np.isnan(h) else f" {int(round(h))}", va="center", fontsize=8
            )
        ax.set_title(titles[metric], fontsize=10)
        ax.set_xlabel(f"count ({fdr_label(fdr)})")
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [row_label(*p) for p in pairs], fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("Genetic associations per model view")
    return fig


def subtype_and_donor_accuracy(scores: pd.DataFrame, *, baseline: str | None = None) -> Figure | None:
    """Cell-subtype accuracy and donor accuracy (leakage) per cell view, mean ± sd (Fig. 4e).

    Returns ``None`` when neither probe has an ``ok`` ``accuracy`` row.
    """
    check_scores(scores)
    keep = (scores["metric"] == "accuracy") & (scores["status"] == "ok") & scores["value"].notna()
    rows = scores.loc[keep & scores["task"].isin(["probe_cell_subtype", "probe_donor"])]
    if rows.empty:
        return None
    pairs = _ordered_labels(rows, scores, baseline)
    colours = _palette(model_order(scores, baseline), baseline)
    fig = Figure(figsize=(max(6.0, 0.55 * len(pairs) + 3.0), 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = [
        ("probe_cell_subtype", _titled("cell-subtype accuracy", "probe_cell_subtype", "accuracy")),
        ("probe_donor", _titled("donor accuracy = leakage", "probe_donor", "accuracy")),
    ]
    x = np.arange(len(pairs))
    for ax, (task, title) in zip(axes, panels):
        sub = rows.loc[rows["task"] == task].set_index(["model", "view"])
        means = np.array([sub["value"].get(p, np.nan) for p in pairs], dtype=float)
        sds = np.array([sub["sd"].get(p, np.nan) for p in pairs], dtype=float)
        _unit_bars(ax, pairs, colours, means, title, sds)
        for xi, m in zip(x, means):
            if np.isnan(m):
                ax.text(xi, 0.02, "n/a", ha="center", fontsize=7, color="grey", rotation=90)
    axes[0].set_ylabel("accuracy (mean ± sd over probe seeds)")
    return fig


def power_fdr(
    scores: pd.DataFrame, *, baseline: str | None = None, fdr: float = DEFAULT_FDR
) -> Figure | None:
    """Power and empirical FDR of the association tests against the simulated truth.

    A dashed line marks the nominal FDR ``fdr``. Returns ``None`` when the table has no ``ok``
    ``truth`` rows for ``power`` or ``empirical_fdr``.
    """
    metrics = ["power", "empirical_fdr"]
    rows = _ok(scores, "truth", metrics)
    if rows.empty:
        return None
    pairs = _ordered_labels(rows, scores, baseline)
    colours = _palette(model_order(scores, baseline), baseline)
    fig = Figure(figsize=(max(6.0, 0.55 * len(pairs) + 3.0), 4.0), layout="constrained")
    axes = fig.subplots(1, 2)
    x = np.arange(len(pairs))
    for ax, metric in zip(axes, metrics):
        values = rows.loc[rows["metric"] == metric].set_index(["model", "view"])["value"]
        heights = np.array([values.get(p, np.nan) for p in pairs], dtype=float)
        _unit_bars(ax, pairs, colours, heights, _titled(_header("truth", metric), "truth", metric))
        for xi, h in zip(x, heights):
            ax.text(
                xi,
                np.nan_to_num(h),
                "n/a" if np.isnan(h) else f"{h:.2f}",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    axes[1].axhline(fdr, color="firebrick", linestyle="--", linewidth=1, label=f"nominal {fdr_label(fdr)}")
    axes[1].legend(fontsize=8, frameon=False)
    fig.suptitle("Association tests against the simulated truth")
    return fig
