"""Learning-rate search by held-out ELBO (benchmarks.tuning) and the ELBO it selects by."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from benchmarks.tuning import choose, main
from multilivi.data import split_cells
from multilivi.data.simulate import SimulationConfig, simulate
from multilivi.models import LIVI, LIVIConfig
from multilivi.models.base import EVAL_BATCH, sample

TINY = "livi:epochs=4,warmup_epochs=2"


def test_choose_takes_the_lowest_mean_and_the_smaller_rate_on_a_tie():
    fits = pd.DataFrame(
        {
            "spec": ["a"] * 6 + ["b"] * 4,
            "lr": [1e-3, 1e-3, 3e-3, 3e-3, 1e-2, 1e-2, 1e-3, 1e-3, 1e-2, 1e-2],
            "negative_elbo": [10.0, 10.2, 9.0, 9.1, 9.02, 9.06, 5.0, 5.0, math.inf, 4.0],
        }
    )
    summary, chosen = choose(fits)
    assert chosen == {"a": 3e-3, "b": 1e-3}  # a: 1e-2 is within the tie margin; b: 1e-2 diverged once
    assert summary.loc[summary["chosen"], "lr"].tolist() == [3e-3, 1e-3]


def test_negative_elbo_is_nll_plus_kl_of_the_seeded_draw():
    """Against torch.distributions' Gaussian KL and the decoder's likelihood of the same draws."""
    ci_cohort = simulate(SimulationConfig.ci(), seed=0)
    train, heldout = split_cells(ci_cohort, frac=0.1, seed=0)
    model = LIVI(LIVIConfig(epochs=3, warmup_epochs=1, n_latent=4, n_dxc=3, n_v=1, progress=False))
    model.fit(ci_cohort, train)
    data = model._cells(ci_cohort, heldout)
    generator = torch.Generator().manual_seed(7)
    total = 0.0
    with torch.no_grad():
        for _, batch in data.in_order(EVAL_BATCH, torch.device("cpu")):
            mu, logvar = model.module_._encode(batch)
            z = sample(mu, logvar, generator)
            nll = -model.module_._log_probs(batch, z)["rna"]
            kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
            total += float((nll + kl).sum())
    expected = total / len(heldout)
    assert model.negative_elbo(ci_cohort, heldout, seed=7) == pytest.approx(expected, rel=1e-5)
    assert model.negative_elbo(ci_cohort, heldout, seed=7) == model.negative_elbo(ci_cohort, heldout, seed=7)


def test_search_writes_its_choice_and_resumes(tmp_path, caplog):
    argv = ["--preset", "ci", "--dataset", "sim-ci", "--models", TINY, "--lrs", "1e-3", "1e-2"]
    argv += ["--seeds", "0", "--jobs", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    choice = json.loads((tmp_path / "choice.json").read_text())
    fits = pd.read_csv(tmp_path / "tuning.csv")
    assert len(fits) == 2 and np.isfinite(fits["negative_elbo"]).all()
    assert choice["chosen_lr"] == choose(fits)[1]
    assert "| livi:epochs=4,warmup_epochs=2 | 0.001 |" in (tmp_path / "README.md").read_text()
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(argv) == 0  # resumes: nothing trains again
    assert "0 fits to run, 2 already" in caplog.text
    assert json.loads((tmp_path / "choice.json").read_text())["chosen_lr"] == choice["chosen_lr"]
