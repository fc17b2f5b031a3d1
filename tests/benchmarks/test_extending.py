"""Extending multilivi: a metric with a direction of its own is one declaration plus its task function.

The toy metric below is registered here, in the test, and reaches scores.csv, the report and the
regression gate without any edit of those modules.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import compare, gate
from multilivi.eval.metrics import Metric, register, unregister
from multilivi.eval.outputs import EvalContext, ModelOutputs
from multilivi.eval.records import MetricResult
from multilivi.eval.results import read_scores, scores_frame
from multilivi.eval.task_runner import Score, Task, TaskResult, register_task, run_tasks, unregister_task

TOY = Metric(
    "toy",
    "share_positive",
    "share of positive entries",
    "target",
    target=0.5,
    lower=0.0,
    upper=1.0,
    gated=True,
)


def share_positive(outputs: ModelOutputs, ctx: EvalContext) -> TaskResult:
    """Share of the entries of each view above 0 (best at one half: a centred embedding)."""
    return TaskResult(
        [
            Score(view, MetricResult("share_positive", float((x > 0).mean())))
            for view, x in outputs.views.items()
        ]
    )


@pytest.fixture
def toy_metric():
    register(TOY)
    task = register_task(Task("toy", share_positive))
    yield task
    unregister_task("toy")
    unregister("toy", "share_positive")


def test_a_registered_metric_reaches_scores_and_report(toy_metric, tmp_path):
    out = tmp_path / "run"
    argv = ["--preset", "ci", "--models", "pca", "--no-controls", "--no-umap", "--no-cache", "--quiet"]
    argv += ["--probe-seeds", "2"]
    assert compare.main([*argv, "--out", str(out)]) == 0
    scores = read_scores(out / "scores.csv")
    toy = scores.loc[scores["task"] == "toy"]
    assert set(toy["metric"]) == {"share_positive"} and (toy["status"] == "ok").all()
    assert not toy["higher_is_better"].any(), "a target metric is not higher-is-better"
    assert toy["value"].min() > 0.3 and toy["value"].max() < 0.7
    report = (out / "report.md").read_text()
    assert "share of positive entries" in report


def _toy_scores(seed: int, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    outputs = ModelOutputs(views={"emb": rng.standard_normal((400, 3)) + shift})
    ctx = EvalContext({}, np.array([]), np.array([]), {}, None, None, None, None)
    return scores_frame(run_tasks("toy-model", outputs, ctx, tasks=[Task("toy", share_positive)]).rows)


def test_a_registered_metric_is_gated_on_both_sides_of_its_target(toy_metric):
    baseline = gate.make_baseline({s: _toy_scores(s) for s in range(100, 120)}, models=["toy-model"], meta={})
    (entry,) = baseline["entries"]
    assert entry["gated"] and entry["low"] < 0.5 < entry["high"]
    assert gate.check_against(_toy_scores(0), baseline, models=["toy-model"]) == []
    for shift in (+1.0, -1.0):  # too many or too few positive entries: both are worse than the target
        (violation,) = gate.check_against(_toy_scores(0, shift), baseline, models=["toy-model"])
        assert violation.metric == "share_positive"
