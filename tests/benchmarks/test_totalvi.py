"""The scvi-tools baselines (``totalvi``, ``scvi``): grammar, skip reasons, training, cache, and the CLI.

Training tests need scvi-tools (``pip install -e ".[scvi]"``) and are skipped without it; the grammar,
the skip reasons and the reporting of a model's own likelihood are tested without it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from cohort_factories import make_mdata

from benchmarks.compare import main
from benchmarks.kinds import resolve
from benchmarks.kinds.store import read_outputs, write_outputs
from benchmarks.kinds.totalvi import (
    DEFAULT_EPOCHS,
    INSTALL_COMMAND,
    ScviSettings,
    ScviSpec,
    import_scvi,
    parse_scvi_spec,
)
from benchmarks.presets import PRESETS
from multilivi.data import Cohort, split_cells
from multilivi.eval.outputs import EvalContext, ModelOutputs
from multilivi.eval.results import read_scores
from multilivi.eval.tasks import task_own_likelihood, task_phenotypes, task_reconstruction

EPOCHS = 3


@pytest.fixture(scope="module")
def cohort():
    return Cohort(make_mdata(n_cells=240, n_donors=12))


@pytest.fixture(scope="module")
def split(cohort):
    return split_cells(cohort, frac=0.1, seed=0)


def _train(spec: str, cohort, split, *, seed: int = 0, cache_dir=None) -> ModelOutputs:
    entry = resolve(spec).prepare(cohort, preset="ci", seed=seed)
    assert entry.skip_reason == ""
    train_idx, heldout_idx = split
    return entry.outputs(cohort, train_idx, heldout_idx, seed=seed, cache_dir=cache_dir, progress=False)


@pytest.fixture(scope="module")
def trained(cohort, split):
    """TOTALVI at seed 0 (twice) and seed 1, a few epochs on the tiny cohort."""
    pytest.importorskip("scvi")
    spec = f"totalvi:max_epochs={EPOCHS},n_latent=4"
    return {key: _train(spec, cohort, split, seed=seed) for key, seed in (("a", 0), ("b", 0), ("c", 1))}


# --------------------------------------------------------------------------------------- grammar
def test_specs_resolve_to_the_scvi_kind_with_preset_epochs_and_overrides():
    spec = resolve("totalvi")
    assert isinstance(spec, ScviSpec) and spec.model == "totalvi" and spec.name == "totalvi"
    assert set(DEFAULT_EPOCHS) == set(PRESETS)
    assert spec.settings("ci") == ScviSettings(max_epochs=DEFAULT_EPOCHS["ci"], n_latent=20, batch_size=256)
    assert spec.settings("paper").max_epochs is None  # scvi-tools' own default
    assert DEFAULT_EPOCHS["ci"] < DEFAULT_EPOCHS["quick"]
    custom = resolve("totalvi:max_epochs=5,n_latent=4,batch_size=64,name=tv")
    assert custom.name == "tv" and custom.settings("quick") == ScviSettings(5, 4, 64)
    assert resolve("totalvi:max_epochs=5").name == "totalvi_max_epochs-5"
    scvi_spec = resolve("scvi:n_latent=6")
    assert scvi_spec.model == "scvi"
    assert scvi_spec.settings("ci") == ScviSettings(DEFAULT_EPOCHS["ci"], 6, 128)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("totalvi:lr=1e-3", "takes max_epochs=, n_latent=, batch_size=, name="),
        ("totalvi:max_epochs", "takes max_epochs="),
        ("totalvi:max_epochs=0", "max_epochs must be an integer >= 1"),
        ("totalvi:n_latent=four", "n_latent must be an integer >= 1"),
        ("scvi:batch_size=1", "batch_size must be an integer >= 2"),
        ("totalvi:n_latent=4,n_latent=5", "sets 'n_latent' twice"),
    ],
)
def test_bad_overrides_are_refused_naming_the_allowed_keys(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_scvi_spec(raw)


# ---------------------------------------------------------------------------------- skip reasons
def test_totalvi_is_skipped_without_protein():
    rna_only = Cohort(make_mdata(n_cells=120, n_donors=6, n_proteins=None))
    entry = resolve("totalvi").prepare(rna_only, preset="ci", seed=0)
    assert "totalvi needs a protein modality" in entry.skip_reason


def test_without_scvi_tools_the_row_names_the_install_command(monkeypatch, cohort):
    monkeypatch.setitem(sys.modules, "scvi", None)  # `import scvi` raises ImportError, find_spec finds none
    for spec in ("totalvi", "scvi"):
        entry = resolve(spec).prepare(cohort, preset="ci", seed=0)
        assert INSTALL_COMMAND in entry.skip_reason and entry.skip_reason.startswith(spec)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[scvi\]"'):
        import_scvi()


# ------------------------------------------------------------------------------- own likelihood
def test_a_models_own_likelihood_is_reported_apart_and_stored(cohort, split, tmp_path):
    _, heldout_idx = split
    own = {"rna": np.full(heldout_idx.size, 90.0), "prot": np.full(heldout_idx.size, 40.0)}
    outputs = ModelOutputs(views={"c": np.zeros((cohort.n_cells, 2))}, own_nll=own)
    ctx = EvalContext.from_cohort(cohort, heldout_idx)
    scores = {s.result.name: s.result.value for s in task_own_likelihood(outputs, ctx).scores}
    assert scores == {"nll_per_cell_rna": 90.0, "nll_per_cell_prot": 40.0}
    (not_run,) = task_reconstruction(outputs, ctx).scores
    assert "own likelihood" in not_run.reason
    assert task_own_likelihood(ModelOutputs(views={}), ctx).scores == []  # no rows for the others
    write_outputs(tmp_path, outputs)
    assert {k: v.tolist() for k, v in read_outputs(tmp_path).own_nll.items()} == {
        k: v.tolist() for k, v in own.items()
    }


# -------------------------------------------------------------------------------------- training
def test_outputs_cover_every_cell_and_donor_means_every_donor(trained, cohort, split):
    outputs = trained["a"]
    assert list(outputs.views) == ["c"] and outputs.views["c"].shape == (cohort.n_cells, 4)
    assert np.isfinite(outputs.views["c"]).all() and outputs.donor_factors == {}
    _, heldout_idx = split
    assert set(outputs.own_nll) == {"rna", "prot"}
    assert all(v.shape == (heldout_idx.size,) and (v > 0).all() for v in outputs.own_nll.values())
    assert len(outputs.history) == EPOCHS and outputs.fit_seconds > 0
    assert outputs.config["seed"] == 0 and outputs.config["max_epochs"] == EPOCHS
    phenotypes = task_phenotypes(outputs, EvalContext.from_cohort(cohort, heldout_idx)).artefact
    (means,) = phenotypes.values()
    assert list(means.index) == sorted(cohort.donor_names)
    assert means.shape[1] == 3 * 4  # 3 cell types x 4 latent dimensions


def test_same_seed_same_latent_other_seed_another(trained):
    a, b, c = trained["a"], trained["b"], trained["c"]
    np.testing.assert_array_equal(a.views["c"], b.views["c"])
    for modality in a.own_nll:
        np.testing.assert_array_equal(a.own_nll[modality], b.own_nll[modality])
    assert np.abs(a.views["c"] - c.views["c"]).max() > 1e-3


def test_trained_outputs_are_cached_by_seed(cohort, split, tmp_path):
    pytest.importorskip("scvi")
    spec = f"totalvi:max_epochs={EPOCHS},n_latent=4"
    first = _train(spec, cohort, split, cache_dir=tmp_path)
    again = _train(spec, cohort, split, cache_dir=tmp_path)
    assert not first.cached and again.cached
    np.testing.assert_array_equal(first.views["c"], again.views["c"])
    np.testing.assert_array_equal(first.own_nll["prot"], again.own_nll["prot"])
    assert again.config == first.config
    assert not _train(spec, cohort, split, seed=1, cache_dir=tmp_path).cached


def test_scvi_trains_on_rna_only(split):
    pytest.importorskip("scvi")
    rna_only = Cohort(make_mdata(n_cells=240, n_donors=12, n_proteins=None))
    outputs = _train(f"scvi:max_epochs={EPOCHS}", rna_only, split)
    assert outputs.views["c"].shape == (rna_only.n_cells, 10) and set(outputs.own_nll) == {"rna"}


@pytest.mark.slow
def test_compare_scores_totalvi_beside_livi(tmp_path):
    pytest.importorskip("scvi")
    argv = ["--preset", "ci", "--dataset", "sim-ci", "--models", "livi", "totalvi", "--no-controls"]
    argv += ["--no-umap", "--no-cache", "--probe-seeds", "2", "-q", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    scores = read_scores(tmp_path / "run" / "scores.csv")
    totalvi = scores.loc[(scores["model"] == "totalvi") & (scores["status"] == "ok")]
    tasks = {"probe_cell_type", "probe_donor", "own_likelihood", "association", "truth"}
    assert tasks <= set(totalvi["task"])
    assert set(totalvi.loc[totalvi["task"] == "probe_cell_type", "view"]) == {"c"}
    assert set(totalvi.loc[totalvi["task"] == "association", "view"]) == {"donor_means"}
    assert "Third-party models' own likelihood" in (tmp_path / "run" / "report.md").read_text()
