r"""Evidence that the regression gate works: its false alarms on fresh seeds, and a real regression caught.

    python -m benchmarks.gate_calibration --baseline benchmarks/baselines/ci.json --seeds 0 1 2 3 4 \\
        --regression livi:n_latent=2,name=livi --jobs 2 --out reports/gate-calibration-ci

Each fresh seed (never a baseline seed) runs the baseline's comparison and is checked against the
baseline; each ``--regression`` spec (a changed model, named as the model it replaces) is trained at
the first seed and checked the same way. Writes ``checks.csv`` (one row per run and gated metric:
value, bound, violated), ``summary.json`` and ``README.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import gate
from benchmarks.compare import build_parser, scores_at_seeds
from benchmarks.runner import resolve_spec
from multilivi.atomic import atomic_write, atomic_write_json

logger = logging.getLogger("benchmarks.gate_calibration")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gate_calibration", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--baseline", type=Path, required=True, help="baseline JSON to check against")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="fresh seeds (default: 0-4)"
    )
    parser.add_argument(
        "--regression",
        nargs="*",
        default=[],
        metavar="SPEC",
        help="changed models named as a baseline model, e.g. livi:n_latent=2,name=livi",
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes (default: 1)")
    parser.add_argument(
        "--cache", type=Path, default=None, help="model cache folder (default: the compare default)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for checks.csv, summary.json, README.md"
    )
    return parser.parse_args(argv)


def compare_args(baseline: dict[str, Any], models: Sequence[str], cache: Path | None) -> argparse.Namespace:
    """The comparison the baseline was built from, for ``models``."""
    argv = [
        "--preset",
        baseline["preset"],
        "--dataset",
        baseline["dataset"],
        "--no-umap",
        "-q",
        "--models",
        *models,
    ]
    return build_parser().parse_args(argv + (["--cache", str(cache)] if cache else []))


def check_rows(
    run: str, seed: int, scores: pd.DataFrame, baseline: dict[str, Any], models: Sequence[str]
) -> pd.DataFrame:
    """One row per gated metric of ``models``: the run's value beside the bound, and whether it fails."""
    observed = gate.gated_rows(scores).set_index(list(gate.KEY))["value"]
    rows = []
    for entry in gate.gated_entries(baseline, models):
        value = float(observed.get(tuple(entry[k] for k in gate.KEY), np.nan))
        rows.append(
            {"run": run, "seed": seed}
            | {k: entry[k] for k in gate.KEY}
            | {
                "value": value,
                "baseline_mean": entry["mean"],
                "low": entry["low"],
                "high": entry["high"],
                "band_used": gate.band_used(entry, value),
                "violated": gate.is_violation(entry, value),
            }
        )
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    baseline = gate.read_baseline(args.baseline)
    models = baseline["models"]
    for seed in args.seeds:
        gate.check_models(baseline, models, seed=seed)
    regressions = {raw: resolve_spec(raw).name for raw in args.regression}
    gate.check_models(baseline, list(regressions.values()))
    fresh = scores_at_seeds(compare_args(baseline, models, args.cache), args.seeds, jobs=args.jobs)
    tables = [check_rows("unchanged", seed, scores, baseline, models) for seed, scores in fresh.items()]
    for raw, name in regressions.items():
        scores = scores_at_seeds(compare_args(baseline, [raw], args.cache), args.seeds[:1])[args.seeds[0]]
        tables.append(check_rows(raw, args.seeds[0], scores, baseline, [name]))
    checks = pd.concat(tables, ignore_index=True)
    summary = summarise(checks, baseline, args)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "checks.csv", lambda tmp: checks.to_csv(tmp, index=False, float_format="%.6g"))
    atomic_write_json(args.out / "summary.json", summary)
    atomic_write(args.out / "README.md", lambda tmp: Path(tmp).write_text(render(summary, checks)))
    print(render(summary, checks))
    return 0


def summarise(checks: pd.DataFrame, baseline: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    unchanged = checks[checks["run"] == "unchanged"]
    per_run = checks.groupby(["run", "seed"], sort=False)
    return {
        "baseline": str(args.baseline),
        "baseline_seeds": baseline["seeds"],
        "baseline_machine": baseline["machine"],
        "check_machine": gate.machine(),
        "family_alpha": baseline["family_alpha"],
        "fresh_seeds": list(args.seeds),
        "false_alarms": int(unchanged["violated"].sum()),
        "checks_failed": int((unchanged.groupby("seed")["violated"].sum() > 0).sum()),
        "metric_checks": len(unchanged),
        "runs": [run_summary(run, seed, group) for (run, seed), group in per_run],
    }


def run_summary(run: str, seed: int, checks: pd.DataFrame) -> dict[str, Any]:
    violated = checks[checks["violated"]]
    names = ["/".join(str(r[k]) for k in gate.KEY) for _, r in violated.iterrows()]
    return {
        "run": run,
        "seed": int(seed),
        "gated": len(checks),
        "violations": len(violated),
        "violated": names,
    }


def _bound(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.4g}"


def render(summary: dict[str, Any], checks: pd.DataFrame) -> str:
    base, here = summary["baseline_machine"], summary["check_machine"]
    seeds = summary["baseline_seeds"]
    lines = [
        "# Regression-gate calibration",
        "",
        (
            f"Baseline `{summary['baseline']}`: seeds {min(seeds)}–{max(seeds)} on {base['cpu']}; checked on "
            f"{here['cpu']} (torch {here['torch']}, {here['torch_threads']} torch threads). "
            f"Family-wise false-alarm rate {summary['family_alpha']:g}."
        ),
        "",
        (
            f"**Unchanged models, fresh seeds {', '.join(map(str, summary['fresh_seeds']))}: "
            f"{summary['false_alarms']} false alarms in {summary['metric_checks']} metric checks; "
            f"{summary['checks_failed']} of {len(summary['fresh_seeds'])} checks failed.**"
        ),
        "",
        "| run | seed | gated metrics | violations | violated |",
        "|---|---:|---:|---:|---|",
    ]
    for run in summary["runs"]:
        violated = ", ".join(run["violated"]) or "—"
        lines.append(
            f"| `{run['run']}` | {run['seed']} | {run['gated']} | {run['violations']} | {violated} |"
        )
    unchanged = checks[checks["run"] == "unchanged"].sort_values("band_used", ascending=False).head(5)
    lines += [
        "",
        "Unchanged runs closest to their bounds (band used: 0 at the baseline mean, 1 at the bound):",
        "",
    ]
    lines += [
        f"- {r.model}/{r.view}/{r.task}/{r.metric}, seed {r.seed}: {r.value:.4g} (mean "
        f"{r.baseline_mean:.4g}, "
        f"bounds {_bound(r.low)} to {_bound(r.high)}, band used {r.band_used:.2f})"
        for r in unchanged.itertuples()
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
