"""The fast volume morphology equals scipy's reference operations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from m3lung.preprocess.morphology import (
    bounding_boxes,
    fill_holes_slices,
    label_slices,
    largest_component_slices,
    line_opening,
    rect_opening,
)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize("axis", [1, 2])
def test_line_opening_matches_scipy(length, axis):
    m = np.random.default_rng(length).random((3, 40, 37)) < 0.6
    shape = [1, 1, 1]
    shape[axis] = length
    ref = ndi.binary_opening(m, structure=np.ones(shape, bool))
    np.testing.assert_array_equal(line_opening(m, length, axis), ref)


def test_rect_opening_matches_scipy():
    m = np.random.default_rng(0).random((2, 50, 50)) < 0.7
    ref = ndi.binary_opening(m, structure=np.ones((1, 4, 3), bool))
    np.testing.assert_array_equal(rect_opening(m, (4, 3)), ref)
    assert rect_opening(m, (1, 1)) is not m


def test_labels_never_cross_slices():
    m = np.zeros((3, 10, 10), bool)
    m[:, 2:5, 2:5] = True  # the same square on every slice: 3 components, not 1
    m[1, 7, 7] = True
    m[1, 8, 8] = True  # diagonal neighbours: one component with 8-connectivity, two with 4
    labels, n = label_slices(m, 8)
    assert n == 4
    assert label_slices(m, 4)[1] == 5
    assert labels[0].max() < labels[1][labels[1] > 0].min()


def test_largest_and_fill_holes():
    m = np.zeros((2, 12, 12), bool)
    m[:, 1:9, 1:9] = True
    m[:, 4:6, 4:6] = False  # a hole
    m[:, 10:12, 10:12] = True  # a small separate blob
    big = largest_component_slices(m)
    assert not big[:, 10:, 10:].any() and big[:, 1, 1].all()
    filled = fill_holes_slices(big)
    assert filled[:, 4:6, 4:6].all()
    np.testing.assert_array_equal(filled[0], ndi.binary_fill_holes(big[0]))


def test_bounding_boxes_half_open_and_empty():
    m = np.zeros((2, 10, 12), bool)
    m[0, 2:5, 3:9] = True
    boxes, empty = bounding_boxes(m)
    assert boxes[0].tolist() == [2, 3, 5, 9]
    assert empty.tolist() == [False, True] and boxes[1].tolist() == [0, 0, 10, 12]
