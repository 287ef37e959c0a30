"""The training engine: determinism, exact resume, multi-process equivalence, outputs, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from m3lung.errors import InputError, M3LungWarning
from m3lung.systems.m3lung import evaluate_slice_run, train_slice
from m3lung.systems.m3lung_inference import SlicePredictor
from m3lung.systems.m3lung_recipes import load_slice_recipe
from m3lung.train import inference
from m3lung.train.checkpoint import load_checkpoint, weights_hash
from m3lung.train.engine import DistInfo, batches, epoch_rows

TINY = "slice_tiny"


def test_epoch_rows_depend_on_seed_and_epoch_only():
    a = epoch_rows(50, 3, 7)
    assert np.array_equal(a, epoch_rows(50, 3, 7)) and sorted(a) == list(range(50))
    assert not np.array_equal(a, epoch_rows(50, 4, 7))
    w = np.r_[np.ones(45), np.full(5, 9.0)]  # 5 rare samples weighted 9x: about half the draws
    d = epoch_rows(50, 0, 1, samples=4000, weights=w)
    assert 0.4 < np.mean(d >= 45) < 0.6
    assert len(epoch_rows(10, 0, 0, samples=25)) == 25


def test_batches_split_across_processes():
    rows = np.arange(20)
    one = list(batches(rows, 8, DistInfo(0, 1)))
    two = [list(batches(rows, 8, DistInfo(r, 2))) for r in (0, 1)]
    assert len(one) == 2  # the last partial batch is dropped
    for b, (r0, r1) in zip(one, zip(*two, strict=True), strict=True):
        assert np.array_equal(b, np.concatenate([r0, r1]))
    with pytest.raises(InputError):
        list(batches(rows, 7, DistInfo(0, 2)))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The tiny recipe's synthetic cohort, made once."""
    from m3lung.systems.m3lung import prepare_data

    root = tmp_path_factory.mktemp("tiny_cohort")
    prepare_data(load_slice_recipe(TINY), root / "data", root / "cache", progress=False)
    return root


def _run(cohort, out, *overrides, resume=False):
    recipe = load_slice_recipe(TINY, list(overrides))
    return train_slice(recipe, cohort / "data", out, resume=resume, progress=False, cache_dir=cohort / "cache")


def _last_weights(out) -> str:
    state = torch.load(Path(out) / "checkpoints" / "last.pt", weights_only=True)
    return weights_hash(state["model"])


@pytest.mark.slow
def test_tiny_run_writes_everything(cohort, tmp_path):
    res = _run(cohort, tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"best.pt", "log.csv", "results.json", "recipe.json", "split.json", "checkpoints"} <= files
    doc = load_checkpoint(tmp_path / "run" / "best.pt", kind="slice_net")
    assert doc["config"]["backbone"] == "resnet18" and doc["provenance"]["recipe"] == "slice_tiny"
    assert doc["provenance"]["init"] == {"init": "random"} and doc["weights_hash"] == res["weights_hash"]
    t = res["test"]
    assert 0 <= t["acc"] <= 1 and 0 <= t["lesion_auc"] <= 1 and 0 <= t["pointing_game"] <= 1
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 3 and log[0].startswith("epoch,lr,train_loss")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert not set(split["train"]) & set(split["test"])  # patients never straddle splits
    with pytest.raises(InputError, match="already holds a training run"):
        _run(cohort, tmp_path / "run")
    for proto in ("with_lesion", "contrast"):
        assert 0 <= t[f"pointing_game[{proto}]"] <= 1 and 0 <= t[f"dice@0.5[{proto}]"] <= 1
    assert t["pointing_game"] == t["pointing_game[with_lesion]"]  # the recipe keeps the paper's map
    assert 0 < t["pointing_game_chance"] < 0.5
    # a tolerance can only add hits: 15 px at 224 scaled to the tiny recipe's input
    assert t["pointing_game"] <= t["pointing_game_tolerant"] <= 1
    assert t["pointing_game_tolerance_px"] == max(1, round(15 * doc["config"]["input_size"] / 224))
    per_class = [t[f"pointing_game_{c}"] for c in ("covid-19", "h1n1", "cap") if f"pointing_game_{c}" in t]
    assert per_class and min(per_class) <= t["pointing_game"] <= max(per_class)
    conf = np.array(t["confusion"])
    by_height, by_area = t["acc_healthy_by_height"], t["acc_by_lesion_area"]
    assert sum(by_height["n"]) == conf[0].sum() and sum(by_area["n"]) == conf[1:].sum()
    hits = np.nansum(np.array(by_height["acc"]) * by_height["n"]) + np.nansum(np.array(by_area["acc"]) * by_area["n"])
    assert hits / conf.sum() == pytest.approx(t["acc"])  # the bins add up to the overall accuracy

    # `m3lung evaluate slice` re-tests best.pt on the same held-out scans and finds the same figures
    again = evaluate_slice_run(tmp_path / "run", cohort / "data", cache_dir=cohort / "cache", progress=False)
    assert again["weights_hash"] == res["weights_hash"]
    for key in ("acc", "lesion_auc", "pointing_game[contrast]", "dice@0.5[with_lesion]"):
        assert again["test"][key] == pytest.approx(t[key], abs=1e-6)
    # finer maps (shift-and-stitch) change only the maps, and go to their own file
    finer = evaluate_slice_run(
        tmp_path / "run", cohort / "data", cache_dir=cohort / "cache", progress=False, map_shifts=2
    )
    assert finer["map_shifts"] == 2 and again["map_shifts"] == 1
    assert json.loads((tmp_path / "run" / "results_map_shifts2.json").read_text())["map_shifts"] == 2
    assert json.loads((tmp_path / "run" / "results.json").read_text())["map_shifts"] == 1
    for key in ("acc", "lesion_auc"):
        assert finer["test"][key] == pytest.approx(t[key], abs=1e-6)
    assert 0 <= finer["test"]["pointing_game"] <= finer["test"]["pointing_game_tolerant"] <= 1
    flipped = evaluate_slice_run(
        tmp_path / "run", cohort / "data", cache_dir=cohort / "cache", progress=False, map_shifts=2, map_flip=True
    )
    assert flipped["map_flip"] is True and again["map_flip"] is False
    assert json.loads((tmp_path / "run" / "results_map_shifts2_map_flip.json").read_text())["map_flip"] is True
    for key in ("acc", "lesion_auc"):
        assert flipped["test"][key] == pytest.approx(t[key], abs=1e-6)
    with pytest.raises(InputError, match="map_shifts"):
        evaluate_slice_run(tmp_path / "run", cohort / "data", cache_dir=cohort / "cache", progress=False, map_shifts=3)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    split["test"] = split["test"][:-1]
    (tmp_path / "run" / "split.json").write_text(json.dumps(split))
    with pytest.raises(InputError, match="do not give the split"):
        evaluate_slice_run(tmp_path / "run", cohort / "data", cache_dir=cohort / "cache", progress=False)


