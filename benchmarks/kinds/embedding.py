"""Precomputed embeddings (``emb:``): third-party cell embeddings, optionally with donor factors.

Spec grammar::

    emb:PATH[#OBSM_KEY][:donor_factors=TABLE,cells=IDS,name=NAME]

``PATH`` is an ``.h5ad`` (``.obsm[OBSM_KEY]``, or ``.X`` without a key), an ``.npy`` with a cell-id
sidecar (``cells=``, default ``PATH`` with ``.cells.txt`` instead of ``.npy``: one id per line), or a
``.parquet`` / ``.csv`` / ``.tsv`` table indexed by cell id. ``TABLE`` is an optional donors x factors
table (.csv / .tsv / .parquet) indexed by donor id. Cells and donors are aligned by name; missing
or extra ids, and NaN rows, are errors raised before anything is trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.kinds import Entry, SpecKind, register, safe_name
from multilivi.data import Cohort
from multilivi.data.genetics import few_names
from multilivi.data.io import read_table
from multilivi.eval.outputs import ModelOutputs

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")
_OPTIONS = ("donor_factors", "cells", "name")


@dataclass(frozen=True)
class EmbeddingSpec:
    """A precomputed cell embedding, optionally with donor factors."""

    raw: str
    path: Path
    key: str | None = None
    donor_factors: Path | None = None
    cells: Path | None = None
    name: str = ""

    def prepare(self, cohort: Cohort, *, preset: str, seed: int) -> EmbeddingEntry:
        """Read and align the embedding now, so a bad file is refused before anything trains."""
        return EmbeddingEntry(self, loaded=check_embedding(self, cohort))

    def settings(self) -> dict[str, Any]:
        """The file and what is read from it (the outputs' ``config``)."""
        out: dict[str, Any] = {"path": str(self.path)}
        if self.key is not None:
            out["key"] = self.key
        if self.donor_factors is not None:
            out["donor_factors"] = str(self.donor_factors)
        return out


@dataclass
class EmbeddingEntry(Entry):
    """An embedding read and aligned to the cohort."""

    spec: EmbeddingSpec
    loaded: ModelOutputs = field(kw_only=True)

    def describe(self) -> dict[str, Any]:
        return {"family": EmbeddingKind.name, **self.spec.settings()}

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
        return self.loaded


class EmbeddingKind(SpecKind):
    """``emb:`` specs."""

    name = "emb"

    def matches(self, raw: str) -> bool:
        return raw.startswith("emb:")

    def parse(self, raw: str) -> EmbeddingSpec:
        return parse_embedding_spec(raw)


def parse_embedding_spec(raw: str) -> EmbeddingSpec:
    """Parse ``emb:PATH[#KEY][:key=value,...]``."""
    body = raw.removeprefix("emb:")
    options: dict[str, str] = {}
    match = re.match(r"^(?P<path>.+?)(?::(?P<opts>[a-z_]+=.*))?$", body)
    if not body or match is None:
        raise ValueError(
            f"bad embedding spec {raw!r}; expected emb:PATH[#OBSM_KEY][:donor_factors=PATH,name=NAME]"
        )
    if match["opts"]:
        for item in match["opts"].split(","):
            key, _, value = item.partition("=")
            if key not in _OPTIONS or not value:
                raise ValueError(
                    f"bad option {item!r} in {raw!r}; embedding options are donor_factors=PATH, cells=PATH, "
                    "name=NAME"
                )
            options[key] = value
    path, _, key = match["path"].partition("#")
    path = Path(path)
    name = options.get("name") or f"emb-{path.stem}" + (f"-{key}" if key else "")
    return EmbeddingSpec(
        raw=raw,
        path=path,
        key=key or None,
        donor_factors=Path(options["donor_factors"]) if "donor_factors" in options else None,
        cells=Path(options["cells"]) if "cells" in options else None,
        name=safe_name(name),
    )


# --------------------------------------------------------------------------------------- loading
def check_embedding(spec: EmbeddingSpec, cohort: Cohort) -> ModelOutputs:
    """Read and align a precomputed embedding to the cohort's cells (and donors); errors name the fix."""
    matrix, cell_ids = _read_matrix(spec)
    if matrix.ndim != 2 or matrix.shape[0] != len(cell_ids):
        raise ValueError(
            f"{spec.path}: embedding of shape {matrix.shape} does not have one row per cell id "
            f"({len(cell_ids)})"
        )
    frame = pd.DataFrame(np.asarray(matrix, dtype=np.float64), index=pd.Index(cell_ids).astype(str))
    if frame.index.has_duplicates:
        raise ValueError(
            f"{spec.path}: duplicated cell ids {few_names(frame.index[frame.index.duplicated()])}"
        )
    missing = cohort.cell_names.difference(frame.index)
    extra = frame.index.difference(cohort.cell_names)
    if len(missing) or len(extra):
        raise ValueError(
            f"{spec.path}: {len(missing)} cohort cells have no embedding row ({few_names(missing)}) and "
            f"{len(extra)} rows are not cohort cells ({few_names(extra)}); embed exactly the cohort's cells, "
            "named as in its obs_names"
        )
    frame = frame.loc[cohort.cell_names]
    bad = ~np.isfinite(frame.to_numpy()).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{spec.path}: {int(bad.sum())} cells have NaN or infinite embedding values "
            f"({few_names(frame.index[bad])}); fix or remove those cells from the cohort"
        )
    donor_factors = {}
    if spec.donor_factors is not None:
        donor_factors["D"] = _read_donor_factors(spec.donor_factors, cohort)
    return ModelOutputs(views={"emb": frame.to_numpy()}, donor_factors=donor_factors, config=spec.settings())


