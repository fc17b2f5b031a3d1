"""Training cells/s of the public reference LIVI (PMBio/LIVI) beside ours, per stage, same config.

    python -m benchmarks.perf.reference --reference /path/to/LIVI [--cells 20000] [--genes 1000 2000]
        [--rounds 3] [--encoders small paper]

Run it with a Python that has ``pytorch_lightning`` (the reference is a Lightning module; our package
does not need it) from the repository root, e.g. ``OMP_NUM_THREADS=1 /tmp/refenv/bin/python -m
benchmarks.perf.reference --reference /tmp/livi-ref``. The reference is imported from that checkout
(``src.models.livi.LIVI``), never copied here.

One simulated cohort (100 donors, ``--cells`` cells, 90 % of them training cells) per gene count.
Configs, the same on both sides: the ``livi`` paper preset (15 cell-state, 100 D×C and 5 persistent
factors, lr 8e-4, L1 1e-3, A 1e-3, decoder BatchNorm) with batch 1024 and encoder ``small`` (256-128,
at every ``--genes``) or ``paper`` (5000-2000-500-100, at the largest ``--genes``). Implementations:
``ours`` (float32), ``ours-bf16`` (``TrainConfig.precision="bfloat16"``, paper encoder only) and
``reference``: its ``LIVI`` (no cis SNPs, no covariates) trained by a ``pytorch_lightning.Trainer`` on
CPU over a torch ``DataLoader`` whose batches are the reference's dicts (``x`` dense float32 counts
densified per batch from CSR rows, ``y`` donor index, ``size_factor`` the cell's total count).

Stage times come from two fits per round, as in :mod:`benchmarks.perf.precision`: ours fits 2 epochs
(``warmup_epochs`` 1) and 3 epochs (2), so stage 1 is their difference and stage 2 the rest. The
reference switches stage at the end of the epoch whose 0-based index equals ``warmup_epochs_vae``
(and ``warmup_epochs_vae=0`` starts with the donor parts already on), so it needs W + 1 stage-1
epochs: it fits 3 epochs (W=1) and 4 epochs (W=2), stage 1 = their difference, stage 2 = the 3-epoch
fit less two stage-1 epochs (which doubles the noise of the difference in its stage 2). Both sides'
stage 2 thus carries the fit's fixed cost and the first epoch's excess. Timed: our ``fit_seconds_``
(the training loop) and the reference's ``Trainer.fit``. A second table times the same fits' epochs
one by one (a Lightning callback; our trainer's per-epoch cells/s log lines): first epoch, later
stage-1 epochs, stage-2 epoch. One torch thread; every case is fitted once on a tenth of its cells
first (warm-up), then rounds interleave the implementations so load drifts hit all of them. Prints
medians over rounds and the ratio ours / reference of cells/s (> 1: ours is faster), and each fit's
per-epoch training loss (the reference's falls through stage 1; stage 2 adds its penalties).

Remaining differences: our encoder sees log1p(counts), the reference's raw counts (same cost); our
counts are densified once per fit when they fit in our dense cache (256 MiB), the reference's per
batch from CSR rows; the reference keeps the short last batch here (its data module drops it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from benchmarks.presets import preset_config
from multilivi.data import simulate, split_cells
from multilivi.models.registry import model_class
from multilivi.models.train import DENSE_CACHE_BYTES

ENCODERS: dict[str, tuple[int, ...]] = {"small": (256, 128), "paper": (5000, 2000, 500, 100)}
BATCH_SIZE = 1024
SEED = 0
REFERENCE = "reference"
TRAIN_LOGGER = "multilivi.models.train"


@dataclasses.dataclass
class Case:
    """One (encoder, gene count) comparison and the implementations timed on it."""

    encoder: str
    genes: int
    implementations: tuple[str, ...]


def our_config(encoder: str, epochs: int, precision: str) -> Any:
    """Our livi config: the paper preset with ``encoder``, batch 1024, the last epoch in stage 2."""
    return dataclasses.replace(
        preset_config("livi", "paper"),
        encoder_hidden=ENCODERS[encoder],
        batch_size=BATCH_SIZE,
        epochs=epochs,
        warmup_epochs=epochs - 1,
        precision=precision,
        device="cpu",
        progress=False,
        seed=SEED,
    )


@dataclasses.dataclass
class Fit:
    """One timed fit: its seconds, and per epoch its mean training loss and wall seconds."""

    seconds: float
    losses: list[float]
    epoch_seconds: list[float]


class EpochLines(logging.Handler):
    """Collects the seconds of each epoch from our trainer's per-epoch summary lines (cells/s)."""

    def __init__(self, n_cells: int) -> None:
        super().__init__(logging.INFO)
        self.n_cells = n_cells
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the epoch's seconds (``n_cells`` / its cells/s, the line's last argument)."""
        if str(record.msg).startswith("%s: epoch") and record.args:
            self.seconds.append(self.n_cells / float(record.args[-1]))


def fit_ours(cohort: Any, train_idx: np.ndarray, encoder: str, precision: str, epochs: int) -> Fit:
    """One fit of our livi: ``fit_seconds_``, per-epoch losses and epoch seconds.

    ``progress=True`` with stderr captured (no terminal, so no tqdm bar): the trainer then logs one
    summary line per epoch (at most 20 epochs), whose cells/s give each epoch's wall time.
    """
    config = dataclasses.replace(our_config(encoder, epochs, precision), progress=True)
    lines = EpochLines(len(train_idx))
    train_logger = logging.getLogger(TRAIN_LOGGER)
    level, propagate = train_logger.level, train_logger.propagate
    train_logger.addHandler(lines)
    train_logger.setLevel(logging.INFO)
    train_logger.propagate = False
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            model = model_class("livi")(config).fit(cohort, train_idx)
    finally:
        train_logger.removeHandler(lines)
        train_logger.setLevel(level)
        train_logger.propagate = propagate
    if len(lines.seconds) != epochs:
        raise RuntimeError(f"{len(lines.seconds)} per-epoch lines from our trainer for {epochs} epochs")
    return Fit(model.fit_seconds_, [float(h["loss"]) for h in model.history_], lines.seconds)


class ReferenceBatches(Dataset):
    """Minibatches in the reference's format, indexed by a list of cell positions (as its dataset is).

    Parameters
    ----------
    counts
        CSR raw counts (n_cells, n_genes) of the training cells.
    donor
        Array (n_cells,) of each cell's donor index (the rows of the reference's embeddings).
    """

    def __init__(self, counts: sp.csr_matrix, donor: np.ndarray) -> None:
        self.counts = sp.csr_matrix(counts, dtype=np.float32)
        self.donor = np.asarray(donor, dtype=np.int64)
        self.size_factor = np.asarray(self.counts.sum(axis=1), dtype=np.float32).reshape(-1, 1)

    def __len__(self) -> int:
        return self.counts.shape[0]

    def __getitem__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        """``x`` (B, G) dense float32 counts, ``y`` (B,) int64 donor index, ``size_factor`` (B, 1)."""
        x = np.ascontiguousarray(self.counts[idx].toarray(), dtype=np.float32)
        return {
            "x": torch.from_numpy(x),
            "y": torch.from_numpy(self.donor[idx]),
            "size_factor": torch.from_numpy(np.ascontiguousarray(self.size_factor[idx])),
        }


def reference_loader(data: ReferenceBatches) -> DataLoader:
    """Shuffled batches of 1024 cells, no workers (a short last batch is kept unless it is one cell)."""
    drop_last = len(data) % BATCH_SIZE == 1  # BatchNorm cannot train on a single cell
    sampler = BatchSampler(RandomSampler(data), batch_size=BATCH_SIZE, drop_last=drop_last)
    return DataLoader(data, sampler=sampler, batch_size=None, num_workers=0)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the reference's per-epoch prints and Lightning's info lines and warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def reference_stage(model: Any) -> int:
    """The reference's current stage: 1 (VAE only), 2 (VAE frozen, D×C and V on), 0 (anything else)."""
    if model.pretrain_mode and not model.frozen and not model.train_DxC_mode:
        return 1
    if not model.pretrain_mode and model.frozen and model.train_DxC_mode and model.train_V_mode:
        return 2
    return 0


