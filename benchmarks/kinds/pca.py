"""The built-in PCA baseline (``pca[:n_components=N]``): PCs of log-normalised RNA (and RNA + protein)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from benchmarks.kinds import Entry, SpecKind, register
from multilivi.data import Cohort
from multilivi.eval.outputs import ModelOutputs

DEFAULT_COMPONENTS = 20


@dataclass(frozen=True)
class PCASpec:
    """The PCA baseline with its number of components."""

    raw: str = "pca"
    n_components: int = DEFAULT_COMPONENTS
    name: str = "pca"

    def prepare(self, cohort: Cohort, *, preset: str, seed: int) -> PCAEntry:
        if cohort.on_disk:  # PCA here scales the dense log-normalised counts of every cell
            return PCAEntry(
                self, "pca needs the counts in memory, and this cohort's stay on disk: drop --on-disk"
            )
        return PCAEntry(self)


@dataclass
class PCAEntry(Entry):
    """PCA on the cohort, computed when the run reaches it."""

    spec: PCASpec

    def describe(self) -> dict[str, Any]:
        return {"family": PCAKind.name, "n_components": self.spec.n_components}

    def outputs(
        self,
        cohort: Cohort,
        train_idx: np.ndarray,
        heldout_idx: np.ndarray,
        *,
        seed: int,
        cache_dir: Path | None,
        progress: bool = True,
    ) -> ModelOutputs:
        return pca_outputs(cohort, self.spec, seed=seed)


class PCAKind(SpecKind):
    """``pca`` and ``pca:...`` specs."""

    name = "pca"

    def matches(self, raw: str) -> bool:
        return raw == "pca" or raw.startswith("pca:")

    def parse(self, raw: str) -> PCASpec:
        return parse_pca_spec(raw)


def parse_pca_spec(raw: str) -> PCASpec:
    """Parse ``pca[:n_components=N]``."""
    _, _, opts = raw.partition(":")
    n_components = DEFAULT_COMPONENTS
    for item in filter(None, opts.split(",")):
        key, _, value = item.partition("=")
        if key != "n_components" or not value.isdigit() or int(value) < 1:
            raise ValueError(
                f"bad option {item!r} in {raw!r}; the pca baseline takes n_components=N (N >= 1)"
            )
        n_components = int(value)
    name = "pca" if n_components == DEFAULT_COMPONENTS else f"pca-{n_components}"
    return PCASpec(raw=raw, n_components=n_components, name=name)


def pca_outputs(cohort: Cohort, spec: PCASpec, seed: int = 0) -> ModelOutputs:
    """PCA of log-normalised RNA (view ``rna``), and of RNA + protein (view ``rna+prot``) when present.

    RNA: counts per 10^4, log1p, features scaled to unit variance. Protein: centred log-ratio per
    cell, scaled. For ``rna+prot`` each modality is weighted to equal total variance before PCA.
    """
    views = {}
    rna = _scaled(_log_normalised(cohort.counts("rna")))
    views["rna"] = _pcs(rna, spec.n_components, seed)
    if cohort.has_protein:
        prot = _scaled(_clr(cohort.counts("prot")))
        joint = np.hstack([rna / math.sqrt(rna.shape[1]), prot / math.sqrt(prot.shape[1])])
        views["rna+prot"] = _pcs(joint, spec.n_components, seed)
    return ModelOutputs(views=views, config={"n_components": spec.n_components})


def _log_normalised(counts: sp.csr_matrix) -> np.ndarray:
    totals = np.asarray(counts.sum(axis=1)).ravel()
    return np.log1p(counts.multiply(1e4 / totals[:, None]).toarray())


def _clr(counts: sp.csr_matrix) -> np.ndarray:
    logged = np.log1p(counts.toarray())
    return logged - logged.mean(axis=1, keepdims=True)


def _scaled(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _pcs(x: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    n_components = min(n_components, *x.shape)
    return PCA(n_components=n_components, svd_solver="randomized", random_state=seed).fit_transform(x)


register(PCAKind())
