"""The self-contained HTML report of one screened study."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from m3lung.errors import InputError
from m3lung.report.html import render_html

CLASSES = ["Healthy", "COVID-19", "H1N1", "CAP"]
VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr", "area", "base", "col", "embed", "param", "track"}
SVG_SELF_CLOSING = {"line", "rect", "polyline", "path", "circle"}


class _Checker(HTMLParser):
    """Collects tags and checks that every opened (non-void) element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Checker:
    p = _Checker()
    p.feed(page)
    p.close()
    return p


def _report(n: int = 30, *, network: bool = True, maxpool: bool = True, lesion: bool = True) -> dict:
    rng = np.random.default_rng(0)
    pm = rng.dirichlet(np.ones(4), n).round(4)
    pl = rng.uniform(0, 1, n).round(4)
    return {
        "schema": "m3lung.report/1",
        "m3lung_version": "0.1.0",
        "study": {
            "patient_id": "<b>x</b>",
            "study_uid": "1.2.3&4",
            "series_uid": "1.2.3.4.5",
            "source": '/data/scan\'s "dir"',
            "n_slices": n,
            "spacing_mm": [1.25, 0.7, 0.7],
        },
        "patient": {
            "classes": CLASSES,
            "label": "COVID-19",
            "decided_by": "network" if network else "nonparametric",
            "network": {"probs": [0.0312, 0.8123, 0.1011, 0.0554], "label": "COVID-19"} if network else None,
            "nonparametric": {
                "probs": [0.4, 0.5, 0.0667, 0.0333],
                "label": "COVID-19",
                "counts": [12, 15, 2, 1],
                "threshold": 0.99,
            },
            "maxpool": {"probs": [0.1, 0.5, 0.3, 0.1], "label": "COVID-19", "threshold": 0.5} if maxpool else None,
        },
        "slices": {
            "p_multi": pm.tolist(),
            "p_lesion": pl.tolist() if lesion else None,
            "predicted": [CLASSES[k] for k in pm.argmax(1)],
        },
        "infected_share": 0.1234,
        "weights": {
            "slice_hash": "abc123",
            "patient_hash": None,
            "trained_on": "slice network: trained on a synthetic cohort <no real patient>",
        },
        "warnings": ["slices are not evenly spaced & <odd>"],
        "timings_s": {"read": 0.5, "slice_network": 2.25},
    }