def fit_reference(
    livi_class: type, pl: Any, data: ReferenceBatches, n_donors: int, encoder: str, epochs: int
) -> Fit:
    """One ``Trainer.fit`` of the reference (the last epoch in stage 2): seconds, losses, epoch seconds.

    ``warmup_epochs_vae = epochs - 2``: the reference leaves stage 1 after the epoch of that 0-based
    index, so ``epochs - 1`` stage-1 epochs run, then one stage-2 epoch; a callback checks each
    epoch's stage and raises a ``RuntimeError`` on any other schedule.
    """
    ours = preset_config("livi", "paper")

    class Record(pl.Callback):
        """Each epoch's stage (at its start), wall seconds and mean training loss (the reference's log)."""

        def __init__(self) -> None:
            self.stages: list[int] = []
            self.losses: list[float] = []
            self.seconds: list[float] = []
            self.start = 0.0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self.stages.append(reference_stage(module))
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            self.seconds.append(time.perf_counter() - self.start)
            self.losses.append(float(trainer.callback_metrics["train/livi_loss"]))

    torch.manual_seed(SEED)
    model = livi_class(
        x_dim=data.counts.shape[1],
        z_dim=ours.n_latent,
        y_dim=n_donors,
        n_DxC_factors=ours.n_dxc,
        n_persistent_factors=ours.n_v,
        n_cis_snps=0,
        encoder_hidden_dims=list(ENCODERS[encoder]),
        learning_rate=ours.lr,
        warmup_epochs_vae=epochs - 2,
        warmup_epochs_G=0,
        covariates_dims=None,
        l1_weight=ours.l1_weight,
        A_weight=ours.a_weight,
        batch_norm_decoder=ours.batch_norm,
        genetics_seed=SEED,
        device="cpu",
    )
    record = Record()
    with quiet():
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[record],
        )
        loader = reference_loader(data)
        start = time.perf_counter()
        trainer.fit(model, loader)
        seconds = time.perf_counter() - start
    expected = [1] * (epochs - 1) + [2]
    if record.stages != expected:
        raise RuntimeError(f"reference stages per epoch {record.stages}, expected {expected}")
    return Fit(seconds, record.losses, record.seconds)


