"""Shared fixtures: the real data folder beside the project, and small synthetic chest volumes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from helpers import make_volume, need_shared, synthetic_chest
from m3lung.io import CTVolume


@pytest.fixture
def shared_data() -> Path:
    return need_shared()


@pytest.fixture
def chest() -> CTVolume:
    return make_volume(synthetic_chest())


@pytest.fixture(scope="session")
def covidctmd_volumes():
    """The three real COVID-CT-MD volumes, read once per test session (skips when absent)."""
    from helpers import COVIDCTMD, COVIDCTMD_CASES
    from m3lung.io import read_ct

    need_shared("covid-ct-md")
    cache = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (rel, *_rest) in COVIDCTMD_CASES.items():
            cache[name] = read_ct(COVIDCTMD / rel)
    return cache
