"""Linear probes: how well a multinomial logistic regression reads a label off a view."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from multilivi.eval.blas import one_blas_thread
from multilivi.eval.records import MetricResult, skipped

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    """Per-split scores of one probe.

    Attributes
    ----------
    task
        Label name, e.g. ``"cell_type"``; prefixes the metric names.
    accuracy, balanced_accuracy
        (n_seeds,) test-set scores, one per stratified split.
    per_class
        Class -> (n_seeds,) recall of that class on each split.
    dropped_classes
        Classes with fewer than two cells, left out before splitting.
    majority_share
        Share of the probed cells in the largest class: the accuracy of always guessing it.
    reason
        Why the probe could not run; empty when it did.
    """

    task: str
    accuracy: NDArray[np.float64]
    balanced_accuracy: NDArray[np.float64]
    per_class: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    dropped_classes: tuple[str, ...] = ()
    majority_share: float = float("nan")
    reason: str = ""

    def metrics(self) -> list[MetricResult]:
        """``<task>_accuracy`` and ``<task>_balanced_accuracy``: means over splits.

        The sd over splits, the per-class recall (mean over splits) and the chance level are in
        ``details``: the majority-class share for accuracy, 1 / classes for balanced accuracy.
        """
        names = (f"{self.task}_accuracy", f"{self.task}_balanced_accuracy")
        if self.reason:
            return [skipped(name, self.reason) for name in names]
        per_class = {label: float(np.mean(v)) for label, v in self.per_class.items()}
        results = []
        chances = (self.majority_share, 1.0 / max(len(self.per_class), 1))
        for name, values, chance in zip(names, (self.accuracy, self.balanced_accuracy), chances):
            details = {
                "sd": float(np.std(values, ddof=1)) if values.size > 1 else 0.0,
                "n_seeds": int(values.size),
                "per_class_accuracy": per_class,
                "dropped_classes": list(self.dropped_classes),
                "chance": chance,
            }
            results.append(MetricResult(name, float(np.mean(values)), details))
        return results


def probe(
    view: NDArray[np.floating],
    labels: NDArray | None,
    *,
    task: str,
    n_seeds: int = 5,
    test_size: float = 0.2,
    max_cells: int | None = None,
    seed: int = 0,
    max_iter: int = 1000,
) -> ProbeResult:
    """Multinomial logistic regression on the standardised view, over stratified train/test splits.

    Parameters
    ----------
    view
        (cells, dims) embedding.
    labels
        (cells,) class labels, or None when the label column does not exist (the probe is skipped).
    task
        Name of the label; metric names are ``<task>_accuracy`` and ``<task>_balanced_accuracy``.
    n_seeds
        Number of stratified splits (split ``i`` uses random state ``seed + i``).
    test_size
        Fraction of cells held out per split.
    max_cells
        If set, a fixed-seed subsample of this many cells is probed.
    seed
        Seed of the subsample and of the splits.
    max_iter
        Iterations of the lbfgs solver.

    Returns
    -------
    ProbeResult
        With ``reason`` set (and no scores) when fewer than two classes have two or more cells.
    """
    empty = np.empty(0)
    if labels is None:
        return ProbeResult(task, empty, empty, reason=f"no {task!r} labels for these cells")
    view, labels = _checked_subsample(view, labels, max_cells=max_cells, seed=seed)
    view, labels, classes, dropped = _without_single_cell_classes(view, labels, task)
    reason = _unsplittable(labels.size, classes.size, task=task, test_size=test_size)
    if reason:
        return ProbeResult(task, empty, empty, dropped_classes=dropped, reason=reason)
    # one BLAS thread: on these small (cells x dims) problems more threads only contend, and a
    # worker process beside another lost 5-9x with 2 (the issue of cells at scale measured it)
    with one_blas_thread():
        accuracy, balanced, per_class = _fit_splits(
            view, labels, classes, n_seeds=n_seeds, test_size=test_size, seed=seed, max_iter=max_iter
        )
    majority = float(np.unique(labels, return_counts=True)[1].max() / labels.size)
    return ProbeResult(task, accuracy, balanced, per_class, dropped_classes=dropped, majority_share=majority)


def _checked_subsample(
    view: NDArray[np.floating], labels: NDArray, *, max_cells: int | None, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.str_]]:
    """The (cells, dims) view as float64 and its (cells,) labels as str, subsampled to ``max_cells``."""
    view = np.asarray(view, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    if view.ndim != 2 or labels.shape != (view.shape[0],):
        raise ValueError(
            f"labels has shape {labels.shape} but view has shape {view.shape}; need one label per row"
        )
    if not np.isfinite(view).all():
        raise ValueError("view contains NaN or inf; probes need finite embeddings")
    if max_cells is not None and view.shape[0] > max_cells:
        keep = subsample_cells(view.shape[0], max_cells, seed)
        view, labels = view[keep], labels[keep]
    return view, labels


def subsample_cells(n_cells: int, max_cells: int | None, seed: int) -> NDArray[np.intp]:
    """Sorted positions of the cells a probe uses: a fixed-seed subsample of ``max_cells``, else all."""
    if max_cells is None or n_cells <= max_cells:
        return np.arange(n_cells)
    return np.sort(np.random.default_rng(seed).choice(n_cells, max_cells, replace=False))


def _without_single_cell_classes(
    view: NDArray[np.float64], labels: NDArray[np.str_], task: str
) -> tuple[NDArray[np.float64], NDArray[np.str_], NDArray[np.str_], tuple[str, ...]]:
    """The cells of classes with two or more cells, those classes, and the dropped classes."""
    classes, counts = np.unique(labels, return_counts=True)
    dropped = tuple(str(c) for c in classes[counts < 2])
    if dropped:
        logger.info("probe %s: dropping %d classes with a single cell", task, len(dropped))
        kept = ~np.isin(labels, dropped)
        view, labels = view[kept], labels[kept]
        classes = classes[counts >= 2]
    return view, labels, classes, dropped


def _unsplittable(n_cells: int, n_classes: int, *, task: str, test_size: float) -> str:
    """Why the cells cannot be probed (under two classes, or no split keeps every class); '' if they can."""
    if n_classes < 2:
        return f"{task!r} has {n_classes} class(es) with two or more cells; need at least two"
    n_test = int(np.ceil(test_size * n_cells))
    if n_test < n_classes or n_cells - n_test < n_classes:
        return (
            f"{n_cells} cells cannot be split {1 - test_size:.0%}/{test_size:.0%} "
            f"with every one of {n_classes} classes on both sides"
        )
    return ""


def _fit_splits(
    view: NDArray[np.float64],
    labels: NDArray[np.str_],
    classes: NDArray[np.str_],
    *,
    n_seeds: int,
    test_size: float,
    seed: int,
    max_iter: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], dict[str, NDArray[np.float64]]]:
    """Accuracy, balanced accuracy (n_seeds,) and per-class recall over ``n_seeds`` stratified splits."""
    accuracy, balanced, per_class = [], [], {str(c): [] for c in classes}
    for i in range(n_seeds):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed + i)
        train, test = next(splitter.split(view, labels))
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
        predicted = model.fit(view[train], labels[train]).predict(view[test])
        accuracy.append(accuracy_score(labels[test], predicted))
        balanced.append(balanced_accuracy_score(labels[test], predicted))
        recalls = recall_score(labels[test], predicted, labels=classes, average=None, zero_division=0.0)
        for c, r in zip(classes, recalls):
            per_class[str(c)].append(r)
    return np.array(accuracy), np.array(balanced), {c: np.array(v) for c, v in per_class.items()}
