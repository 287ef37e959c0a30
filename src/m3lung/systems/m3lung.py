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
from m3lung.io import CTVolume
from m3lung.models import SliceNet, SliceNetConfig
from m3lung.preprocess import (
    PAPER_CENTRE_RANGE,
    PAPER_CENTRES,
    PAPER_WIDTH,
    LungCrop,
    LungCropConfig,
    lung_crop,
    window_torch,
)
from m3lung.train.augment import augment_slices, draw_augmentation, is_geometric
from m3lung.train.checkpoint import build_slice_net, load_checkpoint, load_state_checked, slice_net_from
from m3lung.train.config import TrainConfig, apply_overrides, from_dict, load_recipe_data
from m3lung.train.engine import pick_device, seed_everything
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


# ------------------------------------------------------------------------------------------ inference
@dataclass
class SliceBatchPrediction:
    """Per-slice outputs averaged over the window centres.

    p_multi (N, 4); p_lesion (N, 2) or None; maps (N, h, w) with-lesion maps in [0, 1] (at
    ``map_size`` when asked) or None; features (N, F).
    """

    p_multi: np.ndarray
    p_lesion: np.ndarray | None
    maps: np.ndarray | None
    features: np.ndarray


def predict_crops(
    model: SliceNet,
    hu: np.ndarray,
    *,
    centres: Sequence[float] = PAPER_CENTRES,
    width: float = PAPER_WIDTH,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    map_size: tuple[int, int] | None = None,
    maps: bool = True,
    bf16: bool = False,
    map_prototype: str | None = None,
    channels_last: bool = False,
) -> SliceBatchPrediction:
    """Run the slice network on lung crops ``hu`` (N, S, S) in HU at every window centre and average.

    Windowing happens on the device, batch by batch; nothing is kept but the averaged outputs.
    ``channels_last`` feeds the network channels-last input (convert the model itself beforehand).
    """
    dev = torch.device(device)
    model.eval()
    n = hu.shape[0]
    k = len(centres)
    pm, pl, mp, ft = [], [], [], []
    c = torch.tensor(list(centres), dtype=torch.float32, device=dev).view(1, k, 1, 1)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            x = torch.as_tensor(np.asarray(hu[start : start + batch_size], dtype=np.float32), device=dev)
            b = x.shape[0]
            w = window_torch(x.unsqueeze(1), c, width).reshape(b * k, 1, *x.shape[1:])
            if channels_last:
                w = w.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(w, map_size=map_size if maps else None, map_prototype=map_prototype, draw_map=maps)
            pm.append(out.p_multi.float().view(b, k, -1).mean(1).cpu())
            ft.append(out.features.float().view(b, k, -1).mean(1).cpu())
            if out.p_lesion is not None:
                pl.append(out.p_lesion.float().view(b, k, -1).mean(1).cpu())
            if maps and out.lesion_map is not None:
                mp.append(out.lesion_map.float().view(b, k, *out.lesion_map.shape[1:]).mean(1).cpu())
    return SliceBatchPrediction(
        p_multi=torch.cat(pm).numpy(),
        p_lesion=torch.cat(pl).numpy() if pl else None,
        maps=torch.cat(mp).numpy() if mp else None,
        features=torch.cat(ft).numpy(),
    )


@dataclass
class SlicePredictions:
    """Every slice of one CT volume (canonical order) through the slice network.

    p_multi (N, 4), p_lesion (N, 2) or None, maps (N, S, S) with-lesion maps on the lung crop (S = the
    model's input size), features (N, F), boxes (N, 4) crop boxes in the volume's pixels, fallback (N,).
    """

    p_multi: np.ndarray
    p_lesion: np.ndarray | None
    maps: np.ndarray | None
    features: np.ndarray
    boxes: np.ndarray
    fallback: np.ndarray
    weights_hash: str | None = None

    @property
    def predicted(self) -> np.ndarray:
        return self.p_multi.argmax(axis=1)


def with_map_options(
    config: SliceNetConfig, *, map_shifts: int | None = None, map_flip: bool | None = None
) -> SliceNetConfig:
    """``config`` drawing its lesion maps with ``map_shifts`` and ``map_flip`` where given (only the maps
    change); a bad value is an :class:`InputError` naming the option."""
    if map_flip is not None:
        config = replace(config, map_flip=bool(map_flip))
    if map_shifts is None:
        return config
    try:
        return replace(config, map_shifts=map_shifts)
    except ValueError as exc:
        raise InputError(f"--map-shifts: {exc}") from exc


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 in hardware (AVX512-BF16 or AMX, as oneDNN sees it). Without, torch
    emulates bf16 and autocast runs 6-70x *slower* than fp32 (BENCHMARKS.md, AVX2 table)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the query: assume the worst
        return False


