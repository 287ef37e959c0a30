"""M³Lung-Sys (seed 001): training and re-testing the slice network (``m3lung train slice``, ``evaluate slice``).

* :func:`prepare_data` — cases, slice tables and the split of a data folder (:mod:`m3lung.data.splits`);
* :func:`train_slice` — data, training (:class:`m3lung.train.run.TrainingRun` with
  :class:`~m3lung.systems.m3lung_task.SliceTask`), test-set evaluation; :func:`test_checkpoint`,
  :func:`evaluate_slice_run` re-test a checkpoint on its run's held-out data.

The rest of M³Lung-Sys: its recipe (:mod:`m3lung.systems.m3lung_recipes`), training task and figures
(:mod:`~m3lung.systems.m3lung_task`), slice inference (:mod:`~m3lung.systems.m3lung_inference`), patient
level (:mod:`~m3lung.systems.m3lung_patient`), stages (:mod:`~m3lung.systems.m3lung_stages`) and the
registered system itself (:mod:`~m3lung.systems.m3lung_system`).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from m3lung.classes import CLASSES
from m3lung.data.slices import Case, covidctmd_cases, synthetic_cases
from m3lung.data.splits import split_slice_tables
from m3lung.errors import InputError, M3LungWarning
from m3lung.io.atomic import require_input_folder, require_output_folder
from m3lung.models import SliceNet
from m3lung.preprocess import (
    LungCropConfig,
)
from m3lung.systems.m3lung_inference import with_map_options
from m3lung.systems.m3lung_recipes import SliceRecipe
from m3lung.systems.m3lung_task import SliceTask, evaluate_infnet, evaluate_slices
from m3lung.train.checkpoint import build_slice_net, load_checkpoint, load_state_checked
from m3lung.train.config import from_dict
from m3lung.train.engine import seed_everything
from m3lung.train.inference import ready
from m3lung.train.run import TrainingRun, write_results

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ training
def prepare_data(
    recipe: SliceRecipe, data: str | os.PathLike[str], cache_dir: str | os.PathLike[str], *, progress: bool = True
) -> dict[str, Any]:
    """Cases, slice tables and row splits for ``recipe`` from the data folder ``data``.

    A synthetic source with ``synthetic_per_class > 0`` makes its cohort in ``data`` (resuming an
    interrupted one) or uses the one there when it was made with the recipe's settings; a cohort made
    with other settings, or a folder holding other files, is an :class:`InputError`
    (see :func:`m3lung.phantom.write_cohort`), never overwritten.
    """
    d = recipe.data
    if d.source == "synthetic":
        root = require_output_folder(data, what="the data folder (--data)")
        if not (root / "cohort.csv").exists() or d.synthetic_per_class > 0:
            if d.synthetic_per_class <= 0:
                raise InputError(f"{root}: no synthetic cohort (cohort.csv); make one with `m3lung phantom`")
            from m3lung.phantom import PhantomConfig, write_cohort

            size = d.synthetic_size
            slices = d.synthetic_slices
            pcfg = PhantomConfig(slices=slices) if size == 512 else PhantomConfig.small(size=size, slices=slices)
            try:
                write_cohort(
                    root, per_class=d.synthetic_per_class, seed=d.synthetic_seed, config=pcfg, progress=progress
                )
            except InputError as exc:
                if not (root / "cohort.csv").exists():
                    raise
                raise InputError(f"{exc}; or train on it as it is: --set data.synthetic_per_class=0") from exc
        cases = synthetic_cases(root)
    else:
        root = require_input_folder(data, what="the COVID-CT-MD folder (--data)")
        cases = covidctmd_cases(root)
    splits = split_slice_tables(
        cases,
        holdout=d.holdout,
        size=d.size,
        cache_dir=cache_dir,
        fractions=d.split,
        seed=d.split_seed,
        block=d.block,
        gap=d.gap,
        crop=LungCropConfig(),
        progress=progress,
    )
    return {"cases": cases, "tables": splits.tables, "rows": splits.rows, "split": splits.description}


def train_slice(
    recipe: SliceRecipe,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    pretrained: str | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train the slice network as ``recipe`` says and evaluate ``best.pt`` on the held-out data.

    Writes into ``out``: ``recipe.json``, ``split.json``, ``log.csv``, ``checkpoints/last.pt``,
    ``best.pt`` and ``results.json`` (test figures). Returns the results.
    """
    from m3lung.train.engine import barrier, init_distributed

    info = init_distributed(recipe.train)
    run = TrainingRun(out, main=info.main)
    cache = cache_dir or run.out_dir / "cache"
    if not info.main:
        barrier()  # rank 0 makes the data and the cache first; the others then read them
    prep = prepare_data(recipe, data, cache, progress=progress and info.main)
    if info.main and info.world > 1:
        barrier()
    t_data = run.elapsed()
    seed_everything(recipe.train.seed, recipe.train.deterministic)
    init_sink: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", M3LungWarning)
        model, init = build_slice_net(recipe.model, pretrained or recipe.pretrained, sink=init_sink)
    tables, rows = prep["tables"], prep["rows"]
    task = SliceTask(recipe, tables["train"], rows["train"], tables.get("val"), rows.get("val"))
    run.write_setup(recipe, prep["split"])
    provenance = {
        "data": str(data),
        "data_source": recipe.data.source,
        "init": init,
        "train_slices": task.train_size(),
        "train_scans": len(prep["split"]["train"]),
        # the windows it is trained and tested with: screening uses these (m3lung_inference.slice_windows)
        "windows": {"centres": list(recipe.data.eval_centres), "width": recipe.data.width},
    }
    result, t_train = run.fit(model, task, recipe, provenance=provenance, resume=resume, progress=progress)
    if not info.main:
        return {}
    results = test_checkpoint(recipe, prep, result.best_path, data)
    results["seconds"] = {"data": round(t_data, 1), "train": round(t_train, 1), **results["seconds"]}
    results["init_warnings"] = init_sink
    results["seconds"]["total"] = round(run.elapsed(), 1)
    run.write_results(results)
    return results


