"""Spec grammar, typed overrides, presets and the family registry."""

from __future__ import annotations

import pytest

from benchmarks.presets import PRESETS, preset_config
from benchmarks.specs import ModelSpec, build_config, parse_spec
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