def git_sha(path: Path) -> str:
    """HEAD of the git work tree at ``path``, flagged when tracked files have uncommitted changes."""
    sha = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (sha or "unknown") + (" (+ uncommitted changes)" if dirty else "")


def cases(genes: list[int], encoders: tuple[str, ...] = tuple(ENCODERS)) -> list[Case]:
    """The small encoder at every gene count, the paper encoder (with bfloat16) at the largest."""
    out = [Case("small", g, ("ours", REFERENCE)) for g in sorted(genes)] if "small" in encoders else []
    if "paper" in encoders:
        out.append(Case("paper", max(genes), ("ours", REFERENCE, "ours-bf16")))
    return out


def print_table(
    timed: dict[str, dict[tuple[str, int, str], list[float]]],
    compared: list[Case],
    names: tuple[str, ...],
    headers: tuple[str, ...],
) -> None:
    """A Markdown table of the medians of ``names`` (cells/s) and ours / reference of the last two."""
    ratio_names = names[-2:]
    head = " | ".join(headers)
    ratio_head = " | ".join(f"ours / ref, {h.replace(' cells/s', '')}" for h in headers[-2:])
    print(f"| config | genes | implementation | {head} | {ratio_head} |")
    print("|---|---:|---|" + "---:|" * (len(names) + len(ratio_names)))
    for case in compared:
        label = f"{case.encoder} {'-'.join(map(str, ENCODERS[case.encoder]))}"
        ref = {k: statistics.median(timed[k][case.encoder, case.genes, REFERENCE]) for k in names}
        for impl in case.implementations:
            med = {k: statistics.median(timed[k][case.encoder, case.genes, impl]) for k in names}
            cells = " | ".join(f"{med[k]:,.0f}" for k in names)
            ratios = " | ".join("—" if impl == REFERENCE else f"{med[k] / ref[k]:.2f}x" for k in ratio_names)
            print(f"| {label} | {case.genes:,} | {impl} | {cells} | {ratios} |")


