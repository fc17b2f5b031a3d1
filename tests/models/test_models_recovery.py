"""Recovery of planted structure: the CI cohort with the ``ci`` preset, the default one with ``quick`` (slow).

Thresholds sit beyond the spread over training seeds in ``reports/seed-spread`` (``python
tests/models/seed_spread.py``): another CPU trains another model, as another seed would.
"""

from __future__ import annotations

import pytest
from seed_spread import recovery, simulated

from multilivi.data import Cohort, split_cells
from multilivi.data.simulate import SimulationConfig
from multilivi.models import FAMILIES


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_ci_preset_recovers_cell_types_and_donor_programs(family: str, ci_cohort: Cohort, ci_split) -> None:
    measured = recovery(family, "ci", ci_cohort, ci_split, seed=0)
    # 10 training seeds: accuracy livi / mslivi 0.993-1.0 (sd 0.003), dmlivi 0.888-0.980 (mean 0.945,
    # sd 0.034): 0.80 is 4.3 sd below DMLIVI's mean; chance is about 0.3
    assert measured["accuracy"] > 0.80, measured
    # mean best |r| over the 6 programs: livi 0.547-0.765 (mean 0.666, sd 0.079), mslivi 0.592-0.707
    # (0.665, 0.034), dmlivi 0.513-0.630 (0.583, 0.040); 8 random factors on these 30 donors reach 0.435 in
    # 1 % of draws, and the learned factors must beat that (2.9 / 6.8 / 3.7 sd below the means)
    assert measured["mean_best"] > measured["chance_99"], measured


@pytest.mark.acceptance
def test_quick_preset_livi_recovers_the_programs_of_the_default_cohort() -> None:
    """Issue 3's acceptance run (75-225 s on one CPU thread, by CPU): the README's default cohort, preset."""
    cohort = simulated(SimulationConfig())
    measured = recovery("livi", "quick", cohort, split_cells(cohort, frac=0.1, seed=0), seed=0)
    # 5 training seeds (reports/seed-spread/quick-default-livi.txt): accuracy 0.9955-0.9989; mean best
    # |r| 0.870-0.928 (mean 0.90, sd 0.022): 0.8 is 4.5 sd below; the worst program's best |r| is
    # seed-dependent (0.345-0.847, cause not yet investigated), so it is asserted only above chance
    assert measured["accuracy"] > 0.95, measured
    assert measured["mean_best"] > 0.8, measured
    assert measured["min_best"] > measured["chance_99"], measured
