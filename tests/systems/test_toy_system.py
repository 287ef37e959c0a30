"""A whole new system in a few dozen lines, with no change outside this file (issue 16, proof b).

The toy system tells two classes apart from three intensity figures of a scan with a tiny linear
network, trained by the project's engine; registered here, it is trained, screened and evaluated
through the command line like M³Lung-Sys.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from helpers import make_volume, synthetic_chest
from m3lung.cli import main
from m3lung.io import read_ct, write_ct
from m3lung.models.registry import register_model
from m3lung.systems.base import RuleResult, Stage, StageOption, StudyResult, System, register_system, unregister_system
from m3lung.train.checkpoint import load_model
from m3lung.train.config import TrainConfig
from m3lung.train.engine import fit
from m3lung.train.inference import load_for_inference


# ------------------------------------------------------------------------------------------ the toy system
@dataclass(frozen=True)
class ToyConfig:
    n_features: int = 3


@register_model("toy_net", ToyConfig, description="linear classifier on three intensity figures")
class ToyNet(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.n_features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def figures(hu: np.ndarray) -> np.ndarray:
    """(N, H, W) HU → (N, 3): each slice's share of soft tissue, of dense voxels, mean HU / 1000."""
    a = np.asarray(hu, np.float32).reshape(hu.shape[0], -1)
    return np.stack([((a > -200) & (a < 100)).mean(1), (a > 100).mean(1), a.mean(1) / 1000], 1).astype(np.float32)


