"""Training throughput (training cells per second, per epoch) of livi, mslivi and dmlivi on the
default simulated cohort, quick and paper presets, on CPU and (when present) on CUDA.

Each fit runs ``EPOCHS`` epochs (one warm-up, one donor-stage epoch), so both stages are timed;
throughput is ``n_train * EPOCHS / fit_seconds_`` (the training loop only, not module construction).
The time to densify the minibatches (the CSR -> dense copy the loop does for every batch) is
measured separately to show how much of an epoch is data loading.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np
import pytest
import torch

from benchmarks.presets import preset_config
from multilivi.data import simulate, split_cells
from multilivi.models.registry import model_class
from multilivi.models.train import CellBatches, minibatches

EPOCHS = 2
FAMILIES = ("livi", "mslivi", "dmlivi")
PRESETS = ("quick", "paper")
DEVICES = ("cpu", "cuda")
CASES = [pytest.param(f, p, d, id=f"{f}-{p}-{d}") for d in DEVICES for p in PRESETS for f in FAMILIES]


@functools.lru_cache(maxsize=1)
def default_cohort():
    """The harness's default dataset and its training cells; torch is warmed up on a tiny fit first,
    so the first timed model does not pay for one-off initialisation.
    """
    cohort = simulate(seed=0)
    train_idx, _ = split_cells(cohort, frac=0.1, seed=0)
    for family in FAMILIES:
        warm = dataclasses.replace(
            preset_config(family, "ci"), epochs=2, warmup_epochs=1, device="cpu", progress=False
        )
        model_class(family)(warm).fit(cohort, train_idx[:512])
    return cohort, train_idx


def batching_seconds(cohort, train_idx, modalities, batch_size: int, device: torch.device) -> float:
    """Seconds to build every minibatch of one epoch (CSR row slice, densify, copy to device)."""
    data = CellBatches({m: cohort.counts(m)[train_idx] for m in modalities}, cohort.donor_index[train_idx])
    start = time.perf_counter()
    for rows in minibatches(data.n_cells, batch_size, np.random.default_rng(0)):
        data.batch(rows, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@pytest.mark.parametrize(("family", "preset", "device"), CASES)
def test_training_throughput(benchmark, family, preset, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch")
    cohort, train_idx = default_cohort()
    config = dataclasses.replace(
        preset_config(family, preset), epochs=EPOCHS, warmup_epochs=1, device=device, progress=False
    )
    model_type = model_class(family)

    def fit():
        model = model_type(config).fit(cohort, train_idx)
        if device == "cuda":
            torch.cuda.synchronize()
        return model

    model = benchmark.pedantic(fit, rounds=1, iterations=1)
    n_train = len(train_idx)
    cells_per_s = n_train * EPOCHS / model.fit_seconds_
    load_s = batching_seconds(cohort, train_idx, model.modalities, config.batch_size, torch.device(device))
    benchmark.extra_info.update(
        kind="training",
        family=family,
        preset=preset,
        device=device,
        n_train_cells=n_train,
        epochs=EPOCHS,
        batch_size=config.batch_size,
        encoder_hidden=list(config.encoder_hidden),
        n_parameters=sum(p.numel() for p in model.module_.parameters()),
        fit_seconds=model.fit_seconds_,
        seconds_per_epoch=model.fit_seconds_ / EPOCHS,
        cells_per_s=cells_per_s,
        batching_s_per_epoch=load_s,
        batching_share=load_s / (model.fit_seconds_ / EPOCHS),
        torch_threads=torch.get_num_threads(),
    )
    assert len(model.history_) == EPOCHS and np.isfinite(model.history_[-1]["loss"])
