"""Controls through the same tasks as the models: a random embedding sits at chance, the truth on top."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.kinds import resolve
from benchmarks.kinds.control import random_outputs, truth_outputs
from multilivi.data import split_cells
from multilivi.data.simulate import SimulationConfig, simulate
from multilivi.eval.outputs import EvalContext
from multilivi.eval.results import scores_frame
from multilivi.eval.task_runner import run_tasks
from multilivi.eval.truth import factor_recovery_chance


@pytest.fixture(scope="module")
def scored():
    cohort = simulate(SimulationConfig.ci(), seed=0)
    _, heldout = split_cells(cohort, frac=0.1, seed=0)
    ctx = EvalContext.from_cohort(cohort, heldout, n_probe_seeds=3)
    outputs = {
        "control-random": random_outputs(cohort, n_latent=8, n_dxc=8, n_v=2, seed=0),
        "control-truth": truth_outputs(cohort),
    }
    rows = [row for name, out in outputs.items() for row in run_tasks(name, out, ctx).rows]
    return cohort, scores_frame(rows).set_index(["model", "view", "task", "metric"])


def test_specs_parse_and_refuse_unknown_controls():
    assert resolve("control:random").name == "control-random"
    with pytest.raises(ValueError, match="unknown control 'control:best'"):
        resolve("control:best")


def test_the_negative_control_sits_at_chance(scored):
    cohort, scores = scored
    donor = scores.loc[("control-random", "c", "probe_donor", "accuracy")]
    # 30 donors: guessing the largest donor is right for `chance` of the cells; a random view is not better
    assert donor["value"] < donor["chance"] + 0.05, donor
    recovery = scores.loc[("control-random", "D", "truth", "factor_recovery"), "value"]
    assert recovery < factor_recovery_chance(cohort.truth.donor_factors, 8, quantile=0.99)


def test_the_positive_control_recovers_the_truth(scored):
    _, scores = scored
    assert scores.loc[("control-truth", "D", "truth", "factor_recovery"), "value"] == pytest.approx(1.0)
    assert scores.loc[("control-truth", "c", "truth", "cell_state_r2"), "value"] > 0.99
    truth_power = scores.loc[("control-truth", "D", "truth", "power"), "value"]
    random_power = scores.loc[("control-random", "D", "truth", "power"), "value"]
    assert truth_power > random_power and np.isfinite(truth_power)
