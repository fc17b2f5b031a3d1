"""Training cells/s of livi at float32 and at bfloat16 encoders, per stage, and what it changes.

    python -m benchmarks.perf.precision [--cells 20000] [--genes 2000] [--rounds 3]

One simulated cohort (100 donors); livi at the paper preset (encoder 5000-2000-500-100, batch 1024)
and at the quick preset's size (encoder 256-64, batch 256), one torch thread, ``precision`` float32
and bfloat16 (``TrainConfig.precision``: the encoders' hidden layers autocast). Stage times come
from two fits per round: 2 epochs (one per stage) and 3 epochs (two stage-1 epochs), so stage 1 is
their difference and stage 2 the rest; rounds interleave the precisions so load drifts hit both.
Prints the median cells/s per stage and the bfloat16 / float32 ratio, then the held-out NLL per
cell of both after the 3-epoch fit (the same seed): how far the rounding moves the model.

``--first-layer`` times only the paper encoder's first layer (forward and weight gradient, batch 1,024
x genes -> 5,000) on counts of several densities: dense float32, torch's CSR x dense product,
``embedding_bag`` (the two sparse routes torch offers on CPU) and bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.presets import preset_config
from multilivi.data import simulate, split_cells
from multilivi.models.registry import model_class

PRESETS = ("paper", "quick")
PRECISIONS = ("float32", "bfloat16")


def fit_seconds(cohort, train_idx, preset: str, precision: str, epochs: int):
    """Seconds of one livi fit of ``epochs`` epochs (the last one in stage 2), and the model."""
    config = dataclasses.replace(
        preset_config("livi", preset),
        epochs=epochs,
        warmup_epochs=epochs - 1,
        precision=precision,
        device="cpu",
        progress=False,
    )
    model = model_class("livi")(config).fit(cohort, train_idx)
    return model.fit_seconds_, model


def first_layer_routes(x: torch.Tensor, weight: torch.Tensor) -> list:
    """Forward + weight-gradient passes of ``x`` (batch, genes) @ ``weight`` (genes, hidden), per route."""
    csr = x.to_sparse_csr()
    columns, offsets, values = csr.col_indices(), csr.crow_indices()[:-1], csr.values()

    def dense() -> None:
        (x @ weight).sum().backward()

    def sparse() -> None:
        torch.sparse.mm(csr, weight).sum().backward()

    def bag() -> None:
        F.embedding_bag(columns, weight, offsets, mode="sum", per_sample_weights=values).sum().backward()

    def bf16() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = x @ weight
        out.float().sum().backward()

    return [dense, sparse, bag, bf16]


def first_layer_seconds(
    genes: int, densities: tuple[float, ...] = (0.05, 0.1, 0.3), repeats: int = 3
) -> None:
    """Print seconds per forward + weight-gradient pass of the first layer, per route and density."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(genes, 5_000, generator=generator, requires_grad=True)

    def seconds(step) -> float:
        step()  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            weight.grad = None
            step()
        return (time.perf_counter() - start) / repeats

    print(f"first layer, batch 1,024 x {genes:,} -> 5,000, one thread, mean of {repeats}\n")
    print("| non-zeros | dense float32 (s) | CSR x dense (s) | embedding_bag (s) | bfloat16 autocast (s) |")
    print("|---:|---:|---:|---:|---:|")
    for density in densities:
        mask = torch.rand(1024, genes, generator=generator) < density
        x = torch.poisson(torch.full((1024, genes), 2.0), generator=generator).clamp(min=1) * mask
        times = [seconds(route) for route in first_layer_routes(x, weight)]
        print(f"| {density:.0%} | " + " | ".join(f"{s:.3f}" for s in times) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first-layer", action="store_true", help="time the first layer's routes only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.first_layer:
        first_layer_seconds(args.genes)
        return
    cohort = simulate(seed=0, n_donors=100, mean_cells_per_donor=args.cells / 100, n_genes=args.genes)
    train_idx, test_idx = split_cells(cohort, frac=0.1, seed=0)
    n = len(train_idx)
    fit_seconds(cohort, train_idx[::10], "quick", "bfloat16", 2)  # warm up torch and autocast
    stage1: dict[tuple[str, str], list[float]] = {}
    stage2: dict[tuple[str, str], list[float]] = {}
    nll: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for preset in PRESETS:
            for precision in PRECISIONS:
                two, _ = fit_seconds(cohort, train_idx, preset, precision, 2)
                three, model = fit_seconds(cohort, train_idx, preset, precision, 3)
                stage1.setdefault((preset, precision), []).append(n / (three - two))
                stage2.setdefault((preset, precision), []).append(n / (two - (three - two)))
                nll[preset, precision] = float(np.mean(model.reconstruction_nll(cohort, test_idx)["rna"]))
    print(
        f"{len(cohort.obs):,} cells ({n:,} training) x {args.genes:,} genes, one thread, "
        f"median of {args.rounds} interleaved rounds; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print("| preset | precision | stage-1 cells/s | stage-2 cells/s | held-out NLL / cell (3 epochs) |")
    print("|---|---|---:|---:|---:|")
    for preset in PRESETS:
        for precision in PRECISIONS:
            key = (preset, precision)
            print(
                f"| {preset} | {precision} | {statistics.median(stage1[key]):,.0f} | "
                f"{statistics.median(stage2[key]):,.0f} | {nll[key]:,.2f} |"
            )
    print()
    for preset in PRESETS:
        ratios = [
            statistics.median(s[preset, "bfloat16"]) / statistics.median(s[preset, "float32"])
            for s in (stage1, stage2)
        ]
        print(f"{preset}: bfloat16 / float32 = {ratios[0]:.2f}x (stage 1), {ratios[1]:.2f}x (stage 2)")


if __name__ == "__main__":
    main()
