"""Harness inputs besides the cohort: embeddings, checkpoints, the model cache, baselines, the run folder.

Each bad input is refused before training (exit code 2, ``error: ...``, no run folder, no cache entry);
a write that fails half-way leaves an earlier run's results in the same folder exactly as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reliability_cli import annotated, build, cli, good_mdata, refused, with_rna_counts, write_folder

from benchmarks import gate
from benchmarks.kinds.family import cache_key
from benchmarks.presets import preset_config
from benchmarks.runner import resolve_spec
from multilivi.data import Cohort, split_cells
from multilivi.eval.results import read_scores
from multilivi.models.registry import model_class


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("cohort") / "c")


@pytest.fixture(scope="module")
def cohort(folder) -> Cohort:
    return Cohort.read(folder)


def _embedding(cohort: Cohort) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(cohort.n_cells, 4)), index=cohort.cell_names)


# ------------------------------------------------------------------------------------ embeddings
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda f: f.iloc[5:],
            "5 cohort cells have no embedding row ('cell0000', 'cell0001', 'cell0002', 'cell0003', "
            "'cell0004') and 0 rows",
        ),
        (
            lambda f: pd.concat([f, f.iloc[:2].set_axis(["x1", "x2"])]),
            "2 rows are not cohort cells ('x1', 'x2'); embed exactly the cohort's cells",
        ),
        (
            lambda f: f.mask(np.broadcast_to((f.index == "cell0009")[:, None], f.shape)),
            "1 cells have NaN or infinite embedding values ('cell0009')",
        ),
    ],
    ids=["missing-cells", "extra-cells", "nan-row"],
)
def test_bad_embedding_refused_before_livi_trains(tmp_path, capsys, folder, cohort, edit, message):
    edit(_embedding(cohort)).to_csv(tmp_path / "e.csv")
    assert message in refused(tmp_path, capsys, folder, models=["livi", f"emb:{tmp_path}/e.csv"])


def test_npy_embedding_with_a_sidecar_of_another_length(tmp_path, capsys, folder, cohort):
    np.save(tmp_path / "e.npy", _embedding(cohort).to_numpy())
    (tmp_path / "e.cells.txt").write_text("\n".join(cohort.cell_names[:-1]))
    err = refused(tmp_path, capsys, folder, models=["livi", f"emb:{tmp_path}/e.npy"])
    assert (
        f"embedding of shape ({cohort.n_cells}, 4) does not have one row per cell id ({cohort.n_cells - 1})"
        in err
    )


def test_embedding_rows_in_another_order_score_the_same(tmp_path, folder, cohort):
    frame = _embedding(cohort)
    frame.to_csv(tmp_path / "a.csv")
    frame.sample(frac=1.0, random_state=3).to_csv(tmp_path / "b.csv")
    assert cli(tmp_path, folder, models=[f"emb:{tmp_path}/a.csv:name=a", f"emb:{tmp_path}/b.csv:name=b"]) == 0
    scores = read_scores(tmp_path / "run" / "scores.csv")
    a, b = (scores[scores["model"] == m].drop(columns="model").reset_index(drop=True) for m in "ab")
    assert (a["status"] == "ok").sum() > 5
    pd.testing.assert_frame_equal(a, b)


def test_embedding_with_numeric_looking_cell_ids(tmp_path):
    """Barcodes such as '0001' stay strings when an embedding table is read (pandas would parse 1)."""
    mods = annotated(good_mdata())
    for adata in mods.values():
        adata.obs_names = [f"{i:04d}" for i in range(adata.n_obs)]
    mdata = build(**mods)
    folder = write_folder(tmp_path / "c", mdata)
    cohort = Cohort.read(folder)
    _embedding(cohort).to_csv(tmp_path / "e.csv")
    factors = pd.DataFrame({"f": np.arange(cohort.n_donors, dtype=float)}, index=cohort.donor_names)
    factors.to_csv(tmp_path / "f.csv")
    assert (
        cli(tmp_path, folder, models=[f"emb:{tmp_path}/e.csv:donor_factors={tmp_path}/f.csv,name=tool"]) == 0
    )


# ----------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cohort) -> Path:
    """A LIVI checkpoint trained (ci preset, 30 epochs) on the module's cohort."""
    path = tmp_path_factory.mktemp("ckpt") / "livi.pt"
    train, _ = split_cells(cohort, seed=0)
    model_class("livi")(preset_config("livi", "ci")).fit(cohort, train).save(path)
    return path


def _other_cohort(cohort: Cohort, rename) -> Cohort:
    mdata = good_mdata()
    rename(mdata)
    return Cohort(mdata)


@pytest.mark.parametrize(
    ("rename", "message"),
    [
        (
            lambda m: setattr(m["rna"], "var_names", [f"ENSG{j:05d}" for j in range(30)]),
            "the cohort's rna features differ from the model's training rna features: 30 unknown "
            "(['ENSG00000'"
            ", 'ENSG00001', 'ENSG00002', 'ENSG00003', 'ENSG00004']), 30 missing (['g000'",
        ),
        (
            lambda m: setattr(m["rna"], "var_names", list(m["rna"].var_names[::-1])),
            "the cohort's rna features are the training rna features in a different order; reorder them to "
            "match",
        ),
        (
            lambda m: m.obs.__setitem__("donor", [d.replace("d", "donor_") for d in m.obs["donor"]]),
            "the cohort's donors differ from the model's training donors: 6 unknown (['donor_00', "
            "'donor_01', "
            "'donor_02', 'donor_03', 'donor_04']); use the cohort the model was trained on",
        ),
    ],
    ids=["other-features", "feature-order", "other-donors"],
)
def test_checkpoint_used_on_another_cohort(checkpoint, cohort, rename, message):
    model = model_class("livi").load(checkpoint)
    assert all(v.shape[0] == cohort.n_cells for v in model.views(cohort).values())  # its own cohort: fine
    other = _other_cohort(cohort, rename)
    for use in (model.views, model.reconstruction_nll):
        with pytest.raises(ValueError) as info:
            use(other)
        assert message in str(info.value)
    print(f"\nUSER SEES: {info.value}")


