"""Shared fixtures of the model tests: the CI simulated cohort, its split, tiny configs."""

from __future__ import annotations

import warnings

import pytest

from multilivi.data import Cohort, split_cells
from multilivi.data.simulate import SimulationConfig, simulate


@pytest.fixture(scope="session")
def ci_cohort() -> Cohort:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return simulate(SimulationConfig.ci(), seed=0)


@pytest.fixture(scope="session")
def ci_split(ci_cohort: Cohort):
    return split_cells(ci_cohort, frac=0.1, seed=0)
