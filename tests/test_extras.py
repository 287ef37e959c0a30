"""Optional extras: a missing one is one line naming the extra, through the Python API and the CLI.

``monkeypatch.setitem(sys.modules, NAME, None)`` makes ``import NAME`` raise ImportError, as if the package
were not installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from m3lung._extras import EXTRAS, require
from m3lung.cli import main
from m3lung.errors import M3LungError, MissingExtraError
from m3lung.evaluate.figures import plot_confusion, plot_kaplan_meier, plot_roc
from m3lung.evaluate.predictions import write_predictions
from m3lung.evaluate.survival import cox_stepwise, kaplan_meier, logrank

FIGURES = "figures need matplotlib, an optional extra: pip install 'm3lung[figures]'"
SURVIVAL = "survival statistics need lifelines, an optional extra: pip install 'm3lung[survival]'"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)


@pytest.fixture
def no_lifelines(monkeypatch):
    monkeypatch.setitem(sys.modules, "lifelines", None)


def test_require_returns_the_module():
    import matplotlib.figure

    assert require("matplotlib.figure", "figures", "figures") is matplotlib.figure


@pytest.mark.parametrize("module", ["matplotlib", "matplotlib.figure"])
def test_require_names_the_extra(no_matplotlib, module):
    with pytest.raises(MissingExtraError) as info:
        require(module, "figures", "figures")
    assert str(info.value) == FIGURES
    assert isinstance(info.value, M3LungError) and isinstance(info.value, ImportError)


def test_require_says_why_when_a_dependency_of_the_package_is_missing(tmp_path, monkeypatch):
    (tmp_path / "fake_extra_pkg").mkdir()
    (tmp_path / "fake_extra_pkg" / "__init__.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError, match=re.escape("m3lung[figures]' (No module named 'not_installed_")):
        require("fake_extra_pkg", "figures", "figures")


def test_require_refuses_an_unknown_extra():
    with pytest.raises(ValueError, match="unknown extra"):
        require("json", "nope", "things")


def test_figures_api(no_matplotlib, tmp_path):
    y = np.arange(20) % 2
    with pytest.raises(MissingExtraError, match=re.escape(FIGURES)):
        plot_roc(y, np.eye(2)[y], ["a", "b"], tmp_path / "roc")
    with pytest.raises(MissingExtraError, match=re.escape(FIGURES)):
        plot_confusion(np.eye(2, dtype=int), ["a", "b"], tmp_path / "confusion")
    assert list(tmp_path.iterdir()) == []


def test_survival_api(no_lifelines, tmp_path):
    d = np.arange(1.0, 21.0)
    e = np.ones(20, dtype=int)
    g = np.arange(20) % 2
    for call in (
        lambda: kaplan_meier(d, e),
        lambda: logrank(d, e, g),
        lambda: cox_stepwise(pd.DataFrame({"t": d, "e": e, "x": g * 1.0}), "t", "e", ["x"]),
    ):
        with pytest.raises(MissingExtraError) as info:
            call()
        assert str(info.value) == SURVIVAL
    with pytest.raises(MissingExtraError, match=re.escape(SURVIVAL)):
        plot_kaplan_meier(d, e, g, tmp_path / "km")


def _predictions(path, n=40):
    classes = ("Healthy", "COVID-19", "H1N1", "CAP")
    y = np.arange(n) % 4
    s = np.full((n, 4), 0.1)
    s[np.arange(n), y] = 0.7
    return write_predictions(path, [f"p{i}" for i in range(n)], y, y, s, classes)


def test_cli_evaluate_out_without_matplotlib(no_matplotlib, tmp_path, capsys):
    pred = _predictions(tmp_path / "p.csv")
    assert main(["evaluate", str(pred), "--bootstrap", "20", "--out", str(tmp_path / "o")]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"m3lung: error: {FIGURES}\n" and "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "o").exists()  # refused before anything was computed or written
    # without --out no figure is drawn and the command needs no extra
    assert main(["evaluate", str(pred), "--bootstrap", "20", "--json"]) == 0


def test_core_imports_without_the_extras():
    code = (
        "import sys\n"
        "for name in ('matplotlib', 'lifelines', 'skimage', 'pandas'):\n"
        "    sys.modules[name] = None\n"
        "import m3lung, m3lung.cli, m3lung.evaluate, m3lung.evaluate.survival, m3lung.evaluate.figures\n"
        "import m3lung.systems, m3lung.train, m3lung.preprocess, m3lung.phantom, m3lung.report\n"
        "raise SystemExit(m3lung.cli.main(['evaluate', sys.argv[1], '--out', sys.argv[2]]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "missing.csv"), "unused"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])},
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2 and proc.stderr.startswith("m3lung: error: "), proc.stderr


def test_test_extra_brings_every_extra():
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = meta["optional-dependencies"]

    def names(reqs):
        return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}

    core = names(meta["dependencies"])
    assert set(EXTRAS) <= set(extras)
    for extra, packages in EXTRAS.items():
        assert set(packages) <= names(extras[extra]) and not set(packages) & core
        assert set(packages) <= names(extras["all"]) and set(packages) <= names(extras["test"])
