"""Peak memory and throughput of training from counts on disk as cells grow.

    python -m benchmarks.perf.ondisk --cells 100000 300000 1000000 [--workdir DIR]

One cohort of ``--base`` cells x ``--genes`` genes is simulated (blocked simulator) and written; the
larger sizes reuse it: its cells tiled ``n / base`` times (renamed, the same donors and genotypes) into
a new .h5mu whose counts are appended copy by copy, so no process holds more than the base cohort.
Each size then runs in a fresh process (so its peak RSS is its own): read the folder with
``on_disk=True`` (validation streams the counts), split off 10 % held-out cells, fit livi at the quick
preset's size (encoder 256-64, batch 256) for 2 epochs (one per stage; the least a fit runs),
block-shuffled, then embed every cell and score the held-out NLL. Prints a Markdown table with the
peak RSS of each stage (read, fit, outputs; ``VmHWM``, reset between stages) and of the whole run
against the acceptance bound (1.5 GB + 80 B per cell), the training cells/s, and the growth
exponent of the peak RSS between the smallest and the largest size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.perf.memory import peak_rss_mib, reset_peak

N_DONORS = 100
BOUND_BASE, BOUND_PER_CELL = 1.5e9, 80  # the acceptance bound on the peak RSS, bytes


def simulated_base(folder: Path, n_cells: int, n_genes: int) -> Path:
    """Simulate and write the base cohort once (reused when ``folder`` holds it)."""
    if not (folder / "cohort.h5mu").exists():
        from multilivi.data.simulate import simulate

        cohort = simulate(seed=0, n_donors=N_DONORS, mean_cells_per_donor=n_cells / N_DONORS, n_genes=n_genes)
        cohort.write(folder)
    return folder


def tiled(base: Path, copies: int, folder: Path) -> Path:
    """``base``'s cells ``copies`` times (cell names suffixed ``_k``), counts appended copy by copy."""
    if (folder / "cohort.h5mu").exists():
        return folder
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    from multilivi.data.cohort import new_mudata
    from multilivi.data.io import read_cohort, without_index_names

    cohort = read_cohort(base, on_disk=False)
    folder.mkdir(parents=True, exist_ok=True)

    def repeated(frame: pd.DataFrame) -> pd.DataFrame:
        out = pd.concat([frame] * copies)
        out.index = [f"{name}_{k}" for k in range(copies) for name in frame.index]
        return out

    mdata = new_mudata(
        {m: ad.AnnData(obs=repeated(cohort.mdata[m].obs), var=cohort.mdata[m].var) for m in cohort.modalities}
    )
    mdata.obs = repeated(cohort.obs)
    tmp = folder / "cohort.tmp.h5mu"
    without_index_names(mdata).write(tmp)
    with h5py.File(tmp, "r+") as f:
        for m in cohort.modalities:
            x = cohort.counts(m)
            write_elem(f["mod"][m], "X", x)
            stored = ad.io.sparse_dataset(f["mod"][m]["X"])
            for _ in range(copies - 1):
                stored.append(x)
    tmp.rename(folder / "cohort.h5mu")
    for member in base.glob("genotypes.*"):
        shutil.copy(member, folder / member.name)
    return folder


def measure(folder: Path) -> dict[str, float]:
    """Read ``folder`` on disk, fit livi (quick size, 2 epochs, blocks), embed and score, in this process."""
    import numpy as np
    import torch

    from benchmarks.presets import preset_config
    from multilivi.data import split_cells
    from multilivi.data.io import read_cohort
    from multilivi.models import LIVI

    torch.set_num_threads(1)
    peaks = {"imports": peak_rss_mib()}
    reset_peak()
    start = time.perf_counter()
    cohort = read_cohort(folder, on_disk=True)
    read_seconds = time.perf_counter() - start
    peaks["read"] = peak_rss_mib()
    reset_peak()
    train_idx, heldout_idx = split_cells(cohort, frac=0.1, seed=0)
    config = dataclasses.replace(
        preset_config("livi", "quick"),
        epochs=2,
        warmup_epochs=1,
        shuffle="blocks",
        progress=False,
        device="cpu",
    )
    model = LIVI(config).fit(cohort, train_idx)
    peaks["fit"] = peak_rss_mib()
    reset_peak()
    start = time.perf_counter()
    views = model.views(cohort, np.arange(cohort.n_cells))
    nll = model.reconstruction_nll(cohort, heldout_idx)
    output_seconds = time.perf_counter() - start
    peaks["outputs"] = peak_rss_mib()
    stored = sum(cohort.disk_counts(m).nnz for m in cohort.modalities) * 8  # float32 values + int32 indices
    return {
        "cells": cohort.n_cells,
        "stored_gb": stored / 1e9,
        "read_seconds": read_seconds,
        "train_cells_per_second": config.epochs * len(train_idx) / model.fit_seconds_,
        "output_seconds": output_seconds,
        "output_mb": (sum(v.nbytes for v in views.values()) + sum(v.nbytes for v in nll.values())) / 1e6,
        **{f"peak_{stage}_mib": peak for stage, peak in peaks.items()},
        "peak_rss_mib": max(peaks.values()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--base", type=int, default=100_000, help="cells simulated; larger sizes tile them")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/multilivi-ondisk"))
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # the child process: one folder, JSON out
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
    base = simulated_base(args.workdir / f"base-{args.base}", args.base, args.genes)
    rows = []
    for n in args.cells:
        copies = max(1, round(n / args.base))
        folder = base if copies == 1 else tiled(base, copies, args.workdir / f"tiled-{copies}x")
        command = [sys.executable, "-m", "benchmarks.perf.ondisk", "--one", str(folder)]
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        rows.append(json.loads(subprocess.check_output(command, env=env).decode().strip().splitlines()[-1]))
    print(
        "| cells | counts on disk (GB) | read + validate (s) | train cells/s | embed + NLL (s) | "
        "outputs (MB) | peak RSS read / fit / outputs (MiB) | peak RSS (MiB) | "
        "bound 1.5e9 B + 80 B/cell (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        bound = (BOUND_BASE + BOUND_PER_CELL * r["cells"]) / 2**20
        print(
            f"| {r['cells']:,} | {r['stored_gb']:.2f} | {r['read_seconds']:.1f} | "
            f"{r['train_cells_per_second']:,.0f} | {r['output_seconds']:.1f} | {r['output_mb']:.0f} | "
            f"{r['peak_read_mib']:,.0f} / {r['peak_fit_mib']:,.0f} / {r['peak_outputs_mib']:,.0f} | "
            f"{r['peak_rss_mib']:,.0f} | {bound:,.0f} |"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        exponent = math.log(last["peak_rss_mib"] / first["peak_rss_mib"]) / math.log(
            last["cells"] / first["cells"]
        )
        per_cell = (last["peak_rss_mib"] - first["peak_rss_mib"]) * 2**20 / (last["cells"] - first["cells"])
        print(f"\npeak RSS ~ cells^{exponent:.3f}; {per_cell:.0f} B per added cell")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
