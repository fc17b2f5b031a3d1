"""Tasks as declared units, and the runner that orders them and turns their results into score rows.

A :class:`Task` names the artefacts it needs from other tasks (``needs``) and the one it provides
(``provides``); :func:`run_tasks` orders the registered tasks by those declarations (declaration
order otherwise), calls each with the model's :class:`ModelOutputs`, the cohort's
:class:`EvalContext` and its inputs, and converts every result to a :class:`ScoreRow` in one place,
with the direction its :class:`~multilivi.eval.metrics.Metric` declares. A task that raises becomes an
``error`` row, and a task whose input failed a ``skipped`` row; the other tasks still run.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from multilivi.eval.metrics import lookup
from multilivi.eval.outputs import EvalContext, ModelOutputs
from multilivi.eval.records import MetricResult
from multilivi.eval.results import MODEL_LEVEL, ScoreRow, not_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Score:
    """One metric result of a task on one view; ``task`` overrides the task's name in the row."""

    view: str
    result: MetricResult
    task: str | None = None


@dataclass(frozen=True)
class NotRun:
    """A task (or one of its sub-tasks) that could not run on ``view``, and why."""

    view: str
    reason: str
    task: str | None = None


@dataclass
class TaskResult:
    """What a task returns: its scores (in row order) and the artefact it provides, if any."""

    scores: list[Score | NotRun] = field(default_factory=list)
    artefact: Any = None


TaskFn = Callable[..., TaskResult]


@dataclass(frozen=True)
class Task:
    """A named unit of evaluation: ``run(outputs, ctx, **{need: artefact})`` → :class:`TaskResult`."""

    name: str
    run: TaskFn
    needs: tuple[str, ...] = ()
    provides: str | None = None


@dataclass
class TaskRun:
    """Rows of one model's tasks, plus the artefacts they provided (e.g. ``associations``)."""

    rows: list[ScoreRow] = field(default_factory=list)
    artefacts: dict[str, Any] = field(default_factory=dict)


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to the tasks every model runs; a second task of the same name is an error."""
    if task.name in _TASKS and _TASKS[task.name] != task:
        raise ValueError(f"task {task.name!r} is registered twice; keep one")
    _TASKS[task.name] = task
    return task


def unregister_task(name: str) -> None:
    """Remove a registered task (for tests and plug-ins that add a task for one run)."""
    _TASKS.pop(name, None)


def registered_tasks() -> list[Task]:
    """The registered tasks in run order."""
    return ordered(list(_TASKS.values()))


def ordered(tasks: Sequence[Task]) -> list[Task]:
    """``tasks`` with every provider before the tasks that need its artefact (stable otherwise).

    Raises a ValueError naming the artefact when a need has no provider or the needs form a cycle.
    """
    providers = {t.provides: t.name for t in tasks if t.provides}
    missing = sorted({n for t in tasks for n in t.needs if n not in providers})
    if missing:
        raise ValueError(f"no task provides {missing}; register a Task with provides= for each")
    done: list[Task] = []
    pending = list(tasks)
    while pending:
        ready = next(
            (t for t in pending if all(providers[n] in {d.name for d in done} for n in t.needs)), None
        )
        if ready is None:
            raise ValueError(f"tasks {[t.name for t in pending]} need each other's artefacts (a cycle)")
        done.append(ready)
        pending.remove(ready)
    return done


def run_tasks(
    model: str,
    outputs: ModelOutputs,
    ctx: EvalContext,
    *,
    tasks: Sequence[Task] | None = None,
    fail_fast: bool = False,
) -> TaskRun:
    """Run ``tasks`` (default: every registered task) on one model's outputs."""
    run = TaskRun()
    failed: dict[str, str] = {}  # artefact → task that should have provided it
    for task in ordered(tasks) if tasks is not None else registered_tasks():
        lost = [n for n in task.needs if n in failed]
        if lost:
            reason = f"needs {lost[0]!r} from task {failed[lost[0]]!r}, which failed"
            run.rows.append(not_run(model, MODEL_LEVEL, task.name, reason))
            failed |= {task.provides: task.name} if task.provides else {}
            continue
        start = time.perf_counter()
        try:
            result = task.run(outputs, ctx, **{n: run.artefacts[n] for n in task.needs})
            run.rows += rows_of(result.scores, model=model, task=task.name)
        except Exception as exc:  # a failing task is a row, not a crashed benchmark
            if fail_fast:
                raise
            logger.error(
                "task %s failed for %s after %.1f s:\n%s",
                task.name,
                model,
                time.perf_counter() - start,
                traceback.format_exc(),
            )
            run.rows.append(
                not_run(model, MODEL_LEVEL, task.name, f"{type(exc).__name__}: {exc}", status="error")
            )
            failed |= {task.provides: task.name} if task.provides else {}
            continue
        logger.info("task %s of %s: %.1f s", task.name, model, time.perf_counter() - start)
        if task.provides:
            run.artefacts[task.provides] = result.artefact
    return run


def rows_of(scores: Iterable[Score | NotRun], *, model: str, task: str) -> list[ScoreRow]:
    """Score rows of a task's results; the direction comes from each metric's declaration.

    ``details['sd']`` becomes the row's sd and ``details['chance']`` its chance level (else the
    metric's declared one) when present. An undeclared metric is a KeyError.
    """
    rows = []
    for score in scores:
        name = score.task or task
        if isinstance(score, NotRun):
            rows.append(not_run(model, score.view, name, score.reason))
            continue
        result = score.result
        metric = lookup(name, result.name)
        sd = float(result.details.get("sd", math.nan))
        default_chance = math.nan if metric.chance is None else metric.chance
        chance = float(result.details.get("chance", default_chance))
        rows.append(
            ScoreRow(
                model,
                score.view,
                name,
                result.name,
                result.value,
                sd,
                metric.higher_is_better,
                result.status,
                result.reason,
                chance,
            )
        )
    return rows
