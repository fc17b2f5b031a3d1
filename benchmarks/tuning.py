"""Learning rate per model family, chosen by held-out ELBO: the same search for every family.

``python -m benchmarks.tuning --out reports/tuning-quick`` trains every spec at every learning rate
of the grid and every seed, on the training cells of the comparison's held-out split less a
validation tenth (stratified by donor and cell type, :func:`split_cells` with ``within``), and scores
the unweighted negative ELBO per validation cell (:meth:`ModelBase.negative_elbo`). The learning
rate with the lowest mean over seeds wins; ties within 0.1 nats go to the smaller rate. The held-out
cells of the comparison and every compared metric (probes, association, recovery) play no part.

Each fit is written to ``fits/`` as it finishes, so an interrupted search resumes; ``tuning.csv``,
``choice.json`` and ``README.md`` summarise it. The chosen rates enter ``benchmarks/presets.py`` by
hand, with the run folder cited beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks.compare import default_torch_threads, load_cohort
from benchmarks.kinds.family import build_config, parse_family_spec
from benchmarks.presets import DEFAULT_PRESET, PRESETS
from benchmarks.units import HELDOUT_FRAC
from multilivi.atomic import atomic_write_json, atomic_write_text
from multilivi.data import Cohort, split_cells
from multilivi.models.registry import model_class

logger = logging.getLogger(__name__)

DEFAULT_SPECS = ("livi", "mslivi-50", "dmlivi-50")
DEFAULT_LRS = (1e-3, 3e-3, 1e-2)
DEFAULT_SEEDS = (0, 1)
VALIDATION_FRAC = 0.1  # of the training cells
TIE_NATS = 0.1  # mean negative-ELBO differences below this count as ties (the smaller rate wins)


def fit_name(spec: str, lr: float, seed: int) -> str:
    """File stem of one fit in ``fits/``."""
    return f"{spec.replace(':', '_').replace('=', '-')}-lr{lr:g}-seed{seed}"


def tune_one(cohort: Cohort, spec: str, lr: float, seed: int, *, preset: str) -> dict[str, Any]:
    """Train ``spec`` at ``lr`` and ``seed`` on the fit cells; its validation negative ELBO and timing."""
    parsed = parse_family_spec(spec)
    config = dataclasses.replace(build_config(parsed, preset, seed=seed), lr=lr, progress=False)
    train_idx, _ = split_cells(cohort, frac=HELDOUT_FRAC, seed=seed)  # the comparison's split
    fit_idx, validation_idx = split_cells(cohort, frac=VALIDATION_FRAC, seed=seed, within=train_idx)
    row: dict[str, Any] = {"spec": spec, "family": parsed.family, "lr": lr, "seed": seed}
    row |= {"n_fit_cells": len(fit_idx), "n_validation_cells": len(validation_idx)}
    start = time.perf_counter()
    try:
        model = model_class(parsed.family)(config).fit(cohort, fit_idx)
    except FloatingPointError as exc:  # a diverged rate loses; the search goes on
        return row | {
            "negative_elbo": math.inf,
            "fit_seconds": time.perf_counter() - start,
            "error": str(exc),
        }
    elbo = model.negative_elbo(cohort, validation_idx, seed=seed)
    return row | {"negative_elbo": elbo, "fit_seconds": model.fit_seconds_, "error": ""}


def choose(fits: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Mean and sd of the negative ELBO per spec and rate, and each spec's chosen rate."""
    summary = (
        fits.groupby(["spec", "lr"])["negative_elbo"]
        .agg(mean="mean", sd="std", n_seeds="count")
        .reset_index()
    )
    chosen = {}
    for spec, rows in summary.groupby("spec", sort=False):
        best = rows["mean"].min()
        chosen[str(spec)] = float(rows.loc[rows["mean"] <= best + TIE_NATS, "lr"].min())
    summary["chosen"] = [chosen[s] == lr for s, lr in zip(summary["spec"], summary["lr"])]
    return summary, chosen


