"""scIB metrics of every cell view, computed by scib-metrics' :class:`~scib_metrics.benchmark.Benchmarker`.

Bio conservation (labels: ``cell_type``): isolated labels, KMeans NMI and ARI, silhouette of the
labels, cLISI. Batch correction (batches: ``batch``): BRAS, iLISI, kBET per label, graph
connectivity. PCR comparison is left out: it compares a view with the unintegrated expression,
which a cell view alone does not carry. The metrics run on the probes' cells (the same cap and
seed, :func:`multilivi.eval.probes.subsample_cells`), on exact neighbour graphs (15 / 50 / 90
neighbours, scikit-learn; scib-metrics' default, pynndescent, is approximate and compiles for
~30 s). Raw values are scores (higher is better for every one);
the report scales them min–max over the run's views and aggregates them as scib-metrics does
(``0.6 bio + 0.4 batch``).

Opt in with ``EvalContext.scib`` (CLI ``--scib``); needs the extra ``multilivi[scib]``.
"""

from __future__ import annotations

import gc
import logging
import time

import numpy as np
import pandas as pd

from multilivi.eval.metrics import Metric, register
from multilivi.eval.outputs import EvalContext, ModelOutputs
from multilivi.eval.probes import subsample_cells
from multilivi.eval.records import MetricResult
from multilivi.eval.results import MODEL_LEVEL
from multilivi.eval.task_runner import NotRun, Score, Task, TaskResult, register_task

logger = logging.getLogger(__name__)

INSTALL_HINT = "scIB metrics need scib-metrics: pip install 'multilivi[scib]'"
BIO_METRICS = {  # scib-metrics result name -> (metric name here, label)
    "isolated_labels": ("isolated_labels", "isolated labels"),
    "nmi_ari_cluster_labels_kmeans_nmi": ("kmeans_nmi", "KMeans NMI"),
    "nmi_ari_cluster_labels_kmeans_ari": ("kmeans_ari", "KMeans ARI"),
    "silhouette_label": ("silhouette_label", "silhouette (label)"),
    "clisi_knn": ("clisi", "cLISI"),
}
BATCH_METRICS = {
    "bras": ("bras", "BRAS"),
    "ilisi_knn": ("ilisi", "iLISI"),
    "kbet_per_label": ("kbet", "kBET"),
    "graph_connectivity": ("graph_connectivity", "graph connectivity"),
}
AGGREGATES = {  # scib-metrics' aggregate columns of the unscaled results
    "Bio conservation": ("bio_conservation", "bio conservation (raw mean)"),
    "Batch correction": ("batch_correction", "batch correction (raw mean)"),
    "Total": ("total", "total (raw, 0.6 bio + 0.4 batch)"),
}
BIO_WEIGHT = 0.6  # scib-metrics' weight of bio conservation in the total (0.4 batch correction)

for _name, _label in (*BIO_METRICS.values(), *BATCH_METRICS.values(), *AGGREGATES.values()):
    register(Metric("scib", _name, _label, "max", level="cell", lower=0.0, upper=1.0))


def task_scib(outputs: ModelOutputs, ctx: EvalContext) -> TaskResult:
    """The bio-conservation and batch-correction scores of every cell view (only with ``ctx.scib``)."""
    if not ctx.scib:
        return TaskResult()
    labels, batches = ctx.labels.get("cell_type"), ctx.batches
    missing = [name for name, values in (("cell_type", labels), ("batch", batches)) if values is None]
    reason = None
    if missing:
        reason = f"the cohort has no {' or '.join(repr(m) for m in missing)} annotation"
    elif not outputs.views:
        reason = "no cell views"
    else:
        try:
            import scib_metrics  # noqa: F401
        except ImportError:
            reason = INSTALL_HINT
    if reason is not None:
        views = list(outputs.views) or [MODEL_LEVEL]
        return TaskResult([NotRun(view, reason) for view in views])
    n_cells = next(iter(outputs.views.values())).shape[0]
    keep = subsample_cells(n_cells, ctx.probe_max_cells, ctx.seed)
    start = time.perf_counter()
    results = scib_results(
        {view: np.asarray(x)[keep] for view, x in outputs.views.items()}, labels[keep], batches[keep]
    )
    logger.info(
        "scIB metrics of %d views on %d cells in %.1f s", len(results), keep.size, time.perf_counter() - start
    )
    details = {"n_cells": int(keep.size), "subsampled": bool(keep.size < n_cells)}
    scores = []
    for view, row in results.iterrows():
        for column, value in row.items():
            scores.append(Score(str(view), MetricResult(column, float(value), details)))
    return TaskResult(scores)


