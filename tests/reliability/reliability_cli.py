"""Helpers of the reliability tests: hand-made cohort folders and the CLI run that must refuse them."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
from cohort_factories import make_genotypes, make_mdata

from benchmarks.compare import main
from multilivi.data.io import write_plink

N_CELLS, N_DONORS = 120, 6
DONORS = [f"d{d:02d}" for d in range(N_DONORS)]


def good_mdata(n_cells: int = N_CELLS, n_donors: int = N_DONORS) -> md.MuData:
    return make_mdata(n_cells=n_cells, n_genes=30, n_proteins=6, n_donors=n_donors)


def write_folder(
    folder: Path,
    mdata: md.MuData | None = None,
    donors: Sequence[str] | None = DONORS,
    *,
    n_variants: int = 40,
) -> Path:
    """A cohort folder written by hand (no validation): ``cohort.h5mu`` + ``genotypes.{bed,bim,fam}``."""
    folder.mkdir(parents=True, exist_ok=True)
    mdata = good_mdata() if mdata is None else mdata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicated names are the point of some cases
        mdata.write(folder / "cohort.h5mu")
    if donors is not None:
        write_plink(make_genotypes(donors, n_variants=n_variants), folder / "genotypes")
    return folder


def annotated(mdata: md.MuData) -> dict[str, ad.AnnData]:
    """The modalities of ``mdata`` as copies, the cell annotations carried by the rna modality."""
    mods = {k: a.copy() for k, a in mdata.mod.items()}
    mods["rna"].obs = mdata.obs.loc[mods["rna"].obs_names].copy()
    return mods


def build(**modalities: ad.AnnData) -> md.MuData:
    """A MuData of ``modalities`` as a user might assemble it (mudata's warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return md.MuData(modalities)


def with_rna_counts(mdata: md.MuData, x: np.ndarray) -> md.MuData:
    mods = annotated(mdata)
    mods["rna"] = ad.AnnData(x, obs=mods["rna"].obs, var=mods["rna"].var)
    return build(**mods)


def cli(
    tmp_path: Path,
    folder: Path | str,
    *extra: str,
    models: Sequence[str] = ("livi",),
    out: Path | None = None,
) -> int:
    """Run the comparison CLI on ``folder``, with run folder ``tmp_path/run`` and cache ``tmp_path/cache``."""
    out = tmp_path / "run" if out is None else out
    argv = [
        "--dataset",
        str(folder),
        "--preset",
        "ci",
        "--models",
        *models,
        "--out",
        str(out),
        "--no-umap",
        "-q",
        "--probe-seeds",
        "2",
        "--cache",
        str(tmp_path / "cache"),
        *extra,
    ]
    return main(argv)


def refused(
    tmp_path: Path, capsys, folder: Path | str, *extra: str, models: Sequence[str] = ("livi",)
) -> str:
    """Run the CLI, assert it refused before training (exit 2, nothing written), return the message."""
    capsys.readouterr()
    assert cli(tmp_path, folder, *extra, models=models) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert not (tmp_path / "run").exists(), "the run folder was created before the input was validated"
    assert not (tmp_path / "cache").exists(), "something was trained (a cache entry exists)"
    print(f"\nUSER SEES: {err.strip()}")
    return err
