"""The batch runner of every system: failures of any kind, claims, leftovers, summary.csv rebuilt, names."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import make_volume, synthetic_chest
from m3lung.errors import InputError
from m3lung.report.study import build_report
from m3lung.systems.base import RuleResult, StudyResult
from m3lung.systems.batch import Study, screen_many, studies_from


class FakeScreener:
    """Screens a text file: its content names what happens (``ok``, ``boom``, ``memory``, ``m3lung``)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def screen(self, path: str, **_: object):
        self.seen.append(path)
        what = Path(path).read_text().strip()
        if what == "boom":
            raise RuntimeError("something inside a system broke")
        if what == "memory":
            raise MemoryError
        if what == "m3lung":
            raise InputError(f"{path}: not a CT")
        vol = make_volume(synthetic_chest(n=3, size=16))
        p = np.array([0.25, 0.75])
        rule = RuleResult(p, "Sick", "Fake rule")
        result = StudyResult("fake", ("Well", "Sick"), "Sick", p, "fake", {"fake": rule}, extras={"score": 0.5})
        return build_report(result, vol)


def _studies(tmp_path, **contents: str) -> list[Study]:
    out = []
    for name, text in contents.items():
        (tmp_path / f"{name}.txt").write_text(text)
        out.append(Study(str(tmp_path / f"{name}.txt"), name))
    return out


def _summary(root):
    return list(csv.DictReader((root / "summary.csv").open()))


def test_any_failure_of_one_study_is_recorded_and_the_batch_goes_on(tmp_path):
    studies = _studies(tmp_path, a="ok", b="boom", c="memory", d="m3lung", e="ok")
    res = screen_many(FakeScreener(), studies, tmp_path / "out", progress=False)
    assert [r["study_id"] for r in res["screened"]] == ["a", "e"]
    errors = {f["study_id"]: f["error"] for f in json.loads((tmp_path / "out" / "failures.json").read_text())}
    assert errors["b"] == "RuntimeError: something inside a system broke (an unexpected error; please report it)"
    assert "out of memory" in errors["c"] and errors["d"].endswith(": not a CT")
    rows = _summary(tmp_path / "out")
    assert [r["study_id"] for r in rows] == ["a", "e"] and rows[0]["p_Sick"] == "0.7500"
    assert rows[0]["score"] == "0.5000" and rows[0]["system"] == "fake"
    assert not (tmp_path / "out" / ".claims").exists()  # every claim released, and their folder

    # a rerun redoes the failed ones; what now works leaves failures.json, the summary holds every study
    for name in ("b", "c", "d"):
        (tmp_path / f"{name}.txt").write_text("ok")
    again = screen_many(FakeScreener(), studies, tmp_path / "out", progress=False)
    assert sorted(again["skipped"]) == ["a", "e"] and len(again["screened"]) == 3
    assert not (tmp_path / "out" / "failures.json").exists()
    assert [r["study_id"] for r in _summary(tmp_path / "out")] == ["a", "b", "c", "d", "e"]


def test_summary_is_rebuilt_from_every_study_folder(tmp_path):
    first = _studies(tmp_path, a="ok")
    screen_many(FakeScreener(), first, tmp_path / "out", progress=False)
    second = _studies(tmp_path, b="ok")
    screen_many(FakeScreener(), second, tmp_path / "out", progress=False)  # another list into the same folder
    assert [r["study_id"] for r in _summary(tmp_path / "out")] == ["a", "b"]


def test_claims_keep_two_runs_from_screening_one_study(tmp_path):
    studies = _studies(tmp_path, a="ok", b="ok")
    claims = tmp_path / "out" / ".claims"
    claims.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (claims / "a").write_text(f"{socket.gethostname()} {sleeper.pid}")  # a live run holds a
        fake = FakeScreener()
        res = screen_many(fake, studies, tmp_path / "out", progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert res["claimed_elsewhere"] == ["a"] and [r["study_id"] for r in res["screened"]] == ["b"]
    assert fake.seen == [str(tmp_path / "b.txt")] and (claims / "a").exists()


def test_a_killed_run_leaves_nothing_behind_after_the_next(tmp_path):
    studies = _studies(tmp_path, a="ok")
    out = tmp_path / "out"
    (out / ".claims").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".claims" / "a").write_text(f"{socket.gethostname()} {dead.pid}")  # its process is gone
    (out / ".a.x1y2.part").mkdir()  # the half-written folder a kill -9 leaves
    (out / ".a.x1y2.part" / "report.json").write_text("{")
    res = screen_many(FakeScreener(), studies, out, progress=False)
    assert [r["study_id"] for r in res["screened"]] == ["a"]
    assert sorted(p.name for p in out.iterdir()) == ["a", "summary.csv"]


def test_study_names_never_take_the_batch_files_and_out_must_be_a_folder(tmp_path):
    (tmp_path / "summary.csv.nii.gz").write_text("ok")
    (tmp_path / "failures.json.nii.gz").write_text("ok")
    studies = studies_from([tmp_path / "summary.csv.nii.gz", tmp_path / "failures.json.nii.gz"])
    assert [s.study_id for s in studies] == ["summary.csv_study", "failures.json_study"]
    screen_many(FakeScreener(), studies, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "summary.csv").is_file() and len(_summary(tmp_path / "out")) == 2
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"\(--out\) is a file, not a folder"):
        screen_many(FakeScreener(), studies, tmp_path / "file", progress=False)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_claims_are_exclusive_between_processes(tmp_path):
    """Two processes claiming the same study: exactly one gets it."""
    from m3lung.systems.batch import _claim

    (tmp_path / "out").mkdir()
    script = (
        "import sys; from pathlib import Path; from m3lung.systems.batch import _claim; "
        "c = _claim(Path(sys.argv[1]), 's'); print('got' if c else 'not'); import time; time.sleep(2)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = sorted(p.communicate()[0].strip() for p in procs)
    assert outs == ["got", "not"]
    assert _claim(tmp_path / "out", "s") is not None  # both gone now: the stale claim is taken over
