"""Compare latent models of a donor cohort and write a report: ``python -m benchmarks.compare``.

Wiring only: parse the command line, load the cohort, prepare specs, compute each model's outputs
(cached), run the task table, write the run folder and the report, and apply the regression gate.

torch, anndata, mudata, scikit-learn, umap and matplotlib are imported where they are used, after
the command line is parsed, so that ``--help`` and a refused option answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.presets import DEFAULT_REPLICATES, LR_TUNING, PRESETS
from multilivi.atomic import atomic_group, atomic_write, atomic_write_json

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from benchmarks.runner import Entry
    from benchmarks.units import Umaps, Unit, UnitResult
    from multilivi.data import Cohort
    from multilivi.data.simulate import SimulationConfig
    from multilivi.eval.outputs import ModelOutputs
    from multilivi.eval.task_runner import TaskRun

logger = logging.getLogger("benchmarks.compare")

DEFAULT_MODELS = ("livi", "mslivi-50", "dmlivi-50")
PARTIAL_SCORES = "scores.partial.csv"  # the scores so far, while a run is under way
THESIS_SWEEP = "livi mslivi-50 mslivi-100 mslivi-200 dmlivi-50 dmlivi-100 dmlivi-200"
TORCH_THREADS_ENV = "MULTILIVI_TORCH_THREADS"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# defaults of modules that --help must not import (numpy, pandas, torch...), written here; a test checks them
DEFAULT_FDR = 0.05  # multilivi.eval.outputs.DEFAULT_FDR
SCHEDULER_ENV = "MULTILIVI_DASK_SCHEDULER"  # multilivi.eval.scan_chunks.SCHEDULER_ENV
ON_DISK_GIB = 4  # multilivi.data.ondisk.ON_DISK_BYTES / 2**30
FIRST_BASELINE_SEED, N_BASELINE_SEEDS, MIN_BASELINE_SEEDS = 100, 20, 10  # benchmarks.gate's

EPILOG = f"""\
model specs:
  family[-W][:key=value,...]      a model trained here; families: livi, mslivi, dmlivi
                                  W = protein loss weight λ_prot (mslivi, dmlivi only)
                                  key=value overrides a field of the family's config (typed)
  emb:PATH[#KEY][:donor_factors=TABLE,cells=IDS,name=NAME]
                                  a precomputed embedding: .h5ad (obsm KEY, or X), .npy with a
                                  cell-id sidecar (PATH.cells.txt or cells=), .parquet/.csv/.tsv
                                  indexed by cell id; TABLE: donors x factors indexed by donor id
  pca[:n_components=N]            PCA of log-normalised RNA (and RNA + protein)
  totalvi[:max_epochs=N,n_latent=K,batch_size=B,name=NAME]
                                  scvi-tools' totalVI on RNA + protein (scvi[:...]: scVI on RNA),
                                  trained here; needs pip install -e ".[scvi]"

examples:
  python -m benchmarks.compare                      # livi mslivi-50 dmlivi-50 on the simulated cohort
  python -m benchmarks.compare --models {THESIS_SWEEP}
  python -m benchmarks.compare --models livi dmlivi-50:interaction_input=all,n_dxc=20 pca
  python -m benchmarks.compare --models livi emb:scvi.h5ad#X_scVI:donor_factors=factors.csv
  python -m benchmarks.compare --models livi mslivi-50 totalvi
  python -m benchmarks.compare --dataset liu2021 --models livi mslivi-50 dmlivi-50
  python -m benchmarks.compare --dataset my_cohort/ --preset paper   # cohort.h5mu + genotypes.bed/bim/fam
  python -m benchmarks.compare --dataset cite.h5ad --genotypes plink/chr_all --donor-key individual \
      --counts-layer counts                          # one AnnData (or .h5mu) + a PLINK prefix
  python -m benchmarks.compare --preset ci --check benchmarks/baselines/ci.json
"""


def default_torch_threads() -> int:
    """Torch CPU threads: ``$MULTILIVI_TORCH_THREADS`` (read by the test suite too), else 1."""
    raw = os.environ.get(TORCH_THREADS_ENV, "1")
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"error: {TORCH_THREADS_ENV}={raw!r} must be a positive integer (e.g. 1 or 2)")
    return int(raw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="Train and score latent interaction models (and third-party embeddings) against LIVI "
        "on a donor cohort; write results.json, scores.csv, report.md and report.html.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--models", nargs="+", default=list(DEFAULT_MODELS), metavar="SPEC", help="model specs (see below)"
    )
    parser.add_argument(
        "--dataset",
        default="sim",
        help="sim (simulated, sized by the preset), sim-ci, liu2021, liu2021-null, a "
        "cohort folder (cohort.h5mu + genotypes.{bed,bim,fam}), or one .h5mu / .h5ad file of cells "
        "(with --genotypes for association) (default: sim)",
    )
    parser.add_argument(
        "--preset", default="quick", choices=sorted(PRESETS), help="training budget (default: quick)"
    )
    parser.add_argument("--out", type=Path, help="run folder (default: reports/<timestamp>_<dataset>)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of training, splits and probes (default: 0)"
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing model or task")
    parser.add_argument(
        "--donors",
        choices=("strict", "intersect"),
        default="strict",
        help="cohort folders: keep only donors with both cells and genotypes (intersect)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="model cache folder (default: models/ in $MULTILIVI_CACHE, else $XDG_CACHE_HOME/multilivi, "
        "else ~/.cache/multilivi)",
    )
    parser.add_argument("--no-cache", action="store_true", help="always train, never read or write the cache")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=default_torch_threads(),
        metavar="N",
        help=f"CPU threads for training (default: ${TORCH_THREADS_ENV} or 1; the preset models are small, "
        "and one thread per process is fastest on a few cores and does not stall under load; "
        "raise it for --preset paper)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_input_options(parser)
    add_gate_options(parser)
    add_evaluation_options(parser)
    return parser


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """How a cohort given as a file or folder is read: donor files, obs columns, counts."""
    group = parser.add_argument_group(
        "cohort files and folders",
        "for --dataset FILE.h5mu|FILE.h5ad (donor files too) or a cohort folder (the other options)",
    )
    group.add_argument(
        "--genotypes",
        metavar="PATH",
        help="genotypes: a PLINK prefix or a .bed/.pgen/.bgen/.vcf.gz/.bcf file (default: none)",
    )
    group.add_argument(
        "--kinship", type=Path, metavar="FILE", help="donors x donors kinship (.tsv/.csv, or plink2's .rel)"
    )
    group.add_argument(
        "--covariates", type=Path, metavar="FILE", help="donors x covariates, numeric (.tsv/.csv)"
    )
    labels = {"donor": "donor", "cell-type": "cell_type", "subtype": "cell_subtype", "batch": "batch"}
    for label, default in labels.items():
        group.add_argument(
            f"--{label}-key",
            type=_obs_column,
            metavar="COLUMN",
            help=f"obs column of the cells' {label.replace('-', ' ')} (default: {default}"
            + ("" if label == "donor" else "; none: leave it out, skipping the tasks that need it")
            + ")",
        )
    group.add_argument(
        "--counts-layer",
        metavar="LAYER|MOD=LAYER,...",
        help="layer holding the raw counts: one name for every modality that has it, or per modality "
        "(rna=counts,prot=counts) (default: X)",
    )
    group.add_argument(
        "--round-counts",
        action="store_true",
        help="round float counts within 1e-4 of integers (e.g. after a CSV or R round trip)",
    )
    group.add_argument(
        "--on-disk",
        action="store_true",
        help="keep the counts of a cohort folder or .h5mu on disk and stream them to the models in "
        f"block-shuffled minibatches (default: automatic, on disk when stored in over {ON_DISK_GIB} GiB)",
    )


NO_COLUMN = ""  # --cell-type-key none (and the like): leave the annotation out


def _obs_column(text: str) -> str:
    """An obs column name, or :data:`NO_COLUMN` for ``none``."""
    return NO_COLUMN if text.lower() == "none" else text


@dataclasses.dataclass(frozen=True)
class CohortInputs:
    """The input options of a run (those not given are None): how its cohort file or folder is read."""

    genotypes: str | None = None
    kinship: Path | None = None
    covariates: Path | None = None
    donor_key: str | None = None
    cell_type_key: str | None = None
    subtype_key: str | None = None
    batch_key: str | None = None
    counts_layer: str | None = None
    round_counts: bool = False
    on_disk: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace) -> CohortInputs:
        """The input options of arguments parsed by :func:`build_parser`."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    def given(self, *fields: str) -> list[str]:
        """Options (as written on the command line) among ``fields`` that were given."""
        return [f"--{f.replace('_', '-')}" for f in fields if getattr(self, f) not in (None, False)]

    def cohort_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~multilivi.data.Cohort` for the key and counts options."""
        from multilivi.data import ObsKeys
        from multilivi.data.scverse import parse_counts_layer

        if self.donor_key == NO_COLUMN:
            raise ValueError("--donor-key none: every cell needs a donor; name the donor column")
        given = {
            "donor": self.donor_key,
            "cell_type": self.cell_type_key,
            "cell_subtype": self.subtype_key,
            "batch": self.batch_key,
        }
        keys = dataclasses.replace(ObsKeys(), **{k: c or None for k, c in given.items() if c is not None})
        kwargs: dict[str, Any] = {"keys": keys, "round_counts": self.round_counts}
        if self.counts_layer is not None:
            kwargs["counts_layer"] = parse_counts_layer(self.counts_layer)
        return kwargs


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    """The regression gate: ``--check``, ``--update-baseline`` and how a baseline is built."""
    parser.add_argument(
        "--check",
        type=Path,
        metavar="BASELINE",
        help="fail (exit 1) naming every gated metric worse than BASELINE's bound "
        "(the seed must not be a baseline seed)",
    )
    parser.add_argument(
        "--update-baseline",
        type=Path,
        metavar="BASELINE",
        help=f"rewrite BASELINE from runs at --baseline-seeds seeds {FIRST_BASELINE_SEED}, "
        f"{FIRST_BASELINE_SEED + 1}, ... (never a check seed)",
    )
    parser.add_argument(
        "--baseline-seeds",
        type=int,
        default=N_BASELINE_SEEDS,
        metavar="N",
        help=f"seeds of --update-baseline (default: {N_BASELINE_SEEDS}; at least {MIN_BASELINE_SEEDS})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes for the (model, replicate) units (default: one per replicate, at most the "
        "CPU count) or for the --update-baseline seeds (default: 1)",
    )


def add_evaluation_options(parser: argparse.ArgumentParser) -> None:
    """What the tasks and the report do: replicates, controls, baseline, FDR, probes, LMM engine, UMAP."""
    parser.add_argument(
        "--replicates",
        type=int,
        default=None,
        metavar="N",
        help="paired training replicates at seeds SEED, SEED+1, ... (default: "
        + ", ".join(f"{n} for --preset {p}" for p, n in DEFAULT_REPLICATES.items())
        + ")",
    )
    parser.add_argument(
        "--baseline",
        metavar="SPEC",
        help="the model every other is compared with in the report (default: the first livi spec)",
    )
    parser.add_argument(
        "--fdr",
        type=float,
        default=DEFAULT_FDR,
        metavar="Q",
        help=f"false-discovery rate of association calls (default: {DEFAULT_FDR})",
    )
    parser.add_argument(
        "--controls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score a random embedding (negative control) and, on simulated cohorts, the truth "
        "(positive control) beside the models (default: on)",
    )
    parser.add_argument(
        "--protein-classes",
        metavar="A,B",
        help="subtypes defined by protein only, each reported in the verdict (default: on a simulated "
        "cohort, the subtypes it planted; else none)",
    )
    parser.add_argument(
        "--test",
        choices=("wald", "lrt"),
        default="wald",
        help="association test: the exact t / GLS Wald test with df = n - rank(X) - 1, or the "
        "likelihood-ratio test referred to chi2(1) (glimix-core parity; inflated at small n) "
        "(default: wald)",
    )
    parser.add_argument("--no-umap", action="store_true", help="skip the UMAP panels")
    parser.add_argument(
        "--scib",
        action="store_true",
        help="also score every cell view with scib-metrics' bio-conservation and batch-correction metrics "
        "(needs pip install 'multilivi[scib]'; about a minute per view at 10k cells on 2 cores)",
    )
    parser.add_argument(
        "--probe-seeds", type=int, default=5, metavar="N", help="train/test splits per probe (default: 5)"
    )
    parser.add_argument(
        "--engine", choices=("batched", "glimix"), default="batched", help="LMM engine (default: batched)"
    )
    parser.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        default=os.environ.get(SCHEDULER_ENV),
        help=f"run the association scans' variant chunks on this dask.distributed scheduler "
        f"(needs pip install 'multilivi[dask]'; default: ${SCHEDULER_ENV}, else local threads)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from benchmarks import gate
    from benchmarks.runner import default_cache_dir, prepare, resolve_spec

    torch.set_num_threads(args.torch_threads)
    if args.dask_scheduler:
        os.environ[SCHEDULER_ENV] = args.dask_scheduler  # read by every lmm_scan of this run
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S")
    try:
        specs = [resolve_spec(raw) for raw in args.models]
        names = [s.name for s in specs]
        check_options(args, names, raw_specs=args.models)
        baseline = gate.read_baseline(args.check) if args.check else None
        if baseline is not None:
            for seed in range(args.seed, args.seed + args.replicates):
                gate.check_models(baseline, names, seed=seed)
        cohort = cohort_of(args)
        controls = [resolve_spec(raw) for raw in control_names(args, cohort)]
        entries = prepare([*specs, *controls], cohort, preset=args.preset, seed=args.seed)
        check_something_runs(entries[: len(specs)], cohort)
        out = args.out or default_run_folder(cohort)
        check_writable(out, what="run folder", option="--out DIR")
        if args.update_baseline:
            check_writable(
                args.update_baseline.parent, what="baseline folder", option="--update-baseline PATH"
            )
        if not args.no_cache:
            check_writable(
                args.cache or default_cache_dir(), what="model cache", option="--cache DIR (or --no-cache)"
            )
    except (ValueError, KeyError, FileNotFoundError, PermissionError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # no repr quotes
        print(f"error: {message}", file=sys.stderr)
        return 2
    logger.info("%s", cohort.summary())
    try:
        scores = run(args, cohort, entries, out, argv=argv, report=True, replicates=args.replicates)
    except OSError as exc:
        print(
            f"error: the run stopped on {type(exc).__name__}: {exc}; results.json, scores.csv and the report "
            f"of an earlier run in {out} are unchanged"
            f"{'' if args.no_cache else ' and finished models are cached'}: "
            "fix the cause (disk space, permissions) and run again",
            file=sys.stderr,
        )
        return 1
    logger.info("report: %s", out / "report.html")
    if args.update_baseline:
        update_baseline(args, cohort, names)
    if baseline is not None:
        return check(scores, baseline, names, path=args.check)
    return 0


def check_something_runs(requested: Sequence[Entry], cohort: Cohort) -> None:
    """Refuse a run in which every requested model is skipped, naming why each is."""
    if not requested or not all(e.skip_reason for e in requested):
        return
    reasons = "; ".join(f"{e.name}: {e.skip_reason}" for e in requested)
    hint = ""
    if not cohort.has_protein:
        hint = (
            "; protein counts are read from a 'prot' (or 'adt') modality, Antibody Capture features in "
            "var['feature_types'], or obsm['protein_expression']"
        )
    raise ValueError(f"every requested model is skipped ({reasons}){hint}")


def control_names(args: argparse.Namespace, cohort: Cohort) -> list[str]:
    """The controls of the run: the random embedding always, the truth on a simulated cohort."""
    if not args.controls:
        return []
    controls = ["control:random", *(["control:truth"] if cohort.truth is not None else [])]
    return [raw for raw in controls if raw not in args.models]


def check_options(args: argparse.Namespace, names: list[str], *, raw_specs: Sequence[str]) -> None:
    """Refuse options that cannot work before anything loads; ``--baseline`` becomes a model name."""
    if args.update_baseline and args.baseline_seeds < MIN_BASELINE_SEEDS:
        raise ValueError(
            f"--baseline-seeds {args.baseline_seeds}: a baseline needs at least {MIN_BASELINE_SEEDS}"
        )
    if args.replicates is None:
        args.replicates = DEFAULT_REPLICATES[args.preset]
    if args.replicates < 1:
        raise ValueError(f"--replicates {args.replicates}: need at least 1")
    if not 0.0 < args.fdr < 1.0:
        raise ValueError(f"--fdr {args.fdr}: a false-discovery rate lies strictly between 0 and 1, e.g. 0.05")
    if args.scib:
        import importlib.util

        from multilivi.eval.scib import INSTALL_HINT

        if importlib.util.find_spec("scib_metrics") is None:
            raise ValueError(f"--scib: {INSTALL_HINT}")
    if args.baseline is not None:
        by_spec = dict(zip(raw_specs, names))
        if args.baseline not in names and args.baseline not in by_spec:
            raise ValueError(
                f"--baseline {args.baseline!r} is not one of the compared models {names}; pass one of them"
            )
        args.baseline = by_spec.get(args.baseline, args.baseline)


def update_baseline(args: argparse.Namespace, cohort: Cohort, names: list[str]) -> None:
    """Run the comparison at the baseline seeds and write the baseline file."""
    from benchmarks import gate

    seeds = list(range(gate.FIRST_BASELINE_SEED, gate.FIRST_BASELINE_SEED + args.baseline_seeds))
    runs = scores_at_seeds(args, seeds, jobs=args.jobs or 1, cohort=cohort)
    runs = {seed: scores.loc[scores["model"].isin(names)] for seed, scores in runs.items()}  # no controls
    baseline = gate.make_baseline(runs, models=names, meta={"preset": args.preset, "dataset": args.dataset})
    gate.write_baseline(baseline, args.update_baseline)
    logger.info("baseline written to %s: %s", args.update_baseline, gate.describe(baseline, names))


def check(scores: pd.DataFrame, baseline: dict[str, Any], names: list[str], *, path: Path) -> int:
    """Apply the regression gate to this run's scores; 1 when a gated metric regressed."""
    from benchmarks import gate

    violations = gate.check_against(scores, baseline, models=names)
    if violations:
        print(f"regression gate: {len(violations)} metrics worse than {path}:", file=sys.stderr)
        for violation in violations:
            print(f"  {violation}", file=sys.stderr)
        return 1
    print(f"regression gate: every gated metric within its bound of {path}: {gate.describe(baseline, names)}")
    return 0


def scores_at_seeds(
    args: argparse.Namespace, seeds: Sequence[int], *, jobs: int = 1, cohort: Cohort | None = None
) -> dict[int, pd.DataFrame]:
    """Score tables of the comparison of ``args`` at each seed (no run folder), in ``jobs`` processes."""
    from benchmarks.units import Scorer, Unit, score_units

    cohort = cohort or cohort_of(args)
    scorer = Scorer(
        args, cohort, controls=control_names(args, cohort), out=None, write_outputs=_model_files(args)
    )
    n_entries = len(scorer.entries(seeds[0]))
    units = [Unit(i, s) for s in seeds for i in range(n_entries)]
    results = score_units(scorer, units, jobs=min(jobs, len(units)), on_result=lambda u, r: None)
    return {s: scores_table({u: r for u, r in results.items() if u.seed == s}, [s]) for s in seeds}


def run(
    args: argparse.Namespace,
    cohort: Cohort,
    entries: list[Entry],
    out: Path | None,
    *,
    argv: Sequence[str] | None,
    report: bool,
    seed: int | None = None,
    replicates: int = 1,
) -> pd.DataFrame:
    """One comparison at ``replicates`` paired seeds; writes the run folder when ``out`` is given.

    Replicate ``r`` of every model runs at seed ``seed + r`` (its initialisation, held-out split and
    probe splits). The (model, replicate) units share ``--jobs`` processes (:mod:`benchmarks.units`);
    replicate 0 alone keeps its outputs for the figures and the per-model files.
    """
    from benchmarks.units import Scorer, Unit, score_units, view_umaps
    from multilivi.eval.results import write_scores

    seed = args.seed if seed is None else seed
    start = time.perf_counter()
    seeds = [seed + r for r in range(replicates)]
    scorer = Scorer(
        args, cohort, controls=control_names(args, cohort), out=out, write_outputs=_model_files(args)
    )
    scorer.prime(seed, entries)
    units = [Unit(i, s, keep=s == seed and out is not None) for s in seeds for i in range(len(entries))]
    jobs = min(args.jobs or min(replicates, os.cpu_count() or 1), len(units))
    done: dict[Unit, UnitResult] = {}
    umaps: dict[str, Umaps] = {}

    def on_result(unit: Unit, result: UnitResult) -> None:
        done[unit] = result
        if out is not None:  # partial results survive an interruption
            write_scores(scores_table(done, seeds), out / PARTIAL_SCORES)
        if jobs > 1 and report and not args.no_umap and result.outputs is not None:
            umaps[entries[unit.entry].name] = view_umaps(result.outputs, seed)  # while workers train

    results = score_units(scorer, units, jobs=jobs, on_result=on_result)
    scores = scores_table(results, seeds)
    if out is not None:
        kept = {entries[u.entry].name: r for u, r in results.items() if u.keep and r.outputs is not None}
        if report and not args.no_umap:  # in this process: after every model trained
            umaps |= {m: view_umaps(r.outputs, seed) for m, r in kept.items() if m not in umaps}
        meta = run_metadata(
            args,
            cohort,
            entries,
            {name: r.outputs for name, r in kept.items()},
            argv,
            seed=seed,
            wall_seconds=time.perf_counter() - start,
        )
        meta["replicate_seeds"] = seeds
        meta["protein_classes"] = protein_classes(args)
        write_run_folder(out, scores, meta, (kept, umaps) if report else None, cohort=cohort, args=args)
    return scores


def scores_table(results: dict[Unit, UnitResult], seeds: Sequence[int]) -> pd.DataFrame:
    """The score rows of ``results`` by replicate, then entry (one order whatever the processes)."""
    import pandas as pd

    from multilivi.eval.results import scores_frame

    tables = []
    for r, s in enumerate(seeds):
        units = sorted((u for u in results if u.seed == s), key=lambda u: u.entry)
        rows = [row for u in units for row in results[u].rows]
        if rows:
            tables.append(scores_frame(rows).assign(replicate=r))
    return pd.concat(tables, ignore_index=True) if tables else scores_frame([])


def _model_files(args: argparse.Namespace):
    return functools.partial(write_model_outputs, fdr=args.fdr)


def write_run_folder(
    out: Path,
    scores: pd.DataFrame,
    meta: dict[str, Any],
    report: tuple[dict[str, UnitResult], dict[str, Umaps]] | None,
    *,
    cohort: Cohort,
    args: argparse.Namespace,
) -> None:
    """``scores.csv``, ``results.json`` and (given replicate 0's results and UMAPs) the report."""
    import numpy as np

    from multilivi.eval.report import write_report
    from multilivi.eval.results import write_scores

    figures: dict[str, Any] = {}
    if report is not None:
        kept, umaps = report
        runs = {model: r.task_run for model, r in kept.items() if r.task_run is not None}
        figures = umap_figures(umaps, cohort) | qq_figures(runs)
    with atomic_group():  # all or nothing: a failed write leaves an earlier run's files in `out` as they were
        write_scores(scores, out / "scores.csv")
        atomic_write_json(
            out / "results.json", meta | {"scores": scores.replace({np.nan: None}).to_dict("records")}
        )
        if report is not None:
            artefacts = {model: task_run.artefacts for model, task_run in runs.items()}
            write_report(
                out, scores, meta, figures, baseline=args.baseline, fdr=args.fdr, artefacts=artefacts
            )
    (out / PARTIAL_SCORES).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- helpers
def simulation_config(dataset: str, preset: str) -> SimulationConfig | None:
    """The simulation behind a ``sim*`` dataset name (None for any other dataset)."""
    if dataset not in ("sim", "sim-ci", "sim-default"):
        return None
    from multilivi.data.simulate import SimulationConfig

    small = dataset == "sim-ci" or (dataset == "sim" and preset == "ci")
    return SimulationConfig.ci() if small else SimulationConfig()


def protein_classes(args: argparse.Namespace) -> list[str]:
    """Subtypes defined by protein only: ``--protein-classes``, else those the simulator planted."""
    if args.protein_classes:
        return [c.strip() for c in args.protein_classes.split(",") if c.strip()]
    config = simulation_config(args.dataset, args.preset)
    if config is None:
        return []
    last = config.n_subtypes - 1  # the simulator's protein-only subtype of cell type t is ct{t}_s{last}
    return [f"ct{t}_s{last}" for t in range(config.n_protein_only_subtypes)]


CELL_FILES = (".h5mu", ".h5ad")
DONOR_FILE_OPTIONS = ("genotypes", "kinship", "covariates")
CELL_OPTIONS = (
    "donor_key",
    "cell_type_key",
    "subtype_key",
    "batch_key",
    "counts_layer",
    "round_counts",
    "on_disk",
)


def cohort_of(args: argparse.Namespace) -> Cohort:
    """The cohort of parsed arguments (``--dataset``, ``--donors`` and the input options)."""
    return load_cohort(args.dataset, preset=args.preset, donors=args.donors, inputs=CohortInputs.of(args))


def load_cohort(dataset: str, *, preset: str, donors: str, inputs: CohortInputs = CohortInputs()) -> Cohort:
    """The cohort named by ``--dataset``: a simulated cohort, a named real dataset, a folder or a file.

    ``inputs`` say how a file (``.h5mu``/``.h5ad``, with donor files) or a folder is read; given for a
    simulated or named dataset, they are an error.
    """
    config = simulation_config(dataset, preset)
    path = Path(dataset)
    is_file = config is None and path.suffix.lower() in CELL_FILES
    is_folder = config is None and not is_file and path.exists()  # a folder (Cohort.read refuses a file)
    if not (is_file or is_folder):
        given = inputs.given(*DONOR_FILE_OPTIONS, *CELL_OPTIONS)
        if given:
            raise ValueError(
                f"{', '.join(given)} apply to a cohort file or folder (--dataset FILE.h5mu|FILE.h5ad|"
                f"FOLDER), not to the dataset {dataset!r}, whose loader sets them"
            )
    if config is not None:
        from multilivi.data.simulate import simulate

        return simulate(config, seed=0)
    if is_file:
        from multilivi.data.io import GENOTYPES_PREFIX, read_cohort_file

        beside = path.parent / f"{GENOTYPES_PREFIX}.bed"
        if inputs.genotypes is None and beside.exists():
            logger.warning(
                "%s is read without genotypes, although %s lies beside it: pass --dataset %s for the "
                "cohort folder, or --genotypes %s",
                path,
                beside.name,
                path.parent,
                beside.with_suffix(""),
            )
        return read_cohort_file(
            path,
            genotypes=inputs.genotypes,
            kinship=inputs.kinship,
            covariates=inputs.covariates,
            donors=donors,
            on_disk=inputs.on_disk or None,
            **inputs.cohort_kwargs(),
        )
    if is_folder:
        from multilivi.data import Cohort

        file_options = inputs.given(*DONOR_FILE_OPTIONS)
        if file_options:
            raise ValueError(
                f"{', '.join(file_options)} apply to --dataset FILE.h5mu|FILE.h5ad; a cohort folder holds "
                "its own (genotypes.bed/.bim/.fam, kinship.tsv, donor_covariates.tsv)"
            )
        return Cohort.read(path, donors=donors, on_disk=inputs.on_disk or None, **inputs.cohort_kwargs())
    if "/" in dataset or "\\" in dataset or path.suffix:
        raise FileNotFoundError(
            f"no cohort folder {path}; --dataset takes a folder with cohort.h5mu + "
            f"genotypes.{{bed,bim,fam}}, one .h5mu or .h5ad file of cells, "
            "or a dataset name (sim, sim-ci, liu2021, ...)"
        )
    from multilivi.data.datasets import load_dataset

    return load_dataset(dataset)


def default_run_folder(cohort: Cohort) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{stamp}_{cohort.name}"


def check_writable(folder: Path, *, what: str = "run folder", option: str = "--out DIR") -> None:
    """Fail before training when ``folder`` cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(
            f"cannot write the {what} {folder} ({exc.strerror}); pass a writable {option}"
        ) from exc


def write_model_outputs(folder: Path, outputs: ModelOutputs, task_run: TaskRun, *, fdr: float) -> None:
    """Views, donor factors, associations significant at ``fdr`` and training history of one model."""
    from benchmarks.runner import write_outputs
    from multilivi.eval.programs import write_file_artefacts

    write_outputs(folder, outputs)
    write_file_artefacts(folder, task_run.artefacts)  # hits.parquet, programs.parquet
    for view, result in task_run.artefacts.get("associations", {}).items():
        atomic_write(
            folder / f"association_{view}.csv", lambda tmp, r=result: r.hits(fdr).to_csv(tmp, index=False)
        )


def umap_figures(umaps: dict[str, Umaps], cohort: Cohort) -> dict[str, Any]:
    """UMAP grids of every model's views coloured by cell type (``umap_grid``), subtype and donor."""
    import numpy as np

    from multilivi.eval.embedding_plots import umap_label_grids

    columns = [c for c in ("cell_type", "cell_subtype", "donor") if cohort.labels(c) is not None]
    blank = np.zeros(cohort.n_cells, dtype=str)
    panels: dict[str, np.ndarray] = {}
    labels: dict[str, dict[str, np.ndarray]] = {c: {} for c in columns or ["cell_type"]}
    for model, views in umaps.items():
        for view, (coords, idx) in views.items():
            panels[f"{model} · {view}"] = coords
            for column, per_panel in labels.items():
                values = cohort.labels(column)
                per_panel[f"{model} · {view}"] = (blank if values is None else values)[idx]
    return umap_label_grids(panels, labels) if panels else {}


def qq_figures(runs: dict[str, TaskRun]) -> dict[str, Any]:
    from multilivi.eval.fdr import qq_plot

    by_view: dict[str, dict[str, np.ndarray]] = {}
    for model, task_run in runs.items():
        for view, result in task_run.artefacts.get("associations", {}).items():
            by_view.setdefault("donor_means" if view.startswith("donor_means") else view, {})[model] = (
                result.pvalue_distribution()
            )
    return {f"qq_{view}": qq_plot(pvalues) for view, pvalues in by_view.items()}


def run_metadata(
    args: argparse.Namespace,
    cohort: Cohort,
    entries: list[Entry],
    outputs: dict[str, ModelOutputs],
    argv: Sequence[str] | None,
    *,
    seed: int,
    wall_seconds: float,
) -> dict[str, Any]:
    """``results.json`` without the scores: the run, the dataset and each model (``outputs`` by name)."""
    import torch

    from benchmarks.perf.memory import peak_rss_mib
    from benchmarks.runner import model_info
    from multilivi.eval.embedding_plots import UMAP_MAX_CELLS
    from multilivi.eval.outputs import PROBE_MAX_CELLS

    truth = cohort.truth
    return {
        "schema_version": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "git_sha": git_sha(),
        "preset": args.preset,
        "lr_tuning": LR_TUNING.get(args.preset),
        "seed": seed,
        "wall_seconds": round(wall_seconds, 1),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "peak_memory_gb": round(peak_rss_mib() / 1024, 2),  # GiB, this process (VmHWM), not its workers
        "engine": args.engine,
        "test": args.test,
        "covariates": list(map(str, getattr(cohort.donor_covariates, "columns", []))),
        "versions": {
            "python": platform.python_version(),
            **{
                pkg: version(pkg)
                for pkg in ("multilivi", "torch", "numpy", "scikit-learn", "glimix-core", "anndata")
            },
        },
        "dataset": {
            "name": cohort.name,
            "data_hash": cohort.data_hash,
            "n_cells": cohort.n_cells,
            "n_donors": cohort.n_donors,
            "modalities": {m: cohort.n_features(m) for m in cohort.modalities},
            "n_variants": None if cohort.genotypes is None else cohort.genotypes.n_variants,
            "genetics": cohort.genetics,
            "simulated_truth": truth is not None,
            "semi_synthetic": cohort.genetics == "semi-synthetic",
        },
        "cell_caps": {"probes": PROBE_MAX_CELLS, "umap": UMAP_MAX_CELLS},  # subsampled above these
        "models": {e.name: model_info(e, outputs.get(e.name)) for e in entries},
    }


def git_sha() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
