"""Session-wide test settings and the small-cohort fixtures (the simulator has its own tests)."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from cohort_factories import make_genotypes, make_mdata

from benchmarks.compare import default_torch_threads

matplotlib.use("Agg")
# The test models are tiny: one thread is faster on 2 cores and immune to OpenMP stalls under load.
# MULTILIVI_TORCH_THREADS=2 runs the suite with another summation order, as another machine would.
torch.set_num_threads(default_torch_threads())


@pytest.fixture
def mdata():
    return make_mdata()


@pytest.fixture
def genotypes():
    return make_genotypes([f"d{d:02d}" for d in range(12)], missing_rate=0.02)
