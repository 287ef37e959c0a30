"""Classification figures and the published numbers they must reproduce."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from m3lung.errors import InputError
from m3lung.evaluate import classification_figures, error_rates, sensitivity_specificity

M3LUNG = np.array([[99, 2, 1, 0], [1, 95, 0, 0], [0, 0, 41, 0], [7, 3, 0, 43]])  # SYSTEMS.md §1.6
XU_PATIENTS = np.array([[26, 3, 1], [4, 25, 1], [2, 1, 27]])  # seed 004, patients (rows = truth)
XU_REGIONS = np.array([[97, 15, 7], [18, 98, 14], [5, 2, 314]])  # seed 004, regions
XU = ("COVID-19", "IAVP", "NIF")
PAPER = ("Healthy", "COVID-19", "H1N1", "CAP")


def _labels(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(len(c)), c.sum(1))
    p = np.concatenate([np.repeat(np.arange(len(c)), row) for row in c])
    return y, p


def _close3(value: float, published: float) -> bool:
    return abs(value - published) <= 0.0005 + 1e-9  # the paper rounds to 3 decimals (half up)


@pytest.mark.parametrize(
    ("matrix", "recall", "precision", "f1", "acc"),
    [
        (XU_PATIENTS, (0.867, 0.833, 0.900), (0.813, 0.862, 0.931), (0.839, 0.847, 0.915), 0.867),
        (XU_REGIONS, (0.815, 0.754, 0.978), (0.808, 0.852, 0.937), (0.811, 0.800, 0.957), None),
    ],
)
def test_seed_004_tables(matrix, recall, precision, f1, acc):
    y, p = _labels(matrix)
    f = classification_figures(y, p, classes=XU, healthy=None)
    for i, c in enumerate(XU):
        assert _close3(f[f"sen[{c}]"], recall[i]) and _close3(f[f"prec[{c}]"], precision[i])
        # the paper's F1 is the harmonic mean of its *rounded* precision and recall: region COVID-19
        # F1 is 2·.808·.815/(.808+.815) = .8115 → .811, while the exact 194/239 = .8117 → .812
        assert abs(f[f"f1[{c}]"] - f1[i]) <= 0.001
        assert _close3(2 * precision[i] * recall[i] / (precision[i] + recall[i]), f1[i])
    if acc is not None:
        assert _close3(f["acc"], acc)
    assert "fpe" not in f


def test_seed_001_error_rates():
    y, p = _labels(M3LUNG)
    f = classification_figures(y, p, classes=PAPER)
    assert [round(100 * f[k], 2) for k in ("acc", "fpe", "fne", "fdpe")] == [95.21, 2.94, 4.21, 1.58]
    assert f["fpe"] == pytest.approx(1 - f["sen[Healthy]"]) and f["fne"] == pytest.approx(1 - f["spec[Healthy]"])


def test_agrees_with_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 400)
    s = rng.random((400, 4))
    s[np.arange(400), y] += rng.random(400)
    s[:50] = np.round(s[:50], 1)  # ties
    p = s.argmax(1)
    f = classification_figures(y, p, s, classes=PAPER)
    for i, c in enumerate(PAPER):
        assert f[f"auc[{c}]"] == pytest.approx(roc_auc_score(y == i, s[:, i]), abs=1e-12)
    assert f["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert f["macro_prec"] == pytest.approx(precision_score(y, p, average="macro"))
    assert f["macro_sen"] == pytest.approx(recall_score(y, p, average="macro"))


def test_undefined_figures_are_nan_and_bad_input_is_refused():
    f = classification_figures(np.array([0, 0, 1]), np.array([0, 1, 1]), classes=("a", "b", "c"), healthy=0)
    assert np.isnan(f["sen[c]"]) and f["macro_sen"] == pytest.approx(0.75)
    two = classification_figures(np.array([0, 1]), np.array([0, 0]), classes=("Normal", "COVID"), healthy=0)
    assert two["fne"] == 1.0 and "fdpe" not in two
    with pytest.raises(InputError):
        classification_figures(np.array([0, 4]), np.array([0, 0]), classes=PAPER)
    with pytest.raises(InputError):
        classification_figures(np.array([0, 1]), np.array([0, 0]), np.ones((2, 3)), classes=PAPER)


def test_agrees_with_error_rates_and_sensitivity_specificity_for_any_healthy_index():
    y, p = _labels(M3LUNG)
    f = classification_figures(y, p, classes=PAPER)
    ref = error_rates(M3LUNG)
    sen, spec = sensitivity_specificity(M3LUNG)
    for key in ("acc", "fpe", "fne", "fdpe"):
        assert f[key] == pytest.approx(ref[key]), key
    for i, c in enumerate(PAPER):
        assert f[f"sen[{c}]"] == pytest.approx(sen[i]) and f[f"spec[{c}]"] == pytest.approx(spec[i])
    # the same patients with Healthy moved to index 2: the same error rates, keys follow the names
    perm = np.array([2, 0, 1, 3])  # old index -> new index
    names = ("COVID-19", "H1N1", "Healthy", "CAP")
    g = classification_figures(perm[y], perm[p], classes=names, healthy=2)
    for key in ("acc", "fpe", "fne", "fdpe", "sen[CAP]", "spec[Healthy]", "f1[H1N1]", "macro_prec"):
        assert g[key] == pytest.approx(f[key]), key


def test_keys_and_scores_need_not_be_probabilities():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 3, 90)
    logits = rng.normal(size=(90, 3)) + 2 * np.eye(3)[y]
    proba = np.exp(logits)  # unnormalised, rows do not sum to 1
    three = ("NP", "CAP", "COVID-19")
    a = classification_figures(y, logits.argmax(1), logits, classes=three, healthy=None)
    b = classification_figures(y, proba.argmax(1), proba, classes=three, healthy=None)
    assert a == pytest.approx(b)  # only the order within a column matters
    for i, c in enumerate(three):
        assert a[f"auc[{c}]"] == pytest.approx(roc_auc_score(y == i, logits[:, i]))
    expected = {"acc", "macro_sen", "macro_spec", "macro_prec", "macro_f1", "macro_auc"}
    expected |= {f"{m}[{c}]" for m in ("sen", "spec", "prec", "f1", "auc") for c in three}
    assert set(a) == expected
    with_healthy = classification_figures(y, logits.argmax(1), classes=three, healthy=0)
    assert {"fpe", "fne", "fdpe"} <= set(with_healthy) and "auc[NP]" not in with_healthy


def test_labels_may_be_whole_floats_and_other_input_is_refused():
    f = classification_figures(np.array([0.0, 1.0, 1.0]), np.array([0, 1, 0]), classes=("a", "b"))
    assert f["acc"] == pytest.approx(2 / 3)
    bad = [
        dict(y_true=np.array([0, 0.5]), y_pred=np.array([0, 0]), classes=("a", "b")),
        dict(y_true=np.array([True, False]), y_pred=np.array([0, 0]), classes=("a", "b")),
        dict(y_true=np.array([0, 1]), y_pred=np.array([0, -1]), classes=("a", "b")),
        dict(y_true=np.array([0, 1]), y_pred=np.array([0, 1, 1]), classes=("a", "b")),
        dict(y_true=np.array([], dtype=int), y_pred=np.array([], dtype=int), classes=("a", "b")),
        dict(y_true=np.array([0, 1]), y_pred=np.array([0, 1]), classes=("a", "a")),
        dict(y_true=np.array([0, 1]), y_pred=np.array([0, 1]), classes="ab"),
        dict(y_true=np.array([0, 0]), y_pred=np.array([0, 0]), classes=("a",)),
        dict(y_true=np.array([0, 1]), y_pred=np.array([0, 1]), classes=("a", "b"), healthy=2),
        dict(
            y_true=np.array([0, 1]),
            y_pred=np.array([0, 1]),
            proba=np.array([[0.5, np.nan], [0, 1]]),
            classes=("x", "y"),
        ),
        dict(
            y_true=np.array([0, 1]),
            y_pred=np.array([0, 1]),
            proba=np.array([[0.5, np.inf], [0, 1]]),
            classes=("x", "y"),
        ),
    ]
    for kwargs in bad:
        with pytest.raises(InputError):
            classification_figures(**kwargs)
