"""Slice-level figures from arrays: 4-class figures, the accuracy breakdown, lesion maps against masks."""

from __future__ import annotations

import numpy as np
import pytest

from m3lung.evaluate.slices import (
    accuracy_breakdown,
    class_figures,
    map_figures,
    pointing_game_by_class,
    pointing_game_chance,
    positions_in,
)


def test_class_figures():
    cls = np.array([0, 0, 1, 1, 2, 3])
    probs = np.eye(4)[[0, 1, 1, 1, 2, 3]] * 0.7 + 0.075
    out = class_figures(cls, probs, 4)
    assert out["acc"] == pytest.approx(5 / 6)
    assert out["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert out["auc_h1n1"] == 1.0 and out["auc_cap"] == 1.0 and 0.5 < out["auc_healthy"] <= 1.0
    assert out["auc_macro"] == pytest.approx(np.mean([out[f"auc_{c}"] for c in ("healthy", "covid-19", "h1n1", "cap")]))


def test_accuracy_breakdown_by_height_and_lesion_area():
    cls = np.array([0] * 5 + [1] * 4)
    pred = np.array([0, 1, 0, 0, 1, 1, 1, 0, 0])
    height = np.array([0.0, 0.3, 0.5, 0.7, 1.0, 0, 0, 0, 0])
    area = np.array([0, 0, 0, 0, 0, 0.4, 0.3, 0.2, 0.1])
    out = accuracy_breakdown(cls, pred, height, area)
    by_h = out["acc_healthy_by_height"]
    assert by_h["n"] == [1.0, 1.0, 1.0, 1.0, 1.0] and by_h["acc"] == [1.0, 0.0, 1.0, 1.0, 0.0]
    by_a = out["acc_by_lesion_area"]
    assert by_a["n"] == [1.0, 1.0, 1.0, 1.0] and by_a["acc"] == [0.0, 0.0, 1.0, 1.0]  # misses on small lesions
    assert "acc_by_lesion_area" not in accuracy_breakdown(cls, pred, height)


def test_map_figures_pointing_game_and_dice():
    masks = np.zeros((2, 32, 32), bool)
    masks[:, 10:20, 10:20] = True
    maps = np.zeros((2, 32, 32))
    maps[0, 15, 15] = 1.0  # a hit
    maps[1, 21, 15] = 1.0  # a miss by two pixels: tolerated (15 px at 224 px is 2 px at 32)
    out = map_figures(maps, masks, "contrast")
    assert out["pointing_game[contrast]"] == out["pointing_game"] == 0.5
    assert out["pointing_game_tolerant"] == 1.0 and out["pointing_game_tolerance_px"] == 2.0
    assert out["dice@0.5"] == pytest.approx((2 / 101 + 0) / 2)
    assert set(map_figures(maps, masks, "with_lesion", main=False)) == {
        "pointing_game[with_lesion]",
        "dice@0.5[with_lesion]",
    }
    assert pointing_game_chance(masks) == pytest.approx(100 / 1024)
    assert pointing_game_by_class(maps, masks, np.array([1, 3])) == {
        "pointing_game_covid-19": 1.0,
        "pointing_game_cap": 0.0,
    }


def test_positions_in_sorted_and_unsorted_rows():
    assert positions_in(np.array([2, 5, 9]), np.array([5, 9])).tolist() == [1, 2]
    assert positions_in(np.array([9, 2, 5]), np.array([5, 9])).tolist() == [2, 0]
