"""Report content: the title, how to read the comparison, and the run summary (dataset, models, timings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from multilivi.eval.figures import model_order
from multilivi.eval.metrics import find
from multilivi.eval.report.baseline import is_livi
from multilivi.eval.report.blocks import Block, Cell, Heading, Paragraph, Table
from multilivi.eval.report.formatting import format_number
from multilivi.eval.report.inputs import ReportInputs
from multilivi.eval.report.tables import columns_of

_MODEL_COLUMNS = frozenset({"family", "config", "fit_seconds", "cached", "status", "reason"})
_DATASET_KEYS = ("name", "n_cells", "n_donors", "modalities", "n_variants")


def baseline_views(inputs: ReportInputs) -> dict[str, str]:
    """Level (``cell``, ``donor``) → the baseline's first view of that level, in table order."""
    rows = inputs.cmp.loc[inputs.cmp["model"] == inputs.baseline]
    first: dict[str, str] = {}
    for task, metric, view in zip(rows["task"], rows["metric"], rows["view"]):
        declared = find(task, metric)
        if declared is not None:
            first.setdefault(declared.level, view)
    return first


def _intro(inputs: ReportInputs) -> str:
    base = inputs.baseline
    livi = is_livi(base, inputs.meta)
    lead, minus, owner = (
        ("LIVI baseline", "LIVI", "LIVI's") if livi else ("baseline", "baseline", f"`{base}`'s")
    )
    views = baseline_views(inputs)
    fallbacks = []
    if "cell" in views:
        fallbacks.append(f"its cell state `{views['cell']}` for cell-state views")
    if "donor" in views:
        fallbacks.append(f"its donor factors `{views['donor']}` for `donor_means`")
    rule = f"The baseline is {owner} same view"
    if fallbacks:
        example = views.get("cell", views.get("donor"))
        rule += f", else {' and '.join(fallbacks)} (marked “vs {example}”)"
    return (
        f"Each value is shown beside the {lead} (model `{base}`) as Δ = value − {minus} with ▲ better, "
        f"▼ worse, = equal{_target_rule(inputs)}. {rule}. {_spread(inputs)}"
    )


def _target_rule(inputs: ReportInputs) -> str:
    """``; λ_GC and ... are better the closer they are to 1`` for the run's target metrics (declared)."""
    by_target: dict[float, list[str]] = {}
    for task, metric in dict.fromkeys(zip(inputs.cmp["task"], inputs.cmp["metric"])):
        declared = find(task, metric)
        if declared is not None and declared.direction == "target":
            by_target.setdefault(declared.target, []).append(declared.header)
    notes = []
    for target, headers in by_target.items():
        names = list(dict.fromkeys(headers))
        subject = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        verb = "is" if len(names) == 1 else "are"
        notes.append(
            f"; {subject} {verb} better the closer {'it is' if len(names) == 1 else 'they are'} to {target:g}"
        )
    return "".join(notes)


def _spread(inputs: ReportInputs) -> str:
    """How to read the ± or the intervals of the values."""
    n = inputs.n_replicates
    if n < 2:
        return "Probe values are mean ± sd over probe seeds (one training run per model: Δ is not tested)."
    return (
        f"Values are means over {n} paired training replicates with their 95 % interval in brackets; Δ is "
        "the mean paired difference with its interval, ▲/▼ only when that interval excludes 0, ≈ otherwise."
    )


def title(inputs: ReportInputs) -> list[Block]:
    """The report title and, when there is a baseline, how to read the comparison."""
    blocks: list[Block] = [Heading(f"multilivi benchmark: {inputs.dataset.get('name', 'cohort')}", 1)]
    if inputs.has_baseline:
        blocks.append(Paragraph(_intro(inputs)))
    return blocks


