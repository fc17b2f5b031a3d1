"""Peak memory and time of the simulator as cells grow: blocked draws keep memory to the block + the counts.

    python -m benchmarks.perf.simulator --cells 20000 100000 300000 --genes 2000

Each size runs in a fresh process (so its peak RSS is its own); prints a Markdown table with the
peak RSS, the bytes of the sparse counts it returns, the peak beyond them, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence

from benchmarks.perf.memory import peak_rss_mib

N_DONORS = 100


def measure(n_cells: int, n_genes: int, seed: int = 0) -> dict[str, float]:
    """Simulate ``n_cells`` x ``n_genes`` in this process; peak RSS (MB), counts (MB), seconds."""
    from multilivi.data.simulate import simulate

    start = time.perf_counter()
    cohort = simulate(seed=seed, n_donors=N_DONORS, mean_cells_per_donor=n_cells / N_DONORS, n_genes=n_genes)
    seconds = time.perf_counter() - start
    matrices = [cohort.counts(m) for m in cohort.modalities]
    counts = sum(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes for x in matrices)
    return {
        "cells": cohort.n_cells,
        "genes": n_genes,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mib(),
        "counts_mb": counts / 2**20,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[20_000, 100_000, 300_000])
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process: one size, JSON out
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.genes)))
        return 0
    rows = []
    for n in args.cells:
        command = [sys.executable, "-m", "benchmarks.perf.simulator", "--one", str(n)]
        command += ["--genes", str(args.genes)]
        rows.append(json.loads(subprocess.check_output(command).decode().strip().splitlines()[-1]))
    print("| cells | genes | peak RSS (MB) | sparse counts (MB) | peak − counts (MB) | seconds | µs / cell |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['cells']:,} | {r['genes']:,} | {r['peak_rss_mb']:,.0f} | {r['counts_mb']:,.0f} | "
            f"{r['peak_rss_mb'] - r['counts_mb']:,.0f} | {r['seconds']:.1f} | "
            f"{1e6 * r['seconds'] / r['cells']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