@pytest.mark.slow
def test_same_seed_same_weights_and_resume_is_exact(cohort, tmp_path):
    _run(cohort, tmp_path / "a")
    _run(cohort, tmp_path / "b")
    assert _last_weights(tmp_path / "a") == _last_weights(tmp_path / "b")
    _run(cohort, tmp_path / "c", "train.epochs=1")  # interrupted after one epoch ...
    _run(cohort, tmp_path / "c", resume=True)  # ... and resumed to the recipe's two
    assert _last_weights(tmp_path / "c") == _last_weights(tmp_path / "a")
    assert len((tmp_path / "c" / "log.csv").read_text().splitlines()) == 3
    _run(cohort, tmp_path / "d", "train.seed=5")
    assert _last_weights(tmp_path / "d") != _last_weights(tmp_path / "a")


@pytest.mark.slow
def test_two_processes_on_gloo_match_one(cohort, tmp_path):
    """torchrun with 2 CPU processes (gloo) computes what 1 process computes with the same global batch."""
    sets = ["train.freeze_bn=true", "train.device=cpu"]
    _run(cohort, tmp_path / "one", *sets)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "m3lung.cli", "train", "slice", "--recipe", TINY, "--data", str(cohort / "data"),
        "--out", str(tmp_path / "two"), "--cache", str(cohort / "cache"), "--quiet",
        *[x for s in sets for x in ("--set", s)],
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)["model"]
    # Gradients are summed in a different order, so the weights drift apart by float rounding only: a
    # wrong all-reduce (sum instead of mean, or different samples) moves them by the size of an update.
    keys = [k for k in a if a[k].is_floating_point()]
    fa = torch.cat([a[k].flatten() for k in keys])
    fb = torch.cat([b[k].flatten() for k in keys])
    assert ((fa - fb).norm() / fa.norm()).item() < 1e-3
    for line in (1, 2):
        one = (tmp_path / "one" / "log.csv").read_text().splitlines()[line].split(",")
        two = (tmp_path / "two" / "log.csv").read_text().splitlines()[line].split(",")
        assert abs(float(one[2]) - float(two[2])) < 1e-3 * line  # the same mean training loss per epoch