def _read_matrix(spec: EmbeddingSpec) -> tuple[np.ndarray, np.ndarray]:
    path = spec.path
    if not path.exists():
        raise FileNotFoundError(f"embedding file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".h5ad":
        adata = ad.read_h5ad(path)
        if spec.key is None:
            x = adata.X
        elif spec.key in adata.obsm:
            x = adata.obsm[spec.key]
        else:
            raise KeyError(f"{path} has no obsm[{spec.key!r}]; its obsm keys are {list(adata.obsm)}")
        x = x.toarray() if sp.issparse(x) else np.asarray(x)
        return x, adata.obs_names.to_numpy()
    if suffix == ".npy":
        cells = spec.cells or path.with_suffix(".cells.txt")
        if not cells.exists():
            raise FileNotFoundError(
                f"{path} needs a cell-id sidecar: one id per line in {cells} (or name it with cells=PATH)"
            )
        ids = np.array([line.strip() for line in cells.read_text().splitlines() if line.strip()])
        return np.load(path, allow_pickle=False), ids
    if suffix in TABLE_SUFFIXES:
        table = _read_table(path)
        return table.to_numpy(), table.index.to_numpy()
    raise ValueError(
        f"unsupported embedding file {path}; use .h5ad (+#obsm_key), .npy (+ cell ids), .parquet, .csv "
        "or .tsv"
    )


def _read_donor_factors(path: Path, cohort: Cohort) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"donor factor table {path} does not exist")
    table = _read_table(path)
    table.index = table.index.astype(str)
    missing = cohort.donor_names.difference(table.index)
    if len(missing):
        raise ValueError(
            f"{path}: donor factors lack {len(missing)} cohort donors ({few_names(missing)}); give one row "
            "per donor"
        )
    table = table.loc[cohort.donor_names].astype(np.float64)
    if not np.isfinite(table.to_numpy()).all():
        raise ValueError(f"{path}: donor factors contain NaN or infinite values")
    table.columns = table.columns.astype(str)
    return table


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return read_table(path)  # ids as written: '0001' stays '0001'


register(EmbeddingKind())
