"""The skeleton every training run shares: its folder, ``recipe.json``, ``split.json``, provenance,
:func:`m3lung.train.engine.fit`, timing and ``results.json`` (written atomically).

A system's ``train_*`` command makes its data, model and task, then::

    run = TrainingRun(out)                     # the clock starts
    run.write_setup(recipe, split)             # out/recipe.json, out/split.json
    fitted, seconds = run.fit(model, task, recipe, provenance={...})
    ...                                        # test fitted.best_path
    run.write_results(results)                 # out/results.json
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from m3lung.io.atomic import require_output_folder, write_text_atomic
from m3lung.train.config import TrainConfig, to_dict
from m3lung.train.engine import FitResult, Task, fit


class _ModelConfig(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class RunRecipe(Protocol):
    """What a run needs of a recipe dataclass: its name and profile, the model's config, the training's."""

    @property
    def name(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def model(self) -> _ModelConfig: ...
    @property
    def train(self) -> TrainConfig: ...


class TrainingRun:
    """The folder ``out`` of one training run; the clock starts when it is made.

    ``main``: whether this process writes files (rank 0 of a distributed run; the others only train).
    """

    def __init__(self, out: str | os.PathLike[str], *, main: bool = True) -> None:
        self.out_dir = require_output_folder(out, what="the run folder (--out)")
        self.main = main
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the run was made."""
        return time.perf_counter() - self.started

    def write_setup(self, recipe: RunRecipe, split: Mapping[str, Any]) -> None:
        """Make the folder; write ``recipe.json`` (the whole recipe) and ``split.json`` (the held-out data)."""
        if not self.main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.out_dir / "recipe.json", json.dumps(to_dict(recipe), indent=1))
        write_text_atomic(self.out_dir / "split.json", json.dumps(split, indent=1))

    def fit(
        self,
        model: nn.Module,
        task: Task,
        recipe: RunRecipe,
        *,
        provenance: Mapping[str, Any],
        resume: bool = False,
        progress: bool = True,
    ) -> tuple[FitResult, float]:
        """Train ``model`` on ``task`` as ``recipe.train`` says; the result and the seconds it took.

        The checkpoints record the model's config and the provenance: the recipe's name and profile,
        then ``provenance``.
        """
        t0 = time.perf_counter()
        result = fit(
            model,
            task,
            recipe.train,
            self.out_dir,
            resume=resume,
            progress=progress,
            model_config=recipe.model.to_dict(),
            provenance={"recipe": recipe.name, "profile": recipe.profile, **provenance},
        )
        return result, time.perf_counter() - t0

    def write_results(self, results: Mapping[str, Any], name: str = "results.json") -> Path:
        """:func:`write_results` into this run's folder."""
        return write_results(self.out_dir, results, name)


def write_results(folder: str | os.PathLike[str], results: Mapping[str, Any], name: str = "results.json") -> Path:
    """Write ``results`` as JSON (numbers as floats) to ``folder/name``, atomically; the file's path."""
    path = Path(folder) / name
    write_text_atomic(path, json.dumps(results, indent=1, default=float))
    return path
