"""A tiny trained M³Lung-Sys (slice + patient network) on a tiny synthetic cohort, made once per session."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(scope="session")
def tiny_system(tmp_path_factory):
    """Folder with data/ (cohort), slice/ (run), features/, patient/ (run with system.pt)."""
    from m3lung.data.slices import synthetic_cases
    from m3lung.systems.m3lung import train_slice
    from m3lung.systems.m3lung_patient import extract_features, load_patient_recipe, train_patient
    from m3lung.systems.m3lung_recipes import load_slice_recipe

    root = tmp_path_factory.mktemp("tiny_system")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_slice(
            load_slice_recipe("slice_tiny"), root / "data", root / "slice", progress=False, cache_dir=root / "cache"
        )
        extract_features(
            root / "slice" / "best.pt",
            synthetic_cases(root / "data"),
            root / "features",
            slice_cache=root / "cache",
            progress=False,
            data_note="synthetic",
        )
        recipe = load_patient_recipe("patient_tiny", [f"data.split_file={root / 'slice' / 'split.json'}"])
        train_patient(recipe, root / "features", root / "patient", progress=False)
    return root
