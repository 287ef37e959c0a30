"""Basic figures used by the slice-level results: confusion matrix, AUC, pointing game, Dice."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from m3lung.evaluate import (
    accuracy,
    confusion_matrix,
    dice,
    error_rates,
    one_vs_rest_auc,
    pointing_game,
    roc_auc,
    sensitivity_specificity,
)


def test_confusion_and_accuracy():
    t = np.array([0, 0, 1, 2, 3, 3])
    p = np.array([0, 1, 1, 2, 3, 0])
    c = confusion_matrix(t, p, 4)
    assert c.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]
    assert accuracy(t, p) == pytest.approx(4 / 6)


def test_auc_equals_sklearn_and_handles_one_class():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p = rng.dirichlet(np.ones(4), 200)
    ours = one_vs_rest_auc(y, p)
    for k in range(4):
        assert ours[k] == pytest.approx(roc_auc_score(y == k, p[:, k]))
    assert np.isnan(roc_auc(np.zeros(5), np.arange(5)))


def test_pointing_game_and_dice():
    maps = np.zeros((2, 8, 8))
    masks = np.zeros((2, 8, 8), bool)
    maps[0, 2, 2] = 1
    masks[0, 1:4, 1:4] = True
    maps[1, 6, 6] = 1
    masks[1, 1:3, 1:3] = True
    assert pointing_game(maps, masks).tolist() == [True, False]
    assert pointing_game(maps, masks, tolerance_px=4).tolist() == [True, True]
    d = dice(maps, masks, threshold=0.5)
    assert d[0] == pytest.approx(2 * 1 / (1 + 9)) and d[1] == 0
    assert dice(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), bool))[0] == 1


#: M³Lung-Sys, patient level (Table IV): rows truth, columns prediction (Healthy, COVID-19, H1N1, CAP).
PUBLISHED = np.array([[99, 2, 1, 0], [1, 95, 0, 0], [0, 0, 41, 0], [7, 3, 0, 43]])


def test_error_rates_reproduce_the_published_figures():
    r = error_rates(PUBLISHED)
    assert set(r) == {"acc", "fpe", "fne", "fdpe"}
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in r.values())
    assert round(100 * r["acc"], 2) == 95.21
    assert round(100 * r["fpe"], 2) == 2.94
    assert round(100 * r["fne"], 2) == 4.21
    assert round(100 * r["fdpe"], 2) == 1.58
    assert (
        r["fpe"] == pytest.approx(3 / 102)
        and r["fne"] == pytest.approx(8 / 190)
        and r["fdpe"] == pytest.approx(3 / 190)
    )


def test_error_rates_against_sensitivity_specificity():
    sen, spec = sensitivity_specificity(PUBLISHED)
    r = error_rates(PUBLISHED)
    assert sen.shape == spec.shape == (4,)
    assert r["fpe"] == pytest.approx(1 - sen[0])
    assert r["fne"] == pytest.approx(1 - spec[0])
    np.testing.assert_allclose(sen, [99 / 102, 95 / 96, 41 / 41, 43 / 53])
    # CAP: 190 + 102 - 53 = 239 others, none of them predicted CAP
    np.testing.assert_allclose(spec[3], 1.0)
    np.testing.assert_allclose(spec[1], 1 - 5 / (292 - 96))
    rng = np.random.default_rng(0)
    c = rng.integers(0, 30, (4, 4))
    r = error_rates(c)
    sen, spec = sensitivity_specificity(c)
    assert r["fpe"] == pytest.approx(1 - sen[0]) and r["fne"] == pytest.approx(1 - spec[0])
    # every error is exactly one of FPE, FNE, FDPE
    wrong = c.sum() - np.trace(c)
    assert wrong == pytest.approx(r["fpe"] * c[0].sum() + (r["fne"] + r["fdpe"]) * c[1:].sum())


def test_error_rates_empty_classes_and_bad_matrices():
    only_healthy = np.zeros((4, 4), int)
    only_healthy[0, 0] = 5
    r = error_rates(only_healthy)
    assert r["acc"] == 1 and r["fpe"] == 0 and np.isnan(r["fne"]) and np.isnan(r["fdpe"])
    sen, spec = sensitivity_specificity(only_healthy)
    assert sen[0] == 1 and np.isnan(sen[1:]).all() and np.isnan(spec[0]) and (spec[1:] == 1).all()
    assert all(np.isnan(v) for v in error_rates(np.zeros((4, 4))).values())
    for bad in (np.zeros((4, 3)), np.zeros(4), -np.eye(4), np.full((4, 4), np.nan)):
        with pytest.raises(ValueError):
            error_rates(bad)
        with pytest.raises(ValueError):
            sensitivity_specificity(bad)