@dataclass(frozen=True)
class ToyRecipe:
    name: str = "toy"
    model: ToyConfig = field(default_factory=ToyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _cohort(data: str) -> tuple[np.ndarray, np.ndarray]:
    rows = list(csv.DictReader((Path(data) / "labels.csv").open()))
    x = np.stack([figures(read_ct(Path(data) / r["path"]).voxels).mean(0) for r in rows])
    return x, np.array([int(r["label"]) for r in rows])


class ToyTask:
    kind = "toy_net"

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def train_size(self) -> int:
        return len(self.y)

    def train_weights(self) -> None:
        return None

    def batch(self, rows: np.ndarray, epoch: int, device: torch.device) -> Any:
        return self.x[rows].to(device), self.y[rows].to(device)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return nn.functional.cross_entropy(model(batch[0]), batch[1]), {}

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        with torch.no_grad():
            return {"val_acc": float((model(self.x.to(device)).argmax(1).cpu() == self.y).float().mean())}


def train_toy(recipe: ToyRecipe, data: str, out: str, *, resume: bool = False, progress: bool = True) -> dict:
    result = fit(
        ToyNet(recipe.model),
        ToyTask(*_cohort(data)),
        recipe.train,
        out,
        resume=resume,
        progress=progress,
        model_config=asdict(recipe.model),
        provenance={"recipe": recipe.name, "data": data},
    )
    return evaluate_toy(out, data=data) | {"best": str(result.best_path)}


def evaluate_toy(run: str, *, data: str | None = None, progress: bool = True) -> dict:
    model, _ = load_model(Path(run) / "best.pt", kind="toy_net")
    x, y = _cohort(str(data))
    acc = float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    (Path(run) / "results.json").write_text(json.dumps({"acc": acc}))
    return {"acc": acc, "n": len(y)}


@dataclass(frozen=True)
class ToyOptions:
    decision_threshold: float = field(default=0.5, metadata={"help": "P(Diseased) above which a scan is Diseased"})


class ToySystem(System):
    name, title, description = "toy", "Toy system", "a linear classifier on three intensity figures (a test)"
    classes = ("Healthy", "Diseased")
    Options = ToyOptions
    stages = (
        Stage(
            "fit",
            "the toy network",
            ToyRecipe,
            train_toy,
            lambda r: f"acc {r['acc']:.3f}",
            evaluate_toy,
            options=(StageOption("--note", "ignored", ("train",), recipe_key="name"),),
        ),
    )

    def __init__(self, model: nn.Module, doc: dict, device: torch.device, options: ToyOptions) -> None:
        self.model, self.doc, self.device, self.options = model, doc, device, options

    @classmethod
    def load(cls, weights: Any, options: Any, device: str = "auto") -> ToySystem:
        return cls(*load_for_inference(weights, kind="toy_net", device=device), options)

    def predict(self, volume: Any) -> StudyResult:
        with torch.no_grad():
            p_slices = self.model(torch.from_numpy(figures(volume.voxels))).softmax(1).numpy()
            p = self.model(torch.from_numpy(figures(volume.voxels).mean(0, keepdims=True))).softmax(1).numpy()[0]
        label = self.classes[int(p[1] > self.options.decision_threshold)]
        rule = RuleResult(p, label, "Linear network", "softmax of the toy network", {"threshold": 0.5})
        return StudyResult(
            "toy",
            self.classes,
            label,
            p,
            "linear",
            {"linear": rule},
            slices={"p_diseased": [round(float(v), 4) for v in p_slices[:, 1]]},
            extras={"dense_share": float(figures(volume.voxels)[:, 1].mean())},
            weights={"hashes": {"toy": self.doc["weights_hash"]}, "trained_on": "toy volumes"},
        )


# ------------------------------------------------------------------------------------------ the test
@pytest.fixture
def toy_system():
    register_system(ToySystem)
    yield ToySystem
    unregister_system("toy")


def _write_cohort(root: Path) -> None:
    root.mkdir()
    rows = ["path,label"]
    for k in range(8):
        a = synthetic_chest(n=4, size=32, seed=k)
        if k % 2:  # "disease": dense blobs in the lungs
            a[:, 10:16, 8:14] = 300.0
        write_ct(make_volume(a), root / f"v{k}.nii.gz")
        rows.append(f"v{k}.nii.gz,{k % 2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_a_toy_system_trains_screens_and_evaluates_through_the_cli(toy_system, tmp_path, capsys):
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "screen"
    _write_cohort(data)
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(
        "name: toy\ntrain:\n  epochs: 60\n  batch_size: 8\n  device: cpu\n  amp: false\n"
        "  optim: {name: adam, lr: 0.1, weight_decay: 0.0}\n  schedule: {name: none}\n"
    )
    assert main(["systems"]) == 0
    listing = capsys.readouterr().out
    assert "toy: Toy system" in listing and "Healthy, Diseased" in listing and "train toy fit" in listing
    assert "--decision-threshold" in listing

    args = ["train", "toy", "fit", "--recipe", str(recipe), "--data", str(data), "--out", str(run), "--quiet"]
    assert main([*args, "--note", "toy-run"]) == 0
    assert "acc 1.000" in capsys.readouterr().out
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["model"] == "toy_net" and best["provenance"]["recipe"] == "toy-run"

    scans = [str(data / "v0.nii.gz"), str(data / "v1.nii.gz")]
    screen = ["screen", *scans, "--system", "toy", "--weights", str(run / "best.pt"), "--out", str(out), "--quiet"]
    assert main([*screen, "--decision-threshold", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "v0: Healthy" in printed and "v1: Diseased" in printed and "dense share" in printed
    report = json.loads((out / "v1" / "report.json").read_text())
    assert report["schema"] == "m3lung.report/2" and report["system"]["name"] == "toy"
    assert report["patient"]["classes"] == ["Healthy", "Diseased"] and report["patient"]["decided_by"] == "linear"
    assert report["patient"]["label"] == "Diseased" and report["patient"]["linear"]["title"] == "Linear network"
    assert len(report["slices"]["p_diseased"]) == 4 and "lesion_map" not in report["outputs"]
    assert {p.name for p in (out / "v1").iterdir()} == {"report.json", "report.html"}
    html = (out / "v1" / "report.html").read_text()
    assert "Toy system screening report" in html and "Linear network" in html
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["label"] for r in summary] == ["Healthy", "Diseased"] and summary[0]["system"] == "toy"
    assert set(summary[0]) >= {"p_Healthy", "p_Diseased", "dense_share"}

    # another system's flag, or a stage the system does not have, is one clear error
    assert main([*screen, "--overwrite", "--map-shifts", "2"]) == 2
    assert "--map-shifts: not an option of Toy system" in capsys.readouterr().err
    assert main(["evaluate", "toy", "nope", str(run)]) == 2
    assert "has no training stage 'nope' (stages: fit)" in capsys.readouterr().err

    assert main(["evaluate", "toy", "fit", str(run), "--data", str(data)]) == 0
    assert "acc 1.000" in capsys.readouterr().out
    assert main(["evaluate", "toy", "fit", str(run), "--data", str(data), "--map-shifts", "2"]) == 2
    assert "does not take --map-shifts" in capsys.readouterr().err
