"""The work of a comparison as (model, replicate) units, run in this process or in a worker pool.

A unit computes one entry's outputs at one seed (trained, cached or loaded) and runs its tasks. The
units of every model and replicate share one pool of ``--jobs`` processes, longest first (trained
families before embeddings and controls), so two cores stay busy until the last unit; a unit's
result does not depend on the process that ran it (each worker sets the same torch threads and
loads the same cohort). Units of replicate 0 of a reported run also write the model's files and
return its outputs and task artefacts for the report; UMAP coordinates are drawn by
:func:`view_umaps` in the parent process.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.kinds.family import FamilyEntry
from benchmarks.runner import Entry, compute_outputs, default_cache_dir, prepare, resolve_spec
from multilivi.data import Cohort, split_cells
from multilivi.eval.embedding_plots import umap_coordinates
from multilivi.eval.outputs import EvalContext, ModelOutputs
from multilivi.eval.results import ScoreRow, not_run
from multilivi.eval.task_runner import TaskRun, run_tasks

logger = logging.getLogger("benchmarks.compare")

HELDOUT_FRAC = 0.1  # share of each donor's cells held out at every seed (split_cells)
Umaps = dict[str, tuple[np.ndarray, np.ndarray]]  # view -> ((m, 2) coordinates, (m,) embedded rows)


@dataclass(frozen=True)
class Unit:
    """One entry (its position in the run's entries) at one seed; ``keep``: return its outputs."""

    entry: int
    seed: int
    keep: bool = False


@dataclass
class UnitResult:
    """Score rows of a unit; for a kept unit also its outputs and task run."""

    rows: list[ScoreRow]
    outputs: ModelOutputs | None = None
    task_run: TaskRun | None = None


class Scorer:
    """Scores units of one comparison: the cohort, the specs, per-seed entries and evaluation contexts.

    ``write_outputs(folder, outputs, task_run)`` writes a kept unit's per-model files under
    ``out / "outputs" / name`` when ``out`` is given.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        cohort: Cohort,
        *,
        controls: Sequence[str],
        out: Path | None,
        write_outputs: Callable[[Path, ModelOutputs, TaskRun], None],
    ) -> None:
        self.args, self.cohort, self.out = args, cohort, out
        self.raw_specs = [*args.models, *controls]
        self.write_outputs = write_outputs
        self._entries: dict[int, list[Entry]] = {}
        self._contexts: dict[int, tuple[np.ndarray, np.ndarray, EvalContext]] = {}

    def prime(self, seed: int, entries: list[Entry]) -> None:
        """Use ``entries``, already prepared (and validated) at ``seed``, instead of preparing them again."""
        self._entries[seed] = entries

    def entries(self, seed: int) -> list[Entry]:
        """The run's entries with their configs at ``seed`` (prepared once per seed)."""
        if seed not in self._entries:
            specs = [resolve_spec(raw) for raw in self.raw_specs]
            self._entries[seed] = prepare(specs, self.cohort, preset=self.args.preset, seed=seed)
        return self._entries[seed]

    def context(self, seed: int) -> tuple[np.ndarray, np.ndarray, EvalContext]:
        """Training and held-out cells at ``seed`` and the evaluation context of that split."""
        if seed not in self._contexts:
            train_idx, heldout_idx = split_cells(self.cohort, frac=HELDOUT_FRAC, seed=seed)
            ctx = EvalContext.from_cohort(
                self.cohort,
                heldout_idx,
                engine=self.args.engine,
                test=self.args.test,
                n_probe_seeds=self.args.probe_seeds,
                scib=getattr(self.args, "scib", False),
                seed=seed,
                fdr=self.args.fdr,
            )
            self._contexts[seed] = (train_idx, heldout_idx, ctx)
        return self._contexts[seed]

    def score(self, unit: Unit) -> UnitResult:
        """Outputs and tasks of one unit; a failing model gives an error row, not an exception."""
        args = self.args
        entry = self.entries(unit.seed)[unit.entry]
        if entry.skip_reason:
            return UnitResult([not_run(entry.name, "-", "*", entry.skip_reason)])
        train_idx, heldout_idx, ctx = self.context(unit.seed)
        cache = None if args.no_cache else (args.cache or default_cache_dir())
        try:
            outputs = compute_outputs(
                entry,
                self.cohort,
                train_idx,
                heldout_idx,
                seed=unit.seed,
                cache_dir=cache,
                progress=not args.quiet,
                label=f"{entry.name} seed {unit.seed}",
            )
        except Exception as exc:  # one failing model must not lose the others' results
            if args.fail_fast:
                raise
            logger.exception("%s failed", entry.name)
            return UnitResult([not_run(entry.name, "-", "*", f"{type(exc).__name__}: {exc}", status="error")])
        task_run = run_tasks(entry.name, outputs, ctx, fail_fast=args.fail_fast)
        logger.info("%s, seed %d: scored", entry.name, unit.seed)
        if not unit.keep:
            return UnitResult(task_run.rows)
        if self.out is not None:
            self.write_outputs(self.out / "outputs" / entry.name, outputs, task_run)
        return UnitResult(task_run.rows, outputs, task_run)


def view_umaps(outputs: ModelOutputs, seed: int) -> Umaps:
    """UMAP coordinates of every view of ``outputs``.

    Run where no model trains afterwards: a UMAP fit changes the last digits of later torch training
    in the same process (seen on MultiSLIVI: held-out NLL 460.1565 → 460.1609 after one UMAP), so
    the pool's parent process, which trains nothing, draws them while the workers train.
    """
    return {view: umap_coordinates(embedding, seed=seed) for view, embedding in outputs.views.items()}


def score_units(
    scorer: Scorer, units: Sequence[Unit], *, jobs: int, on_result: Callable[[Unit, UnitResult], None]
) -> dict[Unit, UnitResult]:
    """Every unit's result in ``jobs`` processes (this one when 1); ``on_result`` as each ends."""
    results: dict[Unit, UnitResult] = {}
    if jobs <= 1:
        for unit in units:
            results[unit] = scorer.score(unit)
            on_result(unit, results[unit])
        return results
    order = sorted(units, key=lambda u: not isinstance(scorer.entries(u.seed)[u.entry], FamilyEntry))
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    init = (scorer.args, scorer.raw_specs[len(scorer.args.models) :], scorer.out, scorer.write_outputs)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=init) as pool:
        futures = {unit: pool.submit(_score_in_worker, unit) for unit in order}
        for done, unit in enumerate(order, start=1):
            results[unit] = futures[unit].result()
            on_result(unit, results[unit])
            logger.info("%d of %d (model, replicate) units done", done, len(order))
    return results


_WORKER: Scorer | None = None


def _init_worker(
    args: argparse.Namespace,
    controls: Sequence[str],
    out: Path | None,
    write_outputs: Callable[[Path, ModelOutputs, TaskRun], None],
) -> None:
    """A worker's scorer: the same torch threads and cohort as the parent process."""
    global _WORKER
    from benchmarks.compare import LOG_FORMAT, cohort_of

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S")  # progress in the log
    torch.set_num_threads(args.torch_threads)  # a spawned worker starts with torch's default
    cohort = cohort_of(args)  # the parent's --dataset and input options
    _WORKER = Scorer(args, cohort, controls=controls, out=out, write_outputs=write_outputs)


def _score_in_worker(unit: Unit) -> UnitResult:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.score(unit)
