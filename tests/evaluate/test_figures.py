"""Figures: PNG and SVG written atomically, for any number of classes, without pyplot."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from m3lung.errors import InputError
from m3lung.evaluate.figures import plot_calibration, plot_confusion, plot_kaplan_meier, plot_roc

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check(paths, stem):
    assert [p.name for p in paths] == [f"{stem.name}.png", f"{stem.name}.svg"]
    png, svg = paths
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert "<svg" in svg.read_text(encoding="utf-8")
    assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert not [p for p in stem.parent.iterdir() if ".part" in p.name or p.name.startswith(".")]


def _names(k):
    return [f"class {i}" for i in range(k)]


@pytest.mark.parametrize("k", [2, 4])
def test_roc(tmp_path, k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 80)
    s = rng.random((80, k)) + np.eye(k)[y]
    _check(plot_roc(y, s / s.sum(1, keepdims=True), _names(k), tmp_path / "roc", title="test"), tmp_path / "roc")


@pytest.mark.parametrize("k", [2, 4])
def test_roc_class_without_positives(tmp_path, k):
    rng = np.random.default_rng(10 + k)
    y = rng.integers(0, k - 1, 50)  # the last class has no positive case: left out and noted, no crash
    _check(plot_roc(y, rng.random((50, k)), _names(k), tmp_path / "roc"), tmp_path / "roc")
    # only one class present: no curve at all, still a figure
    _check(plot_roc(np.zeros(10, dtype=int), rng.random((10, k)), _names(k), tmp_path / "one"), tmp_path / "one")


@pytest.mark.parametrize(("k", "normalize"), [(2, False), (4, True), (4, False)])
def test_confusion(tmp_path, k, normalize):
    rng = np.random.default_rng(k)
    c = rng.integers(0, 30, (k, k))
    c[-1] = 0  # a class without samples: percentages shown as a dash
    stem = tmp_path / "sub" / "confusion"  # the folder is created
    _check(plot_confusion(c, _names(k), stem, normalize=normalize), stem)


def test_overwrite_keeps_no_temporary_files(tmp_path):
    c = np.array([[5, 1], [2, 7]])
    first = plot_confusion(c, ["a", "b"], tmp_path / "c")
    old = first[0].read_bytes()
    second = plot_confusion(c * 10, ["a", "b"], tmp_path / "c", title="again")
    assert first == second and second[0].read_bytes() != old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "c.svg"]


def test_calibration(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.random(200)
    _check(plot_calibration((rng.random(200) < p).astype(int), p, tmp_path / "cal"), tmp_path / "cal")
    # few samples and ties: no Hosmer–Lemeshow in the legend, still a figure
    q = np.array([0.2, 0.2, 0.8, 0.8, 0.8])
    _check(plot_calibration(np.array([0, 1, 1, 1, 0]), q, tmp_path / "few", strategy="uniform"), tmp_path / "few")


@pytest.mark.parametrize("n_groups", [2, 3])
def test_kaplan_meier(tmp_path, n_groups):
    rng = np.random.default_rng(n_groups)
    g = rng.integers(0, n_groups, 90)
    d = np.ceil(rng.exponential(5 * (1 + g)))  # whole days: tied times
    e = rng.random(90) < 0.7
    labels = ["low risk", "high risk", "other"][:n_groups]
    stem = tmp_path / "km"
    _check(plot_kaplan_meier(d, e, g, stem, labels=labels, logrank_p=0.013, xlabel="days in hospital"), stem)
    _check(plot_kaplan_meier(d, e, g == 0, tmp_path / "km2", logrank_p=1e-9), tmp_path / "km2")


def test_bad_input(tmp_path):
    y = np.array([0, 1, 1, 0])
    with pytest.raises(InputError, match="scores"):
        plot_roc(y, np.zeros((4, 3)), ["a", "b"], tmp_path / "x")
    with pytest.raises(InputError, match="class indices"):
        plot_roc(np.array([0, 1, 2, 0]), np.zeros((4, 2)), ["a", "b"], tmp_path / "x")
    with pytest.raises(InputError, match="finite"):
        plot_roc(y, np.full((4, 2), np.nan), ["a", "b"], tmp_path / "x")
    with pytest.raises(InputError, match="non-negative"):
        plot_confusion(np.array([[1, -1], [0, 2]]), ["a", "b"], tmp_path / "x")
    with pytest.raises(InputError, match=r"\(K, K\)"):
        plot_confusion(np.ones((2, 3)), ["a", "b"], tmp_path / "x")
    with pytest.raises(InputError, match="probabilities"):
        plot_calibration(y, np.array([0.1, 0.2, 1.5, 0.3]), tmp_path / "x")
    with pytest.raises(InputError, match="labels for"):
        plot_kaplan_meier(np.ones(4), y, y, tmp_path / "x", labels=["only one"])
    assert list(tmp_path.iterdir()) == []
