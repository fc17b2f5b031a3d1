"""The scIB section: scib-metrics' scores of every cell view, raw beside LIVI and scaled over the run."""

from __future__ import annotations

import pandas as pd

from multilivi.eval.report.blocks import Block, Cell, Heading, Paragraph, Table
from multilivi.eval.report.inputs import ReportInputs, register_section
from multilivi.eval.report.sections import with_direction
from multilivi.eval.report.tables import columns_of
from multilivi.eval.scib import AGGREGATES, BATCH_METRICS, BIO_METRICS, scaled_table

SCALED_CAPTION = (
    "Min–max scaled over the run's views as scib-metrics' Benchmarker does "
    "(`get_results(min_max_scale=True)`): each metric to [0, 1], bio conservation and batch correction "
    "the means of their metrics, total 0.6 bio + 0.4 batch. Scaled scores rank the views of this run; "
    "they are not comparable across runs."
)


def scib(inputs: ReportInputs) -> list[Block]:
    """Raw scIB metrics (intervals, difference from LIVI) and the Benchmarker-style scaled table."""
    columns = columns_of("scib")
    caption = with_direction("scIB metrics on the probes' cells (raw)", columns)
    raw = inputs.tables.table(columns, caption=caption)
    if raw is None:
        return inputs.tables.leftovers(["scib"])
    blocks: list[Block] = [
        Heading("scIB metrics"),
        Paragraph(
            "Bio conservation of `cell_type` and batch correction of `batch` by scib-metrics, on the cells "
            "the probes use. PCR comparison is left out (it needs the unintegrated expression). The random "
            "control's row is the chance level."
        ),
        raw,
        *_scaled(inputs.scores),
    ]
    return blocks + inputs.tables.leftovers(["scib"])


def _scaled(scores: pd.DataFrame) -> list[Block]:
    """The scaled table of the (model, view) rows with every metric ``ok``; nothing with fewer than two."""
    ok = scores.loc[(scores["task"] == "scib") & (scores["status"] == "ok")]
    raw = ok.pivot_table(index=["model", "view"], columns="metric", values="value", sort=False)
    metrics = [name for name, _ in (*BIO_METRICS.values(), *BATCH_METRICS.values())]
    raw = raw.reindex(columns=metrics).dropna()
    if len(raw) < 2:
        return []
    scaled = scaled_table(raw).sort_values("total", ascending=False)
    labels = dict(BIO_METRICS.values()) | dict(BATCH_METRICS.values())
    labels |= {name: label.split(" (")[0] for name, label in AGGREGATES.values()}
    header = ("model", "view", *(labels[c] for c in scaled.columns))
    rows = tuple(
        (Cell(str(model)), Cell(str(view)), *(Cell(f"{v:.3f}", numeric=True) for v in values))
        for (model, view), values in zip(scaled.index, scaled.to_numpy())
    )
    return [Heading("Scaled, as scib-metrics' Benchmarker", 3), Table(header, rows, SCALED_CAPTION)]


register_section("scIB metrics", scib, tasks=("scib",), after="Donor leakage")
