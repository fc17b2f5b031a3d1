"""The whole CLI as the variants grow: peak RSS and wall time of ``benchmarks.compare`` on a cohort folder.

    python -m benchmarks.perf.genotype_scale --variants 10000 1000000 --models livi

Each size writes the CI-sized simulated cohort (``SimulationConfig.ci()``: 30 donors) with that many
variants to a cohort folder (.bed genotypes), then runs ``python -m benchmarks.compare --dataset
FOLDER --preset ci --no-cache --no-umap`` under :func:`benchmarks.perf.memory.measured_run` (peak RSS
of the run and the workers it waited for, not of this process). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.perf.memory import measured_run


def write_cohort_folder(n_variants: int, directory: Path, seed: int = 0) -> Path:
    """The CI-sized simulated cohort with ``n_variants`` variants, written as a cohort folder."""
    from multilivi.data.io import write_cohort
    from multilivi.data.simulate import SimulationConfig, simulate

    return write_cohort(simulate(SimulationConfig.ci(), seed=seed, n_variants=n_variants), directory)


def run_compare(folder: Path, models: Sequence[str], out: Path) -> dict[str, float]:
    """Wall seconds and peak RSS (MiB) of one ``benchmarks.compare`` run on ``folder``."""
    command = [sys.executable, "-m", "benchmarks.compare", "--dataset", str(folder), "--preset", "ci"]
    command += ["--models", *models, "--no-cache", "--no-umap", "--quiet", "--out", str(out)]
    run = measured_run(command)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit {run.returncode}:\n{run.stderr[-4000:]}")
    return {"seconds": run.wall_s, "peak_rss_mib": run.peak_rss_mib}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--models", nargs="+", default=["livi"])
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for n in args.variants:
            folder = write_cohort_folder(n, Path(scratch) / f"cohort-{n}")
            rows.append({"variants": n, **run_compare(folder, args.models, Path(scratch) / f"run-{n}")})
    print(f"models: {' '.join(args.models)}")
    print("| variants | wall (s) | peak RSS (MiB) |")
    print("|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variants']:,} | {r['seconds']:.1f} | {r['peak_rss_mib']:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
