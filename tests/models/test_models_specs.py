"""Spec grammar, typed overrides, presets, the family registry and the registry of spec kinds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmarks import kinds, presets
from benchmarks.kinds.embedding import EmbeddingSpec
from benchmarks.kinds.family import ModelSpec, build_config
from benchmarks.kinds.pca import PCASpec
from benchmarks.presets import PRESETS, preset_config
from benchmarks.runner import compute_outputs, model_info, prepare
from benchmarks.runner import resolve_spec as parse_spec
from multilivi.data import Cohort
from multilivi.eval.outputs import ModelOutputs
from multilivi.models import FAMILIES, DMLIVIConfig, MultiSLIVIConfig, get_family
from multilivi.models.registry import model_class


def test_family_spec_with_weight_and_typed_overrides() -> None:
    spec = parse_spec("mslivi-50:n_dxc=20,lr=1e-3,encoder_hidden=256/128,batch_norm=true")
    assert spec == ModelSpec(
        raw="mslivi-50:n_dxc=20,lr=1e-3,encoder_hidden=256/128,batch_norm=true",
        family="mslivi",
        weight=50.0,
        overrides=(("n_dxc", 20), ("lr", 1e-3), ("encoder_hidden", (256, 128)), ("batch_norm", True)),
    )
    config = build_config(spec, "ci", seed=7)
    assert isinstance(config, MultiSLIVIConfig)
    assert (
        config.prot_weight,
        config.n_dxc,
        config.lr,
        config.encoder_hidden,
        config.batch_norm,
        config.seed,
    ) == (50.0, 20, 1e-3, (256, 128), True, 7)
    assert config.epochs == preset_config("mslivi", "ci").epochs
    assert spec.name == "mslivi-50_n_dxc-20_lr-1e-3_encoder_hidden-256_128_batch_norm-true"


def test_plain_specs_and_literal_overrides() -> None:
    assert parse_spec("livi") == ModelSpec("livi", "livi", None, ())
    config = build_config(parse_spec("dmlivi-100:interaction_input=all,protein_likelihood=nbmix"), "quick")
    assert isinstance(config, DMLIVIConfig)
    assert (config.interaction_input, config.protein_likelihood, config.prot_weight) == (
        "all",
        "nbmix",
        100.0,
    )
    assert build_config(parse_spec("livi:seed=3"), "ci", seed=9).seed == 3  # the spec's own seed wins


def test_name_option_sets_the_display_name_not_the_config() -> None:
    spec = parse_spec("livi:n_latent=2,name=livi")
    assert (spec.name, spec.overrides) == ("livi", (("n_latent", 2),))
    assert build_config(spec, "ci").n_latent == 2
    assert parse_spec("mslivi-50:name=my model").name == "my_model"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("livi-50", "models RNA only"),
        ("mslivi50", "did you mean 'mslivi-50'"),
        ("dmlvi", "did you mean 'dmlivi'"),
        ("mslivi:n_dx=3", r"did you mean 'n_dxc'\? valid keys: .*prot_weight"),
        ("dmlivi:interaction_input=al", r"one of \['shared', 'all'\].*did you mean 'all'"),
        ("livi:epochs=1.5", "epochs must be int"),
        ("livi:encoder_hidden=a/b", "separated by '/'"),
        ("livi:batch_norm=maybe", "true or false"),
        ("livi:lr", "not key=value"),
        ("mslivi-5:prot_weight=3", "twice"),
        ("mslivi--1", "λ_prot must be >= 0"),
        ("livi:name=", "name= needs a value"),
    ],
)
def test_spec_errors_name_the_fix(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(raw)


def test_out_of_range_override_is_reported_with_the_spec() -> None:
    with pytest.raises(ValueError, match=r"livi:warmup_epochs=500.*warmup_epochs"):
        build_config(parse_spec("livi:warmup_epochs=500"), "ci")


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds(family: str, preset: str) -> None:
    config = preset_config(family, preset)
    assert isinstance(config, get_family(family)[1])


def test_paper_preset_is_thesis_appendix_a1() -> None:
    config = preset_config("dmlivi", "paper")
    assert (config.n_latent, config.n_rna_specific, config.n_prot_specific, config.n_dxc, config.n_v) == (
        15,
        5,
        2,
        100,
        5,
    )
    assert config.encoder_hidden == (5000, 2000, 500, 100)
    assert (config.prot_shared_hidden, config.rna_specific_hidden, config.prot_specific_hidden) == (
        (200, 100),
        (2000, 500, 100),
        (100, 50),
    )
    assert (config.lr, config.warmup_epochs, config.l1_weight, config.a_weight) == (8e-4, 90, 1e-3, 1e-3)


def test_registry_lookup_and_errors() -> None:
    assert model_class("mslivi").family == "mslivi"
    with pytest.raises(ValueError, match="did you mean 'livi'"):
        get_family("livii")
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("livi", "huge")


def test_a_preset_value_the_family_lacks_is_an_error_naming_key_and_family(monkeypatch) -> None:
    monkeypatch.setitem(presets._SHARED, "ci", {**presets._SHARED["ci"], "prot_weight": 50.0})
    assert preset_config("mslivi", "ci").prot_weight == 50.0
    with pytest.raises(
        ValueError, match=r"preset 'ci' sets 'prot_weight', which family 'livi' \(LIVIConfig\)"
    ):
        preset_config("livi", "ci")


# ----------------------------------------------------------------------------------- spec kinds
def test_each_spec_is_parsed_by_its_kind() -> None:
    assert {"family", "emb", "pca"} <= set(kinds.KINDS)
    assert isinstance(parse_spec("dmlivi-50:n_dxc=4"), ModelSpec)
    assert isinstance(parse_spec("emb:out/scvi.h5ad#X_scVI"), EmbeddingSpec)
    assert parse_spec("pca") == PCASpec() and parse_spec("pca:n_components=5").n_components == 5
    with pytest.raises(ValueError, match="unknown model family 'emb2'"):
        parse_spec("emb2:x.npy")  # no kind claims it: read as a family spec


@dataclass(frozen=True)
class ToySpec:
    raw: str
    dims: int

    @property
    def name(self) -> str:
        return kinds.safe_name(f"toy {self.dims}")

    def prepare(self, cohort: Cohort, *, preset: str, seed: int) -> ToyEntry:
        return ToyEntry(self, "" if self.dims > 0 else "no dimensions")


@dataclass
class ToyEntry(kinds.Entry):
    spec: ToySpec

    def describe(self) -> dict:
        return {"family": "toy", "dims": self.spec.dims}

    def outputs(self, cohort, train_idx, heldout_idx, *, seed, cache_dir, progress=True) -> ModelOutputs:
        views = {"toy": np.random.default_rng(seed).normal(size=(cohort.n_cells, self.spec.dims))}
        return ModelOutputs(views, config={"dims": self.spec.dims})


class ToyKind(kinds.SpecKind):
    name = "toy"

    def matches(self, raw: str) -> bool:
        return raw.startswith("toy:")

    def parse(self, raw: str) -> ToySpec:
        return ToySpec(raw, int(raw.removeprefix("toy:")))


def test_a_kind_registered_here_is_dispatched_by_the_runner(monkeypatch, ci_cohort, ci_split) -> None:
    monkeypatch.setitem(kinds.KINDS, "toy", ToyKind())
    specs = [parse_spec("toy:3"), parse_spec("toy:0"), parse_spec("livi")]
    assert [type(s) for s in specs] == [ToySpec, ToySpec, ModelSpec]
    toy, empty, livi = prepare(specs, ci_cohort, preset="ci", seed=0)
    assert (toy.name, empty.skip_reason, livi.describe()["family"]) == ("toy_3", "no dimensions", "livi")
    outputs = compute_outputs(toy, ci_cohort, *ci_split, seed=0, cache_dir=None)
    assert outputs.views["toy"].shape == (ci_cohort.n_cells, 3)
    assert model_info(toy, outputs) == {
        "family": "toy",
        "dims": 3,
        "cached": False,
        "fit_seconds": None,
        "status": "ok",
        "reason": "",
    }
    assert model_info(empty, None)["status"] == "skipped"
    with pytest.raises(ValueError, match="already registered"):
        kinds.register(ToyKind())


def test_model_outputs_carry_their_provenance(tmp_path: Path, ci_cohort, ci_split) -> None:
    entry = parse_spec("livi:epochs=4,warmup_epochs=2,name=tiny").prepare(ci_cohort, preset="ci", seed=0)
    first = compute_outputs(entry, ci_cohort, *ci_split, seed=0, cache_dir=tmp_path, progress=False)
    again = compute_outputs(entry, ci_cohort, *ci_split, seed=0, cache_dir=tmp_path, progress=False)
    assert (first.cached, again.cached) == (False, True)
    assert first.config == again.config == entry.describe()["config"] and first.config["epochs"] == 4
    assert again.fit_seconds == first.fit_seconds and again.history.equals(first.history)
    (entry_folder,) = tmp_path.iterdir()
    assert entry_folder.name.startswith("tiny-") and not (entry_folder / "info.json").exists()
    assert model_info(entry, again)["cached"] is True