def _arrays(k: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    crops = rng.uniform(-1100, 300, (k, size, size)).astype(np.float32)
    maps = rng.uniform(0, 1, (k, size, size)).astype(np.float32)
    return crops, maps


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_renders_a_complete_self_contained_page():
    report = _report()
    crops, maps = _arrays(5)
    shown = np.array([0, 6, 12, 18, 24])
    page = render_html(report, crops=crops, maps=maps, shown=shown)
    p = _parse(page)
    assert not p.errors and not p.stack, (p.errors, p.stack)
    assert page.startswith("<!DOCTYPE html>")
    assert len(p.imgs) == 5 and page.count("data:image/png;base64,") == 5
    tile = _decode(str(p.imgs[0]["src"]))
    assert tile.shape == (32, 32, 3) and tile.dtype == np.uint8
    # no external resources of any kind
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower() and "url(" not in page
    assert "<svg" in page and page.count("<svg") == 2
    # probabilities of every rule
    for value in ("0.812", "0.101", "0.500", "0.067", "0.300"):
        assert value in page
    assert "Max pooling" in page and "Patient network" in page and "Non-parametric assessment" in page
    assert "12.3 %" in page  # infected share
    assert "Research use only; not a medical device" in page
    assert "trained on a synthetic cohort &lt;no real patient&gt;" in page
    assert "slices are not evenly spaced &amp; &lt;odd&gt;" in page
    assert "Screening result: COVID-19" in page


def test_captions_follow_the_slice_outputs():
    report = _report()
    crops, maps = _arrays(2)
    page = render_html(report, crops=crops, maps=maps, shown=np.array([3, 29]))
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == 2
    for cap, idx in zip(captions, (3, 29), strict=True):
        name = report["slices"]["predicted"][idx]
        p = report["slices"]["p_multi"][idx][CLASSES.index(name)]
        pl = report["slices"]["p_lesion"][idx]
        assert cap == f"slice {idx + 1} / 30 — {name} (p={p:.2f}), P(lesion)={pl:.2f}"


def test_identifiers_are_escaped():
    page = render_html(_report(), crops=np.zeros((0, 8, 8)), maps=None, shown=np.zeros(0, int))
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "1.2.3&amp;4" in page
    assert "scan&#x27;s &quot;dir&quot;" in page


def test_windowing_and_overlay():
    crops = np.stack([np.full((4, 4), -1200.0), np.full((4, 4), -600.0), np.full((4, 4), 0.0)])
    page = render_html(_report(), crops=crops, maps=None, shown=np.array([0, 1, 2]))
    tiles = [_decode(str(img["src"])) for img in _parse(page).imgs]
    assert [int(t[0, 0, 0]) for t in tiles] == [0, 128, 255]
    assert all((t[..., 0] == t[..., 1]).all() and (t[..., 1] == t[..., 2]).all() for t in tiles)  # grey: no overlay
    assert "no lesion map available" in page

    maps = np.zeros((3, 4, 4))
    maps[1, :2] = 1.0  # top half lesion on the middle tile; 0.4 elsewhere stays uncoloured
    maps[1, 2:] = 0.4
    page = render_html(_report(), crops=crops, maps=maps, shown=np.array([0, 1, 2]))
    tiles = [_decode(str(img["src"])) for img in _parse(page).imgs]
    assert (tiles[1][2:] == 128).all()
    top = tiles[1][0, 0].astype(int)
    assert top[0] > top[2] and not (top[0] == top[1] == top[2])  # jet at 1 is red
    assert (tiles[0] == 0).all() and (tiles[2] == 255).all()


def test_without_network_maxpool_or_lesion_outputs():
    report = _report(network=False, maxpool=False, lesion=False)
    report["infected_share"] = None
    crops, _ = _arrays(3)
    page = render_html(report, crops=crops, maps=None, shown=np.array([1, 2, 3]), window=(-500.0, 1500.0))
    p = _parse(page)
    assert not p.errors and not p.stack
    assert len(p.imgs) == 3
    assert "Patient network" not in page and "Max pooling" not in page
    assert "Non-parametric assessment" in page and "not available" in page
    assert "P(lesion)" not in "".join(re.findall(r"<figcaption>(.*?)</figcaption>", page))


def test_no_slices_shown_gives_a_note():
    report = _report()
    report["warnings"] = []
    page = render_html(report, crops=np.zeros((0, 16, 16)), maps=np.zeros((0, 16, 16)), shown=np.array([], int))
    p = _parse(page)
    assert not p.errors and not p.stack
    assert not p.imgs and "No slices were selected for display" in page
    assert "No warnings." in page


def test_bad_arrays_are_refused():
    report = _report()
    crops, maps = _arrays(2)
    with pytest.raises(InputError, match="K = len"):
        render_html(report, crops=crops, maps=maps, shown=np.array([1]))
    with pytest.raises(InputError, match="shape of crops"):
        render_html(report, crops=crops, maps=maps[:, :16], shown=np.array([1, 2]))
    with pytest.raises(InputError, match="must lie in"):
        render_html(report, crops=crops, maps=maps, shown=np.array([1, 30]))
    with pytest.raises(InputError, match="NaN"):
        render_html(report, crops=crops * np.nan, maps=maps, shown=np.array([1, 2]))
    with pytest.raises(InputError, match="width"):
        render_html(report, crops=crops, maps=maps, shown=np.array([1, 2]), window=(-600.0, 0.0))
