"""Basic figures used by the slice-level results: confusion matrix, AUC, pointing game, Dice."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from m3lung.evaluate import accuracy, confusion_matrix, dice, one_vs_rest_auc, pointing_game, roc_auc


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