def fmt(values: list[float]) -> str:
    """Per-epoch values (seconds or losses), rounded."""
    return ", ".join(f"{v:,.2f}" for v in values)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run the interleaved rounds and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", type=Path, required=True, help="checkout of github.com/PMBio/LIVI")
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, nargs="+", default=[1_000, 2_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoders", nargs="+", choices=list(ENCODERS), default=list(ENCODERS))
    args = parser.parse_args(argv)

    import pytorch_lightning as pl

    sys.path.insert(0, str(args.reference.resolve()))
    from src.models.livi import LIVI as ReferenceLIVI

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    started = time.time()

    cohorts = {}
    for g in sorted(set(args.genes)):
        cohort = simulate(seed=0, n_donors=100, mean_cells_per_donor=args.cells / 100, n_genes=g)
        train_idx = split_cells(cohort, frac=0.1, seed=0)[0]
        data = ReferenceBatches(cohort.counts("rna")[train_idx], cohort.donor_index[train_idx])
        cohorts[g] = (cohort, train_idx, data)
    n_donors = len(next(iter(cohorts.values()))[0].donor_names)

    compared = cases(args.genes, tuple(args.encoders))
    # warm up torch, oneDNN / autocast kernels and Lightning: every case once on a tenth of its cells
    for case in compared:
        cohort, train_idx, data = cohorts[case.genes]
        fit_ours(cohort, train_idx[::10], case.encoder, "float32", 2)
        if "ours-bf16" in case.implementations:
            fit_ours(cohort, train_idx[::10], case.encoder, "bfloat16", 2)
        tenth = ReferenceBatches(data.counts[::10], data.donor[::10])
        fit_reference(ReferenceLIVI, pl, tenth, n_donors, case.encoder, 3)

    # (encoder, genes, implementation) -> one value per round
    timed: dict[str, dict[tuple[str, int, str], list[float]]] = {
        k: {} for k in ("stage1", "stage2", "first", "epoch1", "epoch2")
    }
    losses: dict[tuple[str, int, str], list[float]] = {}
    for r in range(args.rounds):
        for case in compared:
            cohort, train_idx, data = cohorts[case.genes]
            n = len(train_idx)
            for impl in case.implementations:
                key = (case.encoder, case.genes, impl)
                if impl == REFERENCE:
                    short = fit_reference(ReferenceLIVI, pl, data, n_donors, case.encoder, 3)
                    long = fit_reference(ReferenceLIVI, pl, data, n_donors, case.encoder, 4)
                    s1 = long.seconds - short.seconds
                    s2 = short.seconds - 2 * s1
                else:
                    precision = "bfloat16" if impl == "ours-bf16" else "float32"
                    short = fit_ours(cohort, train_idx, case.encoder, precision, 2)
                    long = fit_ours(cohort, train_idx, case.encoder, precision, 3)
                    s1 = long.seconds - short.seconds
                    s2 = short.seconds - s1
                losses[key] = long.losses
                # per-epoch wall times: each fit's first epoch, its other stage-1 epochs, its last epoch
                later = short.epoch_seconds[1:-1] + long.epoch_seconds[1:-1]
                values = {
                    "stage1": n / s1,
                    "stage2": n / s2,
                    "first": n / statistics.median([short.epoch_seconds[0], long.epoch_seconds[0]]),
                    "epoch1": n / statistics.median(later),
                    "epoch2": n / statistics.median([short.epoch_seconds[-1], long.epoch_seconds[-1]]),
                }
                for name, value in values.items():
                    timed[name].setdefault(key, []).append(value)
                print(
                    f"round {r + 1}: {case.encoder} {case.genes} {impl}: stage 1 {s1:.2f} s, "
                    f"stage 2 {s2:.2f} s; epochs {fmt(short.epoch_seconds)} and {fmt(long.epoch_seconds)} s",
                    file=sys.stderr,
                    flush=True,
                )

    n_train = ", ".join(f"{len(t):,} ({g:,} genes)" for g, (_, t, _) in cohorts.items())
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.cells:,} simulated cells, 100 donors, "
        f"training cells {n_train}; batch {BATCH_SIZE}; median of {args.rounds} interleaved rounds; "
        f"{time.time() - started:,.0f} s in all\n"
    )
    print(
        f"ours: multilivi {git_sha(Path(__file__).resolve().parents[2])}; reference: PMBio/LIVI "
        f"{git_sha(args.reference)}; torch {torch.__version__}, pytorch_lightning {pl.__version__}, "
        f"torch.get_num_threads() = {torch.get_num_threads()}\n"
    )
    print(
        "Fit differences (ours: 2- and 3-epoch fits; reference: 3- and 4-epoch fits): stage 1 = the "
        "difference, stage 2 = the rest (the fit's fixed cost and first-epoch excess included).\n"
    )
    print_table(timed, compared, ("stage1", "stage2"), ("stage-1 cells/s", "stage-2 cells/s"))
    print(
        "\nPer-epoch wall times of the same fits (reference: a Lightning callback; ours: the trainer's "
        "per-epoch cells/s lines): the first epoch, the later stage-1 epochs, the stage-2 epoch.\n"
    )
    print_table(
        timed,
        compared,
        ("first", "epoch1", "epoch2"),
        ("first-epoch cells/s", "stage-1 epoch cells/s", "stage-2 epoch cells/s"),
    )
    print(
        "\nPer-epoch training loss of the last round's longer fit (stage-1 epochs, then one stage-2 epoch):"
    )
    for (encoder, genes, impl), values in losses.items():
        print(f"- {encoder} {genes:,} {impl}: {fmt(values)}")
    dense = all(4 * len(t) * g <= DENSE_CACHE_BYTES for g, (_, t, _) in cohorts.items())
    print(
        "\nOur encoder sees log1p(counts), the reference's raw counts (the same cost). The reference's "
        "batches are densified from CSR rows per step; ours "
        + (
            "once per fit (they fit in our dense cache)."
            if dense
            else "per step too (beyond our dense cache)."
        )
    )


if __name__ == "__main__":
    main()
