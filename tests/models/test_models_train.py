"""The stage schedule, minibatching, config validation and the finite-loss check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from seed_spread import HELDOUT_NLL_SD, tiny_config

from multilivi.data import Cohort
from multilivi.models import LIVI
from multilivi.models.base import LossOutput
from multilivi.models.livi import LIVIConfig, SharedLatentModule
from multilivi.models.train import (
    CellBatches,
    Stage,
    TrainConfig,
    fit_module,
    minibatches,
    resolve_device,
    stage_at,
)


def test_stage_at_is_a_pure_function_of_the_epoch() -> None:
    config = TrainConfig(epochs=10, warmup_epochs=4)
    assert [stage_at(e, config) for e in range(10)] == [Stage.CELL_STATE] * 4 + [Stage.DONOR] * 6
    with pytest.raises(ValueError, match="epoch"):
        stage_at(-1, config)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epochs": 1, "warmup_epochs": 1}, "epochs"),
        ({"epochs": 5, "warmup_epochs": 5}, "warmup_epochs"),
        ({"epochs": 5, "warmup_epochs": 0}, "warmup_epochs"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 1}, "batch_size"),
        ({"device": "tpu"}, "device"),
        ({"precision": "float16"}, "precision"),
    ],
)
def test_train_config_range_checks_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_latent": 0}, "n_latent"),
        ({"n_v": -1}, "n_v"),
        ({"encoder_hidden": ()}, "encoder_hidden"),
        ({"encoder_input": "log"}, "encoder_input"),
        ({"l1_weight": -1.0}, "l1_weight"),
    ],
)
def test_model_config_range_checks_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LIVIConfig(**kwargs)


def test_config_is_frozen_and_widths_become_a_tuple() -> None:
    config = LIVIConfig(encoder_hidden=[64, 32])  # type: ignore[arg-type]
    assert config.encoder_hidden == (64, 32)
    with pytest.raises(AttributeError):
        config.lr = 1.0  # type: ignore[misc]


def test_minibatches_cover_every_cell_once_in_near_equal_batches() -> None:
    batches = minibatches(1030, 256, np.random.default_rng(0))
    assert len(batches) == 5 and {len(b) for b in batches} <= {206}
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1030))
    again = minibatches(1030, 256, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


@pytest.mark.parametrize("dense_cache_bytes", [0, 2**40], ids=["csr", "densified once"])
def test_cell_batches_are_dense_counts_with_library_sizes(
    ci_cohort: Cohort, dense_cache_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("multilivi.models.train.DENSE_CACHE_BYTES", dense_cache_bytes)
    x = ci_cohort.counts("rna")
    data = CellBatches({"rna": x}, ci_cohort.donor_index)
    assert (data.dense is None) == (dense_cache_bytes == 0)
    rows = np.array([5, 0, 17])
    batch = data.batch(rows, torch.device("cpu"))
    np.testing.assert_array_equal(batch["x"]["rna"].numpy(), x[rows].toarray())
    assert batch["x"]["rna"].dtype == torch.float32
    np.testing.assert_allclose(batch["library"]["rna"].numpy().ravel(), x[rows].sum(1).A1)
    assert batch["donor"].dtype == torch.int64


@pytest.mark.parametrize("dense_cache_bytes", [0, 2**40], ids=["csr", "densified once"])
def test_cell_batches_serve_a_subset_in_place(
    ci_cohort: Cohort, dense_cache_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("multilivi.models.train.DENSE_CACHE_BYTES", dense_cache_bytes)
    x = ci_cohort.counts("rna")
    subset = np.random.default_rng(0).permutation(ci_cohort.n_cells)[:300]
    data = CellBatches({"rna": x}, ci_cohort.donor_index[subset], subset)
    copied = CellBatches({"rna": x[subset]}, ci_cohort.donor_index[subset])
    assert data.n_cells == 300 and np.shares_memory(data.counts["rna"].data, x.data)  # no copy of the counts
    cpu = torch.device("cpu")
    for (_, ours), (_, theirs) in zip(data.in_order(64, cpu), copied.in_order(64, cpu)):
        np.testing.assert_array_equal(ours["x"]["rna"].numpy(), theirs["x"]["rna"].numpy())
        np.testing.assert_array_equal(ours["library"]["rna"].numpy(), theirs["library"]["rna"].numpy())
        np.testing.assert_array_equal(ours["donor"].numpy(), theirs["donor"].numpy())
    with pytest.raises(ValueError, match="one row per cell"):
        CellBatches({"rna": x}, ci_cohort.donor_index[:10], subset)


def test_set_stage_switches_trainable_groups_and_donor_terms(ci_cohort: Cohort) -> None:
    config = LIVIConfig(encoder_hidden=(8,), n_latent=3, n_dxc=2, n_v=1)
    module = SharedLatentModule(config, {"rna": 150}, ci_cohort.n_donors, {"rna": 1.0}, {"rna": "nb"})
    assert module.stage is Stage.CELL_STATE and not module.donor_on
    assert all(p.requires_grad for p in module.cell_state_parameters())
    assert not any(p.requires_grad for p in module.donor_parameters())
    module.set_stage(Stage.DONOR)
    assert module.donor_on
    assert not any(p.requires_grad for p in module.cell_state_parameters())
    assert all(p.requires_grad for p in module.donor_parameters())
    grouped = {id(p) for p in module.cell_state_parameters() + module.donor_parameters()}
    assert grouped == {id(p) for p in module.parameters()}  # every parameter is in exactly one group


def test_non_finite_loss_names_the_term_and_epoch(ci_cohort: Cohort) -> None:
    config = LIVIConfig(
        epochs=3, warmup_epochs=1, encoder_hidden=(8,), n_latent=3, n_dxc=2, n_v=1, progress=False
    )
    module = SharedLatentModule(config, {"rna": 150}, ci_cohort.n_donors, {"rna": 1.0}, {"rna": "nb"})
    with torch.no_grad():
        module.decoders["rna"].log_theta.fill_(float("nan"))
    data = CellBatches({"rna": ci_cohort.counts("rna")}, ci_cohort.donor_index)
    with pytest.raises(FloatingPointError, match=r"'nll_rna'.*epoch 0"):
        fit_module(module, data, config, torch.device("cpu"))


@pytest.mark.parametrize("sum_order", ["penalties_last", "flat"])
def test_loss_output_total_counts_every_term_whatever_its_name(sum_order: str) -> None:
    t = torch.tensor
    out = LossOutput(
        reconstruction={"nll_rna": t(2.0), "nll_prot": t(3.0)},
        weights={"nll_rna": 1.0, "nll_prot": 10.0},
        regularisers={"kl": t(0.5)},
        penalties={"l1_rna": t(0.25), "a_new_penalty": t(4.0)},
        sum_order=sum_order,
    )
    assert out.total.item() == 2.0 + 30.0 + 0.5 + 0.25 + 4.0
    assert list(out.terms) == ["nll_rna", "nll_prot", "kl", "l1_rna", "a_new_penalty", "loss"]
    assert out.terms["nll_prot"].item() == 3.0, "the history reports NLLs unweighted"
    with pytest.raises(ValueError, match="unique"):
        LossOutput({"nll_rna": t(1.0)}, {"nll_rna": 1.0}, {"kl": t(0.0)}, {"kl": t(0.0)})
    with pytest.raises(ValueError, match="weights"):
        LossOutput({"nll_rna": t(1.0)}, {}, {}, {})


def test_a_penalty_added_to_the_shared_ones_enters_loss_and_history(ci_cohort: Cohort) -> None:
    class WithExtraPenalty(SharedLatentModule):
        def donor_penalties(self) -> dict[str, torch.Tensor]:
            return super().donor_penalties() | {"extra": torch.tensor(7.0)}

    config = LIVIConfig(
        epochs=2, warmup_epochs=1, encoder_hidden=(8,), n_latent=3, n_dxc=2, n_v=1, progress=False
    )
    module = WithExtraPenalty(config, {"rna": 150}, ci_cohort.n_donors, {"rna": 1.0}, {"rna": "nb"})
    data = CellBatches({"rna": ci_cohort.counts("rna")}, ci_cohort.donor_index)
    out = module.loss(data.batch(np.arange(64), torch.device("cpu")), torch.Generator().manual_seed(0))
    parts = sum(v.item() for k, v in out.terms.items() if k != "loss")
    assert out.total.item() == pytest.approx(parts) and out.penalties["extra"].item() == 7.0
    history = fit_module(module, data, config, torch.device("cpu"))
    assert all(record["extra"] == pytest.approx(7.0) for record in history)


def test_bfloat16_encoders_train_a_model_within_the_seed_spread_of_float32(
    ci_cohort: Cohort, ci_split
) -> None:
    train, heldout = ci_split

    def nll(precision: str, seed: int) -> float:
        config = tiny_config("livi", seed=seed, batch_size=128, precision=precision)
        model = LIVI().fit(ci_cohort, train, config)
        assert not any(e.low_precision for e in model.module_.modules() if hasattr(e, "low_precision"))
        return float(model.reconstruction_nll(ci_cohort, heldout)["rna"].mean())

    full = [nll("float32", seed) for seed in (0, 1)]
    low = [nll("bfloat16", seed) for seed in (0, 1)]
    assert abs(np.mean(low) - np.mean(full)) < 2 * HELDOUT_NLL_SD, (full, low)
