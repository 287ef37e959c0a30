"""Classification figures and the published numbers they must reproduce."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from m3lung.errors import InputError
from m3lung.evaluate import classification_figures

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