def test_checkpoint_of_another_family(checkpoint):
    with pytest.raises(ValueError, match=r"holds a 'livi' model; load it with that family's class"):
        model_class("mslivi").load(checkpoint)


def test_cache_key_follows_the_data(cohort):
    """Same names and shape, one count changed: another data hash, so another cache entry."""
    x = cohort.counts("rna").toarray()
    x[0, 0] += 1
    changed = Cohort(with_rna_counts(cohort.mdata, x), genotypes=cohort.genotypes)
    assert changed.data_hash != cohort.data_hash
    entry = resolve_spec("livi").prepare(cohort, preset="ci", seed=0)
    heldout = split_cells(cohort, seed=0)[1]
    assert cache_key(entry, cohort, heldout) != cache_key(entry, changed, heldout)
    assert cache_key(entry, cohort, heldout) == cache_key(
        entry, Cohort(cohort.mdata, genotypes=cohort.genotypes), heldout
    )


@pytest.mark.slow
def test_cache_never_serves_a_model_trained_on_other_data(tmp_path, folder, cohort):
    assert cli(tmp_path, folder, out=tmp_path / "a") == 0
    x = cohort.counts("rna").toarray()
    x[3, 2] += 1
    other = write_folder(tmp_path / "other", with_rna_counts(cohort.mdata, x))
    assert cli(tmp_path, other, out=tmp_path / "b") == 0
    assert cli(tmp_path, folder, out=tmp_path / "c") == 0
    cached = [
        json.loads((tmp_path / r / "results.json").read_text())["models"]["livi"]["cached"] for r in "abc"
    ]
    assert cached == [False, False, True]
    assert len(list((tmp_path / "cache").glob("livi-*"))) == 2


# ------------------------------------------------------------------------------------- baselines
def test_baseline_for_other_models_or_at_its_own_seeds(tmp_path, capsys, folder):
    baseline = {
        "schema_version": gate.SCHEMA_VERSION,
        "models": ["livi", "mslivi-50"],
        "seeds": [100, 101],
        "entries": [],
    }
    gate.write_baseline(baseline, tmp_path / "b.json")
    err = refused(tmp_path, capsys, folder, "--check", str(tmp_path / "b.json"), models=["livi", "dmlivi-50"])
    assert "the baseline covers models ['livi', 'mslivi-50'], not ['dmlivi-50']" in err
    assert "--update-baseline" in err
    err = refused(
        tmp_path, capsys, folder, "--check", str(tmp_path / "b.json"), "--seed", "101", models=["livi"]
    )
    assert "seed 101 is one of the baseline's seeds (100..101)" in err and "pass another --seed" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"something": 1}', "is not a multilivi baseline; regenerate it with --update-baseline"),
        (None, "does not exist; create it with --update-baseline"),
    ],
    ids=["not-a-baseline", "missing"],
)
def test_unusable_baseline_file(tmp_path, capsys, folder, content, message):
    if content is not None:
        (tmp_path / "b.json").write_text(content)
    assert message in refused(tmp_path, capsys, folder, "--check", str(tmp_path / "b.json"))


# ----------------------------------------------------------------------------------- writability
def test_run_folder_that_cannot_be_written(tmp_path, capsys, folder):
    (tmp_path / "a_file").write_text("x")
    capsys.readouterr()
    assert cli(tmp_path, folder, out=tmp_path / "a_file" / "run") == 2
    err = capsys.readouterr().err
    assert (
        f"cannot write the run folder {tmp_path}/a_file/run (Not a directory); pass a writable --out DIR"
        in err
    )
    assert cli(tmp_path, folder, out=tmp_path / "a_file") == 2
    assert "(File exists); pass a writable --out DIR" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
    print(f"\nUSER SEES: {err.strip()}")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--cache",
            "cannot write the model cache {p} (Not a directory); pass a writable --cache DIR (or --no-cache)",
        ),
        (
            "--update-baseline",
            "cannot write the baseline folder {p} (Not a directory); pass a writable --update-baseline",
        ),
    ],
    ids=["cache", "update-baseline"],
)
def test_cache_or_baseline_that_cannot_be_written(tmp_path, capsys, folder, option, message):
    (tmp_path / "a_file").write_text("x")
    target = tmp_path / "a_file" / "sub"
    capsys.readouterr()
    argv = [
        "--dataset",
        str(folder),
        "--preset",
        "ci",
        "--models",
        "livi",
        "--out",
        str(tmp_path / "run"),
        "-q",
        "--no-umap",
        option,
        str(target / "x.json" if option == "--update-baseline" else target),
    ]
    if option != "--cache":
        argv += ["--cache", str(tmp_path / "cache")]
    from benchmarks.compare import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(p=target) in err
    assert not (tmp_path / "cache").exists() and not list((tmp_path / "run").glob("*"))
    print(f"\nUSER SEES: {err.strip()}")
