"""``python -m benchmarks.calibration --out reports/calibration``: run the grid, write CSV and README."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benchmarks.calibration import (
    GRID_COVARIATES,
    GRID_DONORS,
    HERITABILITY,
    LAMBDA_BOUND,
    N_KINSHIP_VARIANTS,
    N_PHENOTYPES,
    N_VARIANTS,
    REPLICATES,
    THRESHOLDS,
    run_grid,
)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the grid of the command line; write ``calibration.csv`` and ``README.md`` under ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibration", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports/calibration"))
    parser.add_argument("--donors", type=int, nargs="+", default=list(GRID_DONORS))
    parser.add_argument("--covariates", type=int, nargs="+", default=list(GRID_COVARIATES))
    parser.add_argument("--phenotypes", type=int, default=N_PHENOTYPES)
    parser.add_argument("--variants", type=int, default=N_VARIANTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replicates", type=int, default=REPLICATES, help="independent cohorts per cell")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    table = run_grid(
        args.donors,
        args.covariates,
        n_phenotypes=args.phenotypes,
        n_variants=args.variants,
        seed=args.seed,
        replicates=args.replicates,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "calibration.csv", index=False, float_format="%.6g")
    settings = (
        f"{args.replicates} independent cohorts per cell (genotype panel, covariates, phenotypes; p-values "
        f"pooled), each {args.phenotypes} null phenotypes x {args.variants:,} variants, seeds "
        f"{args.seed}-{args.seed + args.replicates - 1}"
    )
    (args.out / "README.md").write_text(readme(table, settings))


def readme(table: pd.DataFrame, settings: str) -> str:
    """The README of a calibration run: what was run, whether the default test meets the bound, the table."""
    low, high = LAMBDA_BOUND
    wald = table[table["test"] == "wald"]
    outside = wald[(wald["lambda_gc"] < low) | (wald["lambda_gc"] > high)]
    verdict = (
        f"The default test (`wald`) has λ_GC within [{low}, {high}] in every cell."
        if outside.empty
        else f"The default test (`wald`) has λ_GC outside [{low}, {high}] in {len(outside)} of "
        f"{len(wald)} cells: "
        + "; ".join(
            f"n={r.n_donors}, {r.n_covariates} covariates, kinship={r.kinship}: {r.lambda_gc:.3f}"
            for r in outside.itertuples()
        )
        + "."
    )
    single = wald[(wald["lambda_gc_min"] < low) | (wald["lambda_gc_max"] > high)]
    if not single.empty:
        verdict += (
            " Single cohorts leave the bound in: "
            + "; ".join(
                f"n={r.n_donors}, {r.n_covariates} covariates, kinship={r.kinship}: "
                f"{r.lambda_gc_min:.3f}–{r.lambda_gc_max:.3f}"
                for r in single.itertuples()
            )
            + "."
        )
    lines = [
        "# Calibration of the association tests on null phenotypes",
        "",
        "Written by `python -m benchmarks.calibration --out reports/calibration` (see",
        "`benchmarks/calibration/__init__.py`); one run, never asserted as a timing.",
        "",
        f"- Settings: {settings}.",
        "- Genotypes: `simulate_genotypes` (3 populations, n/12 related pairs, MAF >= 0.05); kinship: the",
        f"  Gower-normalised GRM of {N_KINSHIP_VARIANTS:,} further variants.",
        f"- With kinship: LMM (REML null), phenotypes with a kinship-distributed part (h² = {HERITABILITY}).",
        "  Without: OLS, independent phenotypes. Covariates: standard normal columns with random effects.",
        "- `wald`: GLS Wald t-test with n − rank(X) − 1 degrees of freedom (the default); `lrt`: likelihood",
        "  ratio against χ²₁ (glimix-core's test).",
        "- Ratios are P(p < t) / t (1 = calibrated) with Clopper–Pearson 95 % intervals that treat the",
        "  tests as independent.",
        "",
        verdict,
        "With kinship the Wald test is slightly conservative at small n − rank(X): given the true δ it",
        "is exact (checked once at 30 donors and 20 covariates: λ 1.003), so the shortfall comes from",
        "the REML estimate of δ, which with few error contrasts often lies on a boundary (0 or 1).",
        "",
        _markdown(table),
        "",
    ]
    return "\n".join(lines)


def _markdown(table: pd.DataFrame) -> str:
    """The calibration table as GitHub markdown, one row per cell and test."""
    header = ["donors", "covariates", "kinship", "test", "tests", "λ_GC", "λ_GC per cohort"]
    header += [f"P(p<{t:.0e})/{t:.0e} [95 % CI]" for t in THRESHOLDS]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table.to_dict("records"):
        cells = [str(r["n_donors"]), str(r["n_covariates"]), "yes" if r["kinship"] else "no", r["test"]]
        cells += [f"{r['n_tests']:,}", f"{r['lambda_gc']:.3f}"]
        cells.append(f"{r['lambda_gc_min']:.3f}–{r['lambda_gc_max']:.3f}")
        for t in THRESHOLDS:
            key = f"ratio_{t:.0e}"
            cells.append(f"{r[key]:.2f} [{r[key + '_low']:.2f}, {r[key + '_high']:.2f}]")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
