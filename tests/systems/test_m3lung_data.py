"""M³Lung-Sys's training data: a cohort a user made is used as it is or refused, never rewritten (issue 17)."""

from __future__ import annotations

import os

import pytest

from m3lung.cli import main
from m3lung.errors import InputError
from m3lung.phantom import PhantomConfig, write_cohort
from m3lung.systems.m3lung import prepare_data
from m3lung.systems.m3lung_recipes import load_slice_recipe

# the tiny recipe's synthetic settings, shrunk
SMALL = ["data.synthetic_per_class=1", "data.synthetic_size=32", "data.synthetic_slices=[4, 6]"]


def _snapshot(folder) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(d, f), folder): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(folder)
        for f in files
    }


@pytest.fixture
def cohort(tmp_path):
    """A cohort a user made with `m3lung phantom` with other settings than the recipe's (seed 0, not 1)."""
    write_cohort(tmp_path / "c", per_class=1, seed=0, config=PhantomConfig.small(32, (4, 6)), progress=False)
    return tmp_path / "c"


def test_prepare_data_refuses_a_cohort_made_with_other_settings(cohort, tmp_path):
    before = _snapshot(cohort)
    with pytest.raises(InputError, match="made with per class 1, seed 0") as err:
        prepare_data(load_slice_recipe("slice_tiny", SMALL), cohort, tmp_path / "cache", progress=False)
    assert "seed 1" in str(err.value) and "--set data.synthetic_per_class=0" in str(err.value)
    assert _snapshot(cohort) == before and not (tmp_path / "cache").exists()


def test_prepare_data_uses_a_cohort_made_with_the_recipes_settings_as_it_is(cohort, tmp_path, monkeypatch):
    from m3lung.systems import m3lung as sysmod

    recipe = load_slice_recipe("slice_tiny", [*SMALL, "data.synthetic_seed=0"])
    before = _snapshot(cohort)
    calls = []

    def spy(cases, **kw):
        calls.append(cases)
        raise InputError("stop here")  # the split is not what is tested

    monkeypatch.setattr(sysmod, "split_slice_tables", spy)
    with pytest.raises(InputError, match="stop here"):
        prepare_data(recipe, cohort, tmp_path / "cache", progress=False)
    assert [c.patient_id for c in calls[0]] == ["syn-0000-healthy", "syn-0001-covid", "syn-0002-h1n1", "syn-0003-cap"]
    after = _snapshot(cohort)
    assert {k: after[k] for k in before if k != "cohort.csv"} == {k: v for k, v in before.items() if k != "cohort.csv"}


def test_train_refuses_another_cohort_and_files_in_place_of_folders(cohort, tmp_path, capsys):
    before = _snapshot(cohort)
    base = ["train", "slice", "--recipe", "slice_tiny", "--quiet"]
    sets = [a for s in SMALL for a in ("--set", s)]
    assert main([*base, *sets, "--data", str(cohort), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("m3lung: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "holds a synthetic cohort made with" in err and "m3lung phantom --overwrite" in err
    assert _snapshot(cohort) == before
    (tmp_path / "f").write_text("x")
    for data, out, what in (
        (tmp_path / "f", tmp_path / "run", "the data folder (--data) is a file, not a folder"),
        (cohort, tmp_path / "f", "the run folder (--out) is a file, not a folder"),
        (cohort, tmp_path / "f" / "run", "cannot be made"),
    ):
        assert main([*base, *sets, "--data", str(data), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert what in err and err.count("\n") == 1 and "Traceback" not in err
    assert (tmp_path / "f").read_text() == "x"
