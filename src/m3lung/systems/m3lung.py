"""M³Lung-Sys (seed 001): the slice-level network wired to data, training, inference and evaluation.

* :class:`SliceRecipe` — a whole training run as typed configuration (YAML under ``recipes/``).
* :class:`SliceTask` — what the training engine needs: augmented batches (random window centre in
  [-700, -500] HU and random horizontal flips, drawn from the seed, the epoch and the row:
  :mod:`m3lung.train.augment`), the multi-task loss CE(4-class) + w·CE(lesion) and the validation
  figures (:mod:`m3lung.evaluate.slices`).
* :func:`predict_crops` / :class:`SlicePredictor` — inference on every slice, running the three
  window centres -700/-600/-500 and averaging probabilities, maps and features (§1.1), batched,
  under ``torch.inference_mode``, on CPU or CUDA.
* :func:`train_slice` — the ``m3lung train slice`` command: data (:mod:`m3lung.data.splits`), training
  (:class:`m3lung.train.run.TrainingRun`), test-set evaluation.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from m3lung.classes import CLASSES
from m3lung.data.infnet import read_infnet
from m3lung.data.sampling import height_matching_weights, relative_height, select_training_rows
from m3lung.data.slices import Case, SliceTable, covidctmd_cases, synthetic_cases
from m3lung.data.splits import split_slice_tables
from m3lung.errors import InputError, M3LungWarning
from m3lung.evaluate import roc_auc
from m3lung.evaluate.slices import (
    accuracy_breakdown,
    class_figures,
    map_figures,
    pointing_game_by_class,
    pointing_game_chance,
    positions_in,
)
from m3lung.models import SliceNet, SliceNetConfig
from m3lung.preprocess import (
    PAPER_CENTRE_RANGE,
    PAPER_CENTRES,
    PAPER_WIDTH,
    LungCropConfig,
)
from m3lung.systems.m3lung_inference import predict_crops, with_map_options
from m3lung.train.augment import augment_slices, draw_augmentation, is_geometric
from m3lung.train.checkpoint import build_slice_net, load_checkpoint, load_state_checked
from m3lung.train.config import TrainConfig, apply_overrides, from_dict, load_recipe_data
from m3lung.train.engine import seed_everything
from m3lung.train.inference import ready
from m3lung.train.run import TrainingRun, write_results

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ recipe
@dataclass(frozen=True)
class SliceDataConfig:
    """Where the slices come from and how they are held out.

    source : "synthetic" (a cohort from ``m3lung phantom``) or "covid-ct-md" (the sample layout).
    synthetic_per_class / synthetic_size / synthetic_slices / synthetic_seed : when the data folder
        holds no cohort yet, make one with these settings first (0: require an existing cohort).
    holdout : "patients" (split by patient: train / val / test fractions ``split``) or "slice_blocks"
        (for a handful of real scans: blocks of ``block`` consecutive slices rotate between train,
        val and test, with ``gap`` slices dropped between blocks so that neighbours never straddle).
    centre_range / width / eval_centres / flip : the paper's window-levelling and flips.
    rotate / scale / shift : random in-plane geometry on top of the paper's flips (*choice*, off in
        the paper recipe): each training slice is rotated by up to ``rotate`` degrees, zoomed by a
        factor drawn log-uniformly from ``scale`` and moved by up to ``shift`` of its side, in one
        bilinear resampling per batch (air fills what comes in from outside). They keep a small
        cohort's network from memorising its training scans' anatomy.
    val_centres : the window centres of the per-epoch validation (a profile may use only -600 to save
        time; the final test always uses ``eval_centres``).
    infnet : a folder of the Inf-Net layout (8-bit slices with expert masks) to score lesion maps on.
    infnet_window : (centre, width) the 8-bit slices are taken to have been exported with.
    """

    source: Literal["synthetic", "covid-ct-md"] = "synthetic"
    size: int = 512
    holdout: Literal["patients", "slice_blocks"] = "patients"
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    block: int = 10
    gap: int = 2
    synthetic_per_class: int = 0
    synthetic_size: int = 512
    synthetic_slices: tuple[int, int] = (24, 495)
    synthetic_seed: int = 0
    centre_range: tuple[float, float] = PAPER_CENTRE_RANGE
    width: float = PAPER_WIDTH
    eval_centres: tuple[float, ...] = PAPER_CENTRES
    val_centres: tuple[float, ...] = PAPER_CENTRES
    flip: bool = True
    rotate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shift: float = 0.0
    height_matched: bool = False
    height_bins: int = 5
    infnet: str | None = None
    infnet_window: tuple[float, float] = (PAPER_CENTRES[1], PAPER_WIDTH)


@dataclass(frozen=True)
class SliceRecipe:
    """One training run of the slice network. ``profile`` changes sizes and epochs, never the algorithm."""

    name: str = "slice"
    profile: Literal["paper", "cpu", "tiny"] = "paper"
    description: str = ""
    model: SliceNetConfig = field(default_factory=SliceNetConfig)
    pretrained: str | None = "imagenet"
    lesion_loss_weight: float = 1.0
    data: SliceDataConfig = field(default_factory=SliceDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_batch_size: int = 32


def load_slice_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SliceRecipe:
    """Read a recipe YAML (or the name of a shipped one) and apply ``key=value`` overrides."""
    data = apply_overrides(load_recipe_data(path), list(overrides))
    return from_dict(SliceRecipe, data, where=str(path))


# ------------------------------------------------------------------------------------------ task
class SliceTask:
    """Training task of the slice network on a :class:`SliceTable` (see the module docstring)."""

    kind = "slice_net"

    def __init__(
        self,
        recipe: SliceRecipe,
        train: SliceTable,
        train_rows: np.ndarray,
        val: SliceTable | None = None,
        val_rows: np.ndarray | None = None,
    ) -> None:
        self.recipe = recipe
        self.table = train
        self.rows, self.cls, self.les = select_training_rows(train, train_rows)
        if self.rows.size == 0:
            raise InputError("no training slices: no healthy scan and no slice with a lesion in the training set")
        self.val = val
        self.val_rows = val_rows
        self._epoch_cache: tuple[int, dict[str, np.ndarray]] | None = None

    def train_size(self) -> int:
        return int(self.rows.size)

    def train_weights(self) -> np.ndarray:
        counts = np.bincount(self.cls, minlength=self.recipe.model.num_classes).astype(np.float64)
        w = 1.0 / counts[self.cls]
        if self.recipe.data.height_matched:
            w = w * height_matching_weights(self.table, self.rows, self.cls, self.recipe.data.height_bins)
        return w

    def _augment(self, epoch: int) -> dict[str, np.ndarray]:
        """Every training slice's random window centre, flip and geometry for ``epoch`` (drawn once)."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            d = self.recipe.data
            draws = draw_augmentation(
                self.rows.size,
                seed=self.recipe.train.seed,
                epoch=epoch,
                centre_range=d.centre_range,
                flip=d.flip,
                rotate=d.rotate,
                scale=d.scale,
                shift=d.shift,
            )
            self._epoch_cache = (epoch, draws)
        return self._epoch_cache[1]

    @property
    def geometric(self) -> bool:
        d = self.recipe.data
        return is_geometric(rotate=d.rotate, scale=d.scale, shift=d.shift)

    def batch(
        self, rows: np.ndarray, epoch: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        draws = {k: v[rows] for k, v in self._augment(epoch).items()}
        x = augment_slices(self.table.hu[self.rows[rows]], draws, width=self.recipe.data.width, device=device)
        if device.type == "cuda" and self.recipe.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.from_numpy(self.cls[rows]).to(device), torch.from_numpy(self.les[rows]).to(device)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, cls, les = batch
        out = model(x, draw_map=False)
        class_loss = F.cross_entropy(out.class_logits.float(), cls)
        figures = {
            "class_loss": float(class_loss.detach()),
            "acc": float((out.class_logits.argmax(1) == cls).float().mean()),
        }
        loss = class_loss
        if out.lesion_logits is not None:
            lesion_loss = F.cross_entropy(out.lesion_logits.float(), les)
            loss = loss + self.recipe.lesion_loss_weight * lesion_loss
            figures["lesion_loss"] = float(lesion_loss.detach())
        return loss, figures

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if self.val is None or self.val_rows is None or self.val_rows.size == 0:
            return {}
        figures = evaluate_slices(
            model, self.val, self.val_rows, self.recipe, device, maps=False, centres=self.recipe.data.val_centres
        )
        return {f"val_{k}": v for k, v in figures.items() if isinstance(v, float)}


# ------------------------------------------------------------------------------------------ evaluation
def evaluate_slices(
    model: nn.Module,
    table: SliceTable,
    rows: np.ndarray,
    recipe: SliceRecipe,
    device: torch.device,
    *,
    maps: bool = True,
    centres: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Slice-level figures on ``rows`` of ``table`` (every slice of held-out scans or blocks).

    * ``acc``, ``auc_<class>``, ``auc_macro``, ``confusion``: 4-class, on the annotation-rule slices
      (lesion slices of diseased scans, all slices of healthy scans), and where the errors fall
      (:func:`m3lung.evaluate.slices.accuracy_breakdown`);
    * ``lesion_auc``: the lesion head on *every* slice with a known label (P(with lesion) against
      the truth), diseased scans' lesion-free slices included;
    * ``pointing_game`` and ``dice@0.5``: the with-lesion maps against the lesion masks, on the
      slices with lesion, when masks are known, for the model's map prototype; the same figures for
      both prototypes as ``pointing_game[with_lesion]``, ``pointing_game[contrast]`` (and Dice);
      ``pointing_game_<class>`` per scan class and ``pointing_game_chance``, the mean lesion area
      fraction (how often a random point would hit); ``pointing_game_tolerant``, a hit within
      ``pointing_game_tolerance_px`` of the lesion (the 15 px at 224 px of the original pointing game,
      Zhang et al. 2016, scaled to the input; square neighbourhood), shows how near the misses fall.
    """
    assert isinstance(model, SliceNet) or hasattr(model, "config")
    centres = recipe.data.eval_centres if centres is None else centres
    pred = predict_crops(
        model,  # type: ignore[arg-type]
        table.hu[rows],
        centres=centres,
        width=recipe.data.width,
        batch_size=recipe.eval_batch_size,
        device=device,
        maps=False,  # drawn below for the lesion slices only
    )
    out: dict[str, Any] = {"n_slices": float(rows.size)}
    sel_rows, cls, _ = select_training_rows(table, rows)
    if sel_rows.size:
        p = pred.p_multi[positions_in(rows, sel_rows)]
        out.update(class_figures(cls, p, recipe.model.num_classes))
        out["n_rule_slices"] = float(sel_rows.size)
        area = None if table.masks is None else table.masks[sel_rows].reshape(sel_rows.size, -1).mean(1)
        out.update(accuracy_breakdown(cls, p.argmax(1), relative_height(table, sel_rows), area))
    known = table.lesion[rows] >= 0
    if pred.p_lesion is not None and known.any():
        out["lesion_auc"] = roc_auc(table.lesion[rows][known], pred.p_lesion[known, 1])
    if maps and pred.p_lesion is not None and table.masks is not None:
        has = (table.lesion[rows] == 1) & table.masks[rows].reshape(rows.size, -1).any(1)
        if has.any():
            masks = table.masks[rows][has]
            for prototype, main, one, _ in _prototype_maps(model, table.hu[rows][has], recipe, device, centres):
                out.update(map_figures(one, masks, prototype, main=main))
                if main:
                    main_maps = one
            out["n_map_slices"] = float(has.sum())
            out["pointing_game_chance"] = pointing_game_chance(masks)
            out.update(pointing_game_by_class(main_maps, masks, table.label[rows][has]))
    return out


def _prototype_maps(
    model: Any, hu: np.ndarray, recipe: SliceRecipe, device: torch.device, centres: Sequence[float]
) -> Iterator[tuple[str, bool, np.ndarray, np.ndarray | None]]:
    """The lesion maps (N, S, S) of lung crops ``hu`` drawn by the model's prototype, then by the other
    one, at the crops' size: (prototype, whether it is the model's, maps, p_lesion) one after the other."""
    configured = _configured_prototype(model)
    for prototype in (configured, "contrast" if configured == "with_lesion" else "with_lesion"):
        one = predict_crops(
            model,
            hu,
            centres=centres,
            width=recipe.data.width,
            batch_size=recipe.eval_batch_size,
            device=device,
            map_size=(hu.shape[1], hu.shape[2]),
            map_prototype=prototype,
        )
        assert one.maps is not None
        yield prototype, prototype == configured, one.maps, one.p_lesion


def _configured_prototype(model: Any) -> str:
    return str(getattr(model.config, "map_prototype", "with_lesion"))


def evaluate_infnet(
    model: SliceNet, folder: str | os.PathLike[str], recipe: SliceRecipe, device: torch.device
) -> dict[str, float]:
    """Pointing game and Dice of the with-lesion maps on Inf-Net's 8-bit slices and expert masks.

    The JPG slices are already cropped to the lungs; each is resized to the network's input and its
    grey values are mapped to HU with ``recipe.data.infnet_window`` (the window it is taken to have been
    exported with, :func:`m3lung.data.infnet.read_infnet`), then run at the three window centres like
    any CT slice.
    """
    hu, masks = read_infnet(folder, size=recipe.model.input_size, window=recipe.data.infnet_window)
    has = masks.reshape(len(masks), -1).any(1)
    out: dict[str, float] = {"n_slices": float(has.sum()), "pointing_game_chance": pointing_game_chance(masks[has])}
    for prototype, main, maps, p_lesion in _prototype_maps(model, hu[has], recipe, device, recipe.data.eval_centres):
        out.update(map_figures(maps, masks[has], prototype, main=main))
        if p_lesion is not None:
            out["p_lesion_mean"] = float(p_lesion[:, 1].mean())
    return out


# ------------------------------------------------------------------------------------------ training
def prepare_data(
    recipe: SliceRecipe, data: str | os.PathLike[str], cache_dir: str | os.PathLike[str], *, progress: bool = True
) -> dict[str, Any]:
    """Cases, slice tables and row splits for ``recipe`` from the data folder ``data``."""
    d = recipe.data
    root = Path(data)
    if d.source == "synthetic":
        if not (root / "cohort.csv").exists() or d.synthetic_per_class > 0:
            if d.synthetic_per_class <= 0:
                raise InputError(f"{root}: no synthetic cohort (cohort.csv); make one with `m3lung phantom`")
            from m3lung.phantom import PhantomConfig, write_cohort

            size = d.synthetic_size
            slices = d.synthetic_slices
            pcfg = PhantomConfig(slices=slices) if size == 512 else PhantomConfig.small(size=size, slices=slices)
            write_cohort(root, per_class=d.synthetic_per_class, seed=d.synthetic_seed, config=pcfg, progress=progress)
        cases = synthetic_cases(root)
    else:
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