def scib_results(views: dict[str, np.ndarray], labels: np.ndarray, batches: np.ndarray) -> pd.DataFrame:
    """Unscaled scib-metrics results: one row per view, the columns of :data:`BIO_METRICS`, ... .

    Parameters
    ----------
    views
        View name -> (cells, dims) embedding of the same cells.
    labels, batches
        (cells,) cell-type labels and batches of those cells.

    Returns
    -------
    DataFrame indexed by view with the metric names of this module (raw values and raw aggregates).
    """
    import anndata as ad
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    columns = {"cell_type": labels, "batch": batches}
    obs = pd.DataFrame(
        {column: pd.Categorical(np.asarray(values).astype(str)) for column, values in columns.items()},
        index=[f"cell{i}" for i in range(len(labels))],
    )
    adata = ad.AnnData(obs=obs)
    for view, x in views.items():
        adata.obsm[view] = np.ascontiguousarray(x, dtype=np.float32)
    first = next(iter(views))
    benchmarker = Benchmarker(
        adata,
        batch_key="batch",
        label_key="cell_type",
        embedding_obsm_keys=list(views),
        bio_conservation_metrics=BioConservation(),
        batch_correction_metrics=BatchCorrection(pcr_comparison=False),
        pre_integrated_embedding_obsm_key=first,  # only PCR comparison reads it, and it is off
        progress_bar=False,
    )
    # The Benchmarker runs gc.collect() before every metric: ~1 s each with torch and jax loaded.
    # Frozen objects are not scanned, so those collections only visit what the metrics allocate.
    gc.freeze()
    try:
        benchmarker.prepare(neighbor_computer=exact_neighbours)
        benchmarker.benchmark()
    finally:
        gc.unfreeze()
    raw = benchmarker.get_results(min_max_scale=False, clean_names=False)
    raw = raw.drop(index="Metric Type").astype(float)
    names = {key: name for key, (name, _) in (BIO_METRICS | BATCH_METRICS | AGGREGATES).items()}
    return raw.rename(columns=names).loc[list(views), list(names.values())]


def exact_neighbours(x: np.ndarray, k: int):
    """scib-metrics ``NeighborsResults``: the ``k`` exact nearest neighbours of each row of (cells, dims) x.

    Each cell is its own first neighbour, as in scib-metrics' pynndescent graphs.
    """
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    distances, indices = NearestNeighbors(n_neighbors=min(k, x.shape[0])).fit(x).kneighbors(x)
    return NeighborsResults(indices=indices, distances=distances)


def scaled_table(raw: pd.DataFrame) -> pd.DataFrame:
    """scib-metrics' min–max scaled results of (rows, metrics) raw values, with its aggregates.

    Every metric of :data:`BIO_METRICS` and :data:`BATCH_METRICS` present is scaled to [0, 1] over the
    rows (a constant column becomes 0, as sklearn's MinMaxScaler does); ``bio_conservation`` and
    ``batch_correction`` are the means of the scaled metrics of their kind, ``total`` their
    0.6 / 0.4 weighted sum. What ``Benchmarker.get_results(min_max_scale=True)`` returns.
    """
    from sklearn.preprocessing import MinMaxScaler

    kinds = {"bio_conservation": BIO_METRICS, "batch_correction": BATCH_METRICS}
    columns = [name for metrics in kinds.values() for name, _ in metrics.values() if name in raw.columns]
    scaled = pd.DataFrame(MinMaxScaler().fit_transform(raw[columns]), index=raw.index, columns=columns)
    for kind, metrics in kinds.items():
        scaled[kind] = scaled[[name for name, _ in metrics.values() if name in columns]].mean(axis=1)
    scaled["total"] = BIO_WEIGHT * scaled["bio_conservation"] + (1 - BIO_WEIGHT) * scaled["batch_correction"]
    return scaled


register_task(Task("scib", task_scib))
