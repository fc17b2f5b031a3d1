"""UMAP coordinates of a view and the grids of thesis Fig. 5 (a panel per view; by type, subtype, donor)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.neighbors import NearestNeighbors

# Okabe-Ito: distinguishable with the common colour-vision deficiencies
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MAX_LEGEND = 40  # more categories (e.g. donors) get no legend
UMAP_MAX_CELLS = 5_000  # each UMAP embeds a fixed-seed subsample above this
UMAP_EPOCHS = 200  # layout epochs: umap-learn's choice above 10k cells (500 below) and ample for a figure


def umap_coordinates(
    view: NDArray[np.floating], *, max_cells: int = UMAP_MAX_CELLS, seed: int = 0, n_neighbors: int = 15
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Two-dimensional UMAP of a view, on a fixed-seed subsample above ``max_cells``.

    Parameters
    ----------
    view
        (cells, dims) embedding.
    max_cells
        Cells embedded at most; larger views are subsampled without replacement.
    seed
        Seed of the subsample and of UMAP (run single-threaded, so the result is reproducible).
    n_neighbors
        UMAP neighbourhood size (capped at cells - 1).

    Returns
    -------
    coords
        (m, 2) coordinates.
    idx
        (m,) sorted row indices of ``view`` that were embedded.
    """
    import umap

    view = np.asarray(view, dtype=np.float64)
    if view.ndim != 2 or view.shape[0] < 3:
        raise ValueError(f"view must be (cells, dims) with at least 3 cells, got shape {view.shape}")
    idx = np.arange(view.shape[0])
    if view.shape[0] > max_cells:
        idx = np.sort(np.random.default_rng(seed).choice(view.shape[0], max_cells, replace=False))
    n_neighbors = min(n_neighbors, idx.size - 1)
    cells = view[idx]
    # exact neighbours (sklearn): at these sizes faster than UMAP's NN-descent, whose numba
    # compilation alone took ~50 s per process
    distances, neighbours = NearestNeighbors(n_neighbors=n_neighbors).fit(cells).kneighbors(cells)
    with warnings.catch_warnings():  # no search index: transform() of new cells is not needed here
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=n_neighbors,
            random_state=seed,
            n_jobs=1,
            n_epochs=UMAP_EPOCHS,
            precomputed_knn=(neighbours, distances, None),
        )
        coords = reducer.fit_transform(cells)
    return np.asarray(coords, dtype=np.float64), idx


def plot_umap_grid(
    panels: Mapping[str, NDArray[np.floating]],
    labels: Mapping[str, NDArray] | Sequence[NDArray] | NDArray,
    *,
    n_cols: int = 3,
    title: str = "cell type",
    point_size: float = 2.0,
):
    """Grid of UMAP panels, one per model/view, coloured by a shared categorical label.

    Parameters
    ----------
    panels
        Panel name (e.g. ``"livi / c"``) -> (m, 2) coordinates.
    labels
        One label array per panel (a mapping with the same keys, or a sequence in panel order),
        or a single array used for every panel; each array has one entry per coordinate row.
    n_cols
        Panels per row.
    title
        Legend title.
    point_size
        Scatter marker size.

    Returns
    -------
    matplotlib.figure.Figure (never saved here).
    """
    from matplotlib.figure import Figure

    names = list(panels)
    per_panel = _labels_per_panel(panels, labels)
    categories = sorted(set(np.concatenate(per_panel)))
    colours = dict(zip(categories, categorical_palette(len(categories))))
    n_rows = -(-len(names) // n_cols)
    n_cols = min(n_cols, len(names))
    fig = Figure(figsize=(3.2 * n_cols, 3.2 * n_rows))  # outside pyplot: not retained after use
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name, lab in zip(axes.flat, names, per_panel):
        coords = np.asarray(panels[name])
        ax.scatter(
            coords[:, 0],
            coords[:, 1],
            s=point_size,
            c=[colours[x] for x in lab],
            linewidths=0,
            rasterized=True,
        )
        ax.set_title(name, fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    _legend(fig, colours, title)
    fig.tight_layout()
    return fig


def categorical_palette(n: int) -> list[str]:
    """``n`` colours: Okabe-Ito (colour-blind safe) up to 8, else seaborn's ``colorblind`` then ``husl``."""
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    import seaborn as sns

    base = list(sns.color_palette("colorblind", 10).as_hex())
    return (base + list(sns.color_palette("husl", max(n - 10, 0)).as_hex()))[:n]


def umap_label_grids(
    panels: Mapping[str, NDArray[np.floating]], labels: Mapping[str, Mapping[str, NDArray]]
) -> dict[str, object]:
    """One :func:`plot_umap_grid` per labelling: ``umap_grid`` (cell type), ``umap_<label>`` for the others.

    ``labels`` maps a label name (``cell_type``, ``cell_subtype``, ``donor``) to per-panel arrays.
    """
    return {
        "umap_grid" if name == "cell_type" else f"umap_{name}": plot_umap_grid(
            panels, per_panel, title=name.replace("_", " ")
        )
        for name, per_panel in labels.items()
    }


def _labels_per_panel(
    panels: Mapping[str, NDArray[np.floating]], labels: Mapping[str, NDArray] | Sequence[NDArray] | NDArray
) -> list[NDArray[np.str_]]:
    """One (m,) str label array per panel, in panel order; a ValueError names any mismatch."""
    names = list(panels)
    if not names:
        raise ValueError("panels is empty; pass at least one name -> coordinates entry")
    if isinstance(labels, Mapping):
        missing = [n for n in names if n not in labels]
        if missing:
            raise ValueError(f"labels has no entry for panels {missing}")
        per_panel = [np.asarray(labels[n]).astype(str) for n in names]
    elif isinstance(labels, np.ndarray) and labels.ndim == 1:
        per_panel = [labels.astype(str)] * len(names)
    else:
        per_panel = [np.asarray(x).astype(str) for x in labels]
    if len(per_panel) != len(names):
        raise ValueError(f"{len(per_panel)} label arrays for {len(names)} panels")
    for name, lab in zip(names, per_panel):
        if len(lab) != len(panels[name]):
            raise ValueError(f"panel {name!r} has {len(panels[name])} points but {len(lab)} labels")
    return per_panel


def _legend(fig, colours: Mapping[str, Any], title: str) -> None:
    """A legend of the categories beside the panels, or a title saying there are too many."""
    from matplotlib.lines import Line2D

    if len(colours) > MAX_LEGEND:
        fig.suptitle(f"coloured by {title} ({len(colours)} categories, no legend)")
        return
    handles = [Line2D([], [], marker="o", ls="", color=colour, label=c) for c, colour in colours.items()]
    fig.legend(
        handles=handles,
        title=title,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        ncol=1 + len(colours) // 16,
    )
