"""Sampling of training slices: relative heights and height-matching weights."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import slice_table as _table
from m3lung.data.sampling import height_matching_weights, relative_height, select_training_rows


def test_height_matching_weights_match_the_diseased_heights():
    table = _table(n=20)  # patient 0 healthy (10 slices), patient 1 diseased, lesions on slices 5..9
    rows = np.arange(20)
    cls = np.r_[np.zeros(10), np.ones(10)].astype(np.int64)
    np.testing.assert_allclose(relative_height(table, rows)[[0, 9, 10, 19]], [0, 1, 0, 1])
    lesion = np.r_[np.ones(10, bool), np.arange(10) >= 5]
    w = height_matching_weights(table, rows[lesion], cls[lesion], 2)
    hw = w[:10]
    # diseased rows all lie in the upper half: Healthy draws go (almost) only to the upper half too
    assert hw[5:].sum() / hw.sum() > 0.99 and np.all(w[10:] == 1.0)
    assert hw.mean() == pytest.approx(1.0)
    # with the heights already matched nothing changes
    np.testing.assert_allclose(height_matching_weights(table, rows, cls, 5), 1.0)


def test_select_training_rows_keeps_the_annotation_rule_rows_asked_for():
    table = _table(n=12)  # scan 0 Healthy (rows 0..5), scan 1 COVID-19 with a lesion on every slice
    table.lesion[8] = 0  # a lesion-free slice of a diseased scan: dropped by the annotation rules
    rows, cls, les = select_training_rows(table, np.array([1, 2, 7, 8, 9]))
    assert rows.tolist() == [1, 2, 7, 9] and cls.tolist() == [0, 0, 1, 1] and les.tolist() == [0, 0, 1, 1]
