"""Probes against sklearn computed independently, and degenerate label sets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from multilivi.eval.metrics import lookup
from multilivi.eval.probes import probe


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    labels = np.repeat(["B", "T", "NK", "mono"], [60, 50, 30, 20])
    centres = rng.normal(scale=1.2, size=(4, 5))
    codes = np.unique(labels, return_inverse=True)[1]
    view = centres[codes] + rng.normal(size=(labels.size, 5)) * np.array([1, 2, 5, 0.5, 3])
    return view, labels


def test_probe_equals_sklearn_computed_independently(toy):
    view, labels = toy
    result = probe(view, labels, task="cell_type", n_seeds=3, test_size=0.25, seed=7)
    classes = np.unique(labels)
    for i in range(3):
        x_train, x_test, y_train, y_test = train_test_split(
            view, labels, test_size=0.25, stratify=labels, random_state=7 + i
        )
        scaler = StandardScaler().fit(x_train)
        predicted = (
            LogisticRegression(max_iter=1000)
            .fit(scaler.transform(x_train), y_train)
            .predict(scaler.transform(x_test))
        )
        assert result.accuracy[i] == accuracy_score(y_test, predicted)
        assert result.balanced_accuracy[i] == balanced_accuracy_score(y_test, predicted)
        matrix = confusion_matrix(y_test, predicted, labels=classes)
        recall = np.diag(matrix) / matrix.sum(axis=1)
        np.testing.assert_allclose([result.per_class[c][i] for c in classes], recall)
    accuracy, balanced = result.metrics()
    assert accuracy.name == "cell_type_accuracy" and balanced.name == "cell_type_balanced_accuracy"
    assert accuracy.value == pytest.approx(result.accuracy.mean())
    assert accuracy.details["sd"] == pytest.approx(result.accuracy.std(ddof=1))
    per_class = accuracy.details["per_class_accuracy"]
    assert balanced.value == pytest.approx(np.mean(list(per_class.values())), rel=1e-12)
    assert 0.5 < accuracy.value <= 1.0


def test_probe_is_deterministic_and_subsamples(toy):
    view, labels = toy
    first = probe(view, labels, task="t", max_cells=100, seed=1)
    second = probe(view, labels, task="t", max_cells=100, seed=1)
    np.testing.assert_array_equal(first.accuracy, second.accuracy)
    assert first.accuracy.size == 5


def test_degenerate_probes_give_a_reason(toy):
    view, labels = toy
    missing = probe(view, None, task="cell_subtype").metrics()
    assert all(m.status == "skipped" and "cell_subtype" in m.reason for m in missing)
    single = probe(view, np.full(len(labels), "T"), task="cell_type").metrics()
    assert single[0].status == "skipped" and "class" in single[0].reason
    assert np.isnan(single[0].value)
    lonely = labels.astype(object)
    lonely[0] = "platelet"
    result = probe(view, lonely, task="cell_type", n_seeds=2)
    assert result.dropped_classes == ("platelet",)
    assert result.metrics()[0].status == "ok"
    assert "platelet" not in result.per_class
    tiny = probe(view[:6], np.array(list("aabbcc")), task="cell_type").metrics()
    assert tiny[0].status == "skipped" and "split" in tiny[0].reason
    with pytest.raises(ValueError, match="one label per row"):
        probe(view, labels[:-1], task="cell_type")


def test_leakage_probe_is_lower_is_better(toy):
    view, labels = toy
    leakage = probe(view, labels, task="donor", n_seeds=2)
    names = [m.name.removeprefix("donor_") for m in leakage.metrics()]
    assert names and all(lookup("probe_donor", name).direction == "min" for name in names)
