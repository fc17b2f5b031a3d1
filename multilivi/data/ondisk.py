"""Counts that stay on disk: a CSR matrix in an HDF5 file (anndata's layout), read in row blocks.

A cohort read with ``on_disk=True`` (or automatically, when its counts are stored in more than
:data:`ON_DISK_BYTES`) keeps each modality's ``X`` as anndata's backed CSR dataset; this module reads
it. Only the row pointer ``indptr`` (8 bytes per cell) is held in memory; the values and column
indices are read one contiguous range of rows at a time (one slice of ``data`` and one of ``indices``),
which is what HDF5 reads fast. Every pass over all the counts (validation, library sizes, the hash)
reads ranges of at most :data:`READ_ENTRIES` stored values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp

ON_DISK_BYTES = 4 * 2**30  # counts stored in more bytes (values + column indices) stay on disk when automatic
READ_ENTRIES = (
    2**23
)  # stored values read at once by a streamed pass (64 MiB of float32 values + int32 indices)


def is_disk_counts(x: object) -> bool:
    """Whether ``x`` (a modality's ``X``) is a backed CSR dataset (counts left on disk)."""
    return isinstance(x, ad.abc.CSRDataset)


def stored_bytes(group: h5py.Group) -> int:
    """Bytes of the values and column indices of the sparse matrix in ``group`` (dense: every entry)."""
    if isinstance(group, h5py.Dataset):
        return group.size * group.dtype.itemsize
    return sum(group[key].size * group[key].dtype.itemsize for key in ("data", "indices"))


class DiskCounts:
    """One modality's counts, an on-disk CSR matrix of shape (n_cells, n_features), read by row ranges.

    Parameters
    ----------
    dataset
        anndata's backed CSR dataset (``anndata.io.sparse_dataset`` of an h5py group holding ``data``,
        ``indices`` and ``indptr``), as a cohort read with ``on_disk=True`` holds in ``X``.
    """

    def __init__(self, dataset: ad.abc.CSRDataset) -> None:
        group = dataset.group
        if not isinstance(group, h5py.Group):
            raise TypeError(f"on-disk counts are read from HDF5 (.h5mu) groups, not {type(group).__name__}")
        self.dataset = dataset
        self.shape: tuple[int, int] = tuple(int(n) for n in dataset.shape)
        self._data, self._indices = group["data"], group["indices"]
        self.indptr = np.asarray(group["indptr"][:], dtype=np.int64)  # (n_cells + 1,)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        """Rows ``[start, stop)`` as float32 CSR (stop - start, n_features): one read of each array."""
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        return sp.csr_matrix(
            (
                np.asarray(self._data[lo:hi], dtype=np.float32),
                np.asarray(self._indices[lo:hi]),
                self.indptr[start : stop + 1] - lo,
            ),
            shape=(stop - start, self.shape[1]),
        )

    def take(self, rows: np.ndarray) -> sp.csr_matrix:
        """Rows ``rows`` (k,), sorted ascending, as float32 CSR (k, n_features): one read of their range."""
        first = int(rows[0])
        return self.rows(first, int(rows[-1]) + 1)[rows - first]

    def row_ranges(self, max_entries: int | None = None) -> Iterator[tuple[int, int]]:
        """Consecutive ``(start, stop)`` row ranges covering every row, each holding <= ``max_entries``
        (default :data:`READ_ENTRIES`) stored values (or one row, if a row alone holds more).
        """
        max_entries = READ_ENTRIES if max_entries is None else max_entries
        start, n = 0, self.shape[0]
        while start < n:
            stop = int(np.searchsorted(self.indptr, self.indptr[start] + max_entries, side="right")) - 1
            stop = min(max(stop, start + 1), n)
            yield start, stop
            start = stop

    def blocks(self, max_entries: int | None = None) -> Iterator[tuple[int, sp.csr_matrix]]:
        """``(start, rows)`` for consecutive row ranges of <= ``max_entries`` values (:meth:`row_ranges`)."""
        for start, stop in self.row_ranges(max_entries):
            yield start, self.rows(start, stop)

    def value_chunks(self, size: int | None = None) -> Iterator[np.ndarray]:
        """The stored values (any dtype) in consecutive chunks of <= ``size`` (:data:`READ_ENTRIES`)."""
        size = READ_ENTRIES if size is None else size
        for lo in range(0, self.nnz, size):
            yield self._data[lo : min(lo + size, self.nnz)]

    def sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell totals (n_cells,) float32 (library sizes) and per-feature totals (n_features,) float64,
        in one streamed pass; the cells' are ``np.asarray(x.sum(axis=1), dtype=np.float32)`` of the matrix
        in memory, the same float32 sums.
        """
        rows = np.empty(self.shape[0], dtype=np.float32)
        columns = np.zeros(self.shape[1], dtype=np.float64)
        for start, x in self.blocks():
            rows[start : start + x.shape[0]] = np.asarray(x.sum(axis=1), dtype=np.float32).ravel()
            columns += np.bincount(x.indices, weights=x.data, minlength=self.shape[1])
        return rows, columns

    def update_hash(self, h: hashlib._Hash) -> None:
        """Feed ``h`` the bytes an in-memory float32 CSR copy would (indptr, indices, values), streamed."""
        stored_indptr = self.dataset.group["indptr"]
        h.update(np.ascontiguousarray(stored_indptr[:]).tobytes())
        for lo in range(0, self.nnz, READ_ENTRIES):
            h.update(np.ascontiguousarray(self._indices[lo : min(lo + READ_ENTRIES, self.nnz)]).tobytes())
        for values in self.value_chunks():
            h.update(np.ascontiguousarray(values, dtype=np.float32).tobytes())
