"""Patient level of M³Lung-Sys: the feature cache, patient training, the fusion rules' figures, system files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from m3lung.data.features import FeatureCache
from m3lung.data.slices import synthetic_cases
from m3lung.errors import InputError
from m3lung.models import PatientNet, PatientNetConfig, pad_features
from m3lung.systems.m3lung_patient import evaluate_patients, extract_features, load_patient_recipe
from m3lung.train.checkpoint import WeightsError, load_checkpoint, load_system, save_model, save_system

pytestmark = pytest.mark.slow


def test_feature_cache_holds_every_window(tiny_system):
    cache = FeatureCache(tiny_system / "features")
    meta = cache.meta()
    assert meta["centres"] == [-700.0, -600.0, -500.0] and meta["feature_dim"] == 768
    rows = cache.index()
    cases = synthetic_cases(tiny_system / "data")
    assert sorted(r["patient_id"] for r in rows) == sorted(c.patient_id for c in cases)
    scan = cache.load(rows[0]["patient_id"])
    w, n, f = scan.features.shape
    assert (w, f) == (3, 768) and n == int(rows[0]["n_slices"]) == scan.slice_lesion.shape[0]
    assert scan.p_multi.shape == (3, n, 4) and scan.p_lesion is not None and scan.p_lesion.shape == (3, n, 2)
    np.testing.assert_allclose(scan.p_multi.sum(-1), 1, atol=1e-4)
    assert not np.allclose(scan.features[0], scan.features[2])  # the window centres really differ


def test_feature_cache_resumes_and_refuses_other_weights(tiny_system, tmp_path):
    target = tiny_system / "features"
    before = {p.name: p.stat().st_mtime_ns for p in target.glob("*.npz")}
    extract_features(
        tiny_system / "slice" / "best.pt",
        synthetic_cases(tiny_system / "data"),
        target,
        slice_cache=tiny_system / "cache",
        progress=False,
    )
    assert {p.name: p.stat().st_mtime_ns for p in target.glob("*.npz")} == before  # nothing recomputed
    doc = load_checkpoint(tiny_system / "slice" / "best.pt")
    doc["state_dict"] = {k: v + 1 if v.is_floating_point() else v for k, v in doc["state_dict"].items()}
    doc["weights_hash"] = None
    other = tmp_path / "other.pt"
    torch.save(doc, other)
    with pytest.raises(InputError, match="this cache holds features of slice_weights_hash"):
        extract_features(other, synthetic_cases(tiny_system / "data")[:1], target, progress=False)


def test_patient_run_outputs_and_split(tiny_system):
    run = tiny_system / "patient"
    assert {"best.pt", "system.pt", "log.csv", "results.json", "split.json", "recipe.json"} <= {
        p.name for p in run.iterdir()
    }
    res = json.loads((run / "results.json").read_text())
    split = json.loads((run / "split.json").read_text())
    slice_split = json.loads((tiny_system / "slice" / "split.json").read_text())
    assert split == slice_split  # the patient network never trains on the slice network's test scans
    for rule in ("network", "nonparametric", "maxpool"):
        figs = res["test"][rule]
        c = np.array(figs["confusion"])
        assert c.sum() == figs["n_scans"] == len(split["test"])
        assert figs["acc"] == pytest.approx(np.trace(c) / c.sum())
        for k in ("fpe", "fne", "fdpe"):
            assert 0 <= figs[k] <= 1 or np.isnan(figs[k])
    assert {s["patient_id"] for s in res["test"]["scans"]} == set(split["test"])
    from m3lung.evaluate.summary import evaluate_files

    for rule in ("network", "nonparametric", "maxpool"):  # what `m3lung evaluate` reads
        ev = evaluate_files(run / f"predictions_{rule}.csv", n_resamples=50)["json"]
        assert ev["systems"][f"patient/{rule}"]["acc"][0] == pytest.approx(res["test"][rule]["acc"])
    slice_doc, patient_doc = load_system(run / "system.pt")
    assert slice_doc["weights_hash"] == load_checkpoint(tiny_system / "slice" / "best.pt")["weights_hash"]
    assert patient_doc is not None and patient_doc["weights_hash"] == res["weights_hash"]
    assert patient_doc["config"]["feature_dim"] == 768  # taken from the cache, whatever the recipe said


def test_evaluate_without_network_and_padding(tiny_system):
    cache = FeatureCache(tiny_system / "features")
    scans = list(cache)
    recipe = load_patient_recipe("patient_tiny")
    out = evaluate_patients(None, scans, recipe, torch.device("cpu"))
    assert "network" not in out and out["nonparametric"]["n_scans"] == len(scans)
    x, mask = pad_features([torch.ones(3, 5), torch.ones(1, 5)])
    assert x.shape == (2, 3, 5) and mask.tolist() == [[True] * 3, [True, False, False]]


def test_system_file_errors(tiny_system, tmp_path):
    with pytest.raises(WeightsError, match="not an m3lung checkpoint"):
        torch.save({"a": torch.zeros(1)}, tmp_path / "plain.pt")
        load_system(tmp_path / "plain.pt")
    net = PatientNet(PatientNetConfig(feature_dim=64, heads=2, head_dim=8))
    save_model(tmp_path / "p.pt", net, kind="patient_net", config=net.config.to_dict(), provenance={})
    with pytest.raises(WeightsError, match="holds a 'patient_net' model"):
        load_system(tmp_path / "p.pt")
    doc = load_checkpoint(tiny_system / "slice" / "best.pt")
    save_system(tmp_path / "s.pt", doc, None)
    s, p = load_system(tmp_path / "s.pt")
    assert p is None and s["weights_hash"] == doc["weights_hash"]
    broken = torch.load(tmp_path / "s.pt", weights_only=True)
    key = next(iter(broken["slice"]["state_dict"]))
    broken["slice"]["state_dict"][key] = broken["slice"]["state_dict"][key] + 1
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(WeightsError, match="do not match their recorded hash"):
        load_system(tmp_path / "broken.pt")