@pytest.mark.slow
def test_predictor_on_a_volume(cohort, tmp_path, monkeypatch):
    from m3lung.io import read_ct

    _run(cohort, tmp_path / "run")
    pred = SlicePredictor(tmp_path / "run" / "best.pt", device="cpu", batch_size=5)
    ct = next(p for p in (cohort / "data").glob("*/ct"))
    vol = read_ct(ct)
    out = pred.predict(vol)
    n = vol.n_slices
    assert out.p_multi.shape == (n, 4) and out.p_lesion is not None and out.p_lesion.shape == (n, 2)
    assert out.maps is not None and out.maps.shape == (n, 64, 64) and out.features.shape == (n, 768)
    np.testing.assert_allclose(out.p_multi.sum(1), 1, atol=1e-5)
    assert out.boxes.shape == (n, 4) and out.weights_hash == pred.weights_hash
    plain = SlicePredictor(tmp_path / "run" / "best.pt", device="cpu", batch_size=5, channels_last=False).predict(vol)
    np.testing.assert_allclose(plain.p_multi, out.p_multi, atol=1e-4)  # channels-last (default) is only a layout
    np.testing.assert_allclose(plain.maps, out.maps, atol=1e-3)
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", M3LungWarning)  # no bf16 warning where the CPU has bf16
        fast_pred = SlicePredictor(tmp_path / "run" / "best.pt", device="cpu", batch_size=5, bf16=True)
    fast = fast_pred.predict(vol)
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: False)
    with pytest.warns(M3LungWarning, match="without bf16 instructions"):
        SlicePredictor(tmp_path / "run" / "best.pt", device="cpu", batch_size=5, bf16=True)
    assert np.abs(fast.p_multi - out.p_multi).max() < 0.05  # bf16 autocast on the CPU
    assert not np.array_equal(fast.p_multi, out.p_multi)  # ... really ran in bf16


class _ToyTask:
    """A linear regression with a BatchNorm: small enough to follow the engine step by step."""

    kind = "toy"

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 3, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]])
        self.seen: list[dict[str, torch.Tensor]] = []  # the weights every loss was computed with

    def train_size(self) -> int:
        return 16

    def train_weights(self) -> None:
        return None

    def batch(self, rows, epoch, device):
        return self.x[rows], self.y[rows]

    def loss(self, model, batch):
        self.seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        x, y = batch
        return ((model(x) - y) ** 2).mean(), {}

    def evaluate(self, model, device):
        model.eval()
        with torch.no_grad():
            return {"val_loss": float(((model(self.x) - self.y) ** 2).mean())}


def _toy_fit(out, epochs=3, ema=0.0, resume=False):
    from torch import nn

    from m3lung.train.config import OptimConfig, ScheduleConfig, TrainConfig
    from m3lung.train.engine import fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 1))
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=4,
        optim=OptimConfig(name="sgd", lr=0.05, momentum=0.0, weight_decay=0.0),
        schedule=ScheduleConfig(name="none"),
        best_metric="val_loss",
        best_mode="min",
        device="cpu",
        ema=ema,
    )
    task = _ToyTask()
    fit(model, task, cfg, out, resume=resume, progress=False)
    return task, torch.load(Path(out) / "checkpoints" / "last.pt", weights_only=True)


def test_ema_averages_every_step_and_resumes_exactly(tmp_path):
    plain, state = _toy_fit(tmp_path / "plain")
    assert state["ema"] is None
    # the weights after every step: those each later loss saw, then the final ones
    steps = [*plain.seen[1:], state["model"]]
    assert len(steps) == 12  # 3 epochs of 16 samples in batches of 4
    decay = 0.8
    expected = {k: v.clone() for k, v in steps[0].items()}
    for w in steps[1:]:
        for k, v in w.items():
            if v.is_floating_point():
                expected[k] = decay * expected[k] + (1 - decay) * v
    _, averaged = _toy_fit(tmp_path / "ema", ema=decay)
    assert weights_hash(averaged["model"]) == weights_hash(state["model"])  # training itself is unchanged
    got = {k.removeprefix("module."): v for k, v in averaged["ema"].items() if k.startswith("module.")}
    for k, v in expected.items():
        if v.is_floating_point():
            torch.testing.assert_close(got[k], v)
    # best.pt holds averaged weights (the ones validation picked), never the raw ones
    best = load_checkpoint(tmp_path / "ema" / "best.pt", kind="toy")["state_dict"]
    assert weights_hash(best) != weights_hash(averaged["model"])
    # interrupted after one epoch and resumed: the same average as the uninterrupted run
    _toy_fit(tmp_path / "cut", epochs=1, ema=decay)
    _, resumed = _toy_fit(tmp_path / "cut", ema=decay, resume=True)
    assert weights_hash(resumed["ema"]) == weights_hash(averaged["ema"])
    with pytest.raises(InputError, match=r"train\.ema"):
        _toy_fit(tmp_path / "cut", epochs=4, resume=True)


def test_ema_must_be_a_decay():
    from m3lung.train.config import TrainConfig, from_dict

    with pytest.raises(InputError, match="ema"):
        from_dict(TrainConfig, {"ema": 1.0})