class SlicePredictor:
    """Load a slice-network checkpoint once; predict every slice of any number of volumes.

    ``bf16=True`` runs the network under bfloat16 autocast, on CUDA or on the CPU (about 2x faster on
    CPUs with AVX512-BF16 or AMX, see BENCHMARKS.md; slower on CPUs without); probabilities move by a
    few hundredths at most; asked for on a CPU without bf16 instructions it warns and runs anyway.
    ``channels_last`` (default on) runs the convolutions on channels-last
    tensors, 1.1–1.4x faster in fp32 on this project's CPU. ``doc``: the checkpoint already loaded
    (``weights`` then only names it in messages). ``map_shifts`` and ``map_flip`` draw the lesion maps
    with that :attr:`SliceNetConfig.map_shifts` / ``map_flip`` instead of the checkpoint's (other maps,
    same probabilities).
    """

    def __init__(
        self,
        weights: str | os.PathLike[str],
        *,
        device: str = "auto",
        batch_size: int = 32,
        bf16: bool = False,
        channels_last: bool = True,
        doc: dict[str, Any] | None = None,
        map_shifts: int | None = None,
        map_flip: bool | None = None,
    ) -> None:
        if doc is None:
            doc = load_checkpoint(weights, kind="slice_net")
        self.model = slice_net_from(doc, source=str(weights))
        self.model.config = with_map_options(self.model.config, map_shifts=map_shifts, map_flip=map_flip)
        self.config = self.model.config
        self.device = pick_device(device)
        self.model.to(self.device).eval()
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.bf16 = bf16
        if bf16 and self.device.type == "cpu" and not cpu_has_bf16():
            warnings.warn(
                "bf16 asked for on a CPU without bf16 instructions (AVX512-BF16 / AMX): torch emulates it "
                "and inference runs several times slower than fp32 here (BENCHMARKS.md); leave --bf16 off",
                M3LungWarning,
                stacklevel=2,
            )
        self.doc = doc
        self.weights_hash: str = doc["weights_hash"]
        self.provenance: dict[str, Any] = doc.get("provenance", {})

    def predict_chunks(self, volume: CTVolume, *, chunk: int | None = None, maps: bool = True) -> Iterator[SliceChunk]:
        """Lung-crop and predict ``chunk`` slices at a time (all at once when None), in order.

        Memory then grows with the chunk, not with the volume. A single chunk's lung-crop warnings
        (slices without lung) name the volume; chunks of a part of it name "volume".
        """
        volume.require_hu("the slice network (the lung crop and the windows are in HU)")
        n = volume.n_slices
        step = n if chunk is None else chunk
        if step < 1:
            raise InputError(f"chunk must be at least 1, got {chunk}")
        s = self.config.input_size
        cfg = LungCropConfig(output_size=(s, s))
        for start in range(0, n, step):
            stop = min(n, start + step)
            t0 = time.perf_counter()
            crop = lung_crop(volume if stop - start == n else volume.voxels[start:stop], cfg)
            t1 = time.perf_counter()
            out = predict_crops(
                self.model,
                crop.crops,
                batch_size=self.batch_size,
                device=self.device,
                map_size=(s, s),
                maps=maps,
                bf16=self.bf16,
                channels_last=self.channels_last,
            )
            yield SliceChunk(start, stop, crop, out, t1 - t0, time.perf_counter() - t1)

    def predict(self, volume: CTVolume, *, maps: bool = True) -> SlicePredictions:
        """Lung-crop every slice at the model's input size and run all three window centres."""
        (c,) = self.predict_chunks(volume, maps=maps)
        return SlicePredictions(
            p_multi=c.out.p_multi,
            p_lesion=c.out.p_lesion,
            maps=c.out.maps,
            features=c.out.features,
            boxes=c.crop.boxes,
            fallback=c.crop.fallback,
            weights_hash=self.weights_hash,
        )


@dataclass
class SliceChunk:
    """Slices ``start:stop`` of a volume: their lung crop, the network's outputs, the seconds each took."""

    start: int
    stop: int
    crop: LungCrop
    out: SliceBatchPrediction
    seconds_crop: float
    seconds_net: float


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
    device = pick_device(recipe.train.device)
    best.to(device)
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
