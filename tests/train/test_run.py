"""The shared training-run skeleton: folder, recipe.json, split.json, provenance, fit, results.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from m3lung.train.checkpoint import load_checkpoint
from m3lung.train.config import TrainConfig
from m3lung.train.run import TrainingRun, write_results


@dataclass(frozen=True)
class _ModelConfig:
    width: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width}


@dataclass(frozen=True)
class _Recipe:
    name: str = "toy"
    profile: str = "tiny"
    model: _ModelConfig = field(default_factory=_ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, batch_size=4, device="cpu"))


class _Task:
    kind = "toy"

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.x = torch.from_numpy(rng.normal(size=(8, 3)).astype(np.float32))
        self.y = torch.from_numpy((rng.random(8) < 0.5).astype(np.int64))

    def train_size(self) -> int:
        return 8

    def train_weights(self) -> None:
        return None

    def batch(self, rows: np.ndarray, epoch: int, device: torch.device) -> Any:
        return self.x[rows].to(device), self.y[rows].to(device)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        return F.cross_entropy(model(x), y), {}

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        return {}


def test_training_run_writes_its_files_and_provenance(tmp_path):
    run = TrainingRun(tmp_path / "run")
    recipe = _Recipe()
    run.write_setup(recipe, {"train": ["a"], "val": [], "test": ["b"]})
    assert json.loads((tmp_path / "run" / "recipe.json").read_text())["train"]["epochs"] == 1
    assert json.loads((tmp_path / "run" / "split.json").read_text())["test"] == ["b"]
    fitted, seconds = run.fit(nn.Linear(3, 2), _Task(), recipe, provenance={"data": "here"}, progress=False)
    assert isinstance(seconds, float) and isinstance(run.elapsed(), float) and fitted.best_path.exists()
    doc = load_checkpoint(fitted.best_path)
    assert doc["config"] == {"width": 3}
    assert {"recipe": "toy", "profile": "tiny", "data": "here"}.items() <= doc["provenance"].items()
    path = run.write_results({"acc": np.float32(0.5)})
    assert path == tmp_path / "run" / "results.json" and json.loads(path.read_text()) == {"acc": 0.5}
    assert json.loads(write_results(tmp_path, {"n": 1}, "other.json").read_text()) == {"n": 1}


def test_other_ranks_write_nothing(tmp_path):
    TrainingRun(tmp_path / "rank1", main=False).write_setup(_Recipe(), {})
    assert not (tmp_path / "rank1").exists()