def readme(summary: pd.DataFrame, chosen: dict[str, float], meta: dict[str, Any]) -> str:
    """The run folder's README: settings, the table of mean ± sd negative ELBO, the choice."""
    lines = [
        "# Learning rate per family by held-out ELBO",
        "",
        f"Written by `python -m benchmarks.tuning {' '.join(meta['argv'])}` (see `benchmarks/tuning.py`).",
        "",
        f"- Dataset `{meta['dataset']}`, preset `{meta['preset']}`, seeds {meta['seeds']}, "
        f"learning rates {meta['lrs']}: the same grid and seeds for every family.",
        f"- Fit on the training cells less a validation tenth ({meta['n_validation_cells']} cells); "
        "score: mean unweighted negative ELBO per validation cell (Σ NLL + Σ KL, nats; lower is "
        f"better). Ties within {TIE_NATS} nats go to the smaller rate.",
        f"- Wall time {meta['wall_seconds']:.0f} s with {meta['jobs']} processes.",
        "",
        "| spec | lr | negative ELBO (mean ± sd over seeds) | chosen |",
        "|---|---|---|---|",
    ]
    for row in summary.itertuples():
        sd = "" if pd.isna(row.sd) else f" ± {row.sd:.1f}"
        lines.append(f"| {row.spec} | {row.lr:g} | {row.mean:,.1f}{sd} | {'✓' if row.chosen else ''} |")
    lines += ["", "Chosen: " + ", ".join(f"{s} {lr:g}" for s, lr in chosen.items()) + "."]
    return "\n".join(lines) + "\n"


_WORKER_COHORT: Cohort | None = None


def _init_worker(dataset: str, preset: str) -> None:
    global _WORKER_COHORT
    torch.set_num_threads(default_torch_threads())
    _WORKER_COHORT = load_cohort(dataset, preset=preset, donors="strict")


def _run_in_worker(spec: str, lr: float, seed: int, preset: str) -> dict[str, Any]:
    assert _WORKER_COHORT is not None
    return tune_one(_WORKER_COHORT, spec, lr, seed, preset=preset)


def _fits(
    todo: list[tuple[str, float, int]], args: argparse.Namespace
) -> Iterator[tuple[tuple[str, float, int], dict[str, Any]]]:
    """Each fit of ``todo`` with its row, in ``args.jobs`` processes (this one when 1)."""
    if args.jobs <= 1 or len(todo) <= 1:
        cohort = load_cohort(args.dataset, preset=args.preset, donors="strict")
        for job in todo:
            yield job, tune_one(cohort, *job, preset=args.preset)
        return
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    initargs = (args.dataset, args.preset)
    with ProcessPoolExecutor(
        args.jobs, mp_context=context, initializer=_init_worker, initargs=initargs
    ) as pool:
        futures = {job: pool.submit(_run_in_worker, *job, args.preset) for job in todo}
        for job, future in futures.items():
            yield job, future.result()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tuning", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="sim", help="as for benchmarks.compare (default: sim)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESETS)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_SPECS), help="model family specs")
    parser.add_argument("--lrs", nargs="+", type=float, default=list(DEFAULT_LRS), help="the grid")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumes the fits in it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    torch.set_num_threads(default_torch_threads())
    for spec in args.models:  # bad specs fail before anything trains
        build_config(parse_family_spec(spec), args.preset)
    if any(lr <= 0 for lr in args.lrs):
        raise SystemExit(f"error: --lrs must be positive, got {args.lrs}")
    fits_dir = args.out / "fits"
    fits_dir.mkdir(parents=True, exist_ok=True)
    todo = [
        (spec, lr, seed)
        for spec in args.models
        for lr in args.lrs
        for seed in args.seeds
        if not (fits_dir / f"{fit_name(spec, lr, seed)}.json").exists()
    ]
    logger.info(
        "%d fits to run, %d already in %s",
        len(todo),
        len(args.models) * len(args.lrs) * len(args.seeds) - len(todo),
        fits_dir,
    )
    start = time.perf_counter()
    for job, row in _fits(todo, args):
        atomic_write_json(fits_dir / f"{fit_name(*job)}.json", row)
        logger.info("%s lr %g seed %d: negative ELBO %.2f", *job, row["negative_elbo"])
    wanted = {fit_name(s, lr, seed) for s in args.models for lr in args.lrs for seed in args.seeds}
    fits = pd.DataFrame(
        [json.loads(p.read_text()) for p in sorted(fits_dir.glob("*.json")) if p.stem in wanted]
    )
    summary, chosen = choose(fits)
    meta = {
        "argv": list(argv) if argv is not None else [],
        "dataset": args.dataset,
        "preset": args.preset,
        "seeds": args.seeds,
        "lrs": args.lrs,
        "jobs": args.jobs,
        "wall_seconds": time.perf_counter() - start,
        "n_validation_cells": int(fits["n_validation_cells"].iloc[0]),
    }
    fits.to_csv(args.out / "tuning.csv", index=False)
    atomic_write_json(args.out / "choice.json", {"chosen_lr": chosen, **meta})
    atomic_write_text(args.out / "README.md", readme(summary, chosen, meta))
    print(readme(summary, chosen, meta))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