def _config_text(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    items: list[str] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            items += _config_text(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={value}")
    return items


def _meta_cell(value: Any) -> Cell:
    """A run-summary cell: ints with thousands separators, mappings as ``key (value)``, None as n/a."""
    if value is None:
        return Cell("n/a", muted=True)
    if isinstance(value, bool):
        return Cell("yes" if value else "no")
    if isinstance(value, int):
        return Cell(f"{value:,}", numeric=True)
    if isinstance(value, float):
        return Cell(format_number(value), numeric=True)
    if isinstance(value, Mapping):
        return Cell(
            ", ".join(f"{k} ({v:,})" if isinstance(v, int) else f"{k} ({v})" for k, v in value.items())
        )
    if isinstance(value, (list, tuple)):
        return Cell(", ".join(map(str, value)))
    return Cell(str(value))


def _run_line(meta: Mapping[str, Any]) -> list[Block]:
    run = [
        f"created {meta.get('created') or 'n/a'}",
        f"preset `{meta.get('preset') or 'n/a'}`",
        f"seed {meta.get('seed', 'n/a')}",
        f"git `{str(meta.get('git_sha') or 'n/a')[:12]}`",
    ]
    wall = meta.get("wall_seconds")
    if isinstance(wall, (int, float)):
        run.append(f"wall time {format_number(float(wall))} s")
    blocks: list[Block] = [Paragraph(" · ".join(run))]
    argv = meta.get("argv")
    if argv:
        blocks.append(
            Paragraph(f"Command: `{' '.join(map(str, argv)) if not isinstance(argv, str) else argv}`")
        )
    return blocks


def _tests_per_view(scores: pd.DataFrame) -> dict[str, int]:
    """``model · view`` → number of association tests, from the ``association/n_tests`` rows."""
    rows = scores.loc[
        (scores["task"] == "association") & (scores["metric"] == "n_tests") & (scores["status"] == "ok")
    ]
    return {f"{m} · {v}": int(n) for m, v, n in zip(rows["model"], rows["view"], rows["value"])}


def _settings(inputs: ReportInputs) -> list[Block]:
    """Where and how it ran: device, peak memory, association engine, test, covariates, tests per view."""
    meta = inputs.meta
    memory = meta.get("peak_memory_gb")
    rows = [
        ("device", meta.get("device")),
        ("peak memory (GB)", memory),
        ("association engine", meta.get("engine")),
        ("association test", meta.get("test")),
        ("covariates", meta.get("covariates") or None),
        ("tests per view", _tests_per_view(inputs.scores) or None),
    ]
    table = Table(("setting", "value"), tuple((Cell(k), _meta_cell(v)) for k, v in rows))
    return [Heading("Settings", 3), table]


def _dataset(dataset: Mapping[str, Any]) -> list[Block]:
    rows = [(Cell(key), _meta_cell(dataset.get(key))) for key in _DATASET_KEYS]
    rows += [
        (Cell(key), _meta_cell(value))
        for key, value in dataset.items()
        if key not in _DATASET_KEYS and key not in ("semi_synthetic", "note")
    ]
    blocks: list[Block] = [Heading("Dataset", 3), Table(("property", "value"), tuple(rows))]
    if dataset.get("semi_synthetic"):
        note = dataset.get("note", "")
        blocks.append(
            Paragraph(
                "Semi-synthetic cohort: the genotypes are simulated, not measured"
                + (f" ({note})." if note else "."),
                note=True,
            )
        )
    return blocks


def _no_baseline_note(baseline: str | None) -> Paragraph:
    if baseline is None:
        text = (
            "No `livi` model in this run (or none of its tasks succeeded): there is no LIVI "
            "baseline, so values are shown without differences."
        )
    else:
        text = (
            f"No `{baseline}` model in this run (or none of its tasks succeeded): there is no "
            "baseline, so values are shown without differences."
        )
    return Paragraph(text, note=True)


def _model_row(name: str, info: Mapping[str, Any]) -> tuple[Cell, ...]:
    fit = info.get("fit_seconds")
    settings = {k: v for k, v in info.items() if k not in _MODEL_COLUMNS} | dict(info.get("config") or {})
    config = "; ".join(_config_text(settings)) or "—"
    status = str(info.get("status", "n/a")) + (f": {info['reason']}" if info.get("reason") else "")
    return (
        Cell(name),
        Cell(str(info.get("family", "n/a"))),
        Cell(status),
        Cell("yes" if info.get("cached") else "no"),
        Cell(format_number(float(fit)) if isinstance(fit, (int, float)) else "n/a", numeric=True),
        Cell(config),
    )


def _models(inputs: ReportInputs) -> list[Block]:
    blocks: list[Block] = [Heading("Models", 3)]
    if not inputs.has_baseline:
        blocks.append(_no_baseline_note(inputs.baseline))
    models = dict(inputs.meta.get("models", {}))
    names = dict.fromkeys([*models, *model_order(inputs.scores, inputs.baseline)])
    rows = tuple(_model_row(name, dict(models.get(name, {}))) for name in names)
    blocks.append(Table(("model", "family", "status", "cached", "fit (s)", "config"), rows))
    return blocks


def run_summary(inputs: ReportInputs) -> list[Block]:
    """Run summary: when, how and on what it ran; the models with their settings; timings; versions."""
    blocks: list[Block] = [Heading("Run summary"), *_run_line(inputs.meta), *_settings(inputs)]
    blocks += _dataset(inputs.dataset)
    blocks += _models(inputs)
    timings = inputs.tables.table(columns_of("training"))
    if timings is not None:
        blocks += [Heading("Timings", 3), timings]
    blocks += inputs.tables.leftovers(["training"])
    versions = dict(inputs.meta.get("versions", {}))
    if versions:
        blocks += [Heading("Versions", 3), Paragraph(" · ".join(f"{k} `{v}`" for k, v in versions.items()))]
    return blocks
