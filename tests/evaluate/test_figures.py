"""Figures: files written atomically as PNG and SVG, for any number of classes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from m3lung.evaluate.figures import plot_calibration, plot_confusion, plot_kaplan_meier, plot_roc


def _check(paths, folder):
    png, svg = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ET.parse(svg).getroot().tag.endswith("svg")
    assert not [p for p in folder.iterdir() if ".part" in p.name]


@pytest.mark.parametrize("k", [2, 4])
def test_roc_and_confusion(tmp_path, k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 60)
    y[y == k - 1] = 0  # the last class has no positive case: noted, not a crash
    s = rng.random((60, k))
    _check(plot_roc(y, s, [f"c{i}" for i in range(k)], tmp_path / "roc"), tmp_path)
    c = np.bincount(y * k + s.argmax(1), minlength=k * k).reshape(k, k)
    _check(plot_confusion(c, [f"c{i}" for i in range(k)], tmp_path / "conf", normalize=k == 4), tmp_path)


def test_calibration_and_kaplan_meier(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.random(200)
    _check(plot_calibration((rng.random(200) < p).astype(int), p, tmp_path / "cal"), tmp_path)
    d = rng.exponential(5, 80)
    _check(
        plot_kaplan_meier(
            d, rng.random(80) < 0.7, rng.integers(0, 2, 80), tmp_path / "km", labels=["low", "high"], logrank_p=0.03
        ),
        tmp_path,
    )
