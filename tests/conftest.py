"""Shared fixtures: the real data folder beside the project, and small synthetic chest volumes."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from helpers import make_volume, need_shared, synthetic_chest
from m3lung.io import CTVolume


@pytest.fixture(autouse=True, scope="session")
def _quiet_pydicom():
    """COVID-CT-MD's UUID-style UIDs make pydicom log one line per file (as the CLI hides them without -v);
    kept out of the test logs so that a failure's report shows the failure, not hundreds of those lines."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


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
