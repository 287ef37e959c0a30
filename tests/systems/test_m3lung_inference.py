"""M³Lung-Sys's slice inference: the windows a network was trained with travel in its checkpoint and are used."""

from __future__ import annotations

import numpy as np
import pytest

from m3lung.errors import InputError
from m3lung.io import read_ct
from m3lung.systems.m3lung_inference import SlicePredictor, slice_windows
from m3lung.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def test_the_training_windows_are_stored_and_screening_uses_them(tiny_system):
    doc = load_checkpoint(tiny_system / "slice" / "best.pt", kind="slice_net")
    assert doc["provenance"]["windows"] == {"centres": [-700.0, -600.0, -500.0], "width": 1200.0}
    assert slice_windows(doc) == ((-700.0, -600.0, -500.0), 1200.0)
    assert slice_windows({"provenance": {}}) == ((-700.0, -600.0, -500.0), 1200.0)  # older files: the paper's

    vol = read_ct(sorted((tiny_system / "data").glob("syn-*"))[1] / "ct")
    paper = SlicePredictor("best.pt", device="cpu", doc=doc).predict(vol, maps=False)
    other_doc = {**doc, "provenance": {**doc["provenance"], "windows": {"centres": [-300.0], "width": 800.0}}}
    other = SlicePredictor("best.pt", device="cpu", doc=other_doc)
    assert (other.centres, other.width) == ((-300.0,), 800.0)
    assert not np.allclose(other.predict(vol, maps=False).p_multi, paper.p_multi, atol=1e-3)
    with pytest.raises(InputError, match="windows are impossible"):
        slice_windows({"provenance": {"windows": {"centres": [], "width": 0}}})
