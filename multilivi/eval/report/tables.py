"""Score tables of the report: model views × metrics, each value beside the baseline's.

:class:`Tables` builds the tables from the comparison of :func:`compare_to_baseline` and
remembers which ``ok`` rows it placed, so that no score is lost: :meth:`Tables.leftovers` shows
the rest of a task. Columns and headers come from the metric registry (:func:`columns_of`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from multilivi.eval.figures import model_order
from multilivi.eval.metrics import KEY_SEPARATOR, find, metrics_of
from multilivi.eval.report.blocks import Block, Cell, Heading, Table
from multilivi.eval.report.formatting import format_interval, format_number, format_value, is_count

Column = tuple[str, str, str]  # (task, metric, header)
ViewFilter = Callable[[str, str], bool]  # (model, view) -> whether the table shows that model view
TASK_NOT_RUN = "*"  # metric of a row saying a whole task did not run (multilivi.eval.results.not_run)
RowKey = tuple[str, str, str, str]  # (model, view, task, metric)
DIMENSIONS_TASK = "views"  # rows n_dims / n_factors per view: shown in the view labels
OTHER_DIMENSION = "†"


def columns_of(*tasks: str) -> list[Column]:
    """The declared metrics of ``tasks`` as table columns (task, metric, header), in declaration order.

    A keyed metric's column holds its plain rows (``name``); its ``name/key`` rows go to
    :meth:`Tables.per_key` tables. Columns without rows are left out of a table.
    """
    return [(m.task, m.name, m.header) for task in tasks for m in metrics_of(task)]


def present_columns(cmp: pd.DataFrame, columns: Sequence[Column]) -> list[Column]:
    """The ``columns`` with at least one ``ok`` row in the comparison table ``cmp``."""
    keys = set(zip(cmp["task"], cmp["metric"]))
    return [c for c in columns if (c[0], c[1]) in keys]


def direction_notes(columns: Sequence[Column], *, lower: bool = True) -> list[str]:
    """What better means for the columns that are not higher-is-better, from their declarations.

    ``X is better the closer it is to t`` for a ``target`` metric and, with ``lower``,
    ``X is better lower`` for a ``min`` metric.
    """
    notes = []
    for task, metric, header in columns:
        declared = find(task, metric)
        if declared is not None and declared.direction == "target":
            notes.append(f"{header} is better the closer it is to {declared.target:g}")
        elif lower and declared is not None and declared.direction == "min":
            notes.append(f"{header} is better lower")
    return notes


def _every_view(model: str, view: str) -> bool:
    return True


class Tables:
    """Builds model-view × metric tables and remembers which ``ok`` rows were placed in one."""

    def __init__(self, cmp: pd.DataFrame, scores: pd.DataFrame, baseline: str | None) -> None:
        self.cmp, self.scores, self.baseline = cmp, scores, baseline
        self.placed: set[RowKey] = set()
        self.rank = {m: i for i, m in enumerate(model_order(scores, baseline))}
        dims = cmp.loc[cmp["task"] == DIMENSIONS_TASK]
        self.dims = {(m, v): int(x) for m, v, x in zip(dims["model"], dims["view"], dims["value"])}
        self.placed |= set(zip(dims["model"], dims["view"], dims["task"], dims["metric"]))  # shown in labels

    def views_at(self, level: str) -> set[tuple[str, str]]:
        """(model, view) pairs with an ``ok`` row of a metric declared at ``level`` (``cell``, ``donor``)."""
        pairs = set()
        for model, view, task, metric in zip(
            self.cmp["model"], self.cmp["view"], self.cmp["task"], self.cmp["metric"]
        ):
            declared = find(task, metric)
            if declared is not None and declared.level == level:
                pairs.add((model, view))
        return pairs

    def view_label(self, model: str, view: str) -> str:
        """``view (d dims)`` when the view's dimension is known."""
        d = self.dims.get((model, view))
        return view if d is None else f"{view} ({d} dims)"

    def _other_dimension(self, model: str, view: str, baseline_view: str) -> bool:
        mine, theirs = self.dims.get((model, view)), self.dims.get((self.baseline, baseline_view))
        return mine is not None and theirs is not None and mine != theirs

    def _ok_rows(self, wanted: set[tuple[str, str]], views: ViewFilter) -> pd.DataFrame:
        cmp = self.cmp
        keep = [
            (t, m) in wanted and views(mo, v)
            for mo, v, t, m in zip(cmp["model"], cmp["view"], cmp["task"], cmp["metric"])
        ]
        return cmp.loc[np.array(keep, dtype=bool)]

    def _failed_rows(self, wanted: set[tuple[str, str]], views: ViewFilter) -> pd.DataFrame:
        """Rows not ``ok`` of the wanted metrics, and whole tasks that did not run (metric ``*``)."""
        scores = self.scores
        tasks = {t for t, _ in wanted}
        keep = [
            ((t, m) in wanted or (t in tasks and m == TASK_NOT_RUN)) and views(str(mo), str(v))
            for mo, v, t, m in zip(scores["model"], scores["view"], scores["task"], scores["metric"])
        ]
        return scores.loc[(scores["status"] != "ok").to_numpy() & np.array(keep, dtype=bool)]

    def _cell(self, r: Any, view: str) -> Cell:
        replicated = math.isfinite(r.ci_low) and r.ci_high > r.ci_low  # no interval for a constant
        count = is_count(r.task, r.metric) and not replicated  # a mean of counts keeps its decimals
        text = (
            format_interval(r.value, r.ci_low, r.ci_high)
            if replicated
            else format_value(r.value, r.sd, count=count)
        )
        if not math.isfinite(r.diff):
            return Cell(text, numeric=True)
        if math.isfinite(r.diff_low) and r.diff_high > r.diff_low:
            delta = format_interval(r.diff, r.diff_low, r.diff_high, signed=True)
        else:
            delta = format_number(r.diff, count=count, signed=True)
        if r.baseline_view != view:
            delta += f" vs {r.baseline_view}"
        if self._other_dimension(r.model, view, r.baseline_view):
            delta += f" {OTHER_DIMENSION}"
        return Cell(text, numeric=True, delta=delta, arrow=r.arrow)

    def table(
        self, columns: Sequence[Column], views: ViewFilter = _every_view, caption: str = ""
    ) -> Table | None:
        """Model views × ``columns``; each cell is ``value ± sd`` with its difference from the baseline.

        Cells of rows that are not ``ok`` show their status; a whole task that did not run
        (metric ``*``) shows as that status in each of its columns. ``None`` if nothing is ``ok``.
        """
        wanted = {(t, m) for t, m, _ in columns}
        rows = self._ok_rows(wanted, views)
        if rows.empty:
            return None
        bad = self._failed_rows(wanted, views)
        both = pd.concat([rows[["model", "view"]], bad[["model", "view"]].astype(str)])
        pairs = sorted(dict.fromkeys(zip(both["model"], both["view"])), key=lambda mv: self.rank[mv[0]])
        present = [c for c in columns if ((rows["task"] == c[0]) & (rows["metric"] == c[1])).any()]
        index = {(r.model, r.view, r.task, r.metric): r for r in rows.itertuples(index=False)}
        failed = {(r.model, str(r.view), r.task, r.metric): r.status for r in bad.itertuples(index=False)}
        self.placed |= set(index)
        body = []
        for model, view in pairs:
            cells = [
                Cell(f"{model} (baseline)" if model == self.baseline else model),
                Cell(self.view_label(model, view)),
            ]
            for task, metric, _ in present:
                r = index.get((model, view, task, metric))
                if r is not None:
                    cells.append(self._cell(r, view))
                    continue
                status = failed.get((model, view, task, metric)) or failed.get(
                    (model, view, task, TASK_NOT_RUN)
                )
                cells.append(Cell(status or "—", numeric=True, muted=True))
            body.append(tuple(cells))
        marked = any(
            self._other_dimension(m, v, b)
            for m, v, b in zip(rows["model"], rows["view"], rows["baseline_view"])
        )
        note = f"{OTHER_DIMENSION} compared with a baseline view of another dimension." if marked else ""
        caption = " ".join(filter(None, [caption, _chance_caption(rows, present), note]))
        return Table(("model", "view", *(h for _, _, h in present)), tuple(body), caption)

    def _keyed(self, task: str, name: str) -> list[str]:
        prefix = f"{name}{KEY_SEPARATOR}"
        metrics = self.cmp.loc[
            (self.cmp["task"] == task) & self.cmp["metric"].str.startswith(prefix), "metric"
        ]
        return list(dict.fromkeys(metrics))

    def per_key(self, task: str, name: str, caption: str) -> Table | None:
        """A table of the ``<name>/<key>`` rows of ``task``, one column per key."""
        prefix = f"{name}{KEY_SEPARATOR}"
        return self.table(
            [(task, m, m.removeprefix(prefix)) for m in self._keyed(task, name)], caption=caption
        )

    def shown_elsewhere(self, task: str, name: str) -> None:
        """Count the ``<name>/<key>`` rows of ``task`` as placed (a figure shows them, not a table)."""
        keyed = set(self._keyed(task, name))
        rows = self.cmp.loc[(self.cmp["task"] == task) & self.cmp["metric"].isin(keyed)]
        self.placed |= set(zip(rows["model"], rows["view"], rows["task"], rows["metric"]))

    def _task_leftovers(self, task: str, metrics: Sequence[str]) -> list[Table]:
        """Tables of the unplaced metrics of one task: plain metrics together, keyed ones per key."""
        plain = [m for m in metrics if KEY_SEPARATOR not in m]
        columns = [(task, m, (find(task, m).header if find(task, m) else m)) for m in plain]
        groups = dict.fromkeys(m.split(KEY_SEPARATOR, 1)[0] for m in metrics if KEY_SEPARATOR in m)
        tables = [self.table(columns, caption=f"Further `{task}` metrics.")] if plain else []
        tables += [self.per_key(task, g, caption=f"`{g}` by `{task}` key.") for g in groups]
        return [t for t in tables if t is not None]

    def leftovers(self, tasks: Sequence[str]) -> list[Block]:
        """Tables of the ``ok`` rows of ``tasks`` not yet placed (undeclared metrics included).

        Declared metrics keep their registry header and direction; a metric the registry does not
        know is headed by its name and judged by its rows' ``higher_is_better``.
        """
        keys = zip(self.cmp["model"], self.cmp["view"], self.cmp["task"], self.cmp["metric"])
        rest = self.cmp.loc[np.array([k not in self.placed and k[2] in tasks for k in keys], dtype=bool)]
        blocks: list[Block] = []
        for task in dict.fromkeys(rest["task"]):
            metrics = list(dict.fromkeys(rest.loc[rest["task"] == task, "metric"]))
            tables = self._task_leftovers(task, metrics)
            if tables:
                blocks += [Heading(f"Further {task} metrics", 3), *tables]
        return blocks


def _chance_caption(rows: pd.DataFrame, columns: Sequence[Column]) -> str:
    """``Chance level: header x, ...`` for the columns whose rows carry one (a range when they differ)."""
    if "chance" not in rows.columns:
        return ""
    parts = []
    for task, metric, header in columns:
        chance = rows.loc[(rows["task"] == task) & (rows["metric"] == metric), "chance"].dropna()
        if chance.empty:
            continue
        low, high = float(chance.min()), float(chance.max())
        shown = (
            format_number(low) if math.isclose(low, high) else f"{format_number(low)}–{format_number(high)}"
        )
        parts.append(f"{header} {shown}")
    return f"Chance level: {', '.join(parts)}." if parts else ""
