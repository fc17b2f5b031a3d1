"""What sections read (:class:`ReportInputs`) and the ordered section list they are registered in.

A section is a function ``section(inputs) -> list[Block]``. The report is the concatenation of
the registered sections' blocks, in order. Adding a section (and its figures) is one function
and one :func:`register_section` call::

    def my_section(inputs: ReportInputs) -> list[Block]:
        table = inputs.tables.table(columns_of("my_task"))
        return [Heading("My task"), *([table] if table else [])]

    register_section("My task", my_section, tasks=("my_task",), after="Ground truth")

A section names the score tasks it shows (``tasks``) and the name prefixes of the harness
figures it shows (``figures``); the metrics of tasks no section claims are shown under "Other
metrics", and unclaimed figures under "Other figures".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from multilivi.eval.replicates import n_replicates, summarise
from multilivi.eval.report.baseline import compare_to_baseline
from multilivi.eval.report.blocks import Block, FigureRef
from multilivi.eval.report.tables import Tables


@dataclass
class ReportInputs:
    """The score table, the run's metadata and figures, the baseline and the FDR: what a section reads.

    ``tables`` builds score tables (and records what was placed); :meth:`figure` records a
    figure to save and returns the block that shows it.
    """

    scores: pd.DataFrame
    meta: Mapping[str, Any]
    extra_figures: Mapping[str, Figure]
    baseline: str | None
    fdr: float
    cmp: pd.DataFrame
    tables: Tables
    figures: dict[str, Figure] = field(default_factory=dict)
    replicates: pd.DataFrame | None = None  # every replicate's rows (``scores`` holds their means)
    artefacts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # model → its task artefacts

    @classmethod
    def build(
        cls,
        scores: pd.DataFrame,
        meta: Mapping[str, Any],
        extra_figures: Mapping[str, Figure],
        *,
        baseline: str | None,
        fdr: float,
    ) -> ReportInputs:
        """The inputs of a report comparing every score with model ``baseline`` (None: no comparison).

        ``scores`` may hold several replicates; sections and figures read their means
        (:func:`~multilivi.eval.replicates.summarise`), the comparison pairs the replicates.
        """
        summary = summarise(scores)
        cmp = compare_to_baseline(scores, baseline, summary)
        tables = Tables(cmp, summary, baseline)
        return cls(summary, meta, dict(extra_figures), baseline, fdr, cmp, tables, replicates=scores)

    @property
    def n_replicates(self) -> int:
        """How many paired replicates the run's scores hold."""
        return n_replicates(self.replicates if self.replicates is not None else self.scores)

    @property
    def has_baseline(self) -> bool:
        """Whether the baseline model has ``ok`` scores to compare with."""
        return self.baseline is not None and bool((self.cmp["model"] == self.baseline).any())

    @property
    def dataset(self) -> dict[str, Any]:
        return dict(self.meta.get("dataset", {}))

    def figure(self, name: str, fig: Figure | None, caption: str) -> list[Block]:
        """Show ``fig`` as ``figures/<name>.png`` (nothing when ``fig`` is None)."""
        if fig is None:
            return []
        self.figures[name] = fig
        return [FigureRef(name, caption)]

    def extras(self, prefix: str) -> list[str]:
        """Names of the harness figures starting with ``prefix``, sorted."""
        return sorted(name for name in self.extra_figures if name.startswith(prefix))


SectionFn = Callable[[ReportInputs], list[Block]]


@dataclass(frozen=True)
class Section:
    """A report section: its name, its function, the tasks and harness-figure prefixes it shows.

    ``after`` / ``before`` name the section it is placed next to (None: in registration order).
    """

    name: str
    build: SectionFn
    tasks: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()
    after: str | None = None
    before: str | None = None


_SECTIONS: list[Section] = []


def register_section(
    name: str,
    build: SectionFn,
    *,
    tasks: Sequence[str] = (),
    figures: Sequence[str] = (),
    after: str | None = None,
    before: str | None = None,
) -> Section:
    """Add a section: after section ``after``, before section ``before``, or at the end.

    The anchor may be registered later (modules import in any order); the order is resolved
    when the report is built, and an anchor that never appears is a ValueError then.
    """
    if any(s.name == name for s in _SECTIONS):
        raise ValueError(f"report section {name!r} is registered twice; unregister_section it first")
    if after is not None and before is not None:
        raise ValueError(f"section {name!r}: pass after= or before=, not both")
    section = Section(name, build, tuple(tasks), tuple(figures), after, before)
    _SECTIONS.append(section)
    return section


def unregister_section(name: str) -> None:
    """Remove a section (for tests and plug-ins that add one for a run)."""
    _SECTIONS[:] = [s for s in _SECTIONS if s.name != name]


def registered_sections() -> list[Section]:
    """The registered sections in report order: anchored ones next to their anchors."""
    order = [s for s in _SECTIONS if s.after is None and s.before is None]
    pending = [s for s in _SECTIONS if s not in order]
    while pending:
        names = [s.name for s in order]
        placeable = next((s for s in pending if (s.after or s.before) in names), None)
        if placeable is None:
            missing = sorted({s.after or s.before for s in pending})
            raise ValueError(f"no report section {missing[0]!r}; sections are {names}")
        anchor = names.index(placeable.after or placeable.before)
        if placeable.after is not None:  # after the anchor and the sections already placed after it
            while anchor + 1 < len(order) and order[anchor + 1].after == placeable.after:
                anchor += 1
            anchor += 1
        order.insert(anchor, placeable)
        pending.remove(placeable)
    return order


def claimed_tasks() -> set[str]:
    """Score tasks some section shows."""
    return {task for s in _SECTIONS for task in s.tasks}


def claimed_figure(name: str) -> bool:
    """Whether some section shows the harness figure ``name`` (by its name prefix)."""
    return any(name.startswith(prefix) for s in _SECTIONS for prefix in s.figures)
