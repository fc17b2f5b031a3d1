"""Counts that stay on disk: the same cohort as in memory, validated and summed by streamed passes."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import h5py
import mudata as md
import numpy as np
import pytest

from multilivi.data import Cohort
from multilivi.data.io import COHORT_FILE, read_cells, read_cohort
from multilivi.data.simulate import SimulationConfig, simulate


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return simulate(SimulationConfig.ci(), seed=0).write(tmp_path_factory.mktemp("ci") / "cohort")


def test_on_disk_cohort_serves_the_counts_of_the_file_by_row_ranges(folder: Path) -> None:
    memory, disk = read_cohort(folder, on_disk=False), read_cohort(folder, on_disk=True)
    assert disk.on_disk and not memory.on_disk
    for m in memory.modalities:
        x, stored = memory.counts(m), disk.disk_counts(m)
        assert stored.shape == x.shape and stored.nnz == x.nnz
        for start, stop in [(0, 1), (10, 300), (x.shape[0] - 5, x.shape[0])]:
            np.testing.assert_array_equal(stored.rows(start, stop).toarray(), x[start:stop].toarray())
        rows = np.array([3, 4, 90, 1200])
        np.testing.assert_array_equal(stored.take(rows).toarray(), x[rows].toarray())
        per_cell, per_feature = stored.sums()
        np.testing.assert_array_equal(per_cell, memory.library_sizes(m))
        np.testing.assert_allclose(per_feature, np.asarray(x.sum(axis=0)).ravel())
        assert stored.rows(0, 5).dtype == np.float32
    assert disk.data_hash == memory.data_hash  # the same bytes hashed, streamed
    assert disk.summary().replace(" (on disk)", "").split("\n")[:3] == memory.summary().split("\n")[:3]
    with pytest.raises(ValueError, match="stay on disk.*on_disk=False"):
        disk.counts("rna")
    with pytest.raises(ValueError, match="in memory: use counts"):
        memory.disk_counts("rna")


def test_row_ranges_cover_every_row_within_the_entry_budget(folder: Path) -> None:
    stored = read_cohort(folder, on_disk=True).disk_counts("rna")
    ranges = list(stored.row_ranges(max_entries=1000))
    assert ranges[0][0] == 0 and ranges[-1][1] == stored.shape[0]
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [stored.indptr[stop] - stored.indptr[start] for start, stop in ranges]
    assert max(sizes) <= 1000 or all(stop - start == 1 for start, stop in ranges)


def test_the_switch_is_automatic_above_the_size_and_logged(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="multilivi.data.io"):
        assert not read_cohort(folder).on_disk
        assert "read into memory (within 4 GiB)" in caplog.text
        monkeypatch.setattr("multilivi.data.io.ON_DISK_BYTES", 1000)
        assert read_cohort(folder).on_disk
        assert "stay on disk, streamed in row blocks (above" in caplog.text
        assert not read_cohort(folder, on_disk=False).on_disk


@pytest.mark.parametrize(
    ("value", "message"),
    [(-1.0, "negative values"), (0.5, "not integers"), (np.nan, "1 NaN or infinite")],
)
def test_validation_streams_the_file_and_names_the_problem(
    folder: Path, tmp_path: Path, value: float, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for member in folder.iterdir():
        (bad / member.name).write_bytes(member.read_bytes())
    with h5py.File(bad / COHORT_FILE, "r+") as f:
        f["mod/rna/X/data"][-7] = value  # in the last chunk read
    monkeypatch.setattr("multilivi.data.cohort.CHECK_CHUNK", 1000)  # many chunks
    with pytest.raises(ValueError, match=message):
        read_cohort(bad, on_disk=True)
    with pytest.raises(ValueError, match=message):
        read_cohort(bad, on_disk=False)


def test_an_empty_cell_on_disk_is_refused(folder: Path, tmp_path: Path) -> None:
    bad = tmp_path / "empty"
    bad.mkdir()
    for member in folder.iterdir():
        (bad / member.name).write_bytes(member.read_bytes())
    with h5py.File(bad / COHORT_FILE, "r+") as f:
        lo, hi = f["mod/rna/X/indptr"][4:6]
        f["mod/rna/X/data"][lo:hi] = 0  # cell 4 stores only zeros
    with pytest.raises(ValueError, match="1 cells have zero rna counts"):
        read_cohort(bad, on_disk=True)


def test_conversions_that_would_copy_the_counts_are_refused(folder: Path, tmp_path: Path) -> None:
    cells = read_cells(folder / COHORT_FILE, on_disk=True)
    assert isinstance(cells["rna"].X, ad.abc.CSRDataset)
    with pytest.raises(ValueError, match="rounding them or reading them from a layer would copy them"):
        Cohort(cells, round_counts=True)
    genotypes = read_cohort(folder).genotypes
    fewer = genotypes.subset_donors(genotypes.donors[1:])
    with pytest.raises(ValueError, match="dropping the cells of ungenotyped donors would copy"):
        Cohort(cells, genotypes=fewer, donors="intersect")
    adata = ad.AnnData(read_cohort(folder).counts("rna").toarray())
    adata.obs["donor"] = "d0"
    md.MuData({"rna": adata}).write(tmp_path / "dense.h5mu")
    with pytest.raises(ValueError, match="counts are array in X.*only as a CSR"):
        read_cells(tmp_path / "dense.h5mu", on_disk=True)
    adata.write_h5ad(tmp_path / "cells.h5ad")
    with pytest.raises(ValueError, match="only from a .h5mu file or a cohort folder"):
        read_cells(tmp_path / "cells.h5ad", on_disk=True)


def test_an_on_disk_cohort_is_written_by_copying_its_counts_file_to_file(
    folder: Path, tmp_path: Path
) -> None:
    disk = read_cohort(folder, on_disk=True)
    back = read_cohort(disk.write(tmp_path / "again"), on_disk=False)
    memory = read_cohort(folder, on_disk=False)
    assert back.data_hash == memory.data_hash and back.name == memory.name
    for m in memory.modalities:
        assert (back.counts(m) != memory.counts(m)).nnz == 0
    assert back.obs.equals(memory.obs) and back.truth is not None
    np.testing.assert_array_equal(back.mdata["rna"].varm["true_W_C"], memory.mdata["rna"].varm["true_W_C"])


def test_streamed_sums_over_many_row_ranges_equal_the_sums_in_memory(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("multilivi.data.ondisk.READ_ENTRIES", 777)
    disk, memory = read_cohort(folder, on_disk=True), read_cohort(folder, on_disk=False)
    assert len(list(disk.disk_counts("rna").row_ranges())) > 100
    np.testing.assert_array_equal(disk.library_sizes("rna"), memory.library_sizes("rna"))
    assert disk.data_hash == memory.data_hash
