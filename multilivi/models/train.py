"""The one staged training loop every model uses.

Stage 1 (epochs ``[0, warmup_epochs)``) trains the encoder(s), the cell-state decoders and the
dispersions with the donor terms left out of the logits; stage 2 freezes those and trains the donor
parts D, V, A, W_DxC and W_V. :func:`stage_at` is the schedule, ``module.set_stage`` applies it.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from multilivi.models.allocator import retained_heap
from multilivi.models.components import encoder_precision, log_factorial_sums
from multilivi.models.streaming import StreamedBatches, block_minibatches, host_to_device

if TYPE_CHECKING:
    from multilivi.models.base import LatentModule

logger = logging.getLogger(__name__)


class Stage(enum.IntEnum):
    """Training stage: 1 = cell-state warm-up, 2 = donor factors."""

    CELL_STATE = 1
    DONOR = 2


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation settings shared by every model family (each family config extends this)."""

    epochs: int = 100  # total epochs, both stages
    warmup_epochs: int = 60  # stage-1 (cell-state) epochs; the rest train the donor parts
    lr: float = 8e-4  # Adam learning rate, one for every parameter
    batch_size: int = 1024  # cells per minibatch (the last, short batch is spread over the others)
    seed: int = 0  # seeds initialisation, minibatch order and the reparameterisation noise
    # minibatch order: "cells" = a random permutation of the cells each epoch; "blocks" = block-shuffled
    # (multilivi.models.streaming), the order counts on disk are streamed in, the same in memory
    shuffle: Literal["cells", "blocks"] = "cells"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # "auto": cuda when available, else cpu
    # the encoders' hidden layers while training: "bfloat16" autocasts their matmuls (fast on CPUs
    # with AMX / AVX512-BF16 and on GPUs); heads, decoders, loss and evaluation stay float32
    precision: Literal["float32", "bfloat16"] = "float32"
    progress: bool = True  # tqdm bar (shown only on a terminal)

    def __post_init__(self) -> None:
        if self.epochs < 2:
            raise ValueError(f"epochs must be >= 2 (one per stage at least), got {self.epochs}")
        if not 1 <= self.warmup_epochs < self.epochs:
            raise ValueError(
                f"warmup_epochs must lie in [1, epochs - 1] = [1, {self.epochs - 1}] so both stages run, "
                f"got {self.warmup_epochs}; raise epochs or lower warmup_epochs"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.shuffle not in ("cells", "blocks"):
            raise ValueError(f"shuffle must be 'cells' or 'blocks', got {self.shuffle!r}")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")


def stage_at(epoch: int, config: TrainConfig) -> Stage:
    """The stage of 0-based ``epoch``: cell-state warm-up before ``warmup_epochs``, donor stage after."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return Stage.CELL_STATE if epoch < config.warmup_epochs else Stage.DONOR


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → cuda when available, else cpu; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was asked for but torch sees no CUDA device; use device='auto' or 'cpu'"
        )
    return torch.device(device)


LOG_LINES = 20  # per-epoch summary lines of a fit at most, when its progress bar is not shown
_PROGRESS_LABEL: contextvars.ContextVar[str | None] = contextvars.ContextVar("progress_label", default=None)


@contextlib.contextmanager
def progress_label(label: str) -> Iterator[None]:
    """Name the fits inside the block (e.g. ``mslivi-50 seed 1``) on their progress bar and log lines."""
    token = _PROGRESS_LABEL.set(label)
    try:
        yield
    finally:
        _PROGRESS_LABEL.reset(token)


def log_interval(epochs: int, lines: int = LOG_LINES) -> int:
    """Epochs between two summary lines: at most ``lines`` lines per fit, the last epoch always one."""
    return max(1, math.ceil(epochs / lines))


# {"x": {modality: (B, G_m)}, "library": {modality: (B, 1)}, "log_factorial": {modality: (B,)},
#  "donor": (B,) int64}; log_factorial: components.log_factorial_sums of the batch's counts
Batch = dict


DENSE_CACHE_BYTES = 256 * 2**20  # counts up to this size (dense float32) are densified once


class CellBatches:
    """Counts of a set of cells, served as dense float32 minibatches on a device.

    The cells are rows ``rows`` of the given matrices, read in place (no copy of the counts).
    Counts of those cells whose dense float32 form fits in ``DENSE_CACHE_BYTES`` are densified
    once (the same values, served without a per-step scatter); larger ones stay CSR and each
    minibatch is densified on demand, so memory follows the batch, not the cohort.

    Parameters
    ----------
    counts
        One CSR matrix (n_rows, n_features_m) per modality, float32.
    donor
        Array (n_cells,) of donor positions (rows of the model's D and V) of the served cells.
    rows
        Array (n_cells,) of the served cells' rows in ``counts``; all rows when None.
    """

    def __init__(
        self, counts: dict[str, sp.csr_matrix], donor: np.ndarray, rows: np.ndarray | None = None
    ) -> None:
        self.counts = {m: sp.csr_matrix(x, dtype=np.float32) for m, x in counts.items()}
        self.positions = None if rows is None else np.asarray(rows, dtype=np.int64)  # None: every row
        self.donor = np.asarray(donor, dtype=np.int64)
        self.n_cells = len(self.donor)
        n_rows = next(iter(self.counts.values())).shape[0] if rows is None else self.positions.size
        if n_rows != self.n_cells:
            raise ValueError(f"{n_rows} rows for {self.n_cells} donors; pass one row per cell")
        self.library = {
            m: self._csr_rows(np.asarray(x.sum(axis=1), dtype=np.float32)) for m, x in self.counts.items()
        }
        self.log_factorial = {m: self._csr_rows(log_factorial_sums(x)) for m, x in self.counts.items()}
        dense_bytes = 4 * self.n_cells * sum(x.shape[1] for x in self.counts.values())
        self.dense = (
            {m: self._csr_rows(x).toarray() for m, x in self.counts.items()}
            if dense_bytes <= DENSE_CACHE_BYTES
            else None
        )

    def _csr_rows(self, x: sp.csr_matrix | np.ndarray, cells: np.ndarray | None = None):
        """Rows of ``x`` (counts or per-row values) of the served ``cells`` (positions among them)."""
        if self.positions is None:
            return x if cells is None else x[cells]
        return x[self.positions if cells is None else self.positions[cells]]

    def rows(self, modality: str, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_features) dense float32 counts of one modality; ``rows`` index the served cells."""
        if self.dense is not None:
            return self.dense[modality][rows]
        return self._csr_rows(self.counts[modality], rows).toarray()

    def batch(self, rows: np.ndarray, device: torch.device) -> Batch:
        """Minibatch of the given cell positions."""
        return {
            "x": {m: host_to_device(self.rows(m, rows), device) for m in self.counts},
            "library": {m: host_to_device(lib[rows], device) for m, lib in self.library.items()},
            "log_factorial": {m: host_to_device(v[rows], device) for m, v in self.log_factorial.items()},
            "donor": host_to_device(self.donor[rows], device),
        }

    def epoch(
        self, batch_size: int, rng: np.random.Generator, device: torch.device, shuffle: str = "cells"
    ) -> Iterator[Batch]:
        """One epoch of minibatches: a random permutation (``"cells"``) or block-shuffled (``"blocks"``)."""
        if shuffle == "cells":
            order = minibatches(self.n_cells, batch_size, rng)
        else:
            stored = (
                np.arange(self.n_cells)
                if self.positions is None
                else np.argsort(self.positions, kind="stable")
            )
            order = block_minibatches(stored, batch_size, rng)
        for rows in order:
            yield self.batch(rows, device)

    def in_order(self, batch_size: int, device: torch.device) -> Iterator[tuple[np.ndarray, Batch]]:
        """``(positions, batch)``: every cell in the served order, ``batch_size`` at a time (evaluation)."""
        for start in range(0, self.n_cells, batch_size):
            rows = np.arange(start, min(start + batch_size, self.n_cells))
            yield rows, self.batch(rows, device)


def minibatches(n_cells: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation of the cells cut into ``ceil(n / batch_size)`` near-equal minibatches."""
    n_batches = max(1, math.ceil(n_cells / batch_size))
    return np.array_split(rng.permutation(n_cells), n_batches)


def fit_module(
    module: LatentModule, data: CellBatches | StreamedBatches, config: TrainConfig, device: torch.device
) -> list[dict[str, float]]:
    """Train ``module`` in place on ``data`` with Adam through both stages.

    Parameters
    ----------
    module
        A model's torch module, already on ``device``.
    data
        The training cells, in memory or streamed from disk; served in ``config.shuffle``'s order.
    config
        Schedule, learning rate, batch size and seed.
    device
        Where the minibatches go.

    Returns
    -------
    list of dict
        One record per epoch: ``epoch``, ``stage`` and the cell-weighted epoch mean of every loss
        term the module reports (``loss`` is their total, :attr:`LossOutput.total`).

    With ``config.progress``, a tqdm bar named by :func:`progress_label` (else the module's class)
    shows on a terminal; elsewhere (a log file) a summary line is logged every
    :func:`log_interval` epochs: epoch, stage, loss and training cells per second.

    Raises
    ------
    FloatingPointError
        When a loss term is NaN or infinite, naming the term, the epoch and the stage.
    """
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    optimiser = torch.optim.Adam(module.parameters(), lr=config.lr)
    history: list[dict[str, float]] = []
    label = _PROGRESS_LABEL.get() or type(module).__name__
    bar = tqdm(range(config.epochs), desc=label, disable=None if config.progress else True)
    every = log_interval(config.epochs) if config.progress and bar.disable else 0  # no bar: log lines
    since, last_logged = time.perf_counter(), -1
    with encoder_precision(module, config.precision), retained_heap(device):
        for epoch in bar:
            stage = stage_at(epoch, config)
            if stage != module.stage:
                module.set_stage(stage)
                logger.info("epoch %d: entering stage %d (%s)", epoch, int(stage), stage.name.lower())
            sums = _train_epoch(module, data, config, device, rng, generator, optimiser, epoch)
            record = {
                "epoch": float(epoch),
                "stage": float(stage),
                **{k: v / data.n_cells for k, v in sums.items()},
            }
            history.append(record)
            bar.set_postfix(
                {k: f"{v:.4g}" for k, v in record.items() if k not in ("epoch", "stage")}, refresh=False
            )
            if every and ((epoch + 1) % every == 0 or epoch + 1 == config.epochs):
                now = time.perf_counter()
                cells_per_second = (epoch - last_logged) * data.n_cells / max(now - since, 1e-9)
                logger.info(
                    "%s: epoch %d/%d (stage %d), loss %.4g, %.0f cells/s",
                    label,
                    epoch + 1,
                    config.epochs,
                    int(stage),
                    record["loss"],
                    cells_per_second,
                )
                since, last_logged = now, epoch
    return history


def _train_epoch(
    module: LatentModule,
    data: CellBatches | StreamedBatches,
    config: TrainConfig,
    device: torch.device,
    rng: np.random.Generator,
    generator: torch.Generator,
    optimiser: torch.optim.Optimizer,
    epoch: int,
) -> dict[str, float]:
    """One pass of Adam steps over ``data``; the cell-weighted sum of every loss term."""
    module.train()
    sums: dict[str, float] = {}
    for batch in data.epoch(config.batch_size, rng, device, config.shuffle):
        out = module.loss(batch, generator)
        terms = out.terms
        names = list(terms)
        values = torch.stack([terms[k].detach() for k in names]).tolist()
        for name, value in zip(names, values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss term {name!r} became {value} at epoch {epoch} (stage {int(module.stage)}); "
                    "lower lr, or check the counts for extreme library sizes"
                )
            sums[name] = sums.get(name, 0.0) + value * len(batch["donor"])
        optimiser.zero_grad(set_to_none=True)
        out.total.backward()
        optimiser.step()
    return sums