def test_checkpoint(
    recipe: SliceRecipe, prep: dict[str, Any], weights: str | os.PathLike[str], data: str | os.PathLike[str]
) -> dict[str, Any]:
    """Figures of the checkpoint ``weights`` on the held-out part of ``prep`` (and Inf-Net when set)."""
    t0 = time.perf_counter()
    best = SliceNet(recipe.model)
    doc = load_checkpoint(weights, kind="slice_net")
    load_state_checked(best, doc["state_dict"], source=str(weights), target="SliceNet")
    device = ready(best, device=recipe.train.device)
    tables, rows = prep["tables"], prep["rows"]
    results: dict[str, Any] = {
        "recipe": recipe.name,
        "profile": recipe.profile,
        "data": str(data),
        "data_note": "synthetic cohort (m3lung.phantom)" if recipe.data.source == "synthetic" else "real COVID-CT-MD",
        "weights": str(weights),
        "weights_hash": doc["weights_hash"],
        "best_epoch": doc["provenance"].get("epoch"),
        "init": doc["provenance"].get("init"),
        "map_shifts": recipe.model.map_shifts,
        "map_flip": recipe.model.map_flip,
    }
    if "test" in tables and rows["test"].size:
        results["test"] = evaluate_slices(best, tables["test"], rows["test"], recipe, device)
    if recipe.data.infnet:
        infnet = Path(recipe.data.infnet)
        if not infnet.is_absolute():
            infnet = (Path(data) / infnet).resolve()
        if infnet.exists():
            results["infnet"] = evaluate_infnet(best, infnet, recipe, device)
        else:
            results["infnet"] = {"skipped": f"{infnet} not found"}
    results["seconds"] = {"test": round(time.perf_counter() - t0, 1)}
    return results


def evaluate_slice_run(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    map_shifts: int | None = None,
    map_flip: bool | None = None,
) -> dict[str, Any]:
    """Re-test a finished training run (its ``best.pt``, or ``weights``) on its own held-out data.

    The recipe and split come from the run folder; the split rebuilt from ``data`` must be the one
    the run trained with, or this refuses. Writes ``results.json`` (atomically) and returns it.
    ``map_shifts`` / ``map_flip`` draw the lesion maps with that :attr:`SliceNetConfig.map_shifts` /
    ``map_flip`` instead of the run's (only maps change); the figures then go to
    ``results_map_shifts<K>.json``, ``results_map_flip.json`` / ``results_no_map_flip.json`` or
    ``results_map_shifts<K>_map_flip.json`` (and so on), never over the run's own ``results.json``.
    """
    run_dir = Path(run)
    if not (run_dir / "recipe.json").exists():
        raise InputError(f"{run_dir}: not a training run (no recipe.json)")
    recipe = from_dict(SliceRecipe, json.loads((run_dir / "recipe.json").read_text()), where=str(run_dir))
    recipe = replace(recipe, model=with_map_options(recipe.model, map_shifts=map_shifts, map_flip=map_flip))
    parts = [f"map_shifts{map_shifts}"] if map_shifts is not None else []
    if map_flip is not None:
        parts.append("map_flip" if map_flip else "no_map_flip")
    out_name = "_".join(["results", *parts]) + ".json"
    prep = prepare_data(recipe, data, cache_dir or run_dir / "cache", progress=progress)
    saved = json.loads((run_dir / "split.json").read_text()) if (run_dir / "split.json").exists() else None
    if saved is not None and json.loads(json.dumps(prep["split"])) != saved:
        raise InputError(f"{data}: these data do not give the split {run_dir} trained with (split.json)")
    weights = weights or run_dir / "best.pt"
    if not Path(weights).exists():
        raise InputError(f"{weights}: no such checkpoint")
    results = test_checkpoint(recipe, prep, weights, data)
    write_results(run_dir, results, out_name)
    return results


def summarise(results: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"recipe {results.get('recipe')} ({results.get('data_note')}), weights {results.get('weights_hash')}"]
    t = results.get("test", {})
    keys = (
        "acc",
        "auc_macro",
        "lesion_auc",
        "pointing_game[with_lesion]",
        "dice@0.5[with_lesion]",
        "pointing_game[contrast]",
        "dice@0.5[contrast]",
        "pointing_game_chance",
        "pointing_game_tolerant",
    )
    if t:
        lines.append("test: " + ", ".join(f"{k} {t[k]:.3f}" for k in keys if k in t))
    if isinstance(results.get("infnet"), dict) and "pointing_game" in results["infnet"]:
        i = results["infnet"]
        figs = ", ".join(f"{k} {v:.3f}" for k, v in i.items() if k.startswith(("pointing_game", "dice@0.5[")))
        lines.append(f"infnet ({int(i['n_slices'])} slices): {figs}")
    lines.append(f"seconds: {results.get('seconds')}")
    return "\n".join(lines)


def cases_summary(cases: Sequence[Case]) -> dict[str, int]:
    """Number of scans per class name."""
    out: dict[str, int] = {}
    for c in cases:
        out[CLASSES[c.label]] = out.get(CLASSES[c.label], 0) + 1
    return out
