"""Minibatches streamed from counts on disk, in a block-shuffled order.

The scheme (``TrainConfig.shuffle = "blocks"``), a function of the seed and the served cells only,
never of where the counts are stored:

1. the served cells, in their stored order, are cut into blocks of :data:`BLOCK_CELLS` consecutive
   cells;
2. each epoch the blocks are permuted and taken :data:`BUFFER_BATCHES` x ``batch_size`` cells' worth
   at a time into a buffer;
3. the buffer's cells are permuted and cut into ``ceil(n_buffer / batch_size)`` near-equal
   minibatches (a full buffer, when 64 divides 16 ``batch_size``: :data:`BUFFER_BATCHES` of
   ``batch_size``).

Every cell is seen once per epoch. Mixing: a minibatch of ``b`` cells holds cells of up to
``16 b / 64 = b / 4`` blocks drawn at random from the whole cohort (a 256-cell minibatch: 64 blocks,
about 4 cells of each), so neighbours in the file (often one donor, one sample) enter a minibatch in
groups of ~4 rather than alone; the buffer, not the cohort, bounds what one epoch's consecutive
minibatches share. A cohort of at most one buffer (the CI cohort) is fully permuted every epoch.

Reading a buffer costs one read of ``data`` and one of ``indices`` per block (the row pointer is in
memory): measured on a 10^5-cell x 2,000-gene .h5mu, 97k cells/s in 64-cell blocks against 2.4k
cells/s for random single rows (benchmarks/perf/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from multilivi.data.ondisk import DiskCounts
from multilivi.models.components import log_factorial_sums

if TYPE_CHECKING:
    from multilivi.models.train import Batch

BLOCK_CELLS = 64  # consecutive stored cells read together
BUFFER_BATCHES = 16  # minibatches' worth of cells shuffled together


def block_buffers(
    order: np.ndarray, batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """One epoch of the block-shuffled scheme (module docstring), a buffer at a time.

    Parameters
    ----------
    order
        (n,) positions of the served cells in their stored order (``argsort`` of their rows).
    batch_size
        Cells per minibatch.
    rng
        Draws the block permutation and each buffer's permutation, in that order.

    Yields
    ------
    blocks, batches
        The buffer's blocks (arrays of served positions, each a run of consecutive stored cells) and its
        minibatches as indices into ``np.concatenate(blocks)``.
    """
    n_blocks = math.ceil(order.size / BLOCK_CELLS)
    per_buffer = max(1, BUFFER_BATCHES * batch_size // BLOCK_CELLS)
    permuted = rng.permutation(n_blocks)
    for first in range(0, n_blocks, per_buffer):
        blocks = [
            order[b * BLOCK_CELLS : (b + 1) * BLOCK_CELLS] for b in permuted[first : first + per_buffer]
        ]
        n_buffer = sum(b.size for b in blocks)
        batches = np.array_split(rng.permutation(n_buffer), max(1, math.ceil(n_buffer / batch_size)))
        yield blocks, batches


def block_minibatches(order: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The minibatches of :func:`block_buffers` as served positions (what the in-memory source serves)."""
    for blocks, batches in block_buffers(order, batch_size, rng):
        cells = np.concatenate(blocks)
        for local in batches:
            yield cells[local]


class StreamedBatches:
    """Cells whose counts stay on disk, served as dense float32 minibatches read by row ranges.

    Serves what :class:`~multilivi.models.train.CellBatches` serves for the same cells (the same
    values, library sizes and donors); only the block-shuffled order (:func:`block_buffers`) and
    in-order evaluation are offered, as random single rows read ~40x slower.

    Parameters
    ----------
    counts
        One on-disk CSR matrix (n_rows, n_features_m) per modality.
    donor
        Array (n_cells,) of donor positions of the served cells.
    rows
        Array (n_cells,) of the served cells' rows; all rows when None.
    """

    def __init__(
        self, counts: dict[str, DiskCounts], donor: np.ndarray, rows: np.ndarray | None = None
    ) -> None:
        self.counts = counts
        n_rows = next(iter(counts.values())).shape[0]
        self.positions = np.arange(n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        self.donor = np.asarray(donor, dtype=np.int64)
        self.n_cells = len(self.donor)
        if self.positions.size != self.n_cells:
            raise ValueError(f"{self.positions.size} rows for {self.n_cells} donors; pass one row per cell")
        self.order = np.argsort(self.positions, kind="stable")  # served positions in stored order
        self.library = {m: x.sums()[0][self.positions][:, None] for m, x in counts.items()}  # one pass each

    def epoch(
        self, batch_size: int, rng: np.random.Generator, device: torch.device, shuffle: str = "blocks"
    ) -> Iterator[Batch]:
        """One epoch of block-shuffled minibatches; ``shuffle`` must be ``"blocks"``."""
        if shuffle != "blocks":
            raise ValueError(
                f"counts on disk are served in the block-shuffled order (shuffle='blocks'), not {shuffle!r}: "
                "random single rows read ~40x slower; set shuffle='blocks' (the harness does for --on-disk)"
            )
        for blocks, batches in block_buffers(self.order, batch_size, rng):
            cells = np.concatenate(blocks)
            buffer = {
                m: sp.vstack([self._read(x, b) for b in blocks], format="csr") for m, x in self.counts.items()
            }
            for local in batches:
                yield self._batch(cells[local], {m: x[local] for m, x in buffer.items()}, device)

    def in_order(self, batch_size: int, device: torch.device) -> Iterator[tuple[np.ndarray, Batch]]:
        """``(positions, batch)`` covering every served cell once, read in stored order.

        Each batch holds the served cells of a window of ``batch_size`` stored rows (held-out cells are
        sparse in the file: their batches are smaller, so a read stays ``batch_size`` rows long).
        """
        rows = self.positions[self.order]
        windows = np.flatnonzero(np.diff(rows // batch_size, prepend=-1)) if rows.size else rows
        for start, stop in zip(windows, [*windows[1:], rows.size]):
            cells = self.order[start:stop]
            yield cells, self._batch(cells, {m: self._read(x, cells) for m, x in self.counts.items()}, device)

    def _read(self, counts: DiskCounts, cells: np.ndarray) -> sp.csr_matrix:
        """Counts (len(cells), n_features) of served ``cells`` that run in stored order (one range read)."""
        return counts.take(self.positions[cells])

    def _batch(self, cells: np.ndarray, x: dict[str, sp.csr_matrix], device: torch.device) -> Batch:
        return {
            "x": {m: host_to_device(v.toarray(), device) for m, v in x.items()},
            "library": {m: host_to_device(lib[cells], device) for m, lib in self.library.items()},
            "log_factorial": {m: host_to_device(log_factorial_sums(v), device) for m, v in x.items()},
            "donor": host_to_device(self.donor[cells], device),
        }


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``: shared on the CPU, through pinned memory to a GPU.

    The copy to a GPU is asynchronous (``non_blocking``), so the next batch is assembled while the
    kernels of the last one run; CUDA orders it before any kernel that reads the tensor.
    """
    tensor = torch.from_numpy(array)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
