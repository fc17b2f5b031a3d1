"""Training, embeddings and held-out NLL on CUDA (skipped without a GPU).

A GPU sums in another order than the CPU, so a model trained there is another model, as another seed
would give: it must match the CPU model within the training-seed spread (held-out RNA NLL per cell of
livi at the tiny config with batch 128 on the CI cohort: sd 2.58 over seeds 0-9,
reports/seed-spread/precision_summary.csv), at float32 and with bfloat16 encoders.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from seed_spread import HELDOUT_NLL_SD, tiny_config

from multilivi.data import Cohort
from multilivi.models import LIVI, MultiSLIVI
from multilivi.models.streaming import host_to_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


def test_batches_reach_the_gpu_through_pinned_memory() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = host_to_device(array, torch.device("cuda"))
    assert tensor.device.type == "cuda"
    np.testing.assert_array_equal(tensor.cpu().numpy(), array)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_model_trained_on_the_gpu_matches_the_cpu_within_the_seed_spread(
    precision: str, ci_cohort: Cohort, ci_split
) -> None:
    train, heldout = ci_split

    def nll(device: str, seed: int) -> float:
        config = tiny_config("livi", seed=seed, batch_size=128, device=device, precision=precision)
        model = LIVI().fit(ci_cohort, train, config)
        assert model.device_.type == device
        return float(model.reconstruction_nll(ci_cohort, heldout)["rna"].mean())

    cpu = [nll("cpu", seed) for seed in (0, 1)]
    gpu = [nll("cuda", seed) for seed in (0, 1)]
    assert abs(np.mean(gpu) - np.mean(cpu)) < 2 * HELDOUT_NLL_SD, (cpu, gpu)


def test_gpu_embeddings_and_nll_are_those_of_the_same_weights_on_the_cpu(ci_cohort: Cohort, ci_split) -> None:
    train, heldout = ci_split
    config = tiny_config("mslivi", device="cuda")
    model = MultiSLIVI().fit(ci_cohort, train, config)
    views, nll = model.views(ci_cohort, heldout), model.reconstruction_nll(ci_cohort, heldout)
    model.module_.to("cpu")
    model.device_ = torch.device("cpu")
    for name, value in model.views(ci_cohort, heldout).items():
        np.testing.assert_allclose(views[name], value, rtol=1e-4, atol=1e-4)
    for m, value in model.reconstruction_nll(ci_cohort, heldout).items():
        np.testing.assert_allclose(nll[m], value, rtol=1e-5)
