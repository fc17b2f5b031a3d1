"""The answer first: for each model against the baseline, the three questions of the benchmark.

1. Cell-state quality: subtype (and cell-type) probe accuracy, and protein-defined classes.
2. Donor leakage: donor identity read off the cell-state view (lower is better).
3. Donor phenotypes for trans-eQTL mapping: power against the planted truth on a simulated cohort,
   else the number of significant factor–variant pairs.

Each answer is the paired difference over replicates with its 95 % interval and a word: better,
worse, or no detectable difference (the interval includes 0). With one replicate there is no
interval and the answer says so. Caveats close the block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from multilivi.eval.report.baseline import DOWN, NO_DIFFERENCE, UP
from multilivi.eval.report.blocks import Block, Bullets, Heading, Paragraph
from multilivi.eval.report.formatting import format_interval, format_number
from multilivi.eval.report.inputs import ReportInputs, register_section

CONTROL_FAMILY = "control"
WORDS = {UP: "**better**", DOWN: "**worse**", NO_DIFFERENCE: "no detectable difference"}
Question = tuple[str, str, str]  # (label, task, metric)
CELL_STATE: Sequence[Question] = (
    ("subtype accuracy", "probe_cell_subtype", "accuracy"),
    ("cell-type accuracy", "probe_cell_type", "accuracy"),
)
LEAKAGE: Question = ("donor-probe accuracy (leakage)", "probe_donor", "accuracy")
POWER: Question = ("power against the planted truth", "truth", "power")
HITS: Question = ("significant factor–variant pairs", "association", "n_significant_pairs")


def _family(inputs: ReportInputs, model: str) -> Any:
    info = dict(inputs.meta.get("models") or {}).get(model)
    return dict(info).get("family") if isinstance(info, dict) else None


def compared_models(inputs: ReportInputs) -> list[str]:
    """The models the verdict speaks of: every model but the baseline and the controls."""
    models = dict.fromkeys(inputs.cmp["model"].astype(str))
    return [m for m in models if m != inputs.baseline and _family(inputs, m) != CONTROL_FAMILY]


def _row(inputs: ReportInputs, model: str, task: str, metric: str, level_view: str | None) -> Any:
    rows = inputs.cmp.loc[
        (inputs.cmp["model"] == model) & (inputs.cmp["task"] == task) & (inputs.cmp["metric"] == metric)
    ]
    if level_view is not None and (rows["view"] == level_view).any():
        rows = rows.loc[rows["view"] == level_view]
    return next(rows.itertuples(index=False), None)


def answer(inputs: ReportInputs, model: str, question: Question, view: str | None = None) -> str | None:
    """One sentence: the model's value, the baseline's, the paired difference and its word."""
    label, task, metric = question
    r = _row(inputs, model, task, metric, view)
    if r is None or not math.isfinite(r.baseline):
        return None
    value = (
        format_interval(r.value, r.ci_low, r.ci_high) if math.isfinite(r.ci_low) else format_number(r.value)
    )
    if math.isfinite(r.diff_low):
        delta = f"Δ {format_interval(r.diff, r.diff_low, r.diff_high, signed=True)}"
        word = WORDS.get(r.arrow, "")
    else:
        delta, word = f"Δ {format_number(r.diff, signed=True)}", "not tested (one replicate)"
    where = f" (`{r.view}` vs `{r.baseline_view}`)" if r.view != r.baseline_view else f" (`{r.view}`)"
    return f"{label}{where}: {value} against {format_number(r.baseline)}, {delta}: {word}"


def _protein_classes(inputs: ReportInputs, model: str) -> list[str]:
    classes = list(inputs.meta.get("protein_classes") or [])
    questions = [
        (f"protein-defined subtype `{c}`", "probe_cell_subtype", f"class_accuracy/{c}") for c in classes
    ]
    return [a for q in questions if (a := answer(inputs, model, q)) is not None]


def model_verdict(inputs: ReportInputs, model: str) -> list[Block]:
    """The three answers for one model (questions without rows are left out)."""
    cell = [a for q in CELL_STATE if (a := answer(inputs, model, q)) is not None]
    cell += _protein_classes(inputs, model)
    leakage = answer(inputs, model, LEAKAGE)
    donor = answer(inputs, model, POWER, "D") or answer(inputs, model, HITS, "D")
    items = [f"Cell state — {a}" for a in cell]
    items += [f"Donor leakage — {leakage}"] if leakage else []
    items += [f"Donor phenotypes — {donor}"] if donor else []
    return [Heading(f"{model} vs {inputs.baseline}", 3), Bullets(tuple(items))] if items else []


def caveats(inputs: ReportInputs, n_replicates: int) -> list[str]:
    """What limits the verdicts: replicates, preset, genetics, controls."""
    notes = []
    if n_replicates < 2:
        notes.append("One training run per model: differences are not tested; pass `--replicates 3` or more.")
    else:
        notes.append(
            f"{n_replicates} paired replicates per model "
            f"(seeds {inputs.meta.get('replicate_seeds', 'n/a')}): "
            "intervals are 95 % Student-t over replicates."
        )
    preset = inputs.meta.get("preset")
    if preset and preset != "paper":
        notes.append(
            f"Preset `{preset}`: a small training budget, not the thesis settings (`--preset paper`)."
        )
    notes.append(learning_rates(inputs.meta))
    if dict(inputs.meta.get("dataset") or {}).get("genetics") == "semi-synthetic":
        notes.append("Semi-synthetic genetics: power and hits measure recovery of planted effects.")
    return notes


def learning_rates(meta: dict) -> str:
    """Each trained model's learning rate and how it was chosen (``meta["lr_tuning"]``: the search run)."""
    rates = {
        name: info["config"]["lr"]
        for name, info in (meta.get("models") or {}).items()
        if isinstance(info, dict) and "lr" in (info.get("config") or {})
    }
    listed = ", ".join(f"{name} {lr:g}" for name, lr in rates.items()) or "none trained here"
    source = meta.get("lr_tuning")
    how = (
        f"chosen per family by held-out ELBO, the same search for every family (`{source}`)"
        if source
        else "one rate for every family, not tuned for this preset"
    )
    return f"Learning rates: {listed}; {how}."


def verdict(inputs: ReportInputs) -> list[Block]:
    """The verdict block: each model's answers against the baseline, then the caveats."""
    if not inputs.has_baseline:
        return []
    n = inputs.n_replicates
    blocks: list[Block] = [Heading("Verdict")]
    for model in compared_models(inputs):
        blocks += model_verdict(inputs, model)
    if len(blocks) == 1:
        return []
    return [*blocks, Paragraph("Caveats: " + " ".join(caveats(inputs, n)), note=True)]


register_section("Verdict", verdict, after="Title")
